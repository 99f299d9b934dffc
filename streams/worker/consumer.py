"""The events hot path: a batching aiokafka consumer that runs inside the Faust worker.

Why not a Faust agent: measured on this 2-core machine, a Faust agent that does nothing with
its messages (``stream.take_events(500)``) tops out at ~9,600 messages/s (~12,400 without the
Monitor sensor), while a plain aiokafka ``getmany`` loop reads ~545,000/s. Faust's per-message
machinery (event objects, per-message acks, sensors, channel queues) alone would exceed the
whole per-event budget of the 15,000 events/s target. So Faust runs the worker (lifecycle,
signals, logging, timers, the learner's low-volume agents) and this runner owns the events topic.

Guarantees, per batch of up to ``batch_size`` records:

* offsets are committed only after Redis confirmed the features *and* the broker acknowledged
  the scores and dead letters of the batch (at-least-once; effects are idempotent);
* batches are applied to Redis, published and committed in the order they were read;
* the next batch is decoded (and fetched) while the previous one waits on Redis, and scored
  while the next one waits: at most ``PIPELINE_DEPTH`` batches are in flight;
* the observation snapshots of a batch (:mod:`streams.worker.scoring`) are recorded before its
  scores are published, and so before its offsets are committed;
* nothing escapes: a batch that fails for an unexpected reason goes to the dead-letter topic
  whole, with the reason, and is committed (see ``process_or_dead_letter``).

Beside the loop runs the sweeper (:mod:`streams.worker.sweeper`), every ``sweep.interval_s``, over
the
partitions this worker owns: it re-scores customers who went quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from streams.errors import InvalidMessage, TransientError
from streams.records import OutRecord, RawRecord, RecordSink
from streams.settings import Settings
from streams.worker.processor import Batch, BatchStats, EventBatchProcessor
from streams.worker.sweeper import Sweeper

log = logging.getLogger(__name__)
PIPELINE_DEPTH = 2


class AIOKafkaSink:
    """:class:`~streams.records.RecordSink` on an idempotent aiokafka producer."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish(self, records: Sequence[OutRecord]) -> None:
        send = self._producer.send
        try:
            acks = [await send(r.topic, r.value, key=r.key, headers=r.headers) for r in records]
            await asyncio.gather(*acks)
        except KafkaError as exc:
            raise TransientError(f"kafka publish failed: {exc!r}") from exc


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_list,
                               "security_protocol": kafka.security_protocol}
    if kafka.sasl_mechanism:
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=(kafka.sasl_password.get_secret_value()
                                 if kafka.sasl_password else None),
        )
    return options


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(**kafka_client_options(settings), acks="all",
                            enable_idempotence=True, linger_ms=5,
                            max_batch_size=512 * 1024, client_id="churnpulse-scores")


