"""The worker's batch path in one process, without Kafka: CPU and Redis time per event by stage.

``EventBatchProcessor`` (decode → features → score → snapshots → publish to an in-memory sink)
driven with the benchmark's events in batches, on the Redis of ``REDIS_URL`` /
``CHURN_REDIS__URL`` (use a Redis of your own: the Redis figure is ``INFO commandstats`` of the
whole server, reset at the start). Prints events/s, the process CPU µs per event (less
sensitive to a loaded machine), CPU µs per event of each stage and the Redis server µs per
event by command; ``--no-cache`` runs the plain feature script instead of the worker's
write-behind cache (``streams/redis/feature_cache.py``); the model is a trained ``--model``
(default ``logreg``) served with its calibration, as the learner publishes it, or the
untrained start (``--untrained``, as ``make bench``)::

    python bench/bench_hot_path.py [--events 40000] [--customers 10000] [--no-cache]
                                   [--model logreg | --untrained] [--default-gc]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).parent))
from common import event_bytes

from online_models.feature_vector import feature_vector
from online_models.features import apply_event
from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from online_models.served import CalibratedModel
from streams.records import MemorySink, RawRecord
from streams.redis.churned import RedisChurnedCustomers
from streams.redis.client import make_redis
from streams.redis.feature_cache import CachedFeatureStore
from streams.redis.feature_store import FeatureStore, RedisFeatureStore
from streams.redis.observation_store import RedisObservationStore
from streams.settings import load_settings
from streams.worker.processor import EventBatchProcessor
from streams.worker.watermarks import Watermarks

STAGES = ("prepare", "apply", "score", "observe", "publish")


class Fixed:
    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle

    async def current(self) -> ModelHandle:
        return self.handle


def trained_handle(name: str = "logreg") -> ModelHandle:
    """A model trained on a synthetic customer (so a linear one's scores carry drivers),
    served as the learner publishes it: inside a :class:`CalibratedModel` (prior shift, Platt
    calibration, enough outcomes to count as calibrated)."""
    model = make_model(name)  # type: ignore[arg-type]
    rng = random.Random(3)
    state: dict[str, float] = {}
    kinds = ("session", "purchase", "support_ticket", "feature_use", "payment_failure")
    for i in range(3000):
        ts = 1_767_225_600.0 + i * 600
        state = apply_event(state, rng.choice(kinds), ts, 19.9 if rng.random() < 0.2 else None)
        model.learn_one(feature_vector(state, ts), rng.random() < 0.3)  # type: ignore[arg-type]
    served = CalibratedModel(model, shift=-0.8, a=0.9, b=-0.2)
    served.churners = served.stayers = 1000
    return ModelHandle(f"1-{name}", served)


def timed(spent: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(fn):
        async def run_async(*args: Any) -> Any:
            start = time.process_time()
            try:
                return await fn(*args)
            finally:
                spent[name] += time.process_time() - start
        return run_async

    def run(*args: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args)
        finally:
            spent[name] += time.process_time() - start
    return run


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--no-cache", action="store_true", help="the plain feature script")
    parser.add_argument("--untrained", action="store_true", help="no drivers (as make bench)")
    parser.add_argument("--default-gc", action="store_true",
                        help="Python's garbage collector settings, not the worker's "
                             "(streams.observability.memory.settle_memory)")
    parser.add_argument("--model", default="logreg",
                        help="the trained model's name (online_models.model.make_model)")
    args = parser.parse_args()
    settings = load_settings()
    prefix = f"hot{uuid.uuid4().hex[:6]}"
    client = make_redis(settings.redis)
    store: FeatureStore = RedisFeatureStore(client, settings.features, prefix)
    if not args.no_cache:
        store = CachedFeatureStore(store, client, settings.features)  # type: ignore[arg-type]
    handle = (ModelHandle(UNTRAINED_VERSION, make_model()) if args.untrained
              else trained_handle(args.model))
    policy = settings.model.policy
    processor = EventBatchProcessor(
        store, Fixed(handle), MemorySink(), settings.topics,
        rescore_after_s=settings.sweep.rescore_after_s, watermarks=Watermarks(settings.sweep),
        observations=RedisObservationStore(client, prefix, policy), policy=policy,
        churned=RedisChurnedCustomers(client, prefix), limits=settings.input.limits)
    spent = dict.fromkeys(STAGES, 0.0)
    for name in STAGES:
        setattr(processor, name, timed(spent, name, getattr(processor, name)))
    rng = random.Random(1)
    now_ms = int(time.time() * 1000)
    records = [RawRecord("events", i % 4, i // 4, *event_bytes(i, args.customers, rng), now_ms)
               for i in range(args.events)]
    batches = [records[i:i + args.batch] for i in range(0, len(records), args.batch)]
    process: Callable[[Any], Awaitable[Any]] = EventBatchProcessor.process.__get__(processor)
    await process(batches[0])  # scripts loaded, model warm
    if not args.default_gc:  # as the worker does once it is built
        from streams.observability.memory import settle_memory

        settle_memory()
    server = redis.Redis.from_url(settings.redis.url)
    server.config_resetstat()
    spent.update(dict.fromkeys(STAGES, 0.0))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for batch in batches[1:]:
        await process(batch)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = sum(len(b) for b in batches[1:])
    stats = server.info("commandstats")
    usec = sum(v["usec"] for v in stats.values() if isinstance(v, dict))
    print(f"{'plain script' if args.no_cache else 'write-behind cache'}, model "
          f"{handle.version}{', default gc' if args.default_gc else ''}: {n:,} events, "
          f"{n / wall:,.0f} events/s, CPU {cpu * 1e6 / n:.1f} us/event, Redis {usec / n:.1f} "
          f"us/event, load average {os.getloadavg()[0]:.1f}")
    print("  CPU us/event by stage: " + ", ".join(f"{k} {v * 1e6 / n:.1f}"
                                                  for k, v in spent.items()))
    top = sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:4]
    print("  Redis us/event by command: " + ", ".join(
        f"{k.removeprefix('cmdstat_')} {v['usec'] / n:.1f}" for k, v in top))
    for key in server.scan_iter(f"{prefix}:*", count=1000):
        server.delete(key)
    server.close()
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
