"""End-to-end benchmark: events → worker → Redis → score → Kafka, on the local services.

Run by hand: ``make bench`` brings the local services up first (and stops what it started),
or ``python bench/bench_pipeline.py`` with them up; prints figures and writes them to
``bench/out/pipeline.json``. Not part of the pass/fail suite.

Measures, for the batched worker and for a naive per-event variant (``batch_size=1``: one Redis
round trip, one model call and one acknowledged publish per event) in the same run:

* throughput: a backlog of N events is published first, then one worker drains it; events/s is
  N over the time from the first score to the last one;
* latency at a fixed offered rate: events are published at R events/s for D seconds and every
  score's arrival is compared with the broker timestamp of the newest event it covers
  (``source_timestamp_ms``); p50/p99 over all scores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_env, event_bytes, forget_prefix, new_tag, produce, start_worker, stop

from streams.kafka.topics import ensure_topics
from streams.settings import load_settings

OUT = Path(__file__).parent / "out"


def expected_counts(n: int, customers: int, seed: int = 1) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(orjson.loads(event_bytes(i, customers, rng)[1])["customer_id"]
                   for i in range(n))


def prepare(tag: str, extra: dict[str, str]) -> dict[str, str]:
    env = bench_env(tag, OUT, **extra)
    os.environ.update({k: v for k, v in env.items() if k.startswith("CHURN_")})
    settings = load_settings()
    ensure_topics(settings.kafka, settings.topics)
    return env


def throughput(bootstrap: str, n: int, customers: int, naive: bool) -> dict[str, float]:
    tag = new_tag()
    env = prepare(tag, {})
    produce_s = produce(bootstrap, env["CHURN_TOPICS__EVENTS"], n, customers)
    want = expected_counts(n, customers)
    consumer = KafkaConsumer(env["CHURN_TOPICS__SCORES"], bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", group_id=None)
    worker = start_worker(env, OUT / f"worker-{tag}.log", naive=naive)
    done: dict[str, int] = {}
    first = last = 0.0
    deadline = time.monotonic() + 60 + n / 2000  # fails fast when nothing completes
    try:
        while len(done) < len(want) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                now = time.monotonic()
                first = first or now
                last = now
                for msg in batch:
                    score = orjson.loads(msg.value)
                    cid = score["customer_id"]
                    if score["events_total"] == want[cid]:
                        done[cid] = 1
    finally:
        stop(worker)
        consumer.close()
        forget_prefix(env.get("CHURN_REDIS__URL") or load_settings().redis.url,
                      env["CHURN_REDIS__KEY_PREFIX"])
    if len(done) < len(want):
        raise SystemExit(f"only {len(done)} of {len(want)} customers completed in time")
    return {"events": n, "customers": customers, "seconds": last - first,
            "events_per_s": n / max(1e-9, last - first), "produce_s": produce_s}


def latency(bootstrap: str, rate: float, seconds: float, customers: int,
            naive: bool) -> dict[str, float]:
    tag = new_tag()
    env = prepare(tag, {})
    consumer = KafkaConsumer(env["CHURN_TOPICS__SCORES"], bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", group_id=None)
    worker = start_worker(env, OUT / f"worker-{tag}.log", naive=naive)
    lat: list[float] = []
    sent = 0
    stop_flag = threading.Event()

    def publish() -> None:
        nonlocal sent
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
        rng = random.Random(2)
        start = time.monotonic()
        while not stop_flag.is_set() and time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                key, value = event_bytes(sent, customers, rng)
                producer.send(env["CHURN_TOPICS__EVENTS"], key=key, value=value)
                sent += 1
            time.sleep(0.002)
        producer.flush()
        producer.close()

    thread = threading.Thread(target=publish, daemon=True)
    try:
        thread.start()
        end = time.monotonic() + seconds + 15
        while time.monotonic() < end:
            for batch in consumer.poll(timeout_ms=200).values():
                now_ms = time.time() * 1000
                lat.extend(now_ms - orjson.loads(m.value)["source_timestamp_ms"] for m in batch)
            if not thread.is_alive() and time.monotonic() > end - 12:
                break
    finally:
        stop_flag.set()
        thread.join()
        stop(worker)
        consumer.close()
        forget_prefix(env.get("CHURN_REDIS__URL") or load_settings().redis.url,
                      env["CHURN_REDIS__KEY_PREFIX"])
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [float("nan")] * 99
    return {"offered_per_s": rate, "seconds": seconds, "events_sent": sent,
            "scores": len(lat), "p50_ms": q[49], "p99_ms": q[98], "max_ms": lat[-1] if lat else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--naive-events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=5_000.0,
                        help="offered rate of the batched latency run")
    parser.add_argument("--low-rate", type=float, default=1_000.0,
                        help="offered rate both variants are measured at")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    settings = load_settings()
    bootstrap = settings.kafka.bootstrap_servers
    print(f"kafka {bootstrap}, redis {settings.redis.url}, {os.cpu_count()} cores")
    low = args.low_rate
    def shown(what: str, figures: dict[str, float]) -> dict[str, float]:
        print(f"{what}: " + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()), flush=True)
        return figures

    results: dict[str, dict[str, object]] = {}
    for name, n, rates in (("batched", args.events, (low, args.rate)),
                           ("naive", args.naive_events, (low,))):
        naive = name == "naive"
        results[name] = {
            "throughput": shown(f"{name} drain",
                                throughput(bootstrap, n, args.customers, naive=naive)),
            "latency": [shown(f"{name} at {rate:,.0f}/s",
                              latency(bootstrap, rate, args.seconds, args.customers, naive=naive))
                        for rate in rates],
        }
    print(f"\n{'variant':<10}{'drain events/s':>16}{'offered/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in results.items():
        t = r["throughput"]
        assert isinstance(t, dict)
        assert isinstance(r["latency"], list)
        for lat in r["latency"]:
            print(f"{name:<10}{t['events_per_s']:>16,.0f}{lat['offered_per_s']:>12,.0f}"
                  f"{lat['p50_ms']:>10,.1f}{lat['p99_ms']:>10,.1f}")
    (OUT / "pipeline.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {OUT / 'pipeline.json'}")


if __name__ == "__main__":
    main()
