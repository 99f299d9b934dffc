"""``churnpulse demo``: the whole pipeline, live, on local services.

Brings the local Kafka broker and redis-server up (reusing running ones), starts worker
processes, publishes simulated customer traffic at a steady rate (with the odd malformed message,
to show the dead-letter path), and shows a live summary of what comes out. Ctrl-C (or
``--duration``) stops everything the demo started, and nothing it did not.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from streams.contracts import format_ts
from streams.producer import ChurnProducer
from streams.settings import Settings
from streams.topics import ensure_topics

READY = b"[^Worker]: Ready"
EVENT_TYPES = ("session", "session", "session", "feature_use", "feature_use", "purchase",
               "support_ticket", "complaint", "payment_failure")


def demo_events(customers: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """An endless stream of plausible events stamped with the wall clock."""
    rng = random.Random(seed)
    activity = [rng.lognormvariate(0, 1) for _ in range(customers)]
    ids = [f"c-{i:06d}" for i in range(customers)]
    for n in itertools.count():
        i = rng.choices(range(customers), weights=activity)[0] if n % 4 else rng.randrange(
            customers)
        kind = rng.choice(EVENT_TYPES)
        event: dict[str, Any] = {"event_id": f"demo-{seed}-{n}", "customer_id": ids[i],
                                 "event_type": kind, "ts": format_ts(time.time())}
        if kind == "purchase":
            event["value"] = round(rng.lognormvariate(3, 0.6), 2)
        yield event


@dataclass
class Summary:
    """What the live display shows; written by the threads, read by the display."""

    started: float = field(default_factory=time.monotonic)
    produced: int = 0
    malformed: int = 0
    scores: int = 0
    dead_letters: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    risk: dict[str, float] = field(default_factory=dict)
    events_total: dict[str, int] = field(default_factory=dict)
    model_versions: set[str] = field(default_factory=set)
    rates: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=50))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.0
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.5) - 1))]


def render(summary: Summary, workers: int, settings: Settings) -> Group:
    now = time.monotonic()
    summary.rates.append((now, summary.produced, summary.scores))
    t0, p0, s0 = summary.rates[0]
    span = max(1e-6, now - t0)
    lat = list(summary.latencies_ms)
    stats = Table.grid(padding=(0, 3))
    stats.add_column(style="bold")
    stats.add_column(justify="right")
    stats.add_row("running for", f"{now - summary.started:,.0f} s with {workers} worker(s)")
    produced_rate = (summary.produced - p0) / span
    scores_rate = (summary.scores - s0) / span
    stats.add_row("events produced", f"{summary.produced:,}  ({produced_rate:,.0f}/s)")
    stats.add_row("scores received", f"{summary.scores:,}  ({scores_rate:,.0f}/s)")
    stats.add_row("customers scored", f"{len(summary.risk):,}")
    stats.add_row("event→score latency", f"p50 {percentile(lat, 0.5):,.0f} ms · "
                  f"p99 {percentile(lat, 0.99):,.0f} ms")
    stats.add_row("dead letters", f"{summary.dead_letters} of {summary.malformed} malformed sent")
    stats.add_row("model versions", ", ".join(sorted(summary.model_versions)) or "-")
    top = Table(title="highest churn risk now", expand=False)
    top.add_column("customer")
    top.add_column("risk", justify="right")
    top.add_column("events", justify="right")
    for cid, score in sorted(summary.risk.items(), key=lambda kv: -kv[1])[:8]:
        top.add_row(cid, f"{score:.3f}", str(summary.events_total.get(cid, 0)))
    title = f"churnpulse demo — {settings.kafka.bootstrap_servers} · {settings.redis.url}"
    return Group(Panel(stats, title=title), top,
                 "[dim]Ctrl-C stops the demo and everything it started[/dim]")


def produce_loop(settings: Settings, summary: Summary, rate: float, customers: int,
                 stop: threading.Event) -> None:
    with ChurnProducer.from_settings(settings.kafka, settings.topics) as producer:
        events = demo_events(customers)
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate) - summary.produced
            for _ in range(min(due, 5000)):
                if (summary.produced + 1) % 2000 == 0:
                    producer.send_raw(settings.topics.events, b"c-broken", b'{"event_id": 1')
                    summary.malformed += 1
                producer.send_event(next(events))
                summary.produced += 1
            stop.wait(0.01)


def consume_loop(settings: Settings, summary: Summary, stop: threading.Event,
                 ready: threading.Event) -> None:
    topics = settings.topics
    consumer = KafkaConsumer(topics.scores, topics.dead_letter,
                             bootstrap_servers=settings.kafka.bootstrap_list,
                             auto_offset_reset="latest", group_id=None)
    consumer.poll(timeout_ms=500)
    ready.set()
    try:
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=200).values():
                for msg in batch:
                    if msg.topic == topics.dead_letter:
                        summary.dead_letters += 1
                        continue
                    score = orjson.loads(msg.value)
                    cid = score["customer_id"]
                    summary.scores += 1
                    summary.risk[cid] = score["score"]
                    summary.events_total[cid] = score["events_total"]
                    summary.model_versions.add(score["model_version"])
                    summary.latencies_ms.append(time.time() * 1000 - score["source_timestamp_ms"])
    finally:
        consumer.close()


def start_workers(settings: Settings, count: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(count):
        log_path = log_dir / f"demo-worker-{n}.log"
        env = dict(os.environ, CHURN_WORKER__DATA_DIR=str(log_dir / f"demo-worker-{n}"))
        procs.append(subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                      stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
    deadline = time.monotonic() + 90
    for n, proc in enumerate(procs):
        log_path = log_dir / f"demo-worker-{n}.log"
        while READY not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_workers(procs)
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {n} did not become ready; log {log_path}:\n{tail}")
            time.sleep(0.2)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_demo(settings: Settings, duration_s: float | None, rate: float, customers: int,
             workers: int) -> int:
    from streams.services import kafka, redis_server, up

    print("bringing up local services (first run downloads Kafka from Maven Central)...")
    started = [s.name for s in up(settings) if s.state == "started"]
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        ensure_topics(settings.kafka, settings.topics)
        log_dir = settings.services.state_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        print(f"starting {workers} worker(s); logs in {log_dir}/demo-worker-*.log ...")
        procs = start_workers(settings, workers, log_dir)
        summary = Summary()
        ready = threading.Event()
        threads = [threading.Thread(target=consume_loop, args=(settings, summary, stop, ready),
                                    daemon=True),
                   threading.Thread(target=produce_loop,
                                    args=(settings, summary, rate, customers, stop),
                                    daemon=True)]
        threads[0].start()
        ready.wait(30)
        threads[1].start()
        end = time.monotonic() + duration_s if duration_s else float("inf")
        with Live(render(summary, workers, settings), refresh_per_second=4) as live:
            while time.monotonic() < end and all(t.is_alive() for t in threads):
                time.sleep(0.25)
                live.update(render(summary, workers, settings))
        print(f"produced {summary.produced:,} events, received {summary.scores:,} scores, "
              f"{summary.dead_letters} dead letters")
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        stop.set()
        stop_workers(procs)
        stoppers = {"kafka": kafka.down, "redis": redis_server.down}
        for name in ("kafka", "redis"):
            if name in started:
                stoppers[name](settings)
                print(f"stopped {name} (started by the demo)")
    return 0
