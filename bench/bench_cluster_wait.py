"""What the replica barrier costs on the local Redis Cluster (``churnpulse services up
cluster``: three primaries, one replica each, all on this machine): the same work with
``CHURN_REDIS__WAIT_REPLICAS`` 0 (off) and 1 (the default on a cluster).

In-process (default): the feature store's ``apply`` over batches of 500 events with the
due-index update, as the worker sends them, three ways: ``off`` (0: redis-py's cluster
pipeline, as before the barrier), ``direct`` (the barrier's own per-primary pipelines with a
``WAIT 0``, which answers at once: the routing without the waiting) and ``on`` (1: each
primary's pipeline ends with ``WAIT 1``). The three alternate round by round (the order
reversed every other round) so a change of load hits all. Printed per way: events/s, this
process's CPU µs per event, the median and 90th percentile wall time of one batch's Redis
round trip, and the ``WAIT`` calls the primaries served.

    python bench/bench_cluster_wait.py --events 20000 --customers 2000 --rounds 2

``--workers``: one real worker process draining a backlog on a 12-partition topic, with the
barrier off and on (``bench_scaleout.run``: events/s, worker and Redis CPU µs per event).

    python bench/bench_cluster_wait.py --workers --events 20000 --customers 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from bench_scaleout import run, server_infos

import streams.redis.cluster as cluster_module
from streams.contracts import CustomerEvent
from streams.dev.pipeline import forget_prefix
from streams.redis.client import Durability, make_redis, set_durability
from streams.redis.feature_store import RedisFeatureStore
from streams.services.redis_cluster import URL as CLUSTER_URL
from streams.settings import FeatureSettings, RedisSettings

T0 = 1_767_225_600.0
BATCH = 500


def waits_served(url: str) -> int:
    return sum(int(info.get("cmdstat_wait", {}).get("calls", 0))
               for info in server_infos(url, "commandstats", primaries_only=True))


async def _no_wait(client: Any, commands: Any, raise_on_error: bool = False) -> list[Any]:
    """write_commands through the barrier's per-primary pipelines, ending with ``WAIT 0``."""
    return list(await cluster_module._with_wait(client, commands, Durability(0, 1)))


async def store_run(url: str, way: str, events: int, customers: int, tag: str
                    ) -> tuple[float, float, list[float], int]:
    """(events/s, CPU µs per event, per-batch wall seconds, WAITs served) of one run."""
    prefix = f"benchwait{os.getpid()}{tag}"
    client = make_redis(RedisSettings(url=url))
    set_durability(client, Durability(1 if way == "on" else 0, 2000))
    real = cluster_module.write_commands
    if way == "direct":
        cluster_module.write_commands = _no_wait
    store = RedisFeatureStore(client, FeatureSettings(), prefix)
    stream = [CustomerEvent(f"s{i}", f"c{i % customers}", "session", T0 + i, None)
              for i in range(events)]
    try:
        await store.apply(stream[:BATCH])  # connections and script caches warm
        waits = waits_served(url)
        batches: list[float] = []
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(BATCH, events, BATCH):
            chunk = stream[start:start + BATCH]
            due = {e.customer_id: (hash(e.customer_id) % 12, e.ts + 86400.0) for e in chunk}
            began = time.perf_counter()
            await store.apply(chunk, due)
            batches.append(time.perf_counter() - began)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        waits = waits_served(url) - waits
    finally:
        cluster_module.write_commands = real
        await client.aclose()
        forget_prefix(url, prefix)
    done = events - BATCH
    return done / wall, cpu / done * 1e6, batches, waits


def main_store(url: str, events: int, customers: int, rounds: int) -> None:
    ways = ("off", "direct", "on")
    order = [w for r in range(rounds) for w in (ways if r % 2 == 0 else ways[::-1])]
    results: dict[str, list[tuple[float, float, list[float], int]]] = {w: [] for w in ways}
    for i, way in enumerate(order):
        results[way].append(asyncio.run(store_run(url, way, events, customers, f"r{i}")))
    for way, runs in results.items():
        batches = sorted(b for _, _, bs, _ in runs for b in bs)
        p90 = batches[int(0.9 * (len(batches) - 1))]
        rates = ", ".join(f"{r:.0f}" for r, _, _, _ in runs)
        cpus = ", ".join(f"{c:.1f}" for _, c, _, _ in runs)
        waits = sum(w for _, _, _, w in runs)
        print(f"{way:6s}: {rates} events/s; client CPU {cpus} µs/event; "
              f"batch of {BATCH}: median {statistics.median(batches) * 1e3:.2f} ms, "
              f"p90 {p90 * 1e3:.2f} ms; WAIT calls served {waits} "
              f"({len(batches)} batches)", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


def main_workers(url: str, events: int, customers: int) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    for replicas in (0, 1):
        os.environ["CHURN_REDIS__WAIT_REPLICAS"] = str(replicas)
        rate, worker_us, redis_us = run(bootstrap, url, 1, events, customers)
        print(f"WAIT_REPLICAS={replicas}, 1 worker: {rate:8.0f} events/s  workers "
              f"{worker_us:5.0f} µs CPU/event  Redis {redis_us:5.0f} µs CPU/event  "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (in-process)")
    parser.add_argument("--workers", action="store_true", help="a real worker process")
    args = parser.parse_args()
    url = os.environ.get("REDIS_CLUSTER_URL", CLUSTER_URL)
    print(f"events {args.events}, customers {args.customers}, cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.workers:
        main_workers(url, args.events, args.customers)
    else:
        main_store(url, args.events, args.customers, args.rounds)


if __name__ == "__main__":
    main()
