"""Metrics read when Prometheus scrapes, from counters and status the processes keep anyway.

The worker's :class:`~streams.worker.processor.Totals`, the alerter's ``AlertTotals``, the
learner's status dict (the one ``churnpulse model status`` prints), the retention process's
checkpointed counts and the dashboard's client count are already kept for logs, checkpoints and
the CLI; a process registers a getter with one ``watch_*``
call and this module turns what it returns into metric families at scrape time. Nothing runs
on the hot path, and nothing is counted twice.

This module imports no process: getters return plain objects read by attribute or key.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Source = Callable[[], Iterator[Metric]]

# attribute of the worker's Totals -> (metric name without _total, help)
WORKER_TOTALS = {
    "applied": ("churnpulse_events_applied", "Events applied to the feature store."),
    "late": ("churnpulse_events_late", "Events skipped as late or duplicate by the store."),
    "scores": ("churnpulse_scores", "Scores published by the worker."),
    "observed": ("churnpulse_snapshots_recorded", "Feature snapshots recorded for learning."),
    "skipped_churned": ("churnpulse_scores_skipped_churned",
                        "Scores not published because the customer had churned."),
    "retries": ("churnpulse_worker_retries", "Retries of a transient Redis or Kafka error."),
    "unscored": ("churnpulse_customers_unscored",
                 "Customers of a batch not scored: their state ends with an event of a later "
                 "batch (a redelivery) or the batch held only late events for them."),
}
SWEEPER_STATS = {
    "passes": ("churnpulse_sweeper_passes", "Sweeps over the owned partitions."),
    "rescored": ("churnpulse_sweeper_rescored", "Quiet customers re-scored by the sweeper."),
}
ALERTER_TOTALS = {
    "scores": ("churnpulse_alerter_scores", "Scores read by the alerter."),
    "replayed": ("churnpulse_alerter_replayed",
                 "Scores already applied (a re-read batch), outbox re-emitted."),
    "holdout": ("churnpulse_alerts_holdout", "Alerts of holdout customers (no action)."),
    "conflicts": ("churnpulse_alerter_conflicts", "Optimistic-write conflicts, retried."),
}
# key of a model's delayed metrics -> (gauge name, help); counters handled apart
MODEL_GAUGES = {
    "roc_auc": ("churnpulse_model_roc_auc", "Delayed ROC AUC over the recent window."),
    "log_loss": ("churnpulse_model_log_loss", "Delayed log loss over the recent window."),
    "brier": ("churnpulse_model_brier_score", "Delayed Brier score over the recent window."),
    "ece": ("churnpulse_model_calibration_error",
            "Expected calibration error over the recent window."),
    "calibration_error": ("churnpulse_model_calibration_error",
                          "Expected calibration error over the recent window."),
    "precision": ("churnpulse_model_precision", "Precision at the alert threshold."),
    "recall": ("churnpulse_model_recall", "Recall at the alert threshold."),
    "window": ("churnpulse_model_window_observations", "Resolved observations in the window."),
}


class _Sources(Collector):
    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}
        self._lock = threading.Lock()

    def add(self, key: str, source: Source) -> None:
        with self._lock:
            self._sources[key] = source

    def remove(self, key: str) -> None:
        with self._lock:
            self._sources.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources.values())
        for source in sources:
            yield from source()

    def describe(self) -> Iterator[Metric]:
        return iter(())


SOURCES = _Sources()
REGISTRY.register(SOURCES)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _counters(obj: Any, fields: Mapping[str, tuple[str, str]]) -> Iterator[Metric]:
    for attr, (name, doc) in fields.items():
        value = _number(getattr(obj, attr, None))
        if value is not None:
            yield CounterMetricFamily(name, doc, value=value)


def watermark_metrics(marks: Mapping[int, float], now: float) -> Iterator[Metric]:
    """Sweep clock per events partition, and its distance to the wall clock ``now``.

    >>> [(f.name, f.samples[0].value) for f in watermark_metrics({3: 100.0}, 160.0)]
    [('churnpulse_watermark_timestamp_seconds', 100.0), ('churnpulse_watermark_lag_seconds', 60.0)]
    """
    mark = GaugeMetricFamily("churnpulse_watermark_timestamp_seconds",
                             "Sweep clock (event time) of each events partition owned.",
                             labels=["partition"])
    lag = GaugeMetricFamily("churnpulse_watermark_lag_seconds",
                            "Wall clock minus the partition's sweep clock.", labels=["partition"])
    for partition, value in sorted(marks.items()):
        mark.add_metric([str(partition)], value)
        lag.add_metric([str(partition)], now - value)
    yield mark
    yield lag


def model_metrics(version: str, published_at: Any, now: float,
                  served: bool) -> Iterator[Metric]:
    """The model a worker serves (``served``) or the learner published last: its version
    number and publication time, and its age at ``now``."""
    if served:
        yield GaugeMetricFamily("churnpulse_model_served_version",
                                "Version number of the model the worker scores with.",
                                value=version_number(version))
    published = published_time(published_at)
    if published is not None:
        yield GaugeMetricFamily("churnpulse_model_published_timestamp_seconds",
                                "When that model was published.", value=published)
        yield GaugeMetricFamily("churnpulse_model_age_seconds",
                                "Wall clock minus the model's publication time.",
                                value=now - published)


def version_number(version: str) -> float:
    """``"12-logreg"`` → 12.0; an untrained or unparsable version → 0.0.

    >>> version_number("12-logreg"), version_number("untrained")
    (12.0, 0.0)
    """
    head = version.split("-", 1)[0]
    return float(head) if head.isdigit() else 0.0


def published_time(raw: Any) -> float | None:
    """An RFC 3339 time (as checkpoints carry it) in seconds; None when absent or unreadable.

    >>> published_time("1970-01-01T00:01:00.000+00:00"), published_time(None)
    (60.0, None)
    """
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def watch_worker(totals: Callable[[], Any], sweeper: Callable[[], Any],
                 marks: Callable[[float], Mapping[int, float]],
                 model: Callable[[], Any]) -> None:
    """Export the worker's processor totals, sweeper stats, watermarks (``marks(now)``) and
    served model (a ``ModelHandle``: ``version``, ``meta["published_at"]``); getters may
    return None."""

    def source() -> Iterator[Metric]:
        now = time.time()
        t = totals()
        if t is not None:
            yield from _counters(t, WORKER_TOTALS)
        s = sweeper()
        if s is not None:
            yield from _counters(s, SWEEPER_STATS)
        yield from watermark_metrics(marks(now), now)
        handle = model()
        if handle is not None:
            yield from model_metrics(str(handle.version), handle.meta.get("published_at"), now,
                                     served=True)

    SOURCES.add("worker", source)


def watch_alerter(totals: Callable[[], Any]) -> None:
    """Export the alerter's totals: alerts by severity and kind, holdout, scores read."""

    def source() -> Iterator[Metric]:
        t = totals()
        if t is None:
            return
        yield from _counters(t, ALERTER_TOTALS)
        by_kind = CounterMetricFamily("churnpulse_alerts", "Alerts raised, by severity and kind.",
                                      labels=["severity", "kind"])
        for (severity, kind), n in sorted(dict(getattr(t, "by_kind", {}) or {}).items()):
            by_kind.add_metric([str(severity)[:20], str(kind)[:20]], float(n))
        yield by_kind

    SOURCES.add("alerter", source)


