"""The event batch processor: decode → features → score → publish, independent of Faust.

The Faust agent (``streams.app``) hands it batches of raw records; benchmarks and tests hand it
the same records directly. It talks to the world through three ports: a
:class:`~streams.feature_store.FeatureStore`, a :class:`RecordSink` and a model source.

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
partitions' watermarks (:class:`~streams.watermarks.Watermarks`); customers who then stay quiet
are re-scored by :mod:`streams.sweeper` with the same record format (``reason: "sweep"``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from online_models.features import FeatureSpec, feature_vector
from online_models.model import ModelHandle
from streams.contracts import CustomerEvent, decode_event, encode, format_ts
from streams.errors import InvalidMessage, TransientError
from streams.feature_store import AppliedState, FeatureStore, ts_ms
from streams.settings import TopicSettings
from streams.watermarks import Watermarks

log = logging.getLogger(__name__)
T = TypeVar("T")

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A consumed Kafka record, as the processor needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None = None


class RecordSink(Protocol):
    """Where output records go.

    ``publish`` returns once the broker acknowledged every record, in order per key, and raises
    :class:`~streams.errors.TransientError` when it could not; publishing again is safe (outputs
    are idempotent downstream: scores carry ``score_id``).
    """

    async def publish(self, records: Sequence[OutRecord]) -> None: ...


class MemorySink:
    """An in-memory :class:`RecordSink` (tests, backtests)."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.records.extend(records)

    def on(self, topic: str) -> list[OutRecord]:
        return [r for r in self.records if r.topic == topic]


class ModelSource(Protocol):
    async def current(self) -> ModelHandle: ...


@dataclass
class BatchStats:
    records: int = 0
    valid: int = 0
    dead_lettered: int = 0
    applied: int = 0
    late: int = 0
    scores: int = 0
    retries: int = 0


@dataclass
class Totals:
    """Running totals of a processor, for the live summary and logs."""

    batches: int = 0
    records: int = 0
    dead_lettered: int = 0
    applied: int = 0
    late: int = 0
    scores: int = 0
    retries: int = 0
    last_model_version: str = ""
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, stats: BatchStats) -> None:
        self.batches += 1
        self.records += stats.records
        self.dead_lettered += stats.dead_lettered
        self.applied += stats.applied
        self.late += stats.late
        self.scores += stats.scores
        self.retries += stats.retries


def dead_letter_headers(record: RawRecord, error: InvalidMessage, now: float) -> Headers:
    return [
        ("churn.dlq.reason", error.detail.encode()),
        ("churn.dlq.code", error.code.encode()),
        ("churn.dlq.topic", record.topic.encode()),
        ("churn.dlq.partition", str(record.partition).encode()),
        ("churn.dlq.offset", str(record.offset).encode()),
        ("churn.dlq.failed_at", format_ts(now).encode()),
    ]


def score_record(customer_id: str, state: dict[str, float], now: float, handle: ModelHandle,
                 spec: FeatureSpec, *, reason: Literal["event", "sweep"], scored_at: str,
                 last_event_id: str | None = None, events_applied: int = 0,
                 source_timestamp_ms: int = 0) -> dict[str, Any]:
    """One record of the scores topic: the customer's churn score at event time ``now``.

    ``score_id`` is deterministic (downstream deduplicates on it): the triggering event for
    ``reason="event"``, the re-score time for ``reason="sweep"``.
    """
    trigger = last_event_id if reason == "event" else f"sweep:{ts_ms(now)}"
    return {
        "schema_version": 1,
        "score_id": f"{customer_id}:{trigger}:{handle.version}",
        "customer_id": customer_id,
        "score": handle.score(feature_vector(state, now, spec)),
        "model_version": handle.version,
        "ts": format_ts(now),
        "reason": reason,
        "last_event_id": last_event_id,
        "events_total": int(state.get("n", 0)),
        "events_applied": events_applied,
        "scored_at": scored_at,
        "source_timestamp_ms": source_timestamp_ms,
    }


