"""The Prometheus metrics of every churnpulse process, and the one-line calls that feed them.

Names follow the Prometheus conventions: the ``churnpulse_`` prefix, base units (seconds,
records), ``_total`` on counters, and labels that stay bounded (consumer name, topic,
partition, reason code, operation, target name, model name; never a customer id). The list,
with the alerting rules built on them, is in docs/operations.md.

Every call here is cheap and per batch, never per event (the worker's per-score latencies go
into a :class:`~streams.observability.bulk.BulkHistogram` a batch at a time). After
``configure(enabled=False)`` (``CHURN_METRICS__ENABLED=false``) every call returns at once:
that is the "without metrics" of the overhead measurement.

Counters a process already keeps (the worker's totals, the alerter's, the learner's status)
are not counted twice: :mod:`streams.observability.sources` reads them when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from streams.observability.bulk import BulkHistogram

_state = {"on": True}
disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                 1.0, 2.5)
SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000)
EVENT_TO_SCORE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                          60.0, 300.0)
LABEL_LAG_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0,
                     30 * 86400.0, 90 * 86400.0)
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0)

# -- consumers (the runner) and producers -----------------------------------------------------
RECORDS_CONSUMED = Counter("churnpulse_records_consumed", "Records fetched from Kafka.",
                           ["consumer", "topic"])
RECORDS_PRODUCED = Counter("churnpulse_records_produced",
                           "Records produced and acknowledged by the broker.", ["topic"])
DEAD_LETTERED = Counter("churnpulse_records_dead_lettered",
                        "Records sent to the dead-letter topic, by reason code.", ["reason"])
BATCH_RECORDS = Histogram("churnpulse_batch_records", "Records per consumed batch.",
                          ["consumer"], buckets=SIZE_BUCKETS)
BATCH_SECONDS = Histogram("churnpulse_batch_duration_seconds",
                          "From a batch's poll to its commit (processing, produce, commit).",
                          ["consumer"], buckets=LATENCY_BUCKETS)
BATCHES_FAILED = Counter("churnpulse_batches_failed",
                         "Batches whose processing raised (dead-lettered or stopped the run).",
                         ["consumer"])
CONSUMER_LAG = Gauge("churnpulse_consumer_lag_records",
                     "High watermark minus the next offset to read, at the last fetch.",
                     ["consumer", "topic", "partition"])
ASSIGNED = Gauge("churnpulse_consumer_assigned_partitions", "Partitions this consumer owns.",
                 ["consumer"])
LAST_POLL = Gauge("churnpulse_consumer_last_poll_timestamp_seconds",
                  "Wall time of the consumer's last poll.", ["consumer"])
RESTARTS = Counter("churnpulse_consumer_restarts", "Consumer loop restarts after an error.",
                   ["consumer"])

# -- worker and learner: registered on first use, so a process exports only its own --------
@cache
def event_to_score() -> BulkHistogram:
    return BulkHistogram(
        "churnpulse_event_to_score_seconds",
        "From an event's Kafka timestamp (source_timestamp_ms) to its score acknowledged.",
        EVENT_TO_SCORE_BUCKETS)


REDIS_SECONDS = Histogram("churnpulse_redis_call_duration_seconds",
                          "Redis calls (feature store, observations, checkpoints), retries "
                          "included.", ["operation"], buckets=REDIS_BUCKETS)


@cache
def _learner() -> tuple[BulkHistogram, Counter, Gauge]:
    return (BulkHistogram("churnpulse_label_lag_seconds",
                          "From a churn label's event time to the learner reading it.",
                          LABEL_LAG_BUCKETS),
            Counter("churnpulse_learner_steps", "Learner steps (one per poll of labels)."),
            Gauge("churnpulse_learner_last_step_timestamp_seconds",
                  "Wall time of the learner's last completed step."))


# -- dispatch ---------------------------------------------------------------------------------
WEBHOOK_DELIVERIES = Counter("churnpulse_webhook_deliveries",
                             "Alert deliveries per target, by outcome (delivered, skipped, "
                             "dead, ...).", ["target", "status"])
WEBHOOK_RETRIES = Counter("churnpulse_webhook_retries", "Attempts beyond the first, per target.",
                          ["target"])
WEBHOOK_SECONDS = Histogram("churnpulse_webhook_request_duration_seconds",
                            "One POST to a webhook target (answered, refused or timed out).",
                            ["target"], buckets=WEBHOOK_BUCKETS)


# dead-letter codes of the project (streams.contracts, the feature store's refusals, the
# runner, dispatch): their series start at 0, so rate() sees a reason's first dead letters
DEAD_LETTER_REASONS = (
    "bad_json", "empty", "not_an_object", "missing_field", "bad_field", "bad_timestamp",
    "ts_in_future", "ts_too_old", "key_mismatch", "record_too_large", "properties_too_large",
    "unsupported_schema", "value_out_of_range", "bad_value", "overflow", "bad_state",
    "processing_failed", "webhook_failed", "webhook_rejected", "webhook_unavailable")


def start_series() -> None:
    """Create the dead-letter series at 0 (a serving process calls it once at start)."""
    if _state["on"]:
        for reason in DEAD_LETTER_REASONS:
            DEAD_LETTERED.labels(reason)


def configure(enabled: bool) -> None:
    """Turn every call of this module on or off (process-wide)."""
    _state["on"] = enabled


def enabled() -> bool:
    return _state["on"]


# -- consumers ----------------------------------------------------------------------------------
def polled(consumer: str, counts: Mapping[str, int], highwater: Mapping[Any, int | None],
           next_offsets: Mapping[Any, int]) -> None:
    """A poll returned ``counts`` records per topic; ``highwater``/``next_offsets`` per
    TopicPartition give the lag (a partition without a known high watermark keeps its last)."""
    if not _state["on"]:
        return
    LAST_POLL.labels(consumer).set(time.time())
    total = sum(counts.values())
    if not total:
        return
    for topic, n in counts.items():
        RECORDS_CONSUMED.labels(consumer, topic).inc(n)
    BATCH_RECORDS.labels(consumer).observe(total)
    for tp, nxt in next_offsets.items():
        high = highwater.get(tp)
        if high is not None:
            CONSUMER_LAG.labels(consumer, tp.topic, str(tp.partition)).set(max(0, high - nxt))


_owned: dict[str, frozenset[Any]] = {}


def poll_done(name: str, consumer: Any, fetched: Mapping[Any, Sequence[Any]]) -> None:
    """What the runner calls after each poll of ``consumer`` (aiokafka's, or one with the
    same ``assignment``/``highwater``): records fetched, batch size, lag, assignment."""
    if not _state["on"]:
        return
    owned = frozenset(consumer.assignment())
    if _owned.get(name) != owned:
        _owned[name] = owned
        assigned(name, owned)
        for topic in {tp.topic for tp in owned}:  # at 0 before the first records: rate()
            RECORDS_CONSUMED.labels(name, topic)  # misses a series' first value
    highwater = getattr(consumer, "highwater", None)
    counts: dict[str, int] = {}
    nexts: dict[Any, int] = {}
    highs: dict[Any, int | None] = {}
    for tp, msgs in fetched.items():
        if msgs:
            counts[tp.topic] = counts.get(tp.topic, 0) + len(msgs)
            nexts[tp] = msgs[-1].offset + 1
            highs[tp] = highwater(tp) if highwater is not None else None
    polled(name, counts, highs, nexts)


def assignment_of(consumer: str) -> frozenset[Any]:
    """The partitions the runner named ``consumer`` owned at its last poll (empty before)."""
    return _owned.get(consumer, frozenset())


def assigned(consumer: str, partitions: Iterable[Any]) -> None:
    """The consumer owns ``partitions`` now: forget the lag of the others."""
    if not _state["on"]:
        return
    owned = {(tp.topic, str(tp.partition)) for tp in partitions}
    ASSIGNED.labels(consumer).set(len(owned))
    for labels in _lag_labels(consumer):
        if (labels[1], labels[2]) not in owned:
            CONSUMER_LAG.remove(*labels)


def _lag_labels(consumer: str) -> list[tuple[str, str, str]]:
    families = list(CONSUMER_LAG.collect())
    found = []
    for sample in families[0].samples if families else ():
        labels = sample.labels
        if labels.get("consumer") == consumer:
            found.append((consumer, labels["topic"], labels["partition"]))
    return found


def committed(consumer: str, seconds: float) -> None:
    """A batch was completed and committed ``seconds`` after its poll."""
    if _state["on"]:
        BATCH_SECONDS.labels(consumer).observe(seconds)


def batch_failed(consumer: str) -> None:
    if _state["on"]:
        BATCHES_FAILED.labels(consumer).inc()


def restarted(consumer: str) -> None:
    if _state["on"]:
        RESTARTS.labels(consumer).inc()


def produced(records: Sequence[Any]) -> None:
    """``records`` (:class:`~streams.records.OutRecord`) were acknowledged by the broker;
    dead letters are counted by their ``churn.dlq.code`` header."""
    if not _state["on"] or not records:
        return
    topics: dict[str, int] = {}
    for r in records:
        topics[r.topic] = topics.get(r.topic, 0) + 1
        headers = r.headers
        if headers and len(headers) > 1 and headers[1][0] == "churn.dlq.code":
            DEAD_LETTERED.labels(headers[1][1].decode(errors="replace")[:40]).inc()
    for topic, n in topics.items():
        RECORDS_PRODUCED.labels(topic).inc(n)


def dead_lettered(reason: str, n: int = 1) -> None:
    """Dead letters a process produced outside the runner and the sink (acknowledged)."""
    if _state["on"]:
        DEAD_LETTERED.labels(reason[:40]).inc(n)


# -- worker -------------------------------------------------------------------------------------
def scores_published(arrived_ms: Iterable[int], now: float | None = None) -> None:
    """Scores of events that arrived (Kafka timestamp, ms) at ``arrived_ms`` were acknowledged."""
    if not _state["on"]:
        return
    import numpy as np

    arr = np.fromiter(arrived_ms, dtype=np.float64)
    arr = arr[arr > 0]
    if arr.size:
        wall_ms = (time.time() if now is None else now) * 1000.0
        event_to_score().observe_many((wall_ms - arr) / 1000.0)


@contextmanager
def redis_timer(operation: str) -> Iterator[None]:
    """Time a Redis call (``with redis_timer("feature_apply"): ...``)."""
    if not _state["on"]:
        yield
        return
    began = time.perf_counter()
    try:
        yield
    finally:
        REDIS_SECONDS.labels(operation).observe(time.perf_counter() - began)


# -- learner ------------------------------------------------------------------------------------
def labels_read(label_times: Iterable[float], now: float | None = None) -> None:
    """The learner read labels whose event times are ``label_times`` (seconds)."""
    if not _state["on"]:
        return
    import numpy as np

    arr = np.fromiter(label_times, dtype=np.float64)
    if arr.size:
        wall = time.time() if now is None else now
        _learner()[0].observe_many(np.maximum(0.0, wall - arr))


def learner_stepped() -> None:
    if not _state["on"]:
        return
    _, steps, last = _learner()
    steps.inc()
    last.set(time.time())


# -- dispatch -----------------------------------------------------------------------------------
def webhook_delivery(target: str, status: str, attempts: int) -> None:
    """One alert's delivery to ``target`` ended with ``status`` after ``attempts`` POSTs."""
    if not _state["on"]:
        return
    WEBHOOK_DELIVERIES.labels(target, status).inc()
    if attempts > 1:
        WEBHOOK_RETRIES.labels(target).inc(attempts - 1)


_target_of_url: dict[str, str] = {}


def webhook_targets(urls: Mapping[str, str]) -> None:
    """Name the targets of webhook URLs (``url -> name``) for :func:`webhook_request`."""
    _target_of_url.clear()
    _target_of_url.update(urls)
    if _state["on"]:  # series start at 0, so increase() sees the first failure
        for name in urls.values():
            for status in ("delivered", "duplicate", "dead", "skipped"):
                WEBHOOK_DELIVERIES.labels(name, status)
            WEBHOOK_RETRIES.labels(name)


def webhook_request(url: str, seconds: float) -> None:
    """One POST to ``url`` took ``seconds`` (answered or not); labelled by target name."""
    if _state["on"]:
        WEBHOOK_SECONDS.labels(_target_of_url.get(url, "other")).observe(seconds)
