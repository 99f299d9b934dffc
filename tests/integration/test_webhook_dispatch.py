"""``churnpulse dispatch`` on the real broker and Redis, with signature-checking receivers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.delivery.dispatch import (
    AiohttpTransport,
    AlertDispatchService,
    RedisDeliveredStore,
    build_dispatchers,
)
from streams.settings import Settings, load_settings
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.integration
SECRET = b"it-secret-0123456789"


def alert(customer: str, n: int, severity: str = "high") -> dict[str, Any]:
    episode = f"{customer}:{1_795_000_000_000 + n}"
    return {"schema_version": 1, "alert_id": f"{episode}:{severity}", "kind": "opened",
            "customer_id": customer, "episode_id": episode, "severity": severity,
            "previous_severity": None, "score": 0.8, "previous_score": 0.4,
            "model_version": "3-logreg", "score_id": f"{customer}:e-{n}:3-logreg",
            "ts": "2026-11-30T10:00:00.000+00:00", "processed_at": "2026-11-30T10:00:01.000+00:00",
            "source_timestamp_ms": 1_795_000_000_000, "drivers": [], "summary": "sessions fell",
            "lifecycle_stage": "at_risk", "segment": "power users",
            "recommended_action": "csm_call", "team": "csm", "sla_hours": 24.0,
            "holdout": False, "customer_value": "high"}


async def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, 2, 1) for n in names])
    finally:
        admin.close()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


def settings_for(bootstrap: str, redis_url: str, prefix: str, tag: str,
                 receivers: Sequence[Receiver], *, group: str | None = None,
                 max_attempts: int = 4) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap}, redis={"url": redis_url, "key_prefix": prefix},
        topics={"alerts": f"alerts-{tag}", "dead_letter": f"dlq-{tag}"},
        worker={"session_timeout_s": 6},
        webhook={"targets": [{"name": f"hook{i}", "url": r.url, "secret": SECRET.decode(),
                              "allow_insecure_http": True}  # receivers on 127.0.0.1
                             for i, r in enumerate(receivers)],
                 "consumer_group": group or f"dispatch-{tag}", "max_attempts": max_attempts,
                 "backoff_base_s": 0.05, "backoff_max_s": 0.2, "log_sink": False})


@contextlib.asynccontextmanager
async def running(settings: Settings, client: aioredis.Redis) -> AsyncIterator[
        AlertDispatchService]:
    async with aiohttp.ClientSession() as http:
        store = RedisDeliveredStore(client, settings.redis.key_prefix, 3600)
        service = AlertDispatchService(settings, build_dispatchers(settings,
                                                                   AiohttpTransport(http)), store)
        task = asyncio.create_task(service.run())
        try:
            yield service
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def publish(bootstrap: str, topic: str, records: Sequence[bytes | dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            value = record if isinstance(record, bytes) else orjson.dumps(record)
            key = b"c-x" if isinstance(record, bytes) else str(record["customer_id"]).encode()
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def publish_aborted(bootstrap: str, topic: str, record: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, orjson.dumps(record),
                                     key=str(record["customer_id"]).encode())
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, n: int, timeout_s: float = 30) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < n:
            assert time.monotonic() < deadline, f"{topic}: {len(got)} of {n} records"
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(msgs)
    finally:
        await consumer.stop()
    return got


async def test_every_alert_arrives_signed_and_exactly_once_at_every_target(
        kafka_bootstrap: str, redis_url: str, key_prefix: str, aredis: aioredis.Redis,
        tag: str) -> None:
    alerts = [alert(f"c-{i % 4}", i) for i in range(12)]
    flaky = {alerts[1]["alert_id"]: 2, alerts[5]["alert_id"]: 3}  # fail the first K attempts
    receivers = [await Receiver(SECRET, fail_first=dict(flaky)).start(),
                 await Receiver(SECRET).start()]
    settings = settings_for(kafka_bootstrap, redis_url, key_prefix, tag, receivers)
    create_topics(kafka_bootstrap, [settings.topics.alerts, settings.topics.dead_letter])
    ids = {a["alert_id"] for a in alerts}
    try:
        await publish_aborted(kafka_bootstrap, settings.topics.alerts, alert("c-aborted", 99))
        # every alert twice: the alerter's at-least-once output (a retry, a re-run)
        await publish(kafka_bootstrap, settings.topics.alerts, [*alerts, *alerts])
        async with running(settings, aredis) as service:
            await eventually(lambda: all(set(r.processed) == ids for r in receivers), 60,
                             "every alert at both receivers")
            await eventually(lambda: service.counts["duplicate"] == 2 * len(alerts), 30,
                             "the second copies skipped")
            # published again later, after delivery: still not POSTed again
            await publish(kafka_bootstrap, settings.topics.alerts, alerts[:3])
            await eventually(lambda: service.counts["duplicate"] == 2 * len(alerts) + 6, 30,
                             "the late copies skipped")
        # a new consumer group re-reads the whole topic: the Redis set of delivered ids holds
        group = f"dispatch-again-{tag}"
        again = settings_for(kafka_bootstrap, redis_url, key_prefix, tag, receivers, group=group)
        async with running(again, aredis) as service:
            await eventually(lambda: service.counts["duplicate"] == 2 * (2 * len(alerts) + 3),
                             60, "a re-read of the topic deduplicated")
    finally:
        for r in receivers:
            await r.stop()
    for r in receivers:
        assert r.bad_signatures == []
        assert set(r.accepted) == ids and set(r.accepted.values()) == {1}  # exactly once
        assert "c-aborted:1795000000099:high" not in r.attempts  # read_committed
        assert {orjson.loads(b)["alert_id"] for b in r.processed.values()} == ids
    assert receivers[0].attempts[alerts[1]["alert_id"]] == 3
    assert receivers[0].attempts[alerts[5]["alert_id"]] == 4
    assert await aredis.exists(f"{key_prefix}:delivered:hook0:{alerts[0]['alert_id']}") == 1


async def test_after_n_failures_the_alert_is_dead_lettered_with_the_reason(
        kafka_bootstrap: str, redis_url: str, key_prefix: str, aredis: aioredis.Redis,
        tag: str) -> None:
    alerts = [alert("c-1", 1), alert("c-2", 2, "critical"), alert("c-3", 3)]
    doomed = alerts[1]["alert_id"]
    receiver = await Receiver(SECRET, always_fail={doomed}).start()
    settings = settings_for(kafka_bootstrap, redis_url, key_prefix, tag, [receiver],
                            max_attempts=3)
    create_topics(kafka_bootstrap, [settings.topics.alerts, settings.topics.dead_letter])
    try:
        await publish(kafka_bootstrap, settings.topics.alerts, [*alerts, b"{not json"])
        async with running(settings, aredis) as service:
            dead = await read_all(kafka_bootstrap, settings.topics.dead_letter, 2)
            await eventually(lambda: service.batches >= 1 and service.counts["dead"] == 1, 30,
                             "the batch finished")
            committed = await _committed(kafka_bootstrap, settings)
    finally:
        await receiver.stop()
    by_code = {dict(m.headers)["churn.dlq.code"].decode(): m for m in dead}
    assert set(by_code) == {"webhook_failed", "bad_json"}
    failed = by_code["webhook_failed"]
    headers = {k: v.decode() for k, v in failed.headers}
    assert orjson.loads(failed.value)["alert_id"] == doomed  # the original bytes
    assert failed.key == b"c-2"
    assert headers["churn.dlq.target"] == "hook0" and headers["churn.dlq.attempts"] == "3"
    assert "gave up after 3 attempts" in headers["churn.dlq.reason"]
    assert "HTTP 503" in headers["churn.dlq.reason"]
    assert headers["churn.dlq.topic"] == settings.topics.alerts
    assert by_code["bad_json"].value == b"{not json"
    assert receiver.attempts[doomed] == 3
    assert set(receiver.processed) == {alerts[0]["alert_id"], alerts[2]["alert_id"]}
    assert sum(committed.values()) == 4  # committed only once delivered or dead-lettered
    assert not await aredis.exists(f"{key_prefix}:delivered:hook0:{doomed}")


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def _committed(bootstrap: str, settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap,
                                group_id=settings.webhook.consumer_group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            offsets = {p: await consumer.committed(TopicPartition(settings.topics.alerts, p))
                       or 0 for p in (0, 1)}
            if sum(offsets.values()) == 4 or time.monotonic() > deadline:
                return offsets
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def test_churnpulse_dispatch_command_delivers_and_logs(
        kafka_bootstrap: str, redis_url: str, key_prefix: str, aredis: aioredis.Redis,
        tag: str, tmp_path: Path) -> None:
    receiver = await Receiver(SECRET).start()
    topics = {k: f"{k}-{tag}" for k in ("events", "labels", "scores", "alerts", "dead_letter",
                                        "model_events", "retention_actions", "alert_outcomes")}
    env = dict(os.environ)
    env.update({f"CHURN_TOPICS__{k.upper()}": v for k, v in topics.items()})
    journal = tmp_path / "alerts.jsonl"
    env.update({
        "CHURN_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, "CHURN_REDIS__URL": redis_url,
        "CHURN_REDIS__KEY_PREFIX": key_prefix, "CHURN_KAFKA__PARTITIONS": "2",
        "CHURN_WEBHOOK__CONSUMER_GROUP": f"dispatch-{tag}",
        "CHURN_WEBHOOK__TARGETS": orjson.dumps([{"name": "crm", "url": receiver.url,
                                                 "secret": SECRET.decode(),
                                                 "allow_insecure_http": True}]).decode(),
        "CHURN_WEBHOOK__LOG_FILE": str(journal)})
    log = tmp_path / "dispatch.log"
    proc = start_cli(["dispatch"], env, log)
    alerts = [alert("c-1", 1), alert("c-2", 2, "critical")]
    try:
        await eventually(lambda: b"dispatching" in log.read_bytes() or proc.poll() is not None,
                         60, "the dispatcher to start")
        assert proc.poll() is None, log.read_text()
        await publish(kafka_bootstrap, topics["alerts"], alerts)
        await eventually(lambda: len(receiver.processed) == 2, 30, "both alerts delivered")
        await eventually(lambda: journal.exists() and len(journal.read_text().splitlines()) == 2,
                         30, "the log file sink")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        await receiver.stop()
    text = log.read_text()
    assert code == 0, text
    assert "ALERT high opened customer=c-1" in text and "ALERT critical opened customer=c-2" in text
    assert {orjson.loads(line)["alert_id"] for line in journal.read_text().splitlines()} == \
        {a["alert_id"] for a in alerts}
    assert receiver.bad_signatures == [] and set(receiver.accepted.values()) == {1}