def to_raw(msg: Any) -> RawRecord:
    return RawRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.timestamp)


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move to another worker, finish and commit what is in flight."""

    def __init__(self, runner: EventConsumer) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._runner.drain()
        processor = self._runner.processor
        if processor is not None and processor.watermarks is not None:
            processor.watermarks.forget([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("events partitions assigned: %s",
                 sorted(tp.partition for tp in assigned) or "none")


class EventConsumer:
    """Reads the events topic in batches and drives an :class:`EventBatchProcessor`."""

    def __init__(self, settings: Settings,
                 make_processor: Callable[[RecordSink], EventBatchProcessor],
                 make_sweeper: Callable[[EventBatchProcessor], Sweeper] | None = None) -> None:
        self._settings = settings
        self._make_processor = make_processor
        self._make_sweeper = make_sweeper
        self.sweeper: Sweeper | None = None
        self._inflight: deque[asyncio.Task[None]] = deque()
        self._consumer: AIOKafkaConsumer | None = None
        self.processor: EventBatchProcessor | None = None

    @property
    def group_id(self) -> str:
        return f"{self._settings.worker.app_id}.events"

    async def run(self) -> None:
        """Consume until cancelled; on the way out, finish and commit what is in flight."""
        worker = self._settings.worker
        consumer = AIOKafkaConsumer(
            **kafka_client_options(self._settings),
            group_id=self.group_id,
            client_id="churnpulse-events",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=worker.batch_size,
            fetch_max_wait_ms=int(worker.batch_within_s * 1000),
            session_timeout_ms=int(worker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, worker.session_timeout_s / 3) * 1000),
        )
        producer = make_producer(self._settings)
        self._consumer = consumer
        await producer.start()
        processor = self.processor = self._make_processor(AIOKafkaSink(producer))
        consumer.subscribe([self._settings.topics.events], listener=_Revocations(self))
        await consumer.start()
        log.info("consuming %s as group %s", self._settings.topics.events, self.group_id)
        sweeping: asyncio.Task[None] | None = None
        if self._make_sweeper is not None:
            self.sweeper = self._make_sweeper(processor)
            sweeping = asyncio.create_task(self._sweep_loop(self.sweeper))
        try:
            applied: asyncio.Future[None] | None = None
            while True:
                fetched = await consumer.getmany(timeout_ms=int(worker.batch_within_s * 1000),
                                                 max_records=worker.batch_size)
                records = [to_raw(m) for msgs in fetched.values() for m in msgs]
                if not records:
                    continue
                offsets = {tp: msgs[-1].offset + 1 for tp, msgs in fetched.items() if msgs}
                try:
                    batch = processor.prepare(records)
                except Exception as exc:  # a bug in decoding: keep the records, move on
                    log.exception("decoding a batch failed; dead-lettering it")
                    batch = Batch(records, BatchStats(records=len(records)))
                    batch.failure = exc
                while len(self._inflight) >= PIPELINE_DEPTH:
                    await self._wait_for(self._inflight[0])
                previous = self._inflight[-1] if self._inflight else None
                gate, applied = applied, asyncio.get_running_loop().create_future()
                task = asyncio.create_task(
                    self._complete(processor, batch, offsets, gate, applied, previous))
                self._inflight.append(task)
                task.add_done_callback(self._forget)
        finally:
            if sweeping is not None:
                sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sweeping
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.drain(), timeout=30)
            await consumer.stop()
            await producer.stop()

    async def _sweep_loop(self, sweeper: Sweeper) -> None:
        """Every ``sweep.interval_s``: one sweep pass over the partitions owned now."""
        events = self._settings.topics.events
        while True:
            await asyncio.sleep(self._settings.sweep.interval_s)
            consumer = self._consumer
            if consumer is None:
                continue
            partitions = sorted(tp.partition for tp in consumer.assignment()
                                if tp.topic == events)
            try:
                sent = await sweeper.run_pass(partitions)
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

    def assigned(self) -> list[int]:
        """Partitions of the events topic this worker owns now."""
        consumer, events = self._consumer, self._settings.topics.events
        if consumer is None:
            return []
        return sorted(tp.partition for tp in consumer.assignment() if tp.topic == events)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._inflight.remove(task)

    async def drain(self) -> None:
        """Wait until every batch in flight is published and committed."""
        while self._inflight:
            await self._wait_for(self._inflight[-1])

    async def _wait_for(self, task: asyncio.Task[None]) -> None:
        """Wait for a batch task without cancelling it; forget it once done.

        A task can be done while its done-callback (``_forget``) is still queued: awaiting a
        done task does not yield, so a loop waiting on it would spin forever and the queued
        callback would never run (a worker was found at 100% CPU in exactly this loop).
        """
        if task.done():
            self._forget(task)
            return
        await asyncio.shield(task)

    async def _complete(self, processor: EventBatchProcessor, batch: Batch,
                        offsets: dict[TopicPartition, int], gate: asyncio.Future[None] | None,
                        applied: asyncio.Future[None],
                        previous: asyncio.Task[None] | None) -> None:
        try:
            if batch.failure is not None:
                raise batch.failure
            if gate is not None:
                await gate  # Redis sees batches in order
            try:
                await processor.apply(batch)
            finally:
                applied.set_result(None)
            processor.score(batch)
            await processor.observe(batch)  # snapshots durable before the commit
            if previous is not None:
                await previous  # publish and commit in order
            await processor.publish(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("batch of %d records failed; sending it to the dead-letter topic",
                          len(batch.records))
            error = InvalidMessage("processing_failed", f"{type(exc).__name__}: {exc}")
            await processor.dead_letter(batch.records, error)
        await self._commit(offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # the partitions moved on; the next owner re-reads them (effects are idempotent)
            log.warning("offset commit failed, the batch will be re-read: %s", exc)
