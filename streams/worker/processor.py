"""The event batch processor: decode → features → score → publish, independent of Faust.

The Faust agent (``streams.worker.app``) hands it batches of raw records; benchmarks and tests hand
it the same records directly. It talks to the world through three ports: a
:class:`~streams.redis.feature_store.FeatureStore`, a :class:`~streams.records.RecordSink` and a
model source.

Per batch:

1. decode every record; invalid ones go to the dead-letter topic (original bytes as value,
   reason in headers) and nothing else is held up;
2. apply the valid events to the feature store in one call (retried while Redis is down, so a
   batch is never acknowledged before Redis confirmed it);
3. score every customer touched, once, on its state after the batch, at its newest event time
   (``reason: "event"``);
4. publish scores and dead letters and wait until the broker acknowledged them.

Only then does the caller acknowledge the batch's offsets. The feature call also raises each
customer's re-score time in the due-index (same round trip) and, once Redis confirmed, moves the
partitions' watermarks (:class:`~streams.worker.watermarks.Watermarks`); customers who then
stay quiet are re-scored by :mod:`streams.worker.sweeper` with the same record format
(``reason: "sweep"``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol, TypeVar

from online_models.model import ModelHandle
from online_models.observations import LabelPolicy
from streams.contracts import DEFAULT_LIMITS, CustomerEvent, InputLimits, decode_event, encode
from streams.dead_letter import dead_letter_record
from streams.errors import InvalidMessage, TransientError
from streams.observability import metrics
from streams.records import OutRecord, RawRecord, RecordSink, retry_transient
from streams.redis.churned import ChurnedCustomers
from streams.redis.feature_cache import CachedFeatureStore
from streams.redis.feature_store import REFUSALS, AppliedState, FeatureStore, rejected_positions
from streams.redis.observation_store import ObservationStore
from streams.settings import TopicSettings
from streams.timefmt import format_ts
from streams.worker.scoring import (
    Explainers,
    Observer,
    PendingScore,
    ScoreRequest,
    Scorers,
    build_scores,
)
from streams.worker.watermarks import Watermarks

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelSource(Protocol):
    async def current(self) -> ModelHandle: ...


@dataclass
class Counts:
    """Records through the processor: one batch's (:class:`BatchStats`) or the running
    :class:`Totals`."""

    records: int = 0
    dead_lettered: int = 0
    applied: int = 0
    late: int = 0
    scores: int = 0
    retries: int = 0
    observed: int = 0
    skipped_churned: int = 0
    unscored: int = 0


@dataclass
class BatchStats(Counts):
    valid: int = 0


@dataclass
class Totals(Counts):
    """Running totals of a processor, for the live summary and logs."""

    batches: int = 0
    last_model_version: str = ""
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, stats: Counts) -> None:
        self.batches += 1
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(stats, name))


COUNTS = tuple(f.name for f in fields(Counts))


@dataclass
class Batch:
    """One batch on its way through the stages of :class:`EventBatchProcessor`."""

    records: Sequence[RawRecord]
    stats: BatchStats
    events: list[CustomerEvent] = field(default_factory=list)
    sources: list[RawRecord] = field(default_factory=list)
    arrived: dict[str, int] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    newest: dict[int, float] = field(default_factory=dict)
    out: list[OutRecord] = field(default_factory=list)
    scored: list[PendingScore] = field(default_factory=list)
    states: dict[str, AppliedState] = field(default_factory=dict)
    handle: ModelHandle | None = None
    failure: Exception | None = None


class EventBatchProcessor:
    """Stages of a batch: ``prepare`` (CPU) → ``apply`` (Redis) → ``score`` (CPU) →
    ``observe`` (Redis) → ``publish`` (Kafka). ``process`` runs them in a row; a runner may
    overlap the stages of consecutive batches as long as ``apply``, ``observe`` and
    ``publish`` keep batch order.

    With an ``observations`` store, every customer scored leaves a snapshot (at most one per
    observation interval of ``policy``) and customers in ``churned`` are not scored while
    their newest event is at or before their churn time (see :mod:`streams.worker.scoring`).
    """

    def __init__(
        self,
        store: FeatureStore,
        models: ModelSource,
        sink: RecordSink,
        topics: TopicSettings,
        wall_clock: Callable[[], float] = time.time,
        retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rescore_after_s: float | None = None,
        watermarks: Watermarks | None = None,
        observations: ObservationStore | None = None,
        policy: LabelPolicy | None = None,
        churned: ChurnedCustomers | None = None,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self.limits = limits
        self.models = models
        self.sink = sink
        self.topics = topics
        self.spec = store.spec
        self._wall = wall_clock
        self._retry_sleep = retry_sleep
        self._rescore_after_s = rescore_after_s
        self.watermarks = watermarks
        self.totals = Totals()
        self.observer = Observer(observations, policy or LabelPolicy(), churned)
        self.explainers = Explainers()  # the sweeper's (row by row)
        self.scorers = Scorers()

    def prepare(self, records: Sequence[RawRecord]) -> Batch:
        """Decode; invalid records become dead-letter output right away."""
        batch = Batch(records, BatchStats(records=len(records)))
        arrived, events, partition_of, newest = (batch.arrived, batch.events,
                                                 batch.partition_of, batch.newest)
        now = self.limits.clock()
        for record in records:
            try:
                if record.value is None:
                    raise InvalidMessage("empty", "message has no value")
                event = decode_event(record.value, record.key, self.limits, now)
            except InvalidMessage as exc:
                batch.stats.dead_lettered += 1
                reasons = self.totals.dead_letter_reasons
                reasons[exc.code] = reasons.get(exc.code, 0) + 1
                batch.out.append(self._dead_letter_record(record, exc))
                continue
            events.append(event)
            batch.sources.append(record)
            arrived_ms = record.timestamp_ms or 0
            if arrived_ms > arrived.get(event.customer_id, 0):
                arrived[event.customer_id] = arrived_ms
            partition_of[event.customer_id] = record.partition
            if event.ts > newest.get(record.partition, float("-inf")):
                newest[record.partition] = event.ts
        batch.stats.valid = len(events)
        return batch

    async def apply(self, batch: Batch) -> None:
        """Apply the batch's events to the feature store (retried until Redis confirms)."""
        if batch.events:
            events, due = batch.events, self._due_updates(batch)
            with metrics.redis_timer("feature_apply"):
                batch.states = await self._retrying(lambda: self._store.apply(events, due),
                                                    batch.stats)
            refused = rejected_positions(events, batch.states)
            if refused:
                self._refuse(batch, refused)
            if self.watermarks is not None:
                wall = self._wall()
                for partition, newest in batch.newest.items():
                    self.watermarks.observe(partition, newest, wall)
            batch.handle = await self._retrying(self.models.current, batch.stats)

    def released(self, partitions: Sequence[int]) -> None:
        """Partitions revoked: forget their watermarks and the cached feature states (the next
        owner writes to Redis; a state cached here could be stale when they come back)."""
        if self.watermarks is not None:
            self.watermarks.forget(list(partitions))
        if isinstance(self._store, CachedFeatureStore):
            self._store.invalidate()

    def _refuse(self, batch: Batch, refused: dict[int, str]) -> None:
        """Dead-letter the events the feature store refused (nothing of them was written);
        the watermarks and the scores never see them."""
        kept: list[CustomerEvent] = []
        newest: dict[int, float] = {}
        reasons = self.totals.dead_letter_reasons
        for pos, (event, record) in enumerate(zip(batch.events, batch.sources, strict=True)):
            code = refused.get(pos)
            if code is not None:
                batch.stats.dead_lettered += 1
                reasons[code] = reasons.get(code, 0) + 1
                error = InvalidMessage(code, REFUSALS.get(code, "refused by the feature store"))
                batch.out.append(self._dead_letter_record(record, error))
                continue
            kept.append(event)
            if event.ts > newest.get(record.partition, float("-inf")):
                newest[record.partition] = event.ts
        alive = {e.customer_id for e in kept}
        batch.events, batch.newest = kept, newest
        batch.states = {cid: s for cid, s in batch.states.items() if cid in alive}
        batch.stats.valid = len(kept)

    def _due_updates(self, batch: Batch) -> dict[str, tuple[int, float]] | None:
        after = self._rescore_after_s
        if after is None:
            return None
        newest: dict[str, float] = {}
        for event in batch.events:
            if event.ts > newest.get(event.customer_id, float("-inf")):
                newest[event.customer_id] = event.ts
        return {cid: (batch.partition_of[cid], ts + after) for cid, ts in newest.items()}

    def score(self, batch: Batch) -> None:
        """One score per customer touched, on its state after the batch, named after the event
        that state ends with (:attr:`AppliedState.last`): a score id always carries the same
        state, however a redelivery splits the batches. A customer whose state ends with an
        event of an earlier batch (a redelivered batch whose customers the batches after it
        advanced too, or late events only) is not scored: its state's score belongs to the
        batch of that event, which is redelivered as well (counted as ``unscored``)."""
        handle = batch.handle
        if handle is None:
            return
        stats, arrived = batch.stats, batch.arrived
        requests: list[ScoreRequest] = []
        for cid, applied in batch.states.items():
            stats.applied += applied.applied
            stats.late += applied.late
            event = applied.last
            if event is None:
                stats.unscored += 1
                continue
            state = applied.state
            t_last = state.get("t_last", event.ts)
            requests.append((cid, state, max(event.ts, t_last), event.event_id,
                             applied.applied, arrived.get(cid, 0), t_last))
        batch.scored.extend(build_scores(requests, handle, self.spec, self.scorers,
                                         reason="event", scored_at=format_ts(self._wall())))
        self.totals.last_model_version = handle.version

    async def observe(self, batch: Batch) -> None:
        """Drop churned customers' scores, record snapshots; the survivors go to ``out``."""
        if not batch.scored:
            return
        scored = batch.scored
        with metrics.redis_timer("observations_record"):
            kept, recorded = await self._retrying(lambda: self.observer.finish(scored),
                                                  batch.stats)
        stats = batch.stats
        stats.observed += recorded
        stats.skipped_churned += len(scored) - len(kept)
        stats.scores += len(kept)
        batch.out.extend(self.score_records(kept))
        batch.scored = []

    def score_records(self, scores: Sequence[PendingScore]) -> list[OutRecord]:
        topic = self.topics.scores
        return [OutRecord(topic, s.customer_id.encode(), encode(s.record)) for s in scores]

    async def publish(self, batch: Batch) -> BatchStats:
        """Publish scores and dead letters; returns once the broker acknowledged them."""
        if batch.out:
            out = batch.out
            await self._retrying(lambda: self.sink.publish(out), batch.stats)
        if batch.stats.scores:
            metrics.scores_published(batch.arrived.values())  # event -> score latency
        self.totals.add(batch.stats)
        return batch.stats

    async def process(self, records: Sequence[RawRecord]) -> BatchStats:
        batch = self.prepare(records)
        await self.apply(batch)
        self.score(batch)
        await self.observe(batch)
        return await self.publish(batch)

    async def dead_letter(self, records: Sequence[RawRecord], error: InvalidMessage) -> None:
        """Send whole records to the dead-letter topic (the runner's last resort)."""
        stats = BatchStats(records=len(records), dead_lettered=len(records))
        out = [self._dead_letter_record(r, error) for r in records]
        await self._retrying(lambda: self.sink.publish(out), stats)
        reasons = self.totals.dead_letter_reasons
        reasons[error.code] = reasons.get(error.code, 0) + len(records)
        self.totals.add(stats)

    def _dead_letter_record(self, record: RawRecord, error: InvalidMessage) -> OutRecord:
        return dead_letter_record(self.topics.dead_letter, record, error, self._wall())

    async def _retrying(self, op: Callable[[], Awaitable[T]], stats: BatchStats) -> T:
        def on_retry(attempt: int, exc: TransientError) -> None:
            stats.retries += 1
            log.warning("dependency unavailable (attempt %d), retrying: %s", attempt, exc)

        return await retry_transient(op, on_retry=on_retry, sleep=self._retry_sleep)
