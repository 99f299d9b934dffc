"""From a customer's state to a published score, and the snapshot the learner will learn from.

Both the event path (:class:`streams.worker.processor.EventBatchProcessor`) and the sweeper build
scores here, in two steps:

1. :func:`build_scores` (CPU): the feature vectors, the scores, the ``drivers`` (the five
   largest contributions, exact for the linear model, ``[]`` for others or an untrained
   model) — of a whole batch at once for a linear model (:mod:`online_models.score_batch`),
   row by row for others (:func:`build_score`, one customer);
2. :meth:`Observer.finish` (one Redis round trip for the whole batch): customers marked
   churned at or after their newest event are dropped (not scored, counted), customers who came
   back are unmarked, and a snapshot (the features that were scored, the score, the model
   version, the time) is recorded for every customer whose observation interval has none yet.
   Only the records that survive are published, and only after this call returned: snapshots
   are durable before the batch's offsets are committed.

The observer remembers, per customer, the last interval it recorded a snapshot in, so that
customers scored many times a day send their feature vector once a day, not on every batch
(Redis' ``HSETNX`` keeps the rule exact either way).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from online_models.customer_value import monthly_value
from online_models.ensemble_score import MeanScorer
from online_models.explain import LinearExplainer
from online_models.feature_vector import feature_vector
from online_models.features import FeatureSpec
from online_models.model import ModelHandle
from online_models.observations import LabelPolicy, Observation
from online_models.score_batch import BatchScorer
from online_models.served import model_calibrated
from streams.redis.churned import ChurnedCustomers
from streams.redis.feature_store import ts_ms
from streams.redis.observation_store import ObservationStore, ScoredSnapshot
from streams.timefmt import format_ts

TOP_DRIVERS = 5
SLOT_CACHE_MAX = 2_000_000
HOURS_MAX = 4096
_MINUTES_SECONDS = [f"{s // 60:02d}:{s % 60:02d}" for s in range(3600)]
_MILLISECONDS = [f".{ms:03d}+00:00" for ms in range(1000)]


class Stamps:
    """:func:`~streams.timefmt.format_ts` of many times, the date and hour formatted once per
    hour (one score per event: ``datetime`` and ``isoformat`` cost ~1 µs each time).

    The same string to the last character: the time is split into whole seconds and
    microseconds as ``datetime.fromtimestamp`` splits it (``modf``, microseconds rounded half
    to even, carried into the seconds), then truncated to milliseconds as ``isoformat`` does
    (``tests/unit/test_score_batch.py`` compares them).

    >>> Stamps()(1767225600.0005), format_ts(1767225600.0005)
    ('2026-01-01T00:00:00.000+00:00', '2026-01-01T00:00:00.000+00:00')
    """

    def __init__(self) -> None:
        self._hours: dict[int, str] = {}

    def __call__(self, ts: float) -> str:
        frac, whole = math.modf(ts)
        us = round(frac * 1e6)
        if us >= 1_000_000:
            us -= 1_000_000
            whole += 1.0
        elif us < 0:
            us += 1_000_000
            whole -= 1.0
        hour, within = divmod(int(whole), 3600)
        prefix = self._hours.get(hour)
        if prefix is None:
            if len(self._hours) >= HOURS_MAX:
                self._hours.clear()
            prefix = self._hours[hour] = format_ts(hour * 3600.0)[:14]  # 'YYYY-MM-DDTHH:'
        return prefix + _MINUTES_SECONDS[within] + _MILLISECONDS[us // 1000]


def build_score(customer_id: str, state: dict[str, float], now: float, handle: ModelHandle,
                spec: FeatureSpec, *, reason: Literal["event", "sweep"], scored_at: str,
                last_event_id: str | None = None, events_applied: int = 0,
                source_timestamp_ms: int = 0,
                explainer: LinearExplainer | None = None
                ) -> tuple[dict[str, Any], dict[str, float]]:
    """One record of the scores topic and the feature vector it was computed from.

    ``score_id`` is deterministic (downstream deduplicates on it): the triggering event for
    ``reason="event"``, the re-score time for ``reason="sweep"``.
    """
    trigger = last_event_id if reason == "event" else f"sweep:{ts_ms(now)}"
    x = feature_vector(state, now, spec)
    record = {
        "schema_version": 1,
        "score_id": f"{customer_id}:{trigger}:{handle.version}",
        "customer_id": customer_id,
        "score": handle.score(x),
        "model_version": handle.version,
        "ts": format_ts(now),
        "reason": reason,
        "last_event_id": last_event_id,
        "events_total": int(state.get("n", 0)),
        "events_applied": events_applied,
        "scored_at": scored_at,
        "source_timestamp_ms": source_timestamp_ms,
        "drivers": explainer.drivers(x, TOP_DRIVERS) if explainer is not None else [],
        # issue 10: False while the version's calibration rests on too few outcomes (the
        # alerter ignores such scores); value per month from the state (expected loss)
        "calibrated": model_calibrated(handle.model, handle.version),
        "value": monthly_value(state, now),
    }
    return record, x


class Scorers:
    """The scorer of the model version in use (rebuilt when the version changes): a batch
    at once for a linear model, else row by row (:meth:`ModelHandle.score` and the
    explainer, as :func:`build_score`)."""

    def __init__(self) -> None:
        self._model: object | None = None
        self._batch: BatchScorer | MeanScorer | None = None
        self._explainer: LinearExplainer | None = None
        self.stamps = Stamps()

    def score(self, handle: ModelHandle, xs: Sequence[dict[str, float]]
              ) -> tuple[list[float], list[list[dict[str, Any]]]]:
        """The score and the drivers of every feature vector."""
        if handle.model is not self._model:
            self._model = handle.model
            self._batch = BatchScorer.of(handle.model) or MeanScorer.of(handle.model)
            self._explainer = None if self._batch is not None else \
                LinearExplainer.of(handle.model)
        if self._batch is not None:
            return self._batch.score(xs, TOP_DRIVERS)
        explainer = self._explainer
        return ([handle.score(x) for x in xs],
                [explainer.drivers(x, TOP_DRIVERS) if explainer is not None else []
                 for x in xs])


#: One customer to score: (customer id, state, time, triggering event id, events applied,
#: broker time of its newest event in ms, time of its newest event)
ScoreRequest = tuple[str, dict[str, float], float, str | None, int, int, float]


def build_scores(requests: Sequence[ScoreRequest], handle: ModelHandle, spec: FeatureSpec,
                 scorers: Scorers, *, reason: Literal["event", "sweep"], scored_at: str
                 ) -> list[PendingScore]:
    """:func:`build_score` of many customers with one model version: the same records, the
    scores and drivers computed for all of them together (:class:`Scorers`)."""
    xs = [feature_vector(state, now, spec) for _, state, now, _, _, _, _ in requests]
    scores, drivers = scorers.score(handle, xs)
    version = handle.version
    calibrated = model_calibrated(handle.model, version)
    stamp = scorers.stamps
    out = []
    for (cid, state, now, event_id, applied, source_ms, newest), x, score, top in zip(
            requests, xs, scores, drivers, strict=True):
        trigger = event_id if reason == "event" else f"sweep:{ts_ms(now)}"
        record = {
            "schema_version": 1,
            "score_id": f"{cid}:{trigger}:{version}",
            "customer_id": cid,
            "score": score,
            "model_version": version,
            "ts": stamp(now),
            "reason": reason,
            "last_event_id": event_id,
            "events_total": int(state.get("n", 0)),
            "events_applied": applied,
            "scored_at": scored_at,
            "source_timestamp_ms": source_ms,
            "drivers": top,
            "calibrated": calibrated,
            "value": monthly_value(state, now),
        }
        out.append(PendingScore(cid, record, x, now, newest))
    return out


@dataclass(slots=True)
class PendingScore:
    """A score built, not yet checked against the churned set nor published."""

    customer_id: str
    record: dict[str, Any]
    x: dict[str, float]
    t: float
    newest_event: float


@dataclass
class ObserveTotals:
    recorded: int = 0
    skipped_churned: int = 0
    returned: int = 0


class Explainers:
    """The explainer of the model version in use (rebuilt when the version changes)."""

    def __init__(self) -> None:
        self._model: object | None = None
        self._explainer: LinearExplainer | None = None

    def of(self, handle: ModelHandle) -> LinearExplainer | None:
        if handle.model is not self._model:
            self._model = handle.model
            self._explainer = LinearExplainer.of(handle.model)
        return self._explainer


@dataclass
class Observer:
    """Records snapshots and applies the churned set for batches of scores (module docstring).

    Without a store (``store=None``) every score passes and nothing is recorded.
    """

    store: ObservationStore | None
    policy: LabelPolicy
    churned: ChurnedCustomers | None = None
    totals: ObserveTotals = field(default_factory=ObserveTotals)
    _slots: dict[str, int] = field(default_factory=dict, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def finish(self, scores: Sequence[PendingScore]) -> tuple[list[PendingScore], int]:
        """The scores to publish, and how many snapshots were recorded (one round trip).

        Calls run one at a time, in the order they were made (batches stay in order).
        """
        store = self.store
        if store is None or not scores:
            return list(scores), 0
        policy, slots = self.policy, self._slots
        items: list[ScoredSnapshot] = []
        for s in scores:
            slot = policy.slot(s.t)
            obs = None
            if slots.get(s.customer_id) != slot:
                record = s.record
                obs = Observation(s.customer_id, s.t, s.x, record["score"],
                                  record["model_version"])
            items.append(ScoredSnapshot(s.customer_id, s.newest_event, obs))
        async with self._lock:
            outcome = await store.record_scored(items, self.churned)
        if len(slots) > SLOT_CACHE_MAX:
            slots.clear()
        for item in items:
            if item.observation is not None and item.customer_id not in outcome.churned:
                slots[item.customer_id] = policy.slot(item.observation.t)
        t = self.totals
        t.recorded += outcome.recorded
        t.skipped_churned += len(outcome.churned)
        t.returned += outcome.returned
        if not outcome.churned:
            return list(scores), outcome.recorded
        return [s for s in scores if s.customer_id not in outcome.churned], outcome.recorded

