"""``churnpulse demo``: the whole pipeline, live, on local services.

Brings the local Kafka broker and redis-server up (reusing running ones), starts the pipeline's
processes (workers, the learner, the alerter, the retention process, the alert dispatcher and
the support dashboard, see :mod:`streams.dev.demo_procs`) and runs the customer simulator live
(:mod:`streams.simulator.live`): two simulated years of a subscription base, starting two years
ago, published at a steady rate of events per second (simulated time runs as fast as that rate
needs). Customers join, use the product, file tickets, fail payments and churn; churn labels go
to the labels topic; one malformed message per 2,000 records shows the dead-letter path. A live
summary shows what comes out: scores and their latency, the model versions the learner
publishes with their delayed AUC, alerts by severity with their event-to-alert latency,
retention actions (holdout, offers attached, the learning policy's choices) and the outcomes
joined to them; the demo answers some offers (:mod:`streams.dev.demo_retention`). Ctrl-C (or
``--duration``) stops everything the demo started, and nothing it did not.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson
import redis
from kafka import KafkaConsumer, KafkaProducer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from streams.dev.demo_alerts import (
    AlertTally,
    budget_per_1000_week,
    calibration_line,
    closing_lines,
    learner_line,
)
from streams.dev.demo_clock import (
    DEMO_DAYS,
    DemoPlan,
    demo_plan,
    for_generation,
    generation_env,
    save_position,
)
from streams.dev.demo_procs import DEMO_BUDGET, Running, dead, demo_specs, start_all, stop_all
from streams.dev.demo_retention import DemoRetention
from streams.kafka.chunk import EVENT, Chunk
from streams.kafka.pacing import RatePacer
from streams.kafka.publish import PumpStats, publish_chunks
from streams.kafka.topics import ensure_named_topics, ensure_topics
from streams.redis.client import make_sync_redis
from streams.settings import Settings
from streams.simulator.live import LiveSimulation

MALFORMED_EVERY = 2000
MALFORMED = b'{"event_id": 1'


def with_malformed(chunks: Iterable[Chunk], every: int = MALFORMED_EVERY) -> Iterator[Chunk]:
    """Insert one malformed event before every ``every``-th record.

    >>> c = Chunk([1, 2, 3], [EVENT] * 3, [b"a", b"b", b"c"], [b"1", b"2", b"3"])
    >>> list(with_malformed([c], every=2))[0].keys
    [b'a', b'c-broken', b'b', b'c']
    """
    n = 0
    for chunk in chunks:
        ts, kinds, keys, values = [], [], [], []
        for t, k, key, value in zip(chunk.ts_ms, chunk.kinds, chunk.keys, chunk.values,
                                    strict=True):
            n += 1
            if n % every == 0:
                ts.append(t)
                kinds.append(EVENT)
                keys.append(b"c-broken")
                values.append(MALFORMED)
            ts.append(t)
            kinds.append(k)
            keys.append(key)
            values.append(value)
        yield Chunk(ts, kinds, keys, values)


@dataclass
class Summary:
    """What the live display shows; written by the threads, read by the display."""

    started: float = field(default_factory=time.monotonic)
    days: int = DEMO_DAYS
    produced: int = 0
    malformed: int = 0
    events: int = 0
    labels: int = 0
    sim_day: int = 0
    sim_date: str = "-"
    active: int = 0
    joined: int = 0
    sim_done: bool = False
    error: BaseException | None = None
    scores: int = 0
    dead_letters: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    risk: dict[str, float] = field(default_factory=dict)  # calibrated scores only
    uncalibrated: int = 0  # scores of the untrained start or of a version still calibrating
    events_total: dict[str, int] = field(default_factory=dict)
    model_versions: set[str] = field(default_factory=set)
    rates: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=50))
    alerts: dict[str, int] = field(default_factory=dict)
    alert_latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    retention: DemoRetention = field(default_factory=DemoRetention)
    learner: dict[str, object] = field(default_factory=dict)
    dashboard_url: str | None = None
    first_day: int | None = None  # simulated day this run started at
    tally: AlertTally = field(default_factory=AlertTally)


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
    stats.add_row("records produced", f"{summary.produced:,}  ({produced_rate:,.0f}/s)")
    done = " (simulation finished)" if summary.sim_done else ""
    stats.add_row("simulated day",
                  f"{summary.sim_day:,} of {summary.days} · {summary.sim_date}{done}")
    stats.add_row("customers", f"{summary.active:,} active · {summary.joined:,} joined or back")
    stats.add_row("events · churn labels", f"{summary.events:,} · {summary.labels:,}")
    stats.add_row("scores received", f"{summary.scores:,}  ({scores_rate:,.0f}/s)")
    stats.add_row("customers with a risk shown", f"{len(summary.risk):,}"
                  + ("" if summary.risk or not summary.uncalibrated else "  (calibrating)"))
    stats.add_row("event→score latency", f"p50 {percentile(lat, 0.5):,.0f} ms · "
                  f"p99 {percentile(lat, 0.99):,.0f} ms")
    stats.add_row("dead letters", f"{summary.dead_letters} of {summary.malformed} malformed sent")
    versions = sorted(summary.model_versions, key=_version_order)
    stats.add_row("model versions scored", ", ".join(versions[-3:]) or "-")
    stats.add_row("learner", learner_line(summary.learner))
    alat = list(summary.alert_latencies_ms)
    alerts = " · ".join(f"{summary.alerts.get(k, 0):,} {k}" for k in ("medium", "high", "critical"))
    stats.add_row("alerts", f"{sum(summary.alerts.values()):,} ({alerts})")
    stats.add_row("alert load · precision", summary.tally.line(
        summary.active, summary.sim_day - (summary.first_day or 0), settings.model.horizon_days,
        budget_per_1000_week(os.environ, DEMO_BUDGET)))
    stats.add_row("calibration", calibration_line(summary.learner, summary.uncalibrated))
    stats.add_row("event→alert latency", f"p50 {percentile(alat, 0.5):,.0f} ms · "
                  f"p99 {percentile(alat, 0.99):,.0f} ms")
    stats.add_row("retention actions", summary.retention.actions_line())
    stats.add_row("retention outcomes", summary.retention.outcomes_line())
    if summary.dashboard_url:
        stats.add_row("support dashboard", summary.dashboard_url)
    top = Table(title=f"highest churn risk now (calibrated probability of churn within "
                      f"{settings.model.horizon_days:g} days)", expand=False)
    top.add_column("customer")
    top.add_column("risk", justify="right")
    top.add_column("events", justify="right")
    for cid, score in sorted(summary.risk.items(), key=lambda kv: -kv[1])[:8]:
        top.add_row(cid, f"{score:.3f}", str(summary.events_total.get(cid, 0)))
    title = f"churnpulse demo — {settings.kafka.bootstrap_servers} · {settings.redis.url}"
    return Group(Panel(stats, title=title), top,
                 "[dim]Ctrl-C stops the demo and everything it started[/dim]")


def produce_loop(settings: Settings, summary: Summary, rate: float, plan: DemoPlan,
                 stop: threading.Event) -> None:
    """Publish the live simulation at ``rate`` records/s until it ends or ``stop`` is set."""
    state_dir = settings.services.state_dir
    sim = LiveSimulation(plan.config)
    summary.days = plan.config.days
    start = sim.config.start

    def days() -> Iterator[Chunk]:
        for day in sim.days():
            summary.sim_day = day.day + 1
            summary.first_day = day.day if summary.first_day is None else summary.first_day
            summary.sim_date = (start + dt.timedelta(days=day.day)).isoformat()
            summary.active = day.active
            summary.joined += day.joined
            summary.events += day.n_events
            summary.labels += day.n_labels
            summary.malformed += (summary.produced + len(day.chunk)) // MALFORMED_EVERY - (
                summary.produced // MALFORMED_EVERY)
            yield day.chunk

    def on_progress(stats: PumpStats) -> None:
        summary.produced = stats.sent

    try:
        publish_chunks(settings.kafka, [settings.topics.events, settings.topics.labels],
                       with_malformed(days()), RatePacer(rate), stop=stop.is_set,
                       on_progress=on_progress)
    except Exception as exc:  # shown by the main thread, which stops the demo
        summary.error = exc
        return
    finally:
        save_position(state_dir, sim.config, summary.sim_day, plan.generation)
    summary.sim_done = not stop.is_set()


def consume_loop(settings: Settings, summary: Summary, stop: threading.Event,
                 ready: threading.Event) -> None:
    topics = settings.topics
    outcomes = settings.retention.outcomes_topic
    ensure_named_topics(settings.kafka, [outcomes])  # the retention process creates it too
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_list, linger_ms=20)
    consumer = KafkaConsumer(topics.scores, topics.dead_letter, topics.alerts,
                             topics.retention_actions, topics.labels, outcomes,
                             bootstrap_servers=settings.kafka.bootstrap_list,
                             auto_offset_reset="latest", group_id=None,
                             isolation_level="read_committed")
    consumer.poll(timeout_ms=500)
    ready.set()
    try:
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=200).values():
                for msg in batch:
                    if msg.topic == topics.dead_letter:
                        summary.dead_letters += 1
                        continue
                    if msg.topic in (topics.alerts, topics.labels):
                        (summary.tally.add_label(msg.value) if msg.topic == topics.labels
                         else count_alert(summary, orjson.loads(msg.value)))
                        continue
                    if msg.topic == outcomes:
                        summary.retention.on_outcome(msg.value)
                    elif msg.topic == topics.retention_actions:
                        for key, value in summary.retention.on_action(msg.value):
                            producer.send(topics.events, value, key=key)  # offer answers
                    if msg.topic in (outcomes, topics.retention_actions):
                        continue
                    score = orjson.loads(msg.value)
                    cid = score["customer_id"]
                    summary.scores += 1
                    if score.get("calibrated") is False:  # no probability yet: not shown
                        summary.uncalibrated += 1
                        summary.risk.pop(cid, None)
                    else:
                        summary.risk[cid] = score["score"]
                    summary.events_total[cid] = score["events_total"]
                    summary.model_versions.add(score["model_version"])
                    source_ms = score.get("source_timestamp_ms") or 0
                    if source_ms > 0:  # sweep re-scores of quiet customers have no source
                        summary.latencies_ms.append(time.time() * 1000 - source_ms)
    finally:
        consumer.close()
        producer.close(timeout=5)


def count_alert(summary: Summary, alert: dict[str, object]) -> None:
    summary.tally.add_alert(alert)
    severity = str(alert.get("severity", "?"))
    summary.alerts[severity] = summary.alerts.get(severity, 0) + 1
    source_ms = alert.get("source_timestamp_ms")
    if isinstance(source_ms, int | float) and source_ms > 0:
        summary.alert_latencies_ms.append(time.time() * 1000 - float(source_ms))


def _version_order(version: str) -> tuple[int, str]:
    head, _, rest = version.partition("-")
    return (int(head) if head.isdigit() else -1, rest)


def status_loop(settings: Settings, summary: Summary, stop: threading.Event) -> None:
    """Follow the learner's status (written to Redis with every checkpoint)."""
    client = make_sync_redis(settings.redis)
    key = f"{settings.redis.key_prefix}:learner:status"  # streams.learner.service.LearnerStateStore
    try:
        while not stop.wait(2.0):
            try:
                raw = client.get(key)
            except redis.RedisError:
                continue
            if isinstance(raw, bytes):
                summary.learner = dict(orjson.loads(raw))
    finally:
        client.close()


