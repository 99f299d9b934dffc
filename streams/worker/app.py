"""The Faust application: the worker's composition root.

``create_app(settings)`` wires the events hot path
(:class:`~streams.worker.consumer.EventConsumer`, a
batching aiokafka consumer, see its module for why it is not a Faust agent) with its Redis
feature store, model watcher, Kafka sink, the pending-observation store and churned set
(:mod:`streams.worker.scoring`) and the sweeper of quiet customers (:mod:`streams.worker.sweeper`),
and runs
it as a Faust task, so that the Faust worker owns the process: start-up, signals, graceful
shutdown, logging and timers. A timer publishes the sweep clocks of the partitions this worker
owns (``<prefix>:watermarks``): the learner resolves snapshots as negative by the slowest.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import faust

from streams.errors import TransientError
from streams.kafka.clients import faust_credentials
from streams.records import RecordSink
from streams.redis.churned import RedisChurnedCustomers
from streams.redis.client import make_redis
from streams.redis.feature_cache import CachedFeatureStore
from streams.redis.feature_store import RedisFeatureStore
from streams.redis.model_registry import ModelWatcher, RedisModelRegistry
from streams.redis.observation_store import RedisObservationStore
from streams.redis.watermark_board import RedisWatermarkBoard
from streams.settings import Settings
from streams.signing import signer_from_settings
from streams.worker.consumer import EventConsumer
from streams.worker.health import serve_worker_health
from streams.worker.processor import EventBatchProcessor
from streams.worker.sweeper import Sweeper
from streams.worker.warmup import WarmGate, warm_up
from streams.worker.watermarks import Watermarks

log = logging.getLogger(__name__)


class _RedisSide(NamedTuple):
    """The Redis-backed parts of one processor that the app's timers and warm-up reach too."""

    client: Any
    store: CachedFeatureStore
    observations: RedisObservationStore
    board: RedisWatermarkBoard


def create_app(settings: Settings) -> faust.App:
    """Build the worker's Faust app from the settings."""
    kafka, worker = settings.kafka, settings.worker
    app = faust.App(
        worker.app_id,
        broker=kafka.faust_broker_urls,
        broker_credentials=faust_credentials(kafka),  # TLS/SASL as every other client
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
        datadir=str(worker.data_dir),
        loghandlers=[],
    )

    sweep = settings.sweep
    built: list[_RedisSide] = []  # of each processor made, the newest last
    prefix = settings.redis.key_prefix
    policy = settings.model.policy
    signer = signer_from_settings(settings)  # checkpoints are verified before unpickling

    def make_processor(sink: RecordSink) -> EventBatchProcessor:
        client = make_redis(settings.redis)
        # write-behind cache of the owned customers' states (streams.redis.feature_cache)
        side = _RedisSide(client,
                          CachedFeatureStore(RedisFeatureStore(client, settings.features, prefix),
                                             client, settings.features),
                          RedisObservationStore(client, prefix, policy),
                          RedisWatermarkBoard(client, prefix))
        built.append(side)
        return EventBatchProcessor(
            store=side.store,
            models=ModelWatcher(RedisModelRegistry(client, prefix, signer),
                                poll_s=settings.model.poll_s),
            sink=sink,
            topics=settings.topics,
            rescore_after_s=sweep.rescore_after_s if sweep.enabled else None,
            watermarks=Watermarks(sweep),
            observations=side.observations,
            policy=policy,
            churned=RedisChurnedCustomers(client, prefix),
            limits=settings.input.limits,
        )

    def make_sweeper(processor: EventBatchProcessor) -> Sweeper:
        assert processor.watermarks is not None
        return Sweeper(built[-1].store, processor, processor.watermarks, sweep)

    async def warm(processor: EventBatchProcessor, producer: object) -> None:
        """The hot path run once before the first batch, changing no state
        (:mod:`streams.worker.warmup`); Faust says Ready after it (:class:`WarmGate`)."""
        side = built[-1]
        warmed = await warm_up(processor, side.client, side.store, side.observations, producer)
        log.info("events path warmed in %.1f ms (%s)%s", sum(warmed.ms.values()),
                 ", ".join(f"{k} {v:.1f}" for k, v in warmed.ms.items()),
                 f"; not warmed: {warmed.failed}" if warmed.failed else "")

    events = EventConsumer(settings, make_processor, make_sweeper if sweep.enabled else None,
                           warm)
    app.service(WarmGate(events.warmed))  # type: ignore[arg-type]  # Faust takes instances

    @app.task  # type: ignore[untyped-decorator]
    async def consume_events() -> None:
        await events.run()

    servers: list[object] = []

    @app.task  # type: ignore[untyped-decorator]
    async def serve_health() -> None:  # /metrics, /healthz, /readyz (streams.worker.health)
        servers.append(await serve_worker_health(settings, events))

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def log_totals() -> None:
        if events.processor is not None:
            t = events.processor.totals
            o = events.processor.observer.totals
            log.info("totals: records=%d applied=%d scores=%d dead_lettered=%d late=%d "
                     "retries=%d model=%s observed=%d skipped_churned=%d returned=%d "
                     "unscored=%d", t.records, t.applied, t.scores, t.dead_lettered, t.late,
                     t.retries, t.last_model_version, o.recorded, o.skipped_churned,
                     o.returned, t.unscored)
        if events.sweeper is not None:
            s = events.sweeper.stats
            log.info("sweeper: passes=%d rescored=%d skipped=%d", s.passes, s.rescored,
                     s.skipped)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]
    async def publish_watermarks() -> None:
        processor = events.processor
        if processor is None or processor.watermarks is None or not built:
            return
        wall = time.time()
        marks = {p: mark for p in events.assigned()
                 if (mark := processor.watermarks.sweep_time(p, wall)) is not None}
        try:
            await built[-1].board.publish(marks)
        except TransientError as exc:
            log.warning("could not publish watermarks: %s", exc)
        except Exception:  # a timer that raises would stop for good
            log.exception("publishing watermarks failed; retrying at the next tick")

    return app
