"""From a customer's state to a published score, and the snapshot the learner will learn from.

Both the event path (:class:`streams.worker.processor.EventBatchProcessor`) and the sweeper build
scores here, in two steps:

1. :func:`build_score` (CPU): the feature vector, the score, the ``drivers`` (the five largest
   contributions, exact for the linear model, ``[]`` for others or an untrained model);
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from online_models.explain import LinearExplainer
from online_models.feature_vector import feature_vector
from online_models.features import FeatureSpec
from online_models.model import ModelHandle
from online_models.observations import LabelPolicy, Observation
from streams.redis.churned import ChurnedCustomers
from streams.redis.feature_store import ts_ms
from streams.redis.observation_store import ObservationStore, ScoredSnapshot
from streams.timefmt import format_ts

TOP_DRIVERS = 5
SLOT_CACHE_MAX = 2_000_000


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
    }
    return record, x


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

