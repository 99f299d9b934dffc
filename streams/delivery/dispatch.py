"""``churnpulse dispatch``: alerts from ``churn-alerts`` to signed webhooks and the log sink.

Per batch of alerts read by the dispatch consumer group (``isolation_level=read_committed``,
so an alerter's aborted transactions are never sent):

1. decode and validate each record; a malformed one goes to the dead-letter topic with the
   reason (``churn.dlq.*`` headers as for events) and nothing else waits for it;
2. deliver each alert to every dispatcher (:func:`alerts.dispatch.deliver_once`): skipped when
   the Redis set of delivered ids already holds it, POSTed with retries otherwise, remembered
   after a 2xx; one customer's alerts in order, up to ``webhook.concurrency`` customers at once;
3. dead-letter each alert a target gave up on (``webhook_failed`` after ``max_attempts``,
   ``webhook_rejected`` on a non-retryable status) with ``churn.dlq.target`` and
   ``churn.dlq.attempts``, and wait for the broker's acknowledgement;
4. only then commit the batch's offsets.

It runs on the consumer runner (:mod:`streams.kafka.runner`), which restarts it with backoff
when the consumer fails (``run_forever``).

A Redis outage is retried with backoff (the batch is re-run; ids delivered before the outage
are skipped, a POST whose bookkeeping failed is repeated and the receiver deduplicates it on
``Idempotency-Key``). Nothing escapes the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from alerts.dispatch import (
    Alert,
    BadAlert,
    DeliveredStore,
    Delivery,
    Dispatcher,
    LogSink,
    parse_alert,
)
from alerts.webhooks import (
    RetryPolicy,
    TransportError,
    WebhookDispatcher,
    WebhookTarget,
    deliver_independently,
)
from streams.dead_letter import dead_letter_record
from streams.delivery.health import serve_dispatch_health
from streams.errors import InvalidMessage, TransientError
from streams.kafka.clients import new_consumer, new_producer
from streams.kafka.runner import Backoff, Runner, RunnerConfig
from streams.kafka.strategy import Batch, Strategy
from streams.observability import metrics
from streams.records import OutRecord, RawRecord, RecordSink
from streams.redis.client import make_redis
from streams.settings import Settings

log = logging.getLogger(__name__)
BATCH = 100  # alerts per batch: bounds the time a batch can spend in retries
MAX_POLL_INTERVAL_MS = 30 * 60 * 1000


class AiohttpTransport:
    """:class:`alerts.webhooks.Transport` on one aiohttp client session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout_s: float) -> int:
        began = time.perf_counter()
        try:
            async with self._session.post(url, data=body, headers=dict(headers),
                                          timeout=aiohttp.ClientTimeout(total=timeout_s),
                                          allow_redirects=False) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            metrics.webhook_request(url, time.perf_counter() - began)


