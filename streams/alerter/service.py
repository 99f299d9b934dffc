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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from aiokafka.structs import TopicPartition

from streams.alerter.health import serve_alerter_health
from streams.alerter.processor import AlertBatchProcessor, BatchResult, summary_line
from streams.errors import TransientError
from streams.kafka.clients import new_consumer, new_producer
from streams.kafka.publish import CachedPartitioner
from streams.kafka.runner import Runner, RunnerConfig
from streams.kafka.strategy import Batch, Strategy
from streams.kafka.topics import ensure_topics
from streams.observability.memory import settle_memory
from streams.observability.runtime import use_uvloop
from streams.records import OutRecord
from streams.redis.alert_store import RedisAlertStore, RedisFeatureReader
from streams.redis.client import check_cluster_replicas, make_redis
from streams.redis.feature_store import RedisFeatureStore
from streams.redis.retention_store import AdviceWatcher, advice_watcher
from streams.settings import Settings

log = logging.getLogger(__name__)
READY = "alerter ready"


def app_id(settings: Settings) -> str:
    return settings.alerts.app_id or settings.worker.app_id


class Alerter(Strategy[BatchResult]):
    """Consumes scores and publishes alerts and actions transactionally (see module doc).

    The strategy of a consumer runner (:mod:`streams.kafka.runner`) in transaction mode: one
    batch per fetched partition, the partitions of a fetch processed concurrently, each
    batch's outputs and next offset committed in one transaction of that partition's
    producer; an aborted transaction re-reads the batch after 0.5 s.
    """

    def __init__(self, settings: Settings, processor: AlertBatchProcessor,
                 advice: AdviceWatcher | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.advice = advice  # closed on stop, before the Redis client is
        self.dead_letter_topic = settings.topics.dead_letter
        self.committed_batches = 0
        self._began: dict[int, float] = {}
        self._processed: dict[int, float] = {}
        self._reporting: asyncio.Task[None] | None = None

    @property
    def group_id(self) -> str:
        return f"{app_id(self.settings)}.alerts"

    def transactional_id(self, partition: int) -> str:
        return f"{app_id(self.settings)}.alerts.{self.settings.topics.scores}.{partition}"

    def runner(self) -> Runner[BatchResult]:
        cfg, worker = self.settings.alerts, self.settings.worker
        config = RunnerConfig(name="alerter", topics=(self.settings.topics.scores,),
                              batch_size=cfg.batch_size, poll_timeout_s=cfg.batch_within_s,
                              commit="transaction", group_id=self.group_id,
                              per_partition=True, retry_backoff_s=0.5)
        kafka = self.settings.kafka

        def consumer() -> Any:
            return new_consumer(
                kafka, group_id=self.group_id, client_id="churnpulse-alerter",
                enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed", max_poll_records=cfg.batch_size,
                fetch_max_wait_ms=int(cfg.batch_within_s * 1000),
                session_timeout_ms=int(worker.session_timeout_s * 1000),
                heartbeat_interval_ms=int(min(3.0, worker.session_timeout_s / 3) * 1000))

        def producer(transactional_id: str | None) -> Any:
            partition = (transactional_id or "").rsplit(".", 1)[-1]
            # the default partitioner's partitions, each key's murmur2 (pure Python) computed
            # once: an alert and its action share the customer's key
            return new_producer(kafka, acks="all", enable_idempotence=True,
                                transactional_id=transactional_id, linger_ms=2,
                                max_batch_size=512 * 1024,
                                client_id=f"churnpulse-alerts-{partition}",
                                partitioner=CachedPartitioner(max_cached=100_000))

        return Runner(config, self, consumer, producer,
                      transactional_id=lambda tp: self.transactional_id(tp.partition))

    async def run(self) -> None:
        await self.processor.start()
        await self.runner().run()

    async def on_start(self, runner: Runner[BatchResult]) -> None:
        settle_memory()
        log.info("%s: consuming %s as group %s", READY, self.settings.topics.scores,
                 self.group_id)
        self._reporting = asyncio.create_task(self._report())

    async def process(self, batch: Batch) -> BatchResult:
        self._began.setdefault(batch.number, time.perf_counter())
        return await self.processor.process(batch.records)

    async def complete(self, batch: Batch, result: BatchResult) -> Sequence[OutRecord]:
        self._processed[batch.number] = time.perf_counter()
        return result.out

    async def failed(self, batch: Batch, error: Exception) -> Sequence[OutRecord]:
        # a bug: keep the records, move on (dead letters, committed)
        self._processed[batch.number] = time.perf_counter()
        return await super().failed(batch, error)

    async def committed(self, batch: Batch) -> None:
        self.committed_batches += 1
        now = time.perf_counter()
        began = self._began.pop(batch.number, now)
        processed = self._processed.pop(batch.number, now)
        totals = self.processor.totals
        totals.process_s += processed - began
        totals.commit_s += now - processed
        if self.committed_batches % 50 == 0:
            with contextlib.suppress(TransientError):
                await self.processor.store.save_segments(self.processor.segments)

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        log.info("scores partitions assigned: %s",
                 sorted(tp.partition for tp in partitions) or "none")
        self._began.clear()  # batches of an aborted transaction are read again
        self._processed.clear()
        self.processor.forget()  # another alerter may have written our customers meanwhile

    async def on_stop(self) -> None:
        if self._reporting is not None:
            self._reporting.cancel()
        if self.advice is not None:
            await self.advice.aclose()
        with contextlib.suppress(Exception):
            await self.processor.store.save_segments(self.processor.segments)
        log.info(summary_line(self.processor.totals))

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            log.info(summary_line(self.processor.totals))


def build_alerter(settings: Settings, client: aioredis.Redis) -> Alerter:
    prefix = settings.redis.key_prefix
    store = RedisAlertStore(client, prefix, settings.alerts.state_ttl_days * 86400.0)
    features = RedisFeatureReader(RedisFeatureStore(client, settings.features, prefix), client)
    config = settings.alerts.config
    advice = advice_watcher(settings, client)  # offers and learning policy (docs/retention.md)
    if advice is not None:
        config = replace(config, advice=advice.current)
    processor = AlertBatchProcessor(store, features, config, settings.topics,
                                    segment_share=settings.alerts.segment_share,
                                    partitions=settings.kafka.partitions)
    return Alerter(settings, processor, advice)


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
    check_cluster_replicas(settings.redis)  # its alert-state writes wait for replicas too
    use_uvloop()
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_main(settings))
    return 0

