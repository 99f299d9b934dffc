"""Turning churn labels and the passing of event time into learning, exactly once.

:class:`LearningLoop` is the step both the live learner process and the in-process backtest
run: a churn label resolves the customer's pending snapshots inside the horizon as positives;
the watermark passing a snapshot's horizon resolves it as negative. Each resolution is learned
by :class:`online_models.learner.Learner` and returned, so that the caller can make the learning
durable (a checkpoint) *before* it removes the resolved snapshots from the store — which is what
makes a crash at any point neither lose nor repeat a learn call.

Between learning a snapshot and removing it from the store, the loop remembers it as *in
flight*: a second label of the same customer, or the watermark passing the same snapshot's
horizon, in the same step does not learn it again. :meth:`LearningLoop.settle` forgets them
once the caller has removed them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from online_models.learner import Learner
from online_models.observations import LabelPolicy, Observation, Resolution, resolve_churn
from streams.contracts import ChurnLabel
from streams.observation_store import ObservationStore

log = logging.getLogger(__name__)
ChurnMarker = Callable[[str, float], Awaitable[None]]


@dataclass
class LabelCounts:
    labels: int = 0
    duplicates: int = 0
    not_churned: int = 0
    unmatched: int = 0
    late: int = 0
    positives: int = 0
    negatives: int = 0
    dropped: int = 0


@dataclass
class LearningLoop:
    store: ObservationStore
    learner: Learner
    policy: LabelPolicy
    mark_churned: ChurnMarker | None = None
    recent_labels: deque[str] = field(default_factory=lambda: deque(maxlen=100_000))
    counts: LabelCounts = field(default_factory=LabelCounts)
    watermark: float = float("-inf")
    events: list[str] = field(default_factory=list)
    inflight: set[str] = field(default_factory=set)

    def _fresh(self, observations: list[Observation]) -> list[Observation]:
        inflight = self.inflight
        return [o for o in observations if o.obs_id not in inflight]

    def settle(self) -> None:
        """The resolved snapshots were removed from the store: stop remembering them."""
        self.inflight.clear()

    async def on_label(self, label: ChurnLabel) -> tuple[list[Resolution], list[Observation]]:
        """Resolve a label; returns (learned resolutions, snapshots to drop unlearned)."""
        c = self.counts
        c.labels += 1
        if label.label_id in self.recent_labels:
            c.duplicates += 1
            return [], []
        self.recent_labels.append(label.label_id)
        if not label.churned:
            c.not_churned += 1
            return [], []
        if self.mark_churned is not None:
            await self.mark_churned(label.customer_id, label.ts)
        pending = self._fresh(await self.store.pending(label.customer_id))
        positives, _, dropped = resolve_churn(pending, label.ts, self.policy)
        self.inflight.update(o.obs_id for o in dropped)
        if not positives:
            c.unmatched += 1
            if label.ts < self.watermark - self.policy.horizon_s:
                c.late += 1
        c.positives += len(positives)
        c.dropped += len(dropped)
        self._learn(positives)
        return positives, dropped

    async def on_watermark(self, watermark: float, limit: int = 10_000) -> list[Resolution]:
        """Resolve as negative every snapshot whose horizon ended by ``watermark``."""
        self.watermark = max(self.watermark, watermark)
        due = self._fresh(await self.store.due(self.watermark, limit))
        negatives = [Resolution(obs, False) for obs in due]
        self.counts.negatives += len(negatives)
        self._learn(negatives)
        return negatives

    def _learn(self, resolutions: list[Resolution]) -> None:
        self.inflight.update(r.observation.obs_id for r in resolutions)
        for resolution in resolutions:
            for event in self.learner.learn(resolution):
                log.warning("learner: %s", event)
                self.events.append(event)
