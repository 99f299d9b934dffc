"""Memory of pending snapshots in Redis, per snapshot, measured with ``MEMORY USAGE``.

Run by hand with Redis up (``churnpulse services up``)::

    python bench/bench_snapshots.py [--customers 200] [--snapshots 30]

Realistic snapshots (the 32-44 features ``feature_vector`` gives a customer with 20-60 events
of five types, as in ``bench/bench_learner.py``) are recorded through
:class:`~streams.redis.observation_store.RedisObservationStore` under a fresh key prefix, then:

* ``per_field``: ``MEMORY USAGE`` (``SAMPLES 0``: exact) of every customer's hash holding
  ``--snapshots`` snapshots, summed and divided by the snapshots (key overhead amortised);
* ``one_snapshot_hash``: the same for a customer holding one snapshot (key overhead included);
* ``due_entry``: the due index ``<prefix>:obs:due`` divided by its entries (one per customer);
* ``due_per_snapshot``: the due index divided by the snapshots it indexes (both groups of
  customers); ``per_snapshot_with_due``: ``per_field`` plus that;
* ``older_due_entry``: the older layout's index (one member ``<id>|<slot>`` per snapshot,
  written beside it under ``<prefix>:obs:due:older`` for the comparison) per entry, and
  ``older_per_snapshot_with_due``: ``per_field`` plus that;
* ``value_bytes``: the stored value of a snapshot (``HSTRLEN``), mean;
* ``resolve_*``: then every snapshot is resolved a day at a time as the learner does (``due``
  then ``remove``): client CPU and Redis server time per snapshot (see :func:`resolve_all`).

Everything under the prefix is deleted at the end. Prints JSON; writes
``bench/out/snapshots.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_learner import DAY, T0, sample_vector

from online_models.observations import LabelPolicy, Observation
from streams.dev.pipeline import forget_prefix
from streams.redis.client import make_redis
from streams.redis.observation_store import RedisObservationStore, member
from streams.settings import load_settings

OUT = Path(__file__).parent / "out"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bsnap{int(time.time())}"
    settings = load_settings(redis={"key_prefix": prefix})
    client = make_redis(settings.redis)
    store = RedisObservationStore(client, prefix, LabelPolicy())
    rng = random.Random(1)
    vectors = [sample_vector(rng) for _ in range(200)]
    try:
        many = [Observation(f"c{i:06d}", T0 + d * DAY + 3600.25, vectors[(i * 7 + d) % 200],
                            0.1 + 0.8 * rng.random(), f"{1000 + d}-logreg")
                for i in range(args.customers) for d in range(args.snapshots)]
        ones = [Observation(f"o{i:06d}", T0, vectors[i % 200], 0.5, "1000-logreg")
                for i in range(args.customers)]
        for lo in range(0, len(many), 2000):
            await store.record(many[lo:lo + 2000])
        await store.record(ones)
        hashes = [store.key(f"c{i:06d}") for i in range(args.customers)]
        total = sum([int(await client.memory_usage(k, samples=0) or 0) for k in hashes])
        one = sum([int(await client.memory_usage(store.key(f"o{i:06d}"), samples=0) or 0)
                   for i in range(args.customers)])
        due_key = f"{prefix}:obs:due"
        due = int(await client.memory_usage(due_key, samples=0) or 0)
        entries = int(await client.zcard(due_key))
        older_key = f"{due_key}:older"
        for lo in range(0, len(many), 2000):
            await client.zadd(older_key, {member(o, store._policy): store._policy.due(o)
                                          for o in many[lo:lo + 2000]})
        await client.zadd(older_key, {member(o, store._policy): store._policy.due(o)
                                      for o in ones})
        older = int(await client.memory_usage(older_key, samples=0) or 0)
        older_entries = int(await client.zcard(older_key))
        indexed = await store.count()
        lengths = [int(await client.hstrlen(store.key(o.customer_id),
                                            str(store._policy.slot(o.t)))) for o in many[:500]]
        n_features = [len(o.x) for o in many]
        await client.delete(older_key)
        resolve = await resolve_all(client, store, args.snapshots)
    finally:
        await client.aclose()
        forget_prefix(settings.redis.url, prefix)
    return {
        "customers": args.customers, "snapshots_per_customer": args.snapshots,
        "features_mean": sum(n_features) / len(n_features),
        "value_bytes_mean": sum(lengths) / len(lengths),
        "per_field_bytes": total / (args.customers * args.snapshots),
        "one_snapshot_hash_bytes": one / args.customers,
        "due_entries": entries, "snapshots_indexed": indexed,
        "due_entry_bytes": due / max(1, entries),
        "due_per_snapshot_bytes": due / max(1, indexed),
        "per_snapshot_with_due_bytes": total / (args.customers * args.snapshots)
        + due / max(1, indexed),
        "older_due_entry_bytes": older / max(1, older_entries),
        "older_per_snapshot_with_due_bytes": total / (args.customers * args.snapshots)
        + older / max(1, older_entries),
        **resolve,
    }


SERVER_COMMANDS = ("evalsha", "zrangebyscore", "hmget", "hgetall", "hkeys", "hget", "zadd",
                   "zrem", "hlen")


async def resolve_all(client: Any, store: RedisObservationStore, days: int) -> dict[str, Any]:
    """The learner's side: resolve every snapshot a day of event time at a time (``due`` then
    ``remove``, as the learner does), timed: client CPU (``process_time``) and Redis server
    time (``INFO commandstats`` of the commands the store sends; the script's inner commands
    are counted in EVALSHA; other clients of a shared server may add to these)."""
    async def server_us() -> float:
        stats = await client.info("commandstats")
        return float(sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in SERVER_COMMANDS))
    policy = store._policy
    before, cpu = await server_us(), time.process_time()
    resolved = 0
    for d in range(days + 2):
        due = await store.due(T0 + d * DAY + policy.horizon_s + 7200, 10_000)
        await store.remove(due)
        resolved += len(due)
    cpu, server = time.process_time() - cpu, await server_us() - before
    return {"resolved": resolved, "left": await store.count(),
            "resolve_client_cpu_us_per_snapshot": 1e6 * cpu / max(1, resolved),
            "resolve_redis_us_per_snapshot": server / max(1, resolved)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--snapshots", type=int, default=30)
    result = asyncio.run(main(parser.parse_args()))
    OUT.mkdir(exist_ok=True)
    (OUT / "snapshots.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
