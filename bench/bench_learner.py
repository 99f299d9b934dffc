"""Learner benchmark: labels/s and resolutions/s of the learner step, and snapshot memory.

Run by hand with the local services up (``churnpulse services up``)::

    python bench/bench_learner.py [--customers 20000] [--snapshots 3] [--churners 10000]

Pending snapshots (44 realistic features each, from ``feature_vector``) are recorded in Redis
under a fresh key prefix, as workers would. Then the learner's step
(:meth:`streams.learner.service.LearnerService.step`: decode, hold/release, mark churned, read
snapshots, learn, checkpoint, publish a version, remove) runs in-process on the real Redis:

* labels: ``--churners`` churn labels, 2,000 per step (the service's fetch size): each marks
  its customer churned and records the churn time (positives are learned when their horizon
  passes, see docs/learning.md); labels/s;
* horizon: the watermark passes every snapshot's horizon: ``--churners × --snapshots``
  positives and the rest negatives, learned 10,000 per step; resolutions/s;
* memory: ``MEMORY USAGE`` of one customer's pending hash at 1 and at 30 snapshots, and the
  due-index bytes per pending snapshot.

Kafka is not in the loop (the learner reads labels with one ``getmany`` per step; reading is
not its bottleneck). Prints the figures; writes ``bench/out/learner.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis.asyncio as aioredis

from online_models.feature_vector import feature_vector
from online_models.features import apply_event
from online_models.observations import Observation
from streams.contracts import ChurnLabel, encode
from streams.dev.pipeline import forget_prefix
from streams.learner.service import LearnerService
from streams.redis.client import make_redis
from streams.redis.observation_store import RedisObservationStore
from streams.settings import load_settings

OUT = Path(__file__).parent / "out"
DAY = 86400.0
T0 = 1_767_225_600.0
KINDS = ("session", "session", "feature_use", "purchase", "support_ticket", "payment_failure")


def sample_vector(rng: random.Random) -> dict[str, float]:
    state: dict[str, float] = {}
    for i in range(rng.randrange(20, 60)):
        kind = rng.choice(KINDS)
        state = apply_event(state, kind, T0 + i * rng.uniform(1800, 40000),
                            19.9 if kind == "purchase" else None)
    return feature_vector(state, state["t_last"] + DAY)


async def record(store: RedisObservationStore, customers: int, snapshots: int) -> int:
    rng = random.Random(1)
    vectors = [sample_vector(rng) for _ in range(200)]
    batch: list[Observation] = []
    n = 0
    for i in range(customers):
        for d in range(snapshots):
            x = vectors[(i * 7 + d) % len(vectors)]
            batch.append(Observation(f"c{i:07d}", T0 + (10 + 3 * d) * DAY, x, 0.5, "0-untrained"))
        if len(batch) >= 5000:
            n += await store.record(batch)
            batch = []
    return n + await store.record(batch)


async def memory(client: aioredis.Redis, store: RedisObservationStore
                 ) -> dict[str, float]:
    rng = random.Random(2)
    one = Observation("mem-1", T0, sample_vector(rng), 0.5, "1-logreg")
    await store.record([one])
    thirty = [Observation("mem-30", T0 + d * DAY, sample_vector(rng), 0.5, "1-logreg")
              for d in range(30)]
    await store.record(thirty)
    return {
        "hash_1_snapshot_bytes": float(await client.memory_usage(store.key("mem-1")) or 0),
        "hash_30_snapshots_bytes": float(await client.memory_usage(store.key("mem-30"),
                                                                   samples=0) or 0),
        "features_per_snapshot": float(len(one.x)),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bl{int(time.time())}"
    settings = load_settings(redis={"key_prefix": prefix})
    client = make_redis(settings.redis)
    service = LearnerService(settings, client)
    try:
        t = time.perf_counter()
        recorded = await record(service.store, args.customers, args.snapshots)
        record_s = time.perf_counter() - t
        print(f"recorded {recorded:,} snapshots in {record_s:.1f}s")
        due_key = f"{prefix}:obs:due"  # measured full: large sorted sets are skiplists
        due_bytes = float(await client.memory_usage(due_key, samples=0) or 0)
        due_per_snapshot = due_bytes / max(1, int(await client.zcard(due_key)))
        await service.start()
        labels = [ChurnLabel(f"l{i}", f"c{i:07d}", T0 + 25 * DAY, True)
                  for i in range(args.churners)]
        records = [SimpleNamespace(topic="labels", partition=0, offset=i,
                                   key=lb.customer_id.encode(),
                                   value=encode(lb.to_wire())) for i, lb in enumerate(labels)]
        t, cpu = time.perf_counter(), time.process_time()
        positives = 0
        for lo in range(0, len(records), 2000):
            positives += await service.step(records[lo:lo + 2000], None, T0 + 26 * DAY, True)
            print(f"  labels {min(lo + 2000, len(records)):,}/{len(records):,}", flush=True)
        label_s, label_cpu = time.perf_counter() - t, time.process_time() - cpu
        t, cpu = time.perf_counter(), time.process_time()
        resolved = 0
        while True:
            learned = await service.step([], None, T0 + 100 * DAY, True)
            if not learned:
                break
            resolved += learned
        resolve_s, resolve_cpu = time.perf_counter() - t, time.process_time() - cpu
        assert service.state is not None
        counts = service.state.counts
        mem = await memory(client, service.store)
    finally:
        await client.aclose()
        forget_prefix(settings.redis.url, prefix)
    return {
        "customers": args.customers, "snapshots_per_customer": args.snapshots,
        "labels": len(labels), "label_s": label_s, "labels_per_s": len(labels) / label_s,
        "label_cpu_us": label_cpu / len(labels) * 1e6,
        "labels_per_cpu_s": len(labels) / label_cpu if label_cpu else 0.0,
        "learned_at_label": positives, "resolved": resolved, "resolve_s": resolve_s,
        "resolutions_per_s": resolved / resolve_s if resolve_s else 0.0,
        "resolution_cpu_us": resolve_cpu / resolved * 1e6 if resolved else 0.0,
        "resolutions_per_cpu_s": resolved / resolve_cpu if resolve_cpu else 0.0,
        "load_average": os.getloadavg()[0],
        "models": [settings.model.name, *settings.model.challengers],
        "positives": counts.positives, "negatives": counts.negatives,
        "record_snapshots_per_s": recorded / record_s, **mem,
        "due_index_bytes_per_snapshot": due_per_snapshot,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--snapshots", type=int, default=3)
    parser.add_argument("--churners", type=int, default=10_000)
    result = asyncio.run(main(parser.parse_args()))
    OUT.mkdir(exist_ok=True)
    (OUT / "learner.json").write_text(json.dumps(result, indent=2))
    print(f"\nload average {result['load_average']:.1f} (CPU figures are this process's: "
          "Redis server time not included); champion and challengers "
          f"{', '.join(result['models'])}")
    print(f"labels/s           {result['labels_per_s']:>10,.0f}   "
          f"({result['labels']:,} churn labels: marked, churn times recorded; "
          f"{result['label_cpu_us']:,.1f} µs CPU each = "
          f"{result['labels_per_cpu_s']:,.0f}/s of one core)")
    print(f"resolutions/s      {result['resolutions_per_s']:>10,.0f}   "
          f"({result['resolved']:,} learned at their horizon: {result['positives']:,} "
          f"positive, {result['negatives']:,} negative; "
          f"{result['resolution_cpu_us']:,.1f} µs CPU each = "
          f"{result['resolutions_per_cpu_s']:,.0f}/s of one core)")
    print(f"snapshot memory    {result['hash_1_snapshot_bytes']:>10,.0f} B for one, "
          f"{result['hash_30_snapshots_bytes']:,.0f} B for 30 in one hash, "
          f"+{result['due_index_bytes_per_snapshot']:,.0f} B each in the due index "
          f"({result['features_per_snapshot']:.0f} features)")
    print(f"written to {OUT / 'learner.json'}")