class RedisDeliveredStore:
    """:class:`alerts.dispatch.DeliveredStore`: one key per delivered alert, with a TTL.

    ``<prefix>:delivered:<dispatcher>:<alert_id>`` (each id expires on its own, so memory is
    bounded by the alerts of ``ttl_s``).
    """

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: float) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_ms = int(ttl_s * 1000)

    def key(self, dispatcher: str, alert_id: str) -> str:
        return f"{self._prefix}:delivered:{dispatcher}:{alert_id}"

    async def seen(self, dispatcher: str, alert_id: str) -> bool:
        try:
            return bool(await self._client.exists(self.key(dispatcher, alert_id)))
        except (RedisError, OSError) as exc:
            raise TransientError(f"redis: {exc}") from exc

    async def mark(self, dispatcher: str, alert_id: str) -> None:
        try:
            await self._client.set(self.key(dispatcher, alert_id), b"1", px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            raise TransientError(f"redis: {exc}") from exc


def _append_line(path: Path) -> Any:
    def write(line: str) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    return write


def build_dispatchers(settings: Settings, transport: AiohttpTransport) -> list[Dispatcher]:
    """The webhook targets of the settings, plus the log sinks that are switched on."""
    cfg = settings.webhook
    policy = RetryPolicy(cfg.max_attempts, cfg.backoff_base_s, cfg.backoff_max_s)
    rng = random.Random()  # jitter for the backoff, not security
    dispatchers: list[Dispatcher] = [
        WebhookDispatcher(WebhookTarget(t.name, t.url, t.secret.get_secret_value().encode(),
                                        t.min_severity, t.timeout_s, t.include_holdout),
                          transport, policy=policy, clock=time.time, random=rng.random)
        for t in cfg.targets
    ]
    if cfg.log_sink:
        alerts_log = logging.getLogger("churnpulse.alerts")
        dispatchers.append(LogSink(alerts_log.info, name="log"))
    if cfg.log_file is not None:
        dispatchers.append(LogSink(_append_line(cfg.log_file), name="log-file", json_lines=True))
    return dispatchers


class AlertDispatchService:
    """The dispatch consumer loop (see the module docstring)."""

    def __init__(self, settings: Settings, dispatchers: Sequence[Dispatcher],
                 store: DeliveredStore) -> None:
        self._settings = settings
        self._dispatchers = list(dispatchers)
        self._store = store
        self.counts: Counter[str] = Counter()
        self.batches = 0

    async def run_forever(self) -> None:
        """:meth:`run`, restarted with backoff when the consumer fails (broker unreachable, ...).

        Uncommitted alerts are read again after a restart; delivered ones are skipped.
        """
        await self._runner(Backoff(0.5, 30.0)).run()

    async def run(self) -> None:
        """Consume until cancelled (an error of the consumer propagates)."""
        await self._runner(None).run()

    def _runner(self, restart: Backoff | None) -> Runner[None]:
        settings = self._settings
        config = RunnerConfig(name="dispatch", topics=(settings.topics.alerts,),
                              batch_size=BATCH, poll_timeout_s=0.5, commit="offsets",
                              restart=restart)

        def consumer() -> Any:
            return new_consumer(
                settings.kafka, group_id=settings.webhook.consumer_group,
                client_id="churnpulse-dispatch", isolation_level="read_committed",
                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=BATCH,
                # a batch may wait out retries against a dead receiver (see docs/webhooks.md)
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
                session_timeout_ms=int(settings.worker.session_timeout_s * 1000),
                heartbeat_interval_ms=int(min(3.0, settings.worker.session_timeout_s / 3)
                                          * 1000))

        def producer(transactional_id: str | None) -> Any:
            return new_producer(settings.kafka, acks="all", enable_idempotence=True,
                                client_id="churnpulse-dispatch")

        return Runner(config, _DispatchStrategy(self), consumer, producer)

    async def process(self, records: Sequence[RawRecord], sink: RecordSink) -> None:
        """Deliver one batch; publish its dead letters; raise TransientError to be re-run."""
        dead: list[OutRecord] = []
        by_customer: dict[str, list[tuple[RawRecord, Alert]]] = {}
        for record in records:
            try:
                alert = decode_alert(record)
            except BadAlert as exc:
                self.counts["malformed"] += 1
                log.warning("malformed alert at %s[%d]@%d: %s", record.topic, record.partition,
                            record.offset, exc)
                dead.append(self._dead_letter(record, exc.code, exc.detail))
                continue
            by_customer.setdefault(alert.customer_id, []).append((record, alert))
        # each target on its own: a dead or slow receiver delays only its own deliveries
        queues = list(by_customer.values())
        outcomes = await deliver_independently(self._dispatchers, self._store,
                                               [[a for _, a in q] for q in queues],
                                               self._settings.webhook.concurrency)
        for q, i, name, delivery in outcomes:
            self._count(name, delivery)
            if delivery.status == "dead":
                record, alert = queues[q][i]
                log.warning("alert %s to %s dead-lettered: %s", alert.alert_id, name,
                            delivery.detail)
                dead.append(self._dead_letter(
                    record, delivery.code, delivery.detail,
                    [("churn.dlq.target", name.encode()),
                     ("churn.dlq.attempts", str(delivery.attempts).encode())]))
        if dead:
            await sink.publish(dead)
        self.batches += 1

    def _count(self, name: str, delivery: Delivery) -> None:
        self.counts[f"{name}.{delivery.status}"] += 1
        self.counts[delivery.status] += 1
        metrics.webhook_delivery(name, delivery.status, delivery.attempts)

    def _dead_letter(self, record: RawRecord, code: str, detail: str,
                     extra: list[tuple[str, bytes]] | None = None) -> OutRecord:
        return dead_letter_record(self._settings.topics.dead_letter, record,
                                  InvalidMessage(code, detail), time.time(), extra)


class _DispatchStrategy(Strategy[None]):
    """The dispatcher on the consumer runner: a batch is delivered (a
    :class:`~streams.errors.TransientError` re-runs it with backoff), its dead letters
    acknowledged, then committed; a batch that fails otherwise is dead-lettered whole."""

    def __init__(self, service: AlertDispatchService) -> None:
        self._service = service
        self._sink: RecordSink | None = None
        self.dead_letter_topic = service._settings.topics.dead_letter

    async def on_start(self, runner: Runner[None]) -> None:
        self._sink = runner.sink
        service = self._service
        log.info("dispatching %s as group %s to %s", service._settings.topics.alerts,
                 service._settings.webhook.consumer_group,
                 ", ".join(d.name for d in service._dispatchers) or "nothing")

    async def process(self, batch: Batch) -> None:
        assert self._sink is not None
        await self._service.process(batch.records, self._sink)

    def on_restart(self, error: Exception, delay_s: float) -> None:
        self._service.counts["restarts"] += 1


def decode_alert(record: RawRecord) -> Alert:
    """Decode one ``churn-alerts`` record, or raise :class:`~alerts.dispatch.BadAlert`."""
    if not record.value:
        raise BadAlert("empty", "the record has no value")
    try:
        obj = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise BadAlert("bad_json", f"not valid JSON ({exc})") from None
    return parse_alert(obj, record.value)


async def run_dispatch_async(settings: Settings) -> None:
    cfg = settings.redis
    client = make_redis(cfg)
    async with aiohttp.ClientSession(headers={"User-Agent": "churnpulse-webhooks/1"}) as http:
        store = RedisDeliveredStore(client, cfg.key_prefix, settings.webhook.delivered_ttl_s)
        health = await serve_dispatch_health(settings, client)  # /metrics /healthz /readyz
        service = AlertDispatchService(settings, build_dispatchers(settings,
                                                                   AiohttpTransport(http)), store)
        try:
            await service.run_forever()
        finally:
            if health is not None:
                await health.stop()
            await client.aclose()
            log.info("dispatch stopped: %s", dict(service.counts))


def run_dispatch(settings: Settings) -> int:
    """Blocking entry point of ``churnpulse dispatch`` (Ctrl-C / SIGTERM stop it)."""
    import signal

    from streams.kafka.topics import ensure_topics

    if not settings.webhook.targets and not settings.webhook.log_sink \
            and settings.webhook.log_file is None:
        print("churnpulse: nothing to dispatch to: set CHURN_WEBHOOK__TARGETS or enable the log"
              " sink (CHURN_WEBHOOK__LOG_SINK=true)", file=sys.stderr)
        return 2
    ensure_topics(settings.kafka, settings.topics)

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_dispatch_async(settings)

    asyncio.run(main())
    return 0