async def retry_transient(
    op: Callable[[], Awaitable[T]],
    *,
    on_retry: Callable[[int, TransientError], None],
    base_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``op`` until it succeeds, backing off exponentially on :class:`TransientError`.

    There is no give-up: giving up would let Faust acknowledge an unprocessed batch. A process
    that must stop is cancelled, which leaves the batch unacknowledged for the next owner.
    """
    attempt = 0
    while True:
        try:
            return await op()
        except TransientError as exc:
            attempt += 1
            on_retry(attempt, exc)
            await sleep(min(max_delay_s, base_delay_s * 2 ** (attempt - 1)))


@dataclass
class Batch:
    """One batch on its way through the stages of :class:`EventBatchProcessor`."""

    records: Sequence[RawRecord]
    stats: BatchStats
    events: list[CustomerEvent] = field(default_factory=list)
    arrived: dict[str, int] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    newest: dict[int, float] = field(default_factory=dict)
    out: list[OutRecord] = field(default_factory=list)
    states: dict[str, AppliedState] = field(default_factory=dict)
    handle: ModelHandle | None = None
    failure: Exception | None = None


class EventBatchProcessor:
    """Stages of a batch: ``prepare`` (CPU) → ``apply`` (Redis) → ``score`` (CPU) →
    ``publish`` (Kafka). ``process`` runs them in a row; a runner may overlap the stages of
    consecutive batches as long as ``apply`` and ``publish`` keep batch order."""

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
    ) -> None:
        self._store = store
        self.models = models
        self.sink = sink
        self.topics = topics
        self.spec = store.spec
        self._wall = wall_clock
        self._retry_sleep = retry_sleep
        self._rescore_after_s = rescore_after_s
        self.watermarks = watermarks
        self.totals = Totals()

    def prepare(self, records: Sequence[RawRecord]) -> Batch:
        """Decode; invalid records become dead-letter output right away."""
        batch = Batch(records, BatchStats(records=len(records)))
        arrived, events, partition_of, newest = (batch.arrived, batch.events,
                                                 batch.partition_of, batch.newest)
        for record in records:
            try:
                if record.value is None:
                    raise InvalidMessage("empty", "message has no value")
                event = decode_event(record.value)
            except InvalidMessage as exc:
                batch.stats.dead_lettered += 1
                reasons = self.totals.dead_letter_reasons
                reasons[exc.code] = reasons.get(exc.code, 0) + 1
                batch.out.append(self._dead_letter_record(record, exc))
                continue
            events.append(event)
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
            batch.states = await self._retrying(lambda: self._store.apply(events, due),
                                                batch.stats)
            if self.watermarks is not None:
                wall = self._wall()
                for partition, newest in batch.newest.items():
                    self.watermarks.observe(partition, newest, wall)
            batch.handle = await self._retrying(self.models.current, batch.stats)

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
        """One score per customer touched, on its state after the batch."""
        handle, stats = batch.handle, batch.stats
        if handle is None:
            return
        newest: dict[str, CustomerEvent] = {}
        for event in batch.events:
            seen = newest.get(event.customer_id)
            if seen is None or event.ts >= seen.ts:
                newest[event.customer_id] = event
        scored_at = format_ts(self._wall())
        scores_topic, out, spec = self.topics.scores, batch.out, self.spec
        for cid, applied in batch.states.items():
            event = newest[cid]
            state = applied.state
            stats.applied += applied.applied
            stats.late += applied.late
            now = max(event.ts, state.get("t_last", event.ts))
            record = score_record(cid, state, now, handle, spec, reason="event",
                                  scored_at=scored_at, last_event_id=event.event_id,
                                  events_applied=applied.applied,
                                  source_timestamp_ms=batch.arrived.get(cid, 0))
            out.append(OutRecord(scores_topic, cid.encode(), encode(record)))
        stats.scores += len(batch.states)
        self.totals.last_model_version = handle.version

    async def publish(self, batch: Batch) -> BatchStats:
        """Publish scores and dead letters; returns once the broker acknowledged them."""
        if batch.out:
            out = batch.out
            await self._retrying(lambda: self.sink.publish(out), batch.stats)
        self.totals.add(batch.stats)
        return batch.stats

    async def process(self, records: Sequence[RawRecord]) -> BatchStats:
        batch = self.prepare(records)
        await self.apply(batch)
        self.score(batch)
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
        headers = dead_letter_headers(record, error, self._wall())
        return OutRecord(self.topics.dead_letter, record.key, record.value or b"", headers)

    async def _retrying(self, op: Callable[[], Awaitable[T]], stats: BatchStats) -> T:
        def on_retry(attempt: int, exc: TransientError) -> None:
            stats.retries += 1
            log.warning("dependency unavailable (attempt %d), retrying: %s", attempt, exc)

        return await retry_transient(op, on_retry=on_retry, sleep=self._retry_sleep)