def metrics_line(settings: Settings, workers: int) -> str:
    """Where the demo's processes serve Prometheus metrics (docs/operations.md).

    >>> from streams.settings import load_settings
    >>> print(metrics_line(load_settings(), 2))  # doctest: +NORMALIZE_WHITESPACE
    metrics (also /healthz, /readyz): worker-0 http://127.0.0.1:9410/metrics, worker-1
    http://127.0.0.1:9420/metrics, learner http://127.0.0.1:9411/metrics, alerter
    http://127.0.0.1:9412/metrics, dispatch http://127.0.0.1:9413/metrics, dashboard
    http://127.0.0.1:9414/metrics, retention http://127.0.0.1:9415/metrics; scrape them with
    `churnpulse services up prometheus`
    """
    m = settings.metrics
    if not m.enabled:
        return "metrics: off (CHURN_METRICS__ENABLED=false)"
    ports = [(f"worker-{n}", m.worker_port + 10 * n) for n in range(workers)]
    ports += [(p, m.port(p)) for p in ("learner", "alerter", "dispatch", "dashboard",
                                       "retention")]
    return ("metrics (also /healthz, /readyz): "
            + ", ".join(f"{name} http://{m.host}:{port}/metrics" for name, port in ports if port)
            + "; scrape them with `churnpulse services up prometheus`")


