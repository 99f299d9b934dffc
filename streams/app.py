"""The Faust application: wiring of topics, the event agent and its resources.

``create_app(settings)`` is the composition root of a worker. The event agent runs with
``concurrency=1`` (one writer per customer key; Faust may otherwise commit an offset past a
message still in flight) and takes batches with ``stream.take_events``, which acknowledges the
events of a batch only after the loop body returned, i.e. after Redis confirmed the features and
the broker confirmed the scores. The body never raises: transient failures are retried inside
:class:`~streams.processor.EventBatchProcessor`, and a batch that fails for any other reason is
sent to the dead-letter topic, original bytes and reason included, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Sequence
from typing import Any

import faust
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import EventT

from streams.errors import InvalidMessage, TransientError
from streams.feature_store import RedisFeatureStore
from streams.model_registry import ModelWatcher, RedisModelRegistry
from streams.processor import EventBatchProcessor, OutRecord, RawRecord
from streams.settings import Settings

log = logging.getLogger(__name__)


class FaustProducerSink:
    """A :class:`~streams.processor.RecordSink` on the Faust app's producer."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def publish(self, records: Sequence[OutRecord]) -> None:
        producer = self._app.producer
        try:
            # enqueue in order (per-key order is kept), then wait for every acknowledgement
            acks = [await producer.send(r.topic, r.key, r.value, None, None, r.headers)
                    for r in records]
            await asyncio.gather(*acks)
        except (KafkaError, ProducerSendError) as exc:
            raise TransientError(f"kafka publish failed: {exc!r}") from exc


def make_redis(settings: Settings) -> aioredis.Redis:
    cfg = settings.redis
    password = cfg.password.get_secret_value() if cfg.password else None
    return aioredis.Redis.from_url(
        cfg.url, password=password, socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.socket_timeout_s, health_check_interval=30,
    )


def to_raw(event: EventT[Any]) -> RawRecord:
    msg = event.message
    return RawRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else None,
    )


def create_app(settings: Settings) -> faust.App:
    """Build the worker's Faust app from the settings."""
    kafka, worker, topics = settings.kafka, settings.worker, settings.topics
    credentials = None
    if kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password:
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
        )
    app = faust.App(
        worker.app_id,
        broker=kafka.faust_broker_urls,
        broker_credentials=credentials,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        web_enabled=worker.web_port > 0,
        web_port=worker.web_port or 6066,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=min(3.0, worker.session_timeout_s / 3),
        broker_commit_interval=worker.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,
        stream_buffer_maxsize=max(4096, 4 * worker.batch_size),
        datadir=str(worker.data_dir),
        loghandlers=[],
    )
    events_topic = app.topic(topics.events, key_type=bytes, value_type=bytes,
                             partitions=kafka.partitions)
    outputs = [app.topic(name, key_type=bytes, value_type=bytes, partitions=kafka.partitions)
               for name in (topics.scores, topics.dead_letter)]
    state: dict[str, Any] = {}

    async def build_processor() -> EventBatchProcessor:
        for topic in outputs:
            await topic.maybe_declare()
        client = make_redis(settings)
        registry = RedisModelRegistry(client, settings.redis.key_prefix)
        processor = EventBatchProcessor(
            store=RedisFeatureStore(client, settings.features, settings.redis.key_prefix),
            models=ModelWatcher(registry),
            sink=FaustProducerSink(app),
            topics=topics,
        )
        state["processor"] = processor
        return processor

    @app.agent(events_topic, concurrency=1, name="score-events")
    async def score_events(stream: AsyncIterable[Any]) -> None:
        processor = state.get("processor") or await build_processor()
        async for batch in stream.take_events(worker.batch_size,  # type: ignore[attr-defined]
                                              within=worker.batch_within_s):
            records = [to_raw(event) for event in batch]
            await process_or_dead_letter(processor, records)

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def log_totals() -> None:
        processor = state.get("processor")
        if processor is not None:
            t = processor.totals
            log.info("totals: records=%d applied=%d scores=%d dead_lettered=%d late=%d "
                     "retries=%d model=%s", t.records, t.applied, t.scores, t.dead_lettered,
                     t.late, t.retries, t.last_model_version)

    return app


async def process_or_dead_letter(processor: EventBatchProcessor,
                                 records: list[RawRecord]) -> None:
    """Process a batch; if it fails unexpectedly, dead-letter every record of it instead.

    This is the agent's last line of defence: nothing may escape it, or Faust would acknowledge
    the batch with nothing recorded anywhere.
    """
    try:
        await processor.process(records)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("batch of %d records failed; sending it to the dead-letter topic",
                      len(records))
        error = InvalidMessage("processing_failed", f"{type(exc).__name__}: {exc}")
        await processor.dead_letter(records, error)
