"""Turning churn labels and the passing of event time into learning, exactly once.

:class:`LearningLoop` is the step both the live learner process and the in-process backtest
run: a churn label resolves the customer's pending snapshots inside the horizon as positives;
the watermark passing a snapshot's horizon resolves it as negative. With
``positives_at_horizon`` (the default) the positives are learned when their horizon passes
too, together with the negatives of the same time (see ``online_models.observations``): the
label records the churn time, and the watermark decides each snapshot's outcome from the churn
times seen. Each resolution is learned
by :class:`online_models.learner.Learner` and returned, so that the caller can make the learning
durable (a checkpoint) *before* it removes the resolved snapshots from the store — which is what
makes a crash at any point neither lose nor repeat a learn call.

Between learning a snapshot and removing it from the store, the loop remembers it as *in
flight*: a second label of the same customer, or the watermark passing the same snapshot's
horizon, in the same step does not learn it again. :meth:`LearningLoop.settle` forgets them
once the caller has removed them.

Labels are *held* until the pipeline's watermark reaches their churn time
(:meth:`LearningLoop.on_labels`): a label read before the worker scored the customer's last
events would otherwise find those snapshots missing. Held labels are part of the learner's
checkpoint (their offsets are behind it).
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from online_models.learner import Learner
from online_models.observations import (
    LabelPolicy,
    Observation,
    Resolution,
    churned_within,
    prune_churn_times,
    resolve_churn,
)
from streams.contracts import ChurnLabel
from streams.redis.observation_store import ObservationStore, pending_of

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


class RecentIds:
    """The last ``size`` ids seen, with O(1) membership (a deque and a set)."""

    def __init__(self, size: int = 100_000) -> None:
        self._order: deque[str] = deque()
        self._seen: set[str] = set()
        self._size = size

    def __contains__(self, item: object) -> bool:
        return item in self._seen

    def __len__(self) -> int:
        return len(self._order)

    def append(self, item: str) -> None:
        if item in self._seen:
            return
        self._order.append(item)
        self._seen.add(item)
        if len(self._order) > self._size:
            self._seen.discard(self._order.popleft())


@dataclass
class LearningLoop:
    store: ObservationStore
    learner: Learner
    policy: LabelPolicy
    mark_churned: ChurnMarker | None = None
    recent_labels: RecentIds = field(default_factory=RecentIds)
    counts: LabelCounts = field(default_factory=LabelCounts)
    watermark: float = float("-inf")
    events: list[str] = field(default_factory=list)
    inflight: set[str] = field(default_factory=set)
    held: list[ChurnLabel] = field(default_factory=list)
    mark_many: Callable[[dict[str, float]], Awaitable[None]] | None = None
    deferred: bool = False
    positives_at_horizon: bool = True
    churn_times: dict[str, list[float]] = field(default_factory=dict)
    _batch: list[Resolution] = field(default_factory=list)

    def __post_init__(self) -> None:
        # frozen model copies for shadow predictions: one per observation interval, for as
        # long as a snapshot can stay pending (a horizon, plus slack for the watermark's lag)
        self.learner.keep_copies(self.policy.interval_s,
                                 self.policy.horizon_s + 2 * self.policy.interval_s)

    def _fresh(self, observations: Iterable[Observation]) -> list[Observation]:
        inflight = self.inflight
        return [o for o in observations if o.obs_id not in inflight]

    def settle(self) -> None:
        """The resolved snapshots were removed from the store: stop remembering them."""
        self.inflight.clear()

    def _admit(self, label: ChurnLabel) -> bool:
        """Count a label; True when it is a new churn to resolve."""
        c = self.counts
        c.labels += 1
        if label.label_id in self.recent_labels:
            c.duplicates += 1
            return False
        self.recent_labels.append(label.label_id)
        if not label.churned:
            c.not_churned += 1
            return False
        return True

    async def on_label(self, label: ChurnLabel) -> tuple[list[Resolution], list[Observation]]:
        """Resolve one label now; returns (learned resolutions, snapshots to drop unlearned)."""
        if not self._admit(label):
            return [], []
        if self.mark_churned is not None:
            await self.mark_churned(label.customer_id, label.ts)
        return self._resolve(label, await self.store.pending(label.customer_id))

    async def on_labels(self, labels: Sequence[ChurnLabel], watermark: float | None
                        ) -> tuple[list[Resolution], list[Observation]]:
        """Admit ``labels``, then resolve every held label whose time the watermark reached.

        One round trip marks the released customers churned, one reads their snapshots.
        """
        for label in labels:
            if self._admit(label):
                self.held.append(label)
        if watermark is None or not self.held:
            return [], []
        ready = [lb for lb in self.held if lb.ts <= watermark]
        if not ready:
            return [], []
        self.held = [lb for lb in self.held if lb.ts > watermark]
        ready.sort(key=lambda lb: lb.ts)
        marks: dict[str, float] = {}
        for lb in ready:
            marks[lb.customer_id] = max(lb.ts, marks.get(lb.customer_id, lb.ts))
        if self.mark_many is not None:
            await self.mark_many(marks)
        elif self.mark_churned is not None:
            for cid, ts in marks.items():
                await self.mark_churned(cid, ts)
        stubs = getattr(self.store, "pending_stubs", None) if self.positives_at_horizon else None
        if stubs is not None:  # positives wait for their horizon: the times are all we need
            pending = await stubs(list(marks))
        else:
            pending = await pending_of(self.store, list(marks))
        positives: list[Resolution] = []
        dropped: list[Observation] = []
        for lb in ready:
            pos, drop = self._resolve(lb, pending.get(lb.customer_id, []))
            positives += pos
            dropped += drop
        return positives, dropped

    def _resolve(self, label: ChurnLabel, pending: list[Observation]
                 ) -> tuple[list[Resolution], list[Observation]]:
        c = self.counts
        positives, _, dropped = resolve_churn(self._fresh(pending), label.ts, self.policy)
        self.inflight.update(o.obs_id for o in dropped)
        if not positives:
            c.unmatched += 1
            if label.ts < self.watermark - self.policy.horizon_s:
                c.late += 1
        c.dropped += len(dropped)
        if self.positives_at_horizon:
            times = self.churn_times.setdefault(label.customer_id, [])
            if label.ts not in times:
                times.append(label.ts)
            return [], dropped
        c.positives += len(positives)
        self._learn(positives)
        return positives, dropped

    async def on_watermark(self, watermark: float, limit: int = 10_000) -> list[Resolution]:
        """Resolve every snapshot whose horizon ended by ``watermark``: negative, or (with
        ``positives_at_horizon``) positive when a churn time seen falls in its horizon."""
        self.watermark = max(self.watermark, watermark)
        due = self._fresh(await self.store.due(self.watermark, limit))
        if self.positives_at_horizon:
            times, policy = self.churn_times, self.policy
            resolved = [Resolution(o, churned_within(o, times.get(o.customer_id, ()), policy))
                        for o in due]
            if len(due) < limit:  # every snapshot due by now is resolved
                prune_churn_times(times, self.watermark, policy)
        else:
            resolved = [Resolution(obs, False) for obs in due]
        positives = sum(r.churned for r in resolved)
        self.counts.positives += positives
        self.counts.negatives += len(resolved) - positives
        self._learn(resolved)
        return resolved

    def _learn(self, resolutions: list[Resolution]) -> None:
        """Test-then-train on ``resolutions`` as one batch (see ``Learner.learn_batch``);
        with ``deferred``, collect them for :meth:`flush`."""
        self.inflight.update(r.observation.obs_id for r in resolutions)
        if self.deferred:
            self._batch += resolutions
            return
        for event in self.learner.learn_batch(resolutions, self._now()):
            log.info("learner: %s", event)
            self.events.append(event)

    def _now(self) -> float | None:
        """Event time reached: the watermark (None before the first one)."""
        return self.watermark if self.watermark > float("-inf") else None

    def flush(self) -> int:
        """Learn what ``deferred`` collected, as one batch in a fixed shuffled order.

        A churn label resolves a burst of near-identical positives of one customer; learned
        in a row with their class weight they swing an SGD model, so the step's positives and
        negatives are interleaved (ordered by a hash of the snapshot id: deterministic).
        """
        batch, self._batch = self._batch, []
        batch.sort(key=lambda r: zlib.crc32(r.observation.obs_id.encode()))
        for event in self.learner.learn_batch(batch, self._now()):
            log.info("learner: %s", event)
            self.events.append(event)
        return len(batch)