def watch_learner(status: Callable[[], Mapping[str, Any] | None],
                  published: Callable[[], Any]) -> None:
    """Export the learner's last status (labels, resolutions, pending, delayed metrics) and
    when it published its last model (``published()``: RFC 3339 or seconds, None: never)."""

    def source() -> Iterator[Metric]:
        s = status()
        if s is not None:
            yield from learner_metrics(s)
        yield from model_metrics("", published(), time.time(), served=False)

    SOURCES.add("learner", source)


def learner_metrics(status: Mapping[str, Any]) -> Iterator[Metric]:
    """Metric families of a learner status dict.

    >>> fams = list(learner_metrics({"version": 3, "champion": "logreg", "resolved": 10,
    ...     "pending": 2, "labels": {"labels": 4, "positives": 1},
    ...     "served": {"roc_auc": 0.8}, "models": {"logreg": {"roc_auc": 0.75, "drifts": 1}}}))
    >>> sorted({f.name for f in fams})[:2]
    ['churnpulse_learner_labels', 'churnpulse_learner_model_version']
    """
    version = _number(status.get("version"))
    if version is not None:
        yield GaugeMetricFamily("churnpulse_learner_model_version",
                                "Version of the model the learner published last.", value=version)
    pending = _number(status.get("pending"))
    if pending is not None:
        yield GaugeMetricFamily("churnpulse_learner_pending_snapshots",
                                "Snapshots waiting for their label or horizon.", value=pending)
    resolved = _number(status.get("resolved"))
    if resolved is not None:
        yield CounterMetricFamily("churnpulse_learner_resolved", "Snapshots resolved and learned.",
                                  value=resolved)
    labels = CounterMetricFamily("churnpulse_learner_labels",
                                 "Labels read and what became of them.", labels=["outcome"])
    for outcome, n in sorted((status.get("labels") or {}).items()):
        if (v := _number(n)) is not None and outcome != "held":
            labels.add_metric([outcome], v)
    yield labels
    held = _number((status.get("labels") or {}).get("held"))
    if held is not None:
        yield GaugeMetricFamily("churnpulse_learner_held_labels",
                                "Labels held until the watermark reaches them.", value=held)
    champion = status.get("champion")
    gauges: dict[str, GaugeMetricFamily] = {}
    drifts = CounterMetricFamily("churnpulse_model_drift_alarms", "Drift detector alarms.",
                                 labels=["model", "role"])
    rows = [("served", "served", status.get("served") or {})]
    rows += [(name, "champion" if name == champion else "challenger", report or {})
             for name, report in sorted((status.get("models") or {}).items())]
    for model, role, report in rows:
        for key, (name, doc) in MODEL_GAUGES.items():
            value = _number(report.get(key))
            if value is None:
                continue
            family = gauges.get(name)
            if family is None:
                family = gauges[name] = GaugeMetricFamily(name, doc, labels=["model", "role"])
            family.add_metric([str(model)[:20], role], value)
        if (d := _number(report.get("drifts"))) is not None:
            drifts.add_metric([str(model)[:20], role], d)
    yield from gauges.values()
    yield drifts


