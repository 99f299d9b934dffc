"""Metrics, the health server and JSON logs (streams.observability), without Kafka or Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.observability import metrics, sources
from streams.observability.bulk import BulkHistogram
from streams.observability.logs import JsonFormatter, configure_logging, dict_config
from streams.observability.server import HealthServer, serve
from streams.records import OutRecord
from streams.settings import load_settings


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels or None)


@pytest.fixture(autouse=True)
def metrics_on() -> Iterator[None]:
    metrics.configure(True)
    yield
    metrics.configure(True)


@dataclass
class Msg:
    topic: str
    offset: int


@dataclass
class FakeConsumer:
    owned: set[TopicPartition]
    highs: dict[TopicPartition, int] = field(default_factory=dict)

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highs.get(tp)


def test_poll_counts_records_batch_size_lag_and_assignment() -> None:
    a, b = TopicPartition("t-obs", 0), TopicPartition("t-obs", 1)
    consumer = FakeConsumer({a, b}, {a: 110, b: 5})
    before = sample("churnpulse_records_consumed_total", consumer="c-obs", topic="t-obs") or 0
    metrics.poll_done("c-obs", consumer, {a: [Msg("t-obs", 7), Msg("t-obs", 9)],
                                          b: [Msg("t-obs", 4)]})
    assert sample("churnpulse_records_consumed_total", consumer="c-obs",
                  topic="t-obs") == before + 3
    assert sample("churnpulse_consumer_lag_records", consumer="c-obs", topic="t-obs",
                  partition="0") == 100  # high watermark 110, next offset 10
    assert sample("churnpulse_consumer_lag_records", consumer="c-obs", topic="t-obs",
                  partition="1") == 0
    assert sample("churnpulse_consumer_assigned_partitions", consumer="c-obs") == 2
    assert metrics.assignment_of("c-obs") == {a, b}
    # partition 1 moves away: its lag series goes with it
    consumer.owned = {a}
    metrics.poll_done("c-obs", consumer, {})
    assert sample("churnpulse_consumer_lag_records", consumer="c-obs", topic="t-obs",
                  partition="1") is None
    assert sample("churnpulse_consumer_assigned_partitions", consumer="c-obs") == 1


def test_an_assigned_topics_consumed_series_starts_at_zero() -> None:
    """Prometheus' rate() takes a series' first sample as its start: a counter born with all
    of a fast consumer's records read 0/s forever (CI at ad9287a: the worker's dead-letter
    ratio never fired). The series exists at 0 from the poll that brings the assignment."""
    consumer = FakeConsumer({TopicPartition("t-zero", 0)})
    assert sample("churnpulse_records_consumed_total", consumer="c-zero", topic="t-zero") is None
    metrics.poll_done("c-zero", consumer, {})
    assert sample("churnpulse_records_consumed_total", consumer="c-zero", topic="t-zero") == 0


def test_produced_counts_topics_and_dead_letters_by_code() -> None:
    dlq = [("churn.dlq.reason", b"not JSON"), ("churn.dlq.code", b"bad_json")]
    before = sample("churnpulse_records_dead_lettered_total", reason="bad_json") or 0
    metrics.produced([OutRecord("scores-obs", b"k", b"v"), OutRecord("dlq-obs", b"k", b"x", dlq),
                      OutRecord("dlq-obs", b"k", b"y", dlq)])
    assert sample("churnpulse_records_produced_total", topic="dlq-obs") == 2
    assert sample("churnpulse_records_produced_total", topic="scores-obs") == 1
    assert sample("churnpulse_records_dead_lettered_total", reason="bad_json") == before + 2


def test_disabled_metrics_count_nothing() -> None:
    metrics.configure(False)
    metrics.produced([OutRecord("off-obs", b"k", b"v")])
    metrics.committed("off-obs", 0.1)
    assert sample("churnpulse_records_produced_total", topic="off-obs") is None
    assert sample("churnpulse_batch_duration_seconds_count", consumer="off-obs") is None


def test_event_to_score_latency_from_kafka_timestamps() -> None:
    hist = metrics.event_to_score()
    before = hist.count
    metrics.scores_published([1_000_000, 999_000, 0], now=1_000.5)  # 0: unknown, skipped
    assert hist.count == before + 2
    text = generate_latest(REGISTRY).decode()
    assert "churnpulse_event_to_score_seconds_bucket" in text


def test_bulk_histogram_matches_prometheus_buckets() -> None:
    registry = CollectorRegistry()
    h = BulkHistogram("x_seconds", "X.", (0.1, 1.0, 10.0), registry=registry)
    h.observe_many([0.1, 0.5, 1.0, 11.0, float("nan")])
    h.observe(0.05)
    got = {(s.name, s.labels.get("le")): s.value
           for f in text_string_to_metric_families(generate_latest(registry).decode())
           for s in f.samples}
    assert got[("x_seconds_bucket", "0.1")] == 2  # le is inclusive
    assert got[("x_seconds_bucket", "1.0")] == 4
    assert got[("x_seconds_bucket", "10.0")] == 4
    assert got[("x_seconds_bucket", "+Inf")] == 5
    assert got[("x_seconds_count", None)] == 5
    assert got[("x_seconds_sum", None)] == pytest.approx(12.65)


def test_learner_status_becomes_metric_families() -> None:
    status: dict[str, Any] = {
        "version": 7, "champion": "logreg", "resolved": 120, "pending": 33,
        "labels": {"labels": 10, "positives": 4, "held": 2},
        "served": {"roc_auc": 0.71, "log_loss": 0.4, "ece": 0.03, "drifts": 0},
        "models": {"logreg": {"roc_auc": 0.7, "drifts": 1},
                   "hat": {"roc_auc": float("nan"), "brier": 0.2}}}
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in sources.learner_metrics(status) for s in f.samples}
    assert got[("churnpulse_learner_pending_snapshots", ())] == 33
    assert got[("churnpulse_learner_labels_total", (("outcome", "positives"),))] == 4
    assert ("churnpulse_learner_labels_total", (("outcome", "held"),)) not in got
    assert got[("churnpulse_learner_held_labels", ())] == 2
    assert got[("churnpulse_model_roc_auc", (("model", "logreg"), ("role", "champion")))] == 0.7
    assert got[("churnpulse_model_calibration_error",
                (("model", "served"), ("role", "served")))] == 0.03
    assert ("churnpulse_model_roc_auc", (("model", "hat"), ("role", "challenger"))) not in got
    assert got[("churnpulse_model_brier_score", (("model", "hat"), ("role", "challenger")))] \
        == 0.2
    assert got[("churnpulse_model_drift_alarms_total",
                (("model", "logreg"), ("role", "champion")))] == 1


def test_worker_source_reads_totals_watermarks_and_model_at_scrape() -> None:
    @dataclass
    class Totals:
        applied: int = 5
        scores: int = 4
        late: int = 1

    @dataclass
    class Handle:
        version: str = "12-logreg"
        meta: dict[str, Any] = field(default_factory=lambda: {
            "published_at": "2026-01-01T00:00:00.000+00:00"})

    sources.watch_worker(totals=Totals, sweeper=lambda: None, marks=lambda now: {2: now - 30.0},
                         model=Handle)
    try:
        assert sample("churnpulse_events_applied_total") == 5
        assert sample("churnpulse_model_served_version") == 12
        lag = sample("churnpulse_watermark_lag_seconds", partition="2")
        assert lag == pytest.approx(30.0, abs=1.0)
        assert (sample("churnpulse_model_age_seconds") or 0) > 0
    finally:
        sources.SOURCES.remove("worker")
    assert sample("churnpulse_events_applied_total") is None


def test_alerter_source_counts_alerts_by_severity_and_kind() -> None:
    from streams.alerter.processor import AlertTotals

    totals = AlertTotals(alerts=3, holdout=1)
    totals.by_kind = {("high", "opened"): 2, ("critical", "escalated"): 1}
    sources.watch_alerter(lambda: totals)
    try:
        assert sample("churnpulse_alerts_total", severity="high", kind="opened") == 2
        assert sample("churnpulse_alerts_total", severity="critical", kind="escalated") == 1
        assert sample("churnpulse_alerts_holdout_total") == 1
    finally:
        sources.SOURCES.remove("alerter")


async def test_health_server_endpoints() -> None:
    import aiohttp

    state = {"ready": False}

    async def check() -> str | None:
        return None if state["ready"] else "warming up"

    async def broken() -> str | None:
        raise ConnectionError("redis down")

    server = HealthServer("test", {"warm": check})
    assert await server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as r:
                assert r.status == 200
                assert (await r.json())["ok"] is True
            async with http.get(base + "/readyz") as r:
                assert r.status == 503
                assert (await r.json())["checks"] == {"warm": "warming up"}
            state["ready"] = True
            async with http.get(base + "/readyz") as r:
                assert r.status == 200
            server.checks["redis"] = broken
            async with http.get(base + "/readyz") as r:
                assert r.status == 503
                assert (await r.json())["checks"]["redis"] == "ConnectionError: redis down"
            async with http.get(base + "/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                assert "python_info" in await r.text()
    finally:
        await server.stop()


async def test_serve_skips_when_disabled_and_survives_a_taken_port() -> None:
    off = load_settings(metrics={"enabled": False})
    assert await serve(off, "worker") is None
    assert not metrics.enabled()
    first = HealthServer("a")
    assert await first.start("127.0.0.1", 0)
    try:
        taken = load_settings(metrics={"worker_port": first.port})
        assert await serve(taken, "worker") is None  # logged, the process goes on
    finally:
        await first.stop()


def test_json_log_lines_carry_the_text_fields() -> None:
    record = logging.LogRecord("streams.x", logging.ERROR, __file__, 1, "failed %s", ("b",),
                               None)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR"
    assert line["logger"] == "streams.x"
    assert line["message"] == "failed b"
    assert "ValueError: boom" in line["exc"]
    assert line["time"].endswith("Z")
    config = dict_config("INFO", "json")
    assert config["formatters"]["default"] == {"()": JsonFormatter}


def test_configure_logging_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        logging.getLogger("streams.obs").info("hello %d", 1)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(err)["message"] == "hello 1"
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_settings_ports_per_process() -> None:
    s = load_settings(metrics={"alerter_port": 9999})
    assert s.metrics.port("alerter") == 9999
    assert s.metrics.port("worker") == 9410
    assert load_settings(metrics={"enabled": False}).metrics.port("worker") == 0
    with pytest.raises(ValueError, match="unknown process"):
        s.metrics.port("nope")


def test_every_dead_letter_code_of_the_code_starts_at_zero() -> None:
    import re
    from pathlib import Path

    from streams.redis.feature_store import REFUSALS

    root = Path(__file__).resolve().parents[2]
    text = "\n".join(p.read_text() for d in ("streams", "alerts") for p in (root / d).rglob("*.py"))
    codes = set(re.findall(r'(?:InvalidMessage|BadAlert|Poison\w*)\("([a-z_]+)"', text))
    codes |= set(REFUSALS)
    assert codes, "the scan found no codes"
    assert codes <= set(metrics.DEAD_LETTER_REASONS), codes - set(metrics.DEAD_LETTER_REASONS)
    metrics.start_series()
    assert sample("churnpulse_records_dead_lettered_total", reason="ts_too_old") is not None


def test_configured_logging_follows_stderr_when_it_is_swapped_and_closed() -> None:
    # CI printed "--- Logging error --- ValueError: I/O operation on closed file" from a
    # handler bound to a stderr that pytest had swapped and closed after an in-process command
    import io
    import sys

    root = logging.getLogger()
    saved = root.handlers[:], root.level, sys.stderr
    try:
        first = io.StringIO()
        sys.stderr = first
        configure_logging("INFO", "text")
        first.close()
        second = io.StringIO()
        sys.stderr = second
        logging.getLogger("streams.obs").info("after the swap")
        assert "after the swap" in second.getvalue()
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        sys.stderr = saved[2]