def run_demo(settings: Settings, duration_s: float | None, rate: float, customers: int,
             workers: int, dashboard: bool = True) -> int:
    from streams.services import kafka, redis_server, up

    print("bringing up local services (first run downloads Kafka from Maven Central)...")
    started = [s.name for s in up(settings) if s.state == "started"]
    procs: list[Running] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()
    try:
        plan = demo_plan(customers, settings.services.state_dir)
        if plan.generation:
            settings = for_generation(settings, plan.generation)
            os.environ.update(generation_env(settings))  # the processes read the environment
            print(f"simulated time continues from {plan.config.start} (generation "
                  f"{plan.generation}: topics {settings.topics.events}, ..., Redis prefix "
                  f"{settings.redis.key_prefix}; an earlier demo played up to today)")
        ensure_topics(settings.kafka, settings.topics)
        log_dir = settings.services.state_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(12) if dashboard else None
        specs = demo_specs(workers, log_dir, token, settings.dashboard.port,
                           settings.metrics.worker_port)
        print(f"starting {', '.join(s.name for s in specs)}; logs in {log_dir}/demo-*.log ...")
        procs = start_all(specs, log_dir, on_start=lambda name: print(f"  {name} ready"))
        summary = Summary()
        if token is not None:
            summary.dashboard_url = (f"http://{settings.dashboard.host}:{settings.dashboard.port}"
                                     f"/?token={token}")
            print(f"support dashboard: {summary.dashboard_url}")
        print(metrics_line(settings, workers))
        ready = threading.Event()
        threads = [threading.Thread(target=consume_loop, args=(settings, summary, stop, ready),
                                    daemon=True),
                   threading.Thread(target=produce_loop,
                                    args=(settings, summary, rate, plan, stop),
                                    daemon=True),
                   threading.Thread(target=status_loop, args=(settings, summary, stop),
                                    daemon=True)]
        threads[0].start()
        ready.wait(30)
        threads[1].start()
        threads[2].start()
        end = time.monotonic() + duration_s if duration_s else float("inf")
        with Live(render(summary, workers, settings), refresh_per_second=4) as live:
            # the producer ends by itself when the simulated period is over: keep showing
            while time.monotonic() < end and threads[0].is_alive() and summary.error is None:
                time.sleep(0.25)
                live.update(render(summary, workers, settings))
                stopped = dead(procs)
                if stopped:
                    raise RuntimeError(f"{', '.join(stopped)} stopped unexpectedly; see "
                                       f"{log_dir}/demo-<name>.log")
        if summary.error is not None:
            raise summary.error
        print(f"produced {summary.produced:,} records ({summary.events:,} simulated events, "
              f"{summary.labels:,} churn labels), received {summary.scores:,} scores, "
              f"{sum(summary.alerts.values()):,} alerts, {summary.dead_letters} dead letters")
        print(closing_lines(summary.tally, summary.active, summary.sim_day - (
            summary.first_day or 0), settings.model.horizon_days, budget_per_1000_week(
            os.environ, DEMO_BUDGET), calibration_line(summary.learner, summary.uncalibrated),
            sorted(summary.risk.values(), reverse=True)[:5]))
        print(f"retention actions: {summary.retention.actions_line()}\n"
              f"retention outcomes: {summary.retention.outcomes_line()}")
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)  # the producer flushes what it sent, then closes
        stop_all(procs)
        stoppers = {"kafka": kafka.down, "redis": redis_server.down}
        for name in ("kafka", "redis"):
            if name in started:
                stoppers[name](settings)
                print(f"stopped {name} (started by the demo)")
    return 0
