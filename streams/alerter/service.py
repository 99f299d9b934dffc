"""The alerter process (``churnpulse alerter``): churn-scores → churn-alerts + retention-actions.

Exactly one alert per crossing in the topic, across SIGKILL:

* the consumer (group ``<app_id>.alerts``) reads ``churn-scores``; each fetched partition's
  records are one batch, handled by :class:`~streams.alerter.processor.AlertBatchProcessor`,
  which writes the customers' new records (risk state, applied offset, outbox) to Redis *before*
  anything is published;
* the batch's alerts, actions and dead letters, and the next offset of the partition, are
  published in ONE Kafka transaction (``send_offsets_to_transaction``). Readers of the output
  topics use ``isolation_level="read_committed"`` and see a batch entirely or not at all;
* a crash before the commit leaves the offsets where they were: the next owner re-reads the
  batch, finds the scores applied in Redis and re-emits the outbox records byte for byte
  (:mod:`alerts.batch`), so the ids committed are those of an uninterrupted run.

One transactional producer per input partition (``<app_id>.alerts.<topic>.<partition>``), the
pre-KIP-447 pattern: aiokafka's ``send_offsets_to_transaction`` takes a group id, not the
consumer's generation, so fencing by consumer generation is not available. A new owner of a
partition initialises the same transactional id, which aborts the previous owner's open
transaction and fences it. Revoked partitions finish their batch before they are given up, and
records fetched before a revocation are dropped, not processed, once the partition is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.alerter.health import serve_alerter_health
from streams.alerter.processor import AlertBatchProcessor, BatchResult, summary_line
from streams.dead_letter import dead_letter_record
from streams.errors import InvalidMessage, TransientError
from streams.kafka.topics import ensure_topics
from streams.records import RawRecord, retry_transient
from streams.redis.alert_store import RedisAlertStore, RedisFeatureReader
from streams.redis.client import make_redis
from streams.redis.feature_store import RedisFeatureStore
from streams.settings import Settings
from streams.worker.consumer import kafka_client_options, to_raw

log = logging.getLogger(__name__)
READY = "alerter ready"


def app_id(settings: Settings) -> str:
    return settings.alerts.app_id or settings.worker.app_id


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, alerter: Alerter) -> None:
        self._alerter = alerter

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._alerter.lock:  # the batch in flight commits first
            for tp in revoked:
                await self._alerter.drop_producer(tp.partition)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("scores partitions assigned: %s",
                 sorted(tp.partition for tp in assigned) or "none")


class Alerter:
    """Consumes scores and publishes alerts and actions transactionally (see module doc)."""

    def __init__(self, settings: Settings, processor: AlertBatchProcessor) -> None:
        self.settings = settings
        self.processor = processor
        self.lock = asyncio.Lock()
        self._producers: dict[int, AIOKafkaProducer] = {}
        self.committed_batches = 0

    @property
    def group_id(self) -> str:
        return f"{app_id(self.settings)}.alerts"

    def transactional_id(self, partition: int) -> str:
        return f"{app_id(self.settings)}.alerts.{self.settings.topics.scores}.{partition}"

    async def producer(self, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get(partition)
        if producer is None:
            producer = AIOKafkaProducer(
                **kafka_client_options(self.settings), acks="all", enable_idempotence=True,
                transactional_id=self.transactional_id(partition), linger_ms=2,
                max_batch_size=512 * 1024, client_id=f"churnpulse-alerts-{partition}")
            await producer.start()
            self._producers[partition] = producer
        return producer

    async def drop_producer(self, partition: int) -> None:
        producer = self._producers.pop(partition, None)
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def run(self) -> None:
        cfg = self.settings.alerts
        consumer = AIOKafkaConsumer(
            **kafka_client_options(self.settings), group_id=self.group_id,
            client_id="churnpulse-alerter", enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            max_poll_records=cfg.batch_size, fetch_max_wait_ms=int(cfg.batch_within_s * 1000),
            session_timeout_ms=int(self.settings.worker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, self.settings.worker.session_timeout_s / 3)
                                      * 1000))
        await self.processor.start()
        consumer.subscribe([self.settings.topics.scores], listener=_Rebalance(self))
        await consumer.start()
        log.info("%s: consuming %s as group %s", READY, self.settings.topics.scores,
                 self.group_id)
        reporting = asyncio.create_task(self._report())
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=int(cfg.batch_within_s * 1000),
                                                 max_records=cfg.batch_size)
                if not fetched:
                    continue
                async with self.lock:
                    owned = consumer.assignment()  # current: revocations wait for the lock
                    await asyncio.gather(*(self._partition(consumer, tp, msgs)
                                           for tp, msgs in fetched.items()
                                           if msgs and tp in owned))
        finally:
            reporting.cancel()
            for partition in list(self._producers):
                await self.drop_producer(partition)
            await consumer.stop()
            with contextlib.suppress(Exception):
                await self.processor.store.save_segments(self.processor.segments)
            log.info(summary_line(self.processor.totals))

    async def _partition(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                         msgs: list[Any]) -> None:
        records = [to_raw(m) for m in msgs]
        began = time.perf_counter()
        result = await self._process(records)
        processed = time.perf_counter()
        try:
            producer = await self.producer(tp.partition)
            async with producer.transaction():
                for r in result.out:
                    await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                await producer.send_offsets_to_transaction({tp: records[-1].offset + 1},
                                                           self.group_id)
        except asyncio.CancelledError:
            raise
        except KafkaError as exc:
            # aborted: re-read the batch (its state is in Redis, the outbox re-emits it)
            log.warning("transaction of %s failed, re-reading from offset %d: %r",
                        tp, records[0].offset, exc)
            await self.drop_producer(tp.partition)
            consumer.seek(tp, records[0].offset)
            await asyncio.sleep(0.5)  # back off before the partition is fetched again
            return
        self.committed_batches += 1
        totals = self.processor.totals
        totals.process_s += processed - began
        totals.commit_s += time.perf_counter() - processed
        if self.committed_batches % 50 == 0:
            with contextlib.suppress(TransientError):
                await self.processor.store.save_segments(self.processor.segments)

    async def _process(self, records: list[RawRecord]) -> BatchResult:
        def on_retry(attempt: int, exc: TransientError) -> None:
            log.warning("dependency unavailable (attempt %d), retrying: %s", attempt, exc)

        try:
            return await retry_transient(lambda: self.processor.process(records),
                                         on_retry=on_retry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: keep the records, move on (dead letter, committed)
            log.exception("alert batch of %d records failed; dead-lettering it", len(records))
            error = InvalidMessage("processing_failed", f"{type(exc).__name__}: {exc}")
            topic, now = self.settings.topics.dead_letter, time.time()
            return BatchResult([dead_letter_record(topic, r, error, now) for r in records], 0, 0)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            log.info(summary_line(self.processor.totals))


def build_alerter(settings: Settings, client: aioredis.Redis) -> Alerter:
    prefix = settings.redis.key_prefix
    store = RedisAlertStore(client, prefix, settings.alerts.state_ttl_days * 86400.0)
    features = RedisFeatureReader(RedisFeatureStore(client, settings.features, prefix), client)
    processor = AlertBatchProcessor(store, features, settings.alerts.config, settings.topics,
                                    segment_share=settings.alerts.segment_share)
    return Alerter(settings, processor)


async def _main(settings: Settings) -> None:
    client = make_redis(settings.redis)
    alerter = build_alerter(settings, client)
    health = await serve_alerter_health(settings, alerter, client)  # /metrics /readyz
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await alerter.run()
    finally:
        if health is not None:
            await health.stop()
        await client.aclose()


def run_alerter(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    ensure_topics(settings.kafka, settings.topics)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_main(settings))
    return 0
