"""End-to-end benchmark: events → worker → Redis → score → Kafka, on the local services.

Run by hand: ``make bench`` brings the local services up first (and stops what it started),
or ``python bench/bench_pipeline.py`` with them up; prints figures and writes them to
``bench/out/pipeline.json``. Not part of the pass/fail suite.

Measures, for the batched worker and for a naive per-event variant (``bench/naive_worker.py``:
the same job, one feature round trip, one model call, one snapshot round trip and one
acknowledged publish per event) in the same run:

* throughput: a backlog of N events is published first, then one worker drains it; events/s is
  N over the time from the first score to the last one, as the broker stamped them (the run's
  scores topic is ``LogAppendTime``);
* latency at a fixed offered rate: events are published at R events/s for D seconds and every
  score's append time in Kafka is compared with the timestamp of the newest event it covers
  (``source_timestamp_ms``, stamped by the benchmark's producer when it sent the event);
  p50/p99/max over the scores of the events sent after the first ``--warmup`` seconds (2),
  and apart the p99 of those first seconds (a new worker process, its new connections and the
  run's new topics cost more at first: ``bench_latency_stages.py``, ``streams/worker/warmup.py``);
* scores are read only after the fact (``quiet_reader.py``): a kafka-python consumer reading
  and parsing them during a drain took two thirds of a core of the two that Kafka, Redis and
  the worker share;
* cost per event while draining, which survives a loaded machine better than events/s: the
  worker process's CPU time (``/proc/<pid>/stat``, user + system) and the Redis server's time
  (``INFO commandstats``, every client of that server counted: on shared services it includes
  the others' work), both divided by the events drained;
* the peer: the same job as a Quix Streams application (``bench/quix_peer.py``, RocksDB state;
  needs the ``bench`` extra), draining the same backlog;
* the learner's labels/s (``bench/bench_learner.py``) and the alerter's scores/s
  (``bench/bench_alerts.py --part throughput``), each in its own process, smaller sizes.

``--quick`` runs everything smaller (about a minute); ``--skip`` leaves parts out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import redis
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.consumer.fetcher import ConsumerRecord

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    PacedPublisher,
    bench_env,
    cpu_seconds,
    event_bytes,
    forget_prefix,
    forget_topics,
    new_tag,
    produce,
    start_worker,
    stop,
)
from quiet_reader import Sampler, ScoresTopic, drain, settled_end

from streams.dev.pipeline import stop_procs
from streams.kafka.topics import ensure_topics
from streams.settings import load_settings

OUT = Path(__file__).parent / "out"
HERE = Path(__file__).parent
VARIANTS = ("batched", "naive", "quix")


def redis_usec(client: redis.Redis) -> float:
    """Microseconds the Redis server spent in commands since its last stats reset."""
    stats = client.info("commandstats")
    return float(sum(v["usec"] for v in stats.values() if isinstance(v, dict)))


def start(variant: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The worker (``batched``), the naive worker or the Quix Streams peer, once ready."""
    if variant != "quix":
        return start_worker(env, log, naive=variant == "naive")
    env = {**env, "QUIX_PEER_STATE_DIR": str(OUT / f"quix-{env['CHURN_REDIS__KEY_PREFIX']}")}
    proc = subprocess.Popen([sys.executable, str(HERE / "quix_peer.py")], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while b"quix peer ready" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_procs([proc])
            raise RuntimeError(f"peer did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return proc


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


def throughput(bootstrap: str, n: int, customers: int, variant: str) -> dict[str, float]:
    """A backlog of ``n`` events drained by one ``variant`` process; timed by the broker's
    append times of the first and last score, read after the fact (``quiet_reader``)."""
    tag = new_tag()
    env = prepare(tag, {})
    redis_url = env.get("CHURN_REDIS__URL") or load_settings().redis.url
    produce_s = produce(bootstrap, env["CHURN_TOPICS__EVENTS"], n, customers)
    want = expected_counts(n, customers)
    append_time(bootstrap, env["CHURN_TOPICS__SCORES"])
    scores = ScoresTopic(bootstrap, env["CHURN_TOPICS__SCORES"])
    stats = redis.Redis.from_url(redis_url)
    worker = start(variant, env, OUT / f"{variant}-{tag}.log")
    sampler = Sampler(lambda: (cpu_seconds(worker.pid), redis_usec(stats)))
    sampler.tick()
    done: set[str] = set()
    stamps = [float("inf"), 0.0]  # first and last score's append time, ms

    def take(record: ConsumerRecord) -> None:
        stamps[0] = min(stamps[0], record.timestamp)
        stamps[1] = max(stamps[1], record.timestamp)
        score = orjson.loads(record.value)
        if score["events_total"] == want[score["customer_id"]]:
            done.add(score["customer_id"])

    try:
        drain(scores, sampler, take, lambda: len(done) >= len(want), 60 + n / 300)
    finally:
        stop(worker)
        scores.close()
        stats.close()
        forget_prefix(redis_url, env["CHURN_REDIS__KEY_PREFIX"])
        forget_topics(bootstrap, env)
    first, last = stamps[0] / 1000, stamps[1] / 1000
    cpu, usec = sampler.between(first, last)
    return {"events": n, "customers": customers, "scores": scores.read, "seconds": last - first,
            "events_per_s": n / max(1e-9, last - first), "produce_s": produce_s,
            "cpu_us_per_event": cpu * 1e6 / n, "redis_us_per_event": usec / n,
            "load_average": os.getloadavg()[0]}


def latency(bootstrap: str, rate: float, seconds: float, customers: int,
            variant: str, warmup: float = 2.0) -> dict[str, float]:
    """Events offered at ``rate`` for ``seconds``; each score's latency is its append time in
    Kafka minus its newest event's send time, read once the run is over (``quiet_reader``).
    p50/p99/max are those of the events sent after the first ``warmup`` seconds (the steady
    state: a fresh process, its new connections and a topic's first appends cost more,
    ``bench_latency_stages.py``); the first seconds' p99 and the whole run's are kept too."""
    tag = new_tag()
    env = prepare(tag, {})
    append_time(bootstrap, env["CHURN_TOPICS__SCORES"])
    scores = ScoresTopic(bootstrap, env["CHURN_TOPICS__SCORES"])
    worker = start(variant, env, OUT / f"{variant}-{tag}.log")
    in_kafka: list[float] = []
    start_ms: list[float] = []
    thread = PacedPublisher(bootstrap, env["CHURN_TOPICS__EVENTS"], rate, seconds, customers)
    try:
        thread.start()
        thread.join()
        cut = (thread.began + warmup) * 1000
        for record in scores.read_to(settled_end(scores)):
            source = orjson.loads(record.value)["source_timestamp_ms"]
            (in_kafka if source >= cut else start_ms).append(record.timestamp - source)
    finally:
        wind_down(thread, worker, scores.consumer, env)
    in_kafka.sort()
    q = percentiles(in_kafka)
    return {"offered_per_s": rate, "seconds": seconds, "events_sent": thread.sent,
            "warmup_s": warmup, "scores": len(in_kafka) + len(start_ms),
            "p50_ms": q[49], "p99_ms": q[98], "max_ms": in_kafka[-1] if in_kafka else 0,
            "start_p99_ms": percentiles(start_ms)[98],
            "all_p99_ms": percentiles(in_kafka + start_ms)[98]}


def read_latencies(consumer: KafkaConsumer, publisher: PacedPublisher, seconds: float
                   ) -> list[tuple[int, float, float]]:
    """Scores read while ``publisher`` runs (and up to 3 s after): per score, its newest event's
    send time (ms) and the milliseconds from it to the score appended in Kafka (the topic must
    be ``LogAppendTime``) and to the score read here."""
    out: list[tuple[int, float, float]] = []
    end = time.monotonic() + seconds + 15
    while time.monotonic() < end:
        for batch in consumer.poll(timeout_ms=200).values():
            now_ms = time.time() * 1000
            for m in batch:
                if m.timestamp_type != 1:
                    raise RuntimeError("the scores topic is not LogAppendTime")
                source = orjson.loads(m.value)["source_timestamp_ms"]
                out.append((source, m.timestamp - source, now_ms - source))
        if not publisher.is_alive() and time.monotonic() > end - 12:
            break
    return out


def wind_down(publisher: PacedPublisher, worker: subprocess.Popen[bytes],
              consumer: KafkaConsumer, env: dict[str, str]) -> None:
    """End a fixed-rate run: the publisher, the worker, the reader, the run's Redis keys and
    topics."""
    publisher.stopping.set()
    publisher.join()
    stop(worker)
    consumer.close()
    settings = load_settings()
    forget_prefix(env.get("CHURN_REDIS__URL") or settings.redis.url,
                  env["CHURN_REDIS__KEY_PREFIX"])
    forget_topics(settings.kafka.bootstrap_servers, env)


def percentiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=100) if len(values) > 100 else [float("nan")] * 99


def append_time(bootstrap: str, topic: str) -> None:
    """The run's own scores topic stamps records when the broker appends them."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        admin.close()


def side_bench(script: str, args: list[str], out: str, keys: dict[str, str]
               ) -> dict[str, float]:
    """Runs another benchmark in its own process; its figures ``keys`` (label -> dotted key
    in ``out``), NaN when it failed."""
    path = OUT / out
    path.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(HERE / script), *args], check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not path.exists():
        print(proc.stdout.decode(errors="replace")[-2000:])
        return dict.fromkeys(keys, float("nan"))
    figures: dict[str, float] = {}
    for label, key in keys.items():
        result = json.loads(path.read_text())
        for part in key.split("."):
            result = result[part]
        figures[label] = float(result)
    return figures


def table(results: dict[str, dict[str, object]], side: dict[str, float]) -> str:
    rows = [f"{'variant':<9}{'backlog':>9}{'drain ev/s':>12}{'load':>6}{'CPU us/ev':>11}"
            f"{'Redis us/ev':>13}{'offered/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'max ms':>9}{'start p99':>11}"]
    for name, r in results.items():
        t = r["throughput"]
        assert isinstance(t, dict)
        assert isinstance(r["latency"], list)
        lats = r["latency"] or [dict.fromkeys(("offered_per_s", "p50_ms", "p99_ms",
                                               "max_ms", "start_p99_ms"), float("nan"))]
        for k, lat in enumerate(lats):
            head = (f"{name:<9}{t['events']:>9,}{t['events_per_s']:>12,.0f}"
                    f"{t['load_average']:>6.1f}{t['cpu_us_per_event']:>11,.1f}"
                    f"{t['redis_us_per_event']:>13,.1f}") if k == 0 else " " * 60
            rows.append(f"{head}{lat['offered_per_s']:>11,.0f}{lat['p50_ms']:>9,.1f}"
                        f"{lat['p99_ms']:>9,.1f}{lat['max_ms']:>9,.1f}"
                        f"{lat['start_p99_ms']:>11,.1f}")
    drain = {n: r["throughput"]["events_per_s"] for n, r in results.items()
             if isinstance(r["throughput"], dict)}
    if "batched" in drain and "naive" in drain:
        rows.append(f"batched / naive drain: {drain['batched'] / drain['naive']:.1f}x")
    if "batched" in drain and "quix" in drain:
        rows.append(f"batched / Quix Streams peer drain: {drain['batched'] / drain['quix']:.2f}x")
    for label, value in side.items():
        rows.append(f"{label}: {value:,.0f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--naive-events", type=int, default=20_000)
    parser.add_argument("--peer-events", type=int, default=None,
                        help="backlog of the Quix Streams peer (default: --events)")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=5_000.0,
                        help="offered rate of the batched latency run")
    parser.add_argument("--low-rate", type=float, default=1_000.0,
                        help="offered rate every variant is measured at")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds at the start of a latency run reported apart")
    parser.add_argument("--quick", action="store_true",
                        help="smaller runs: 40,000 events (naive 4,000), 8 s latency runs, "
                             "small learner and alerter benchmarks")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("naive", "quix", "latency", "learner", "alerter"),
                        help="leave a part out (repeatable)")
    args = parser.parse_args()
    if args.quick:  # smaller defaults; sizes given explicitly stay
        defaults = {"events": 40_000, "naive_events": 4_000, "seconds": 8.0}
        for name, value in defaults.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    OUT.mkdir(exist_ok=True)
    settings = load_settings()
    bootstrap = settings.kafka.bootstrap_servers
    print(f"kafka {bootstrap}, redis {settings.redis.url}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    low = args.low_rate

    def shown(what: str, figures: dict[str, float]) -> dict[str, float]:
        print(f"{what}: " + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()), flush=True)
        return figures

    skip = set(args.skip)
    if "quix" not in skip:
        try:
            import quixstreams  # noqa: F401
        except ImportError:
            print("quixstreams is not installed (pip install -e '.[bench]'): no peer")
            skip.add("quix")
    plan = {"batched": (args.events, (low, args.rate)),
            "naive": (args.naive_events, (low,)),
            "quix": (args.peer_events or args.events, (low, args.rate))}
    results: dict[str, dict[str, object]] = {}
    for name, (n, rates) in plan.items():
        if name in skip:
            continue
        results[name] = {
            "throughput": shown(f"{name} drain", throughput(bootstrap, n, args.customers, name)),
            "latency": [] if "latency" in skip else [
                shown(f"{name} at {rate:,.0f}/s",
                      latency(bootstrap, rate, args.seconds, args.customers, name,
                              args.warmup))
                for rate in rates],
        }
    side: dict[str, float] = {}
    small = args.quick
    if "learner" not in skip:
        side.update(side_bench(
            "bench_learner.py", ["--customers", "2000" if small else "10000", "--churners",
                                 "1000" if small else "5000"], "learner.json",
            {"learner labels/s (churn labels joined, default champion + challengers)":
             "labels_per_s",
             "learner resolutions/s (snapshots learned at their horizon)":
             "resolutions_per_s"}))
    if "alerter" not in skip:
        side.update(side_bench(
            "bench_alerts.py", ["--part", "throughput", "--customers",
                                "2000" if small else "10000"], "alerts.json",
            {"alerter scores/s": "throughput.scores_per_s"}))
    print("\n" + table(results, side))
    print("p50/p99/max: event sent -> score appended in Kafka, events sent after the first "
          f"{args.warmup:g} s; start p99: those of the first {args.warmup:g} s "
          "(scores read after each run)")
    (OUT / "pipeline.json").write_text(json.dumps({**results, "side": side}, indent=2))
    print(f"\nwritten to {OUT / 'pipeline.json'}")


if __name__ == "__main__":
    main()
