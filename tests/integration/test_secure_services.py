"""Security end to end: `services up --secure` starts a Kafka whose only listener is SASL_SSL
(SCRAM-SHA-512, our own CA, ACLs per user) and a TLS Redis with one ACL user per process; the
real worker, learner, alerter and retention process run on them, each as its own user, and
scores, alerts, learned labels and retention outcomes arrive. Wrong passwords, the default
user and out-of-bounds commands are refused.

The secure services run on free ports under a temporary state dir and are stopped at the end;
the shared plain services are not touched.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from kafka import KafkaProducer
from kafka.errors import TopicAuthorizationFailedError

from alerts.policy import PolicyParams
from streams.contracts import ChurnLabel, CustomerEvent
from streams.kafka.clients import kafka_python_options
from streams.kafka.topic_reader import read_topic_sync
from streams.redis.model_registry import RedisModelRegistry
from streams.services import secure
from streams.settings import Settings, TopicSettings, load_settings
from streams.signing import StateSigner
from tests.integration.alerter_proc import complaint_model, expected_alert_ids
from tests.integration.worker_proc import stop_procs, wait_until

pytestmark = pytest.mark.integration
KEY = "secure-services-test-signing-key"
CUSTOMERS, RISKY = 30, 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    state = tmp_path_factory.mktemp("secure-state")
    ports = {"kafka_port": _free_port(), "kafka_controller_port": _free_port(),
             "redis_port": _free_port()}
    settings = load_settings(services={"state_dir": state, "start_timeout_s": 120.0},
                             security={"local": ports},
                             redis={"key_prefix": f"sec{uuid.uuid4().hex[:8]}"})
    try:
        rows = secure.up(settings)
        assert [r.state for r in rows] == ["started", "started"]
        yield settings
    finally:
        secure.down(settings)


def as_user(settings: Settings, user: str) -> Settings:
    """The settings a process running as ``user`` reads from its env file."""
    env = secure.env_for(settings, user)
    return load_settings(
        kafka={"bootstrap_servers": env["CHURN_KAFKA__BOOTSTRAP_SERVERS"],
               "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
               "sasl_username": user, "sasl_password": env["CHURN_KAFKA__SASL_PASSWORD"],
               "ssl_cafile": env["CHURN_KAFKA__SSL_CAFILE"]},
        redis={"url": env["CHURN_REDIS__URL"], "username": user,
               "password": env["CHURN_REDIS__PASSWORD"],
               "key_prefix": settings.redis.key_prefix})


def test_wrong_passwords_the_default_user_and_forbidden_commands_are_refused(
        secured: Settings) -> None:
    assert secure.kafka_probe(secured, "worker") is not None
    assert secure.kafka_probe(secured, "worker", password="wrong-password") is None
    assert secure.kafka_probe(secured, "nobody", password="wrong-password") is None
    with pytest.raises(redis.AuthenticationError):
        _redis(secured, "worker", "wrong-password").ping()
    with pytest.raises(redis.RedisError):  # no credentials: the default user is off
        _redis(secured).ping()
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):  # TLS only: no clear text
        redis.Redis(port=secured.security.local.redis_port, socket_timeout=2).ping()
    p = secured.redis.key_prefix
    worker = _redis(secured, "worker")
    worker.set(f"{p}:{{c:c1}}:f", b"ok")  # its own keys
    with pytest.raises(redis.exceptions.NoPermissionError):  # cannot plant a checkpoint
        worker.set(f"{p}:model:v:666", b"forged")
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.keys("*")
    dashboard = _redis(secured, "dashboard")
    assert dashboard.get(f"{p}:{{c:c1}}:f") == b"ok"
    with pytest.raises(redis.exceptions.NoPermissionError):
        dashboard.set(f"{p}:{{c:c1}}:f", b"changed")
    worker.delete(f"{p}:{{c:c1}}:f")
    worker.close()
    dashboard.close()
    # Kafka authorization: the worker writes scores, it cannot forge alerts
    producer = KafkaProducer(**kafka_python_options(as_user(secured, "worker").kafka))
    try:
        producer.send(secured.topics.scores, b"{}").get(timeout=30)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(secured.topics.alerts, b"{}").get(timeout=30)
    finally:
        producer.close()


def _start(cmd: str, user: str, secured: Settings, topics: dict[str, str], workdir: Path,
           ready: bytes, procs: list[subprocess.Popen[bytes]]) -> None:
    _ready(cmd, workdir, ready, _spawn(cmd, user, secured, topics, workdir, procs))


def _spawn(cmd: str, user: str, secured: Settings, topics: dict[str, str], workdir: Path,
           procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHURN_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env.update(secure.env_for(secured, user))
    env.update(topics)
    env.update({"CHURN_SECURITY__SIGNING_KEY": KEY, "CHURN_LOG_LEVEL": "INFO",
                "CHURN_WORKER__DATA_DIR": str(workdir / "faust"),
                "CHURN_WORKER__SESSION_TIMEOUT_S": "6"})
    path = workdir / f"{cmd}.log"
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", cmd], env=env,
                            stdout=path.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    procs.append(proc)
    return proc


def _ready(cmd: str, workdir: Path, ready: bytes, proc: subprocess.Popen[bytes]) -> None:
    path = workdir / f"{cmd}.log"
    wait_until(lambda: ready in path.read_bytes() or proc.poll() is not None, 90,
               f"{cmd} ready")
    assert proc.poll() is None, f"{cmd} exited:\n{path.read_text(errors='replace')[-3000:]}"


def test_worker_learner_and_alerter_run_over_sasl_ssl_and_redis_acls(
        secured: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    names = {"EVENTS": f"events-{tag}", "SCORES": f"scores-{tag}", "LABELS": f"labels-{tag}",
             "ALERTS": f"alerts-{tag}", "DEAD_LETTER": f"dlq-{tag}",
             "RETENTION_ACTIONS": f"actions-{tag}", "ALERT_OUTCOMES": f"outcomes-{tag}",
             "MODEL_EVENTS": f"models-{tag}"}
    topics = {f"CHURN_TOPICS__{k}": v for k, v in names.items()}
    topics["CHURN_WORKER__APP_ID"] = f"sec-{tag}"
    admin = as_user(secured, "admin")
    secure.grant_acls(secured.model_copy(update={  # this test's topics, as `up` does for ours
        "topics": TopicSettings(**{k.lower(): v for k, v in names.items()}),
        "worker": secured.worker.model_copy(update={"app_id": f"sec-{tag}"})}))

    async def publish_model() -> None:
        client = aioredis.Redis.from_url(secure.env_for(secured, "admin")["CHURN_REDIS__URL"],
                                         username="admin",
                                         password=secure.credentials(secured).redis["admin"])
        await RedisModelRegistry(client, secured.redis.key_prefix,
                                 StateSigner(KEY.encode())).publish(complaint_model())
        await client.aclose()

    asyncio.run(publish_model())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        readiness = {"worker": b"[^Worker]: Ready", "alerter": b"alerter ready",
                     "learner": b"learner ready"}  # started at once: start-ups overlap
        spawned = {cmd: _spawn(cmd, cmd, secured, topics, tmp_path, procs) for cmd in readiness}
        for cmd, ready in readiness.items():
            _ready(cmd, tmp_path, ready, spawned[cmd])
        producer = KafkaProducer(**kafka_python_options(admin.kafka), acks="all")
        t0 = __import__("time").time() - 6 * 3600
        rounds = [["session"] * CUSTOMERS, ["session"] * CUSTOMERS,
                  ["complaint"] * RISKY, ["complaint"] * RISKY, ["complaint"] * RISKY]
        sent = 0
        for r, kinds in enumerate(rounds):
            for c, kind in enumerate(kinds):
                cid = f"c-{c:02d}"
                event = CustomerEvent(f"{cid}-e{r}", cid, kind, t0 + r * 3600 + c)
                producer.send(names["EVENTS"], orjson.dumps(event.to_wire()), key=cid.encode())
            producer.flush()
            sent += len(kinds)
            wait_until(lambda n=sent: len(_read(admin, names["SCORES"])) >= n,  # type: ignore[misc]
                       90, f"scores of round {r}")
        scores = _read(admin, names["SCORES"])
        expected = expected_alert_ids([(str(s["customer_id"]), orjson.dumps(s)) for s in scores],
                                      PolicyParams())
        assert {i.split(":")[0] for i in expected} == {f"c-{c:02d}" for c in range(RISKY)}
        wait_until(lambda: len(_read(admin, names["ALERTS"])) >= len(expected), 90, "alerts")
        assert sorted(str(a["alert_id"]) for a in _read(admin, names["ALERTS"])) == sorted(
            expected)
        for c in range(3):  # labels reach the learner, which checkpoints under its ACL user
            label = ChurnLabel(f"l-{c}", f"c-{c:02d}", t0 + 5 * 3600, True)
            producer.send(names["LABELS"], orjson.dumps(label.to_wire()),
                          key=label.customer_id.encode())
        producer.flush()
        producer.close()
        status_key = f"{secured.redis.key_prefix}:learner:status"
        learner_redis = _redis(secured, "learner")
        wait_until(lambda: _labels_seen(learner_redis.get(status_key)) >= 3, 60,
                   "the learner's checkpoint of 3 labels")
        learner_redis.close()
        for proc in procs:
            assert proc.poll() is None
        logs = "".join((tmp_path / f"{n}.log").read_text(errors="replace")
                       for n in ("worker", "alerter", "learner"))
        assert "NOPERM" not in logs and "no permissions" not in logs
    finally:
        stop_procs(procs)


def test_the_retention_process_runs_as_its_own_user_with_only_its_grants(
        secured: Settings, tmp_path: Path) -> None:
    """Issue 16: the ``retention`` user (added to a broker formatted without it by
    ``grant_acls``) reads actions and labels, writes outcomes, keeps its checkpoint under
    ``retention:*``, and can neither forge alerts nor touch the model or features."""
    from kafka.admin import (  # type: ignore[import-untyped,unused-ignore]
        KafkaAdminClient,
        ScramMechanism,
        UserScramCredentialDeletion,
    )

    from streams.timefmt import format_ts

    admin = as_user(secured, "admin")
    client = KafkaAdminClient(**kafka_python_options(admin.kafka))
    try:  # as on a broker formatted before the retention user existed
        client.alter_user_scram_credentials(
            [UserScramCredentialDeletion("retention", ScramMechanism.SCRAM_SHA_512)])
    finally:
        client.close()
    wait_until(lambda: secure.kafka_probe(secured, "retention") is None, 30,
               "the retention user removed")
    tag = uuid.uuid4().hex[:8]
    names = {"LABELS": f"rlabels-{tag}", "RETENTION_ACTIONS": f"ractions-{tag}",
             "DEAD_LETTER": f"rdlq-{tag}", "EVENTS": f"revents-{tag}"}
    outcomes = f"routcomes-{tag}"
    topics = {f"CHURN_TOPICS__{k}": v for k, v in names.items()}
    port = _free_port()
    topics.update({"CHURN_RETENTION__OUTCOMES_TOPIC": outcomes,
                   "CHURN_RETENTION__HORIZON_DAYS": "30",
                   "CHURN_RETENTION__CHECKPOINT_S": "0.3",
                   "CHURN_METRICS__RETENTION_PORT": str(port)})
    ours = secured.model_copy(update={
        "topics": secured.topics.model_copy(update={k.lower(): v for k, v in names.items()}),
        "retention": secured.retention.model_copy(update={"outcomes_topic": outcomes})})
    secure.grant_acls(ours)  # adds the missing SCRAM user back, then the ACLs
    assert secure.kafka_probe(secured, "retention") is not None

    p = secured.redis.key_prefix
    mine = _redis(secured, "retention")
    mine.set(f"{p}:retention:probe", b"ok")
    for forbidden in (f"{p}:model:v:666", f"{p}:{{c:c1}}:f", f"{p}:alerts:x"):
        with pytest.raises(redis.exceptions.NoPermissionError):
            mine.set(forbidden, b"forged")
    mine.delete(f"{p}:retention:probe")
    mine.close()
    producer = KafkaProducer(**kafka_python_options(as_user(secured, "retention").kafka))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(secured.topics.alerts, b"{}").get(timeout=30)
    finally:
        producer.close()

    procs: list[subprocess.Popen[bytes]] = []
    try:
        _start("retention", "retention", secured, topics, tmp_path, b"retention ready", procs)
        t0 = 1_767_225_600.0
        producer = KafkaProducer(**kafka_python_options(admin.kafka), acks="all")
        for i in range(6):
            cid = f"c-{i}"
            producer.send(names["RETENTION_ACTIONS"], orjson.dumps({
                "action_id": f"{cid}:0:high", "customer_id": cid, "holdout": i == 0,
                "action": "email", "recommended_action": "email", "severity": "high",
                "segment": "fading", "driver_category": "engagement",
                "ts": format_ts(t0 + i)}), key=cid.encode())
        for i in (1, 2):
            producer.send(names["LABELS"], orjson.dumps({
                "label_id": f"l-{i}", "customer_id": f"c-{i}", "ts": format_ts(t0 + 86400),
                "churned": True}), key=f"c-{i}".encode())
        producer.flush()
        producer.close()
        wait_until(lambda: len(_read(admin, outcomes)) >= 2, 60, "the churned outcomes")
        assert sorted(str(o["outcome_id"]) for o in _read(admin, outcomes)) == [
            "c-1:0:high:outcome", "c-2:0:high:outcome"]
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
        assert procs[0].poll() is None
        log = (tmp_path / "retention.log").read_text(errors="replace")
        assert "NOPERM" not in log and "AuthorizationFailed" not in log
    finally:
        stop_procs(procs)


def _redis(secured: Settings, user: str | None = None,
           password: str | None = None) -> redis.Redis:
    """A TLS client of the secure Redis as ``user`` (None: no credentials)."""
    url = secure.env_for(secured, "admin")["CHURN_REDIS__URL"]
    if user is None:
        return redis.Redis.from_url(url, socket_timeout=5)
    return redis.Redis.from_url(url, username=user, socket_timeout=5,
                                password=password or secure.credentials(secured).redis[user])


def _labels_seen(raw: bytes | None) -> int:
    if raw is None:
        return 0
    return int(orjson.loads(raw).get("labels", {}).get("labels", 0))


def _read(settings: Settings, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(v) for _, v in read_topic_sync(settings, topic, 30.0) if v]