def watch_retention(service: Callable[[], Any]) -> None:
    """Export the retention process's counts and state (:func:`retention_metrics`)."""

    def source() -> Iterator[Metric]:
        s = service()
        if s is not None:
            yield from retention_metrics(s, time.time())

    SOURCES.add("retention", source)


def retention_metrics(service: Any, now: float) -> Iterator[Metric]:
    """Metric families of the retention process: ``service`` has ``tally`` (its checkpointed
    counts, :mod:`streams.retention.tally`), ``loop`` (``counts``, ``joiner.pending``),
    ``retries``, ``version``, ``outbox`` and ``last_checkpoint_at``."""
    t, c = service.tally, service.loop.counts

    def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, value=float(value))

    yield counter("churnpulse_retention_actions_read",
                  "Action records read (alerts decided by the alerter; duplicates excluded).",
                  t.actions)
    yield counter("churnpulse_retention_actions_duplicate", "Action records read again "
                  "(an id seen before, e.g. after an alerter replay).", c.duplicate_actions)
    yield counter("churnpulse_retention_actions_holdout", "Action records of holdout customers.",
                  t.holdout)
    yield counter("churnpulse_retention_actions_with_offers",
                  "Action records whose alert carried recommended offers.", t.with_offers)
    decisions = CounterMetricFamily("churnpulse_retention_policy_decisions",
                                    "Action records whose action the learning policy chose, "
                                    "by whether it was an exploration draw.",
                                    labels=["explored"])
    decisions.add_metric(["true"], float(t.explored))
    decisions.add_metric(["false"], float(t.policy - t.explored))
    yield decisions
    outcomes = CounterMetricFamily("churnpulse_retention_outcomes",
                                   "Outcomes joined to their action (churned or stayed).",
                                   labels=["outcome"])
    for kind in ("churned", "stayed"):
        outcomes.add_metric([kind], float(t.outcomes.get(kind, 0)))
    yield outcomes
    yield counter("churnpulse_retention_rewards",
                  "Outcomes of actioned customers learned by the policy as rewards.", c.rewards)
    yield counter("churnpulse_retention_labels", "Churn labels read.", c.labels)
    yield counter("churnpulse_retention_offer_answers",
                  "Offer answers (accepted or declined) learned by the recommender.",
                  c.offer_answers)
    errors = CounterMetricFamily("churnpulse_retention_input_errors",
                                 "Inputs refused: action records dead-lettered, labels and "
                                 "offer events skipped, by kind:reason.", labels=["reason"])
    for reason, n in sorted(t.input_errors.items()):
        errors.add_metric([reason[:40]], float(n))
    yield errors
    yield counter("churnpulse_retention_retries", "Retries of a transient Redis error.",
                  service.retries)
    yield GaugeMetricFamily("churnpulse_retention_checkpoint_version",
                            "Version of the process's last checkpoint.",
                            value=float(service.version))
    joiner = service.loop.joiner
    yield GaugeMetricFamily("churnpulse_retention_pending_actions",
                            "Actions waiting for their outcome (label or horizon).",
                            value=float(len(joiner.pending) if joiner is not None else 0))
    yield GaugeMetricFamily("churnpulse_retention_outbox",
                            "Outcomes resolved and not yet published.",
                            value=float(len(service.outbox)))
    if service.last_checkpoint_at is not None:
        yield GaugeMetricFamily("churnpulse_retention_checkpoint_age_seconds",
                                "Wall clock minus the time of the last checkpoint.",
                                value=now - service.last_checkpoint_at)


def watch_dashboard(stats: Callable[[], Mapping[str, Any]]) -> None:
    """Export the dashboard's live sessions and board size (``{"clients": n, "board": n}``)."""

    def source() -> Iterator[Metric]:
        s = stats()
        if (clients := _number(s.get("clients"))) is not None:
            yield GaugeMetricFamily("churnpulse_dashboard_sessions",
                                    "Browsers connected to the live feed.", value=clients)
        if (board := _number(s.get("board"))) is not None:
            yield GaugeMetricFamily("churnpulse_dashboard_open_alerts",
                                    "Open alerts on the board.", value=board)

    SOURCES.add("dashboard", source)
