"""What the Prometheus metrics cost the worker: the same drain with and without them.

``python bench/bench_metrics.py`` (local services up; ``make bench`` style) runs the batched
worker of ``bench_pipeline.py`` on a backlog of N events, alternately with metrics on and with
``CHURN_METRICS__ENABLED=false`` (every metric call returns at once, no server), ``--reps``
times each, and reports per variant the median of

* events/s (first to last score, as bench_pipeline measures it), and
* the worker process's CPU time per event (user + system, from /proc, from "Ready" to the last
  score): on a shared machine this is the steadier figure.

It also measures in-process, where the shared machine's noise matters less: the metric calls
alone (a 500-record batch through the calls the runner and the processor make), and the
worker's batch path on the in-memory feature store with metrics on and off (CPU time per
event, median of alternating pairs); ``--in-process`` runs only these. Prints the figures
and writes them to ``bench/out/metrics.json``. Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_env, cpu_seconds, forget_prefix, new_tag, produce, start_worker, stop

from streams.kafka.topics import ensure_topics
from streams.observability import metrics
from streams.settings import load_settings

OUT = Path(__file__).parent / "out"


def drain(bootstrap: str, n: int, customers: int, on: bool) -> dict[str, float]:
    from bench_pipeline import expected_counts

    tag = new_tag()
    env = bench_env(tag, OUT, CHURN_METRICS__ENABLED="true" if on else "false",
                    CHURN_METRICS__WORKER_PORT="0" if not on else "19470")
    os.environ.update({k: v for k, v in env.items() if k.startswith("CHURN_")})
    ensure_topics(load_settings().kafka, load_settings().topics)
    produce(bootstrap, env["CHURN_TOPICS__EVENTS"], n, customers)
    want: Counter[str] = expected_counts(n, customers)
    consumer = KafkaConsumer(env["CHURN_TOPICS__SCORES"], bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", group_id=None)
    worker = start_worker(env, OUT / f"worker-{tag}.log")
    cpu0 = cpu_seconds(worker.pid)
    done: set[str] = set()
    first = last = 0.0
    deadline = time.monotonic() + 60 + n / 2000
    try:
        while len(done) < len(want) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                now = time.monotonic()
                first = first or now
                last = now
                for msg in batch:
                    score = orjson.loads(msg.value)
                    if score["events_total"] == want[score["customer_id"]]:
                        done.add(score["customer_id"])
        cpu = cpu_seconds(worker.pid) - cpu0
    finally:
        stop(worker)
        consumer.close()
        forget_prefix(load_settings().redis.url, env["CHURN_REDIS__KEY_PREFIX"])
    if len(done) < len(want):
        raise SystemExit(f"only {len(done)} of {len(want)} customers completed in time")
    return {"events_per_s": n / max(1e-9, last - first), "cpu_us_per_event": cpu / n * 1e6}


@dataclass
class _Msg:
    topic: str
    offset: int


class _Consumer:
    def __init__(self, owned: set[Any]) -> None:
        self.owned = owned

    def assignment(self) -> set[Any]:
        return self.owned

    def highwater(self, tp: Any) -> int:
        return 1_000_000


def calls_cost(batches: int = 4000, size: int = 500) -> float:
    """CPU microseconds per event of the metric calls a worker makes per batch."""
    from aiokafka.structs import TopicPartition

    from streams.records import OutRecord

    tps = [TopicPartition("bench-events", p) for p in range(4)]
    consumer = _Consumer(set(tps))
    fetched = {tp: [_Msg(tp.topic, i) for i in range(size // 4)] for tp in tps}
    scores = [OutRecord("bench-scores", b"c", b"{}") for _ in range(size // 2)]
    arrived = {f"c-{i}": int(time.time() * 1000) - 50 for i in range(size // 2)}
    metrics.configure(True)
    began = time.process_time()
    for _ in range(batches):
        metrics.poll_done("events", consumer, fetched)
        with metrics.redis_timer("feature_apply"):
            pass
        with metrics.redis_timer("observations_record"):
            pass
        metrics.scores_published(arrived.values())
        metrics.produced(scores)
        metrics.committed("events", 0.01)
    return (time.process_time() - began) / (batches * size) * 1e6


def processor_cost(on: bool, batches: int = 120, size: int = 500,
                   customers: int = 10_000) -> float:
    """CPU microseconds per event of the worker's batch path in-process (decode, features on
    the in-memory store, score, encode, plus the runner's calls), metrics on or off."""
    import asyncio
    import random

    from aiokafka.structs import TopicPartition
    from common import event_bytes

    from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
    from streams.records import MemorySink, RawRecord
    from streams.redis.feature_store import InMemoryFeatureStore
    from streams.settings import FeatureSettings, TopicSettings
    from streams.worker.processor import EventBatchProcessor

    class Fixed:
        handle = ModelHandle(UNTRAINED_VERSION, make_model())

        async def current(self) -> ModelHandle:
            return self.handle

    rng = random.Random(1)
    now_ms = int(time.time() * 1000)
    batch_records = []
    for b in range(batches):
        rows = []
        for i in range(size):
            key, value = event_bytes(b * size + i, customers, rng)
            rows.append(RawRecord("bench-events", 0, b * size + i, key, value, now_ms))
        batch_records.append(rows)
    tp = TopicPartition("bench-events", 0)
    consumer = _Consumer({tp})
    metrics.configure(on)

    async def run() -> float:
        sink = MemorySink()
        proc = EventBatchProcessor(store=InMemoryFeatureStore(FeatureSettings()),
                                   models=Fixed(), sink=sink, topics=TopicSettings())
        began = time.process_time()
        for rows in batch_records:
            metrics.poll_done("events", consumer, {tp: rows})
            await proc.process(rows)
            metrics.committed("events", 0.01)
            sink.records.clear()
        return time.process_time() - began

    spent = asyncio.run(run())
    metrics.configure(True)
    return spent / (batches * size) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--in-process", action="store_true",
                        help="only the in-process measures (no Kafka, no Redis)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    result: dict[str, Any] = {"calls_cpu_us_per_event": calls_cost()}
    print(f"metric calls: {result['calls_cpu_us_per_event']:.3f} us CPU per event", flush=True)
    pairs = [(processor_cost(True), processor_cost(False)) for _ in range(args.reps * 2)]
    on_cpu = statistics.median(p[0] for p in pairs)
    off_cpu = statistics.median(p[1] for p in pairs)
    result["in_process"] = {"on_cpu_us_per_event": on_cpu, "off_cpu_us_per_event": off_cpu,
                            "pairs": pairs, "cpu_cost": on_cpu / off_cpu - 1}
    print(f"in-process batch path: on {on_cpu:.2f} us, off {off_cpu:.2f} us CPU per event "
          f"(median of {len(pairs)} pairs) -> {on_cpu / off_cpu - 1:+.2%}", flush=True)
    if not args.in_process:
        bootstrap = load_settings().kafka.bootstrap_servers
        runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
        for rep in range(args.reps):
            for variant in (("on", "off") if rep % 2 == 0 else ("off", "on")):
                figures = drain(bootstrap, args.events, args.customers, variant == "on")
                runs[variant].append(figures)
                print(f"metrics {variant}: " + ", ".join(f"{k}={v:,.1f}"
                                                       for k, v in figures.items()), flush=True)
        for variant, rows in runs.items():
            result[variant] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            result[variant]["runs"] = rows
        on, off = result["on"], result["off"]
        result["throughput_cost"] = 1 - on["events_per_s"] / off["events_per_s"]
        result["cpu_cost"] = on["cpu_us_per_event"] / off["cpu_us_per_event"] - 1
        print(f"\nmedian events/s: on {on['events_per_s']:,.0f}, off {off['events_per_s']:,.0f}"
              f" -> throughput cost {result['throughput_cost']:+.1%}")
        print(f"median worker CPU per event: on {on['cpu_us_per_event']:.1f} us, off "
              f"{off['cpu_us_per_event']:.1f} us -> CPU cost {result['cpu_cost']:+.1%}")
    (OUT / "metrics.json").write_text(json.dumps(result, indent=2))
    print(f"written to {OUT / 'metrics.json'}")


if __name__ == "__main__":
    main()
