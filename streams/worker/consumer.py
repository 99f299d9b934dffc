"""The events hot path: a batching aiokafka consumer that runs inside the Faust worker.

Why not a Faust agent: measured on this 2-core machine, a Faust agent that does nothing with
its messages (``stream.take_events(500)``) tops out at ~9,600 messages/s (~12,400 without the
Monitor sensor), while a plain aiokafka ``getmany`` loop reads ~545,000/s. Faust's per-message
machinery (event objects, per-message acks, sensors, channel queues) alone would exceed the
whole per-event budget of the 15,000 events/s target. So Faust runs the worker (lifecycle,
signals, logging, timers) and the consumer runner (:mod:`streams.kafka.runner`) owns the events
topic, with :class:`EventStrategy` as its strategy.

Guarantees, per batch of up to ``batch_size`` records:

* offsets are committed only after Redis confirmed the features *and* the broker acknowledged
  the scores and dead letters of the batch (at-least-once; effects are idempotent);
* batches are applied to Redis, published and committed in the order they were read;
* the next batch is fetched and decoded while the previous one waits on Redis, and scored
  while the next one waits: at most ``PIPELINE_DEPTH`` batches are in flight;
* the observation snapshots of a batch (:mod:`streams.worker.scoring`) are recorded before its
  scores are published, and so before its offsets are committed;
* before partitions move to another worker, the batches in flight finish and commit, and the
  revoked partitions' watermarks and the cached feature states are forgotten;
* nothing escapes: a batch that fails for an unexpected reason goes to the dead-letter topic
  whole, with the reason, and is committed (:meth:`EventStrategy.failed`);
* a client that fails for good (an error of the consumer loop, a producer that will never send
  again) does not end the worker: the runner closes its clients and starts new ones after a
  backoff (0.5 s doubling to 30 s, :data:`RESTART`), the processor publishing through the new
  producer; the batches not committed are read again (their effects are idempotent). So does a
  batch whose scores are not acknowledged or offsets not committed within
  ``worker.stall_timeout_s`` (60 s). Only a configuration error or a refused login or ACL
  stops it.

Beside the loop runs the sweeper (:mod:`streams.worker.sweeper`), every ``sweep.interval_s``,
over the partitions this worker owns: it re-scores customers who went quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.structs import TopicPartition

from streams.errors import InvalidMessage, TransientError
from streams.kafka.clients import new_consumer, new_producer
from streams.kafka.publish import CachedPartitioner
from streams.kafka.runner import Backoff, Runner, RunnerConfig
from streams.kafka.strategy import Batch, Strategy
from streams.observability.memory import settle_memory
from streams.records import OutRecord, RecordSink
from streams.settings import Settings
from streams.worker.processor import Batch as EventBatch
from streams.worker.processor import EventBatchProcessor
from streams.worker.sweeper import Sweeper

log = logging.getLogger(__name__)
PIPELINE_DEPTH = 2
RESTART = Backoff(initial_s=0.5, max_s=30.0)


class EventStrategy(Strategy[EventBatch]):
    """Stages of :class:`EventBatchProcessor` on the runner: ``process`` = decode, apply (in
    batch order), score, observe; ``complete`` = publish (in batch order, before the commit)."""

    def __init__(self, processor: EventBatchProcessor) -> None:
        self.processor = processor
        self._applying: list[int] = []  # batch numbers waiting to apply, in poll order
        self._turn = asyncio.Condition()

    async def process(self, batch: Batch) -> EventBatch:
        self._applying.append(batch.number)  # before any await: poll order
        try:
            prepared = self.processor.prepare(batch.records)
            async with self._turn:  # Redis sees batches in order
                await self._turn.wait_for(lambda: self._applying[0] == batch.number)
            await self.processor.apply(prepared)
        finally:
            self._applying.remove(batch.number)
            async with self._turn:
                self._turn.notify_all()
        self.processor.score(prepared)
        await self.processor.observe(prepared)  # snapshots durable before the commit
        return prepared

    async def complete(self, batch: Batch, result: EventBatch) -> Sequence[OutRecord]:
        await self.processor.publish(result)
        return ()

    async def failed(self, batch: Batch, error: Exception) -> Sequence[OutRecord]:
        log.error("batch of %d records failed; sending it to the dead-letter topic",
                  len(batch.records), exc_info=error)
        reason = InvalidMessage("processing_failed", f"{type(error).__name__}: {error}")
        await self.processor.dead_letter(batch.records, reason)
        return ()

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self.processor.released([tp.partition for tp in partitions])


class EventConsumer:
    """Reads the events topic in batches and drives an :class:`EventBatchProcessor`."""

    def __init__(self, settings: Settings,
                 make_processor: Callable[[RecordSink], EventBatchProcessor],
                 make_sweeper: Callable[[EventBatchProcessor], Sweeper] | None = None,
                 warm: Callable[[EventBatchProcessor, Any], Awaitable[object]] | None = None
                 ) -> None:
        self._settings = settings
        self._make_processor = make_processor
        self._make_sweeper = make_sweeper
        self._warm = warm
        self.warmed = asyncio.Event()
        """Set once the processor is built and warm (:mod:`streams.worker.warmup`), before the
        first batch is read."""
        self.sweeper: Sweeper | None = None
        self.processor: EventBatchProcessor | None = None
        worker = settings.worker
        config = RunnerConfig(name="events", topics=(settings.topics.events,),
                              batch_size=worker.batch_size, poll_timeout_s=worker.batch_within_s,
                              commit="offsets", pipeline_depth=PIPELINE_DEPTH,
                              restart=RESTART, stall_timeout_s=worker.stall_timeout_s)
        self.strategy: _Events = _Events(self)
        self.runner: Runner[EventBatch] = Runner(config, self.strategy, self._consumer,
                                                 self._producer)

    @property
    def group_id(self) -> str:
        return f"{self._settings.worker.app_id}.events"

    def _consumer(self) -> Any:
        worker = self._settings.worker
        return new_consumer(
            self._settings.kafka, group_id=self.group_id, client_id="churnpulse-events",
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=worker.batch_size,
            fetch_max_wait_ms=int(worker.batch_within_s * 1000),
            session_timeout_ms=int(worker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, worker.session_timeout_s / 3) * 1000))

    def _producer(self, transactional_id: str | None) -> Any:
        return new_producer(self._settings.kafka, acks="all", enable_idempotence=True,
                            linger_ms=0, max_batch_size=512 * 1024,
                            client_id="churnpulse-scores", partitioner=CachedPartitioner())

    async def run(self) -> None:
        """Consume until cancelled; on the way out, finish and commit what is in flight."""
        log.info("consuming %s as group %s", self._settings.topics.events, self.group_id)
        await self.runner.run()

    def assigned(self) -> list[int]:
        """Partitions of the events topic this worker owns now."""
        events = self._settings.topics.events
        return sorted(tp.partition for tp in self.runner.assignment() if tp.topic == events)

    async def drain(self) -> None:
        """Wait until every batch in flight is published and committed."""
        await self.runner.drain()

    async def sweep_loop(self, sweeper: Sweeper) -> None:
        """Every ``sweep.interval_s``: one sweep pass over the partitions owned now."""
        while True:
            await asyncio.sleep(self._settings.sweep.interval_s)
            try:
                sent = await sweeper.run_pass(self.assigned())
            except asyncio.CancelledError:
                raise
            except TransientError as exc:
                log.warning("sweep pass failed, retrying next pass: %s", exc)
                continue
            except Exception:
                log.exception("sweep pass failed; retrying next pass")
                continue
            if sent:
                log.info("sweep: re-scored %d quiet customers", sent)


class _Events(Strategy[EventBatch]):
    """Builds the processor (on the runner's producer) and the sweeper once clients are up."""

    def __init__(self, owner: EventConsumer) -> None:
        self._owner = owner
        self.inner: EventStrategy | None = None
        self._sweeping: asyncio.Task[None] | None = None

    async def on_start(self, runner: Runner[EventBatch]) -> None:
        owner = self._owner
        assert runner.sink is not None
        if self.inner is None:
            owner.processor = owner._make_processor(runner.sink)
            self.inner = EventStrategy(owner.processor)
        elif owner.processor is not None:  # a restart: publish through the new producer
            owner.processor.sink = runner.sink
        if owner._make_sweeper is not None and owner.processor is not None:
            owner.sweeper = owner.sweeper or owner._make_sweeper(owner.processor)
            self._sweeping = asyncio.create_task(owner.sweep_loop(owner.sweeper))
        if owner._warm is not None and owner.processor is not None:
            await owner._warm(owner.processor, runner.producer)  # before the first batch
        settle_memory()  # everything is built: the collector off the hot path
        owner.warmed.set()

    def _strategy(self) -> EventStrategy:
        assert self.inner is not None
        return self.inner

    async def process(self, batch: Batch) -> EventBatch:
        return await self._strategy().process(batch)

    async def complete(self, batch: Batch, result: EventBatch) -> Sequence[OutRecord]:
        return await self._strategy().complete(batch, result)

    async def failed(self, batch: Batch, error: Exception) -> Sequence[OutRecord]:
        return await self._strategy().failed(batch, error)

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        log.info("events partitions assigned: %s",
                 sorted(tp.partition for tp in partitions) or "none")

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        if self.inner is not None:
            await self.inner.on_revoked(partitions)

    async def on_stop(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sweeping
            self._sweeping = None
