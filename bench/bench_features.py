"""Benchmark of the Redis feature store: update throughput, read latency, memory per customer.

Run by hand against a real redis-server (``churnpulse services up``)::

    python bench/bench_features.py                       # REDIS_URL / CHURN_REDIS__URL
    python bench/bench_features.py --customers 100000 --events 200000 --repeat 3

What it does, on a fresh key prefix (deleted at the end):

1. history: gives every customer a realistic past (``--history`` events each over 60 days,
   six event types, purchases with amounts), so hashes have their full size;
2. updates: applies ``--events`` new events in batches of ``--batch`` (the worker's batch size),
   one ``RedisFeatureStore.apply`` call at a time, with the due-index update in the same round
   trip as the worker does; prints events/s per repeat and the Redis server time per EVALSHA
   (``INFO commandstats``);
3. reads: ``--reads`` times the full feature vector of one random customer (``HGETALL`` +
   catalogue + model transform, async client as in the worker), p50/p99;
4. memory: ``MEMORY USAGE`` of sampled customer hashes and of the due-index per member, and
   the growth of ``used_memory`` per customer while the history was written (includes the
   key's expiry entry and allocator overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis

from online_models.feature_vector import feature_vector
from streams.contracts import CustomerEvent
from streams.redis.feature_store import RedisFeatureStore
from streams.settings import FeatureSettings, load_settings

T0 = 1_767_225_600.0
DAY = 86400.0
KINDS = ("session", "session", "session", "feature_use", "feature_use", "purchase",
         "support_ticket", "payment_failure")
PARTITIONS = 4


def make_event(i: int, cid: int, ts: float, rng: random.Random) -> CustomerEvent:
    kind = rng.choice(KINDS)
    value = round(rng.lognormvariate(3, 0.6), 2) if kind == "purchase" else None
    return CustomerEvent(f"bench-{i}", f"c-{cid:07d}", kind, ts, value)


def history(customers: int, per_customer: int, rng: random.Random) -> list[CustomerEvent]:
    out = []
    for c in range(customers):
        for j in range(per_customer):
            out.append(make_event(c * per_customer + j + 10**9, c,
                                  T0 + rng.uniform(0, 60 * DAY), rng))
    out.sort(key=lambda e: e.ts)
    return out


def live_events(n: int, customers: int, start: float, rng: random.Random) -> list[CustomerEvent]:
    # arrival order with a little jitter, like a real topic
    return [make_event(i, rng.randrange(customers), start + i * 0.05 + rng.uniform(-5, 0), rng)
            for i in range(n)]


def due_updates(batch: list[CustomerEvent]) -> dict[str, tuple[int, float]]:
    newest: dict[str, float] = {}
    for e in batch:
        newest[e.customer_id] = max(e.ts, newest.get(e.customer_id, e.ts))
    return {cid: (hash(cid) % PARTITIONS, ts + DAY) for cid, ts in newest.items()}


async def apply_all(store: RedisFeatureStore, events: list[CustomerEvent], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        await store.apply(chunk, due_updates(chunk))
    return time.perf_counter() - start


def evalsha_stats(sync: redis.Redis) -> tuple[int, float]:
    stats: Any = sync.info("commandstats")
    entry = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(entry["calls"]), float(entry["usec"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--history", type=int, default=40, help="past events per customer")
    parser.add_argument("--events", type=int, default=200_000, help="events per repeat")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    url = os.environ.get("CHURN_REDIS__URL") or load_settings().redis.url
    prefix = f"bf{uuid.uuid4().hex[:8]}"
    settings = FeatureSettings()
    client = aioredis.Redis.from_url(url)
    sync = redis.Redis.from_url(url)
    store = RedisFeatureStore(client, settings, prefix)
    rng = random.Random(args.seed)
    print(f"redis {url}  prefix {prefix}  customers {args.customers}  batch {args.batch}")
    try:
        past = history(args.customers, args.history, rng)
        used0 = int(sync.info("memory")["used_memory"])
        took = await apply_all(store, past, args.batch)
        used1 = int(sync.info("memory")["used_memory"])
        print(f"history: {len(past)} events in {took:.1f}s ({len(past) / took:,.0f} ev/s); "
              f"used_memory grew {(used1 - used0) / args.customers:,.0f} B per customer")

        start = T0 + 60 * DAY
        rates = []
        for r in range(args.repeat):
            events = live_events(args.events, args.customers, start, rng)
            start = events[-1].ts + 1
            calls0, usec0 = evalsha_stats(sync)
            took = await apply_all(store, events, args.batch)
            calls1, usec1 = evalsha_stats(sync)
            rate = len(events) / took
            rates.append(rate)
            server_us = (usec1 - usec0) / max(1, calls1 - calls0)
            print(f"updates #{r + 1}: {rate:,.0f} events/s; Redis server time per EVALSHA "
                  f"{server_us:,.0f} µs = {server_us / args.batch:.1f} µs/event")
        print(f"updates: min {min(rates):,.0f}  median {statistics.median(rates):,.0f}  "
              f"max {max(rates):,.0f} events/s")

        now = start + DAY
        cids = [f"c-{rng.randrange(args.customers):07d}" for _ in range(args.reads)]
        lat = []
        for cid in cids:
            t = time.perf_counter()
            vector = feature_vector(await store.get(cid), now, store.spec)
            lat.append((time.perf_counter() - t) * 1e3)
        print(f"read full feature vector ({len(vector)} features): p50 {pct(lat, 0.5):.3f} ms  "
              f"p99 {pct(lat, 0.99):.3f} ms  max {max(lat):.3f} ms")

        sample = [store.feature_key(f"c-{rng.randrange(args.customers):07d}")
                  for _ in range(200)]
        sizes = [int(sync.memory_usage(k, samples=0) or 0) for k in sample]
        fields = statistics.mean(sync.hlen(k) for k in sample)
        due = sum(int(sync.memory_usage(store.due_key(p), samples=0) or 0)
                  for p in range(PARTITIONS))
        members = sum(int(sync.zcard(store.due_key(p))) for p in range(PARTITIONS))
        per_due = due / max(1, members)
        mean = statistics.mean(sizes)
        print(f"memory per customer hash: mean {mean:,.0f} B (min {min(sizes):,}, max "
              f"{max(sizes):,}; {fields:.0f} fields); due-index {per_due:,.0f} B per customer")
        total = mean + per_due
        for n in (1_000_000, 10_000_000):
            print(f"  {n:>11,} customers x {total:,.0f} B = {n * total / 2**30:,.1f} GiB "
                  f"(+ Redis overhead per key, see docs/features.md)")
    finally:
        for key in sync.scan_iter(match=f"{prefix}:*", count=5000):
            sync.delete(key)
        sync.close()
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
