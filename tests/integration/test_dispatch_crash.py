"""``churnpulse dispatch`` SIGKILLed three times while delivering: each alert reaches each
receiver, once by its idempotency key, and nothing is lost.

The alerts arrive in four parts, one per kill, so every kill lands while alerts of its part
are still to be delivered (asserted for at least one kill). Re-sends after a crash are allowed
(at least once towards receivers, deduplicated by ``Idempotency-Key``); they are counted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from tests.integration.test_webhook_dispatch import SECRET, alert, eventually, publish, start_cli
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.integration
PARTS, PER_PART = 4, 150


async def test_dispatcher_killed_three_times_delivers_each_alert_once_per_receiver(
        kafka_bootstrap: str, redis_url: str, key_prefix: str, tmp_path: Path,
        aredis: aioredis.Redis) -> None:  # aredis: the test's keys are removed after it
    tag = uuid.uuid4().hex[:8]
    receivers = [await Receiver(SECRET).start(), await Receiver(SECRET).start()]
    topics = {k: f"{k}-{tag}" for k in ("events", "labels", "scores", "alerts", "dead_letter",
                                        "model_events", "retention_actions", "alert_outcomes")}
    env = dict(os.environ)
    env.update({f"CHURN_TOPICS__{k.upper()}": v for k, v in topics.items()})
    env.update({
        "CHURN_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, "CHURN_REDIS__URL": redis_url,
        "CHURN_REDIS__KEY_PREFIX": key_prefix, "CHURN_KAFKA__PARTITIONS": "2",
        "CHURN_WORKER__SESSION_TIMEOUT_S": "6", "CHURN_METRICS__DISPATCH_PORT": "0",
        "CHURN_WEBHOOK__CONSUMER_GROUP": f"dispatch-{tag}",
        "CHURN_WEBHOOK__TARGETS": orjson.dumps([
            {"name": f"hook{i}", "url": r.url, "secret": SECRET.decode(),
             "allow_insecure_http": True} for i, r in enumerate(receivers)]).decode()})
    alerts = [alert(f"c-{n % 97}", n) for n in range(PARTS * PER_PART)]
    ids = {str(a["alert_id"]) for a in alerts}
    assert len(ids) == len(alerts)

    def delivered() -> int:
        return min(len(r.processed) for r in receivers)

    kills = in_flight = 0
    procs = []
    try:
        for k in range(PARTS):
            log = tmp_path / f"dispatch-{k}.log"
            proc = start_cli(["dispatch"], env, log)
            procs.append(proc)
            await eventually(lambda p=proc, f=log: b"dispatching" in f.read_bytes()  # type: ignore[misc]
                             or p.poll() is not None, 90, "the dispatcher to start")
            assert proc.poll() is None, log.read_text()
            await publish(kafka_bootstrap, topics["alerts"],
                          alerts[k * PER_PART:(k + 1) * PER_PART])
            if k == PARTS - 1:
                break
            target = k * PER_PART + PER_PART // 4
            await eventually(lambda t=target: delivered() > t, 90,  # type: ignore[misc]
                             f"{target} alerts delivered")
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 30)
            kills += 1
            in_flight += delivered() < (k + 1) * PER_PART
        await eventually(lambda: all(set(r.processed) == ids for r in receivers), 120,
                         "every alert at every receiver")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)
        for r in receivers:
            await r.stop()
    assert kills == PARTS - 1
    assert in_flight > 0, "every kill came after its part was delivered"
    for r in receivers:
        assert r.bad_signatures == []
        assert set(r.processed) == ids  # each alert once by idempotency key
        assert set(r.accepted) == ids  # nothing else was sent
    resent = sum(sum(r.accepted.values()) - len(r.processed) for r in receivers)
    print(f"re-sent after the kills: {resent}")  # pytest -s
