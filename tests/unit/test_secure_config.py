"""The secure local services' configuration (pure): no plaintext listener, no plaintext
password in the ACL file, least privilege per process, private credential files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from streams.services.secure_acls import acl_plan
from streams.services.secure_config import (
    USERS,
    Credentials,
    client_env,
    redis_permissions,
    render_acl_file,
    render_secure_server_properties,
)
from streams.settings import load_settings


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))


def test_the_broker_has_no_plaintext_client_listener(tmp_path: Path) -> None:
    props = _props(render_secure_server_properties(
        9192, 9193, tmp_path / "data", tmp_path / "broker.pem", tmp_path / "ca.crt", "s3cret"))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["ssl.keystore.type"] == "PEM" and props["ssl.truststore.type"] == "PEM"
    assert "PLAINTEXT://" not in props["listeners"] + props["advertised.listeners"]
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"


def test_kafka_grants_follow_each_process_and_nobody_else_writes_alerts() -> None:
    settings = load_settings()
    t = settings.topics
    plan = acl_plan(settings)
    writers: dict[str, set[str]] = {g.name: set() for g in plan}
    for g in plan:
        if g.operation in ("WRITE", "ALL") and g.resource == "TOPIC":
            writers[g.name].add(g.user)
    assert writers[t.alerts] == {"alerter"}
    assert writers[t.scores] == {"worker"}
    assert writers[t.model_events] == {"learner"}
    assert writers[t.events] == set() and writers[t.labels] == set()  # producers use admin
    readers = {g.user for g in plan if g.operation == "READ" and g.name == t.labels}
    assert readers == {"learner", "retention"}  # the retention process joins outcomes
    assert "admin" not in {g.user for g in plan}  # a super user


def test_acl_file_stores_hashes_and_turns_the_default_user_off() -> None:
    creds = Credentials.generate()
    text = render_acl_file(creds, "cp")
    assert text.splitlines()[0] == "user default off nopass resetkeys -@all"
    for user in USERS:
        assert creds.redis[user] not in text
        assert f"#{hashlib.sha256(creds.redis[user].encode()).hexdigest()}" in text


def test_each_process_gets_only_its_keys_and_no_dangerous_command() -> None:
    rules = {user: r.split() for user, r in redis_permissions("cp").items()}
    for user in ("worker", "learner", "alerter", "dispatch", "dashboard", "retention"):
        assert "-@dangerous" in rules[user] and "-@admin" in rules[user], user
        assert "~*" not in rules[user] and "+@all" not in rules[user], user
    assert "%R~cp:model:*" in rules["worker"]  # scorers cannot plant a checkpoint
    assert "~cp:model:*" in rules["learner"]  # the single writer of the model
    assert rules["dispatch"][0] == "~cp:delivered:*" and "+@scripting" not in rules["dispatch"]
    assert [r for r in rules["dashboard"] if "~" in r] == ["%R~cp:{c:*}:f"]
    assert "+@write" not in rules["dashboard"]


def test_credentials_are_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "secure" / "credentials.json"
    first = Credentials.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Credentials.load_or_create(path) == first
    assert len({*first.kafka.values(), *first.redis.values()}) == 2 * len(USERS)


def test_a_process_env_file_is_valid_settings(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env = client_env("worker", Credentials.generate(), 9192, 6380, tmp_path / "ca.crt", "cp")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings()
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_username == "worker" and settings.redis.username == "worker"
    assert settings.kafka.ssl_cafile == tmp_path / "ca.crt"


def test_the_retention_process_gets_its_own_least_grants() -> None:
    """Issue 16: read actions, labels and offer events, write (and create) its outcomes
    topic and dead letters; no group, no transactional id, no other topic written."""
    settings = load_settings()
    t, r = settings.topics, settings.retention
    mine = {(g.operation, g.resource, g.name, g.pattern) for g in acl_plan(settings)
            if g.user == "retention"}
    assert {x for x in mine if x[0] != "DESCRIBE"} == {
        ("READ", "TOPIC", t.retention_actions, "LITERAL"),
        ("READ", "TOPIC", t.labels, "LITERAL"),
        ("READ", "TOPIC", t.events, "LITERAL"),  # the offer events (default: the events)
        ("WRITE", "TOPIC", r.outcomes_topic, "LITERAL"),
        ("WRITE", "TOPIC", t.dead_letter, "LITERAL"),
        ("CREATE", "TOPIC", r.outcomes_topic, "LITERAL")}
    assert ("DESCRIBE", "TOPIC", r.outcomes_topic, "LITERAL") in mine
    apart = load_settings(retention={"offers_topic": "offers", "outcomes_topic": "outs"})
    reads = {g.name for g in acl_plan(apart) if g.user == "retention" and g.operation == "READ"}
    assert reads == {t.retention_actions, t.labels, "offers"}
    rules = redis_permissions("cp")["retention"].split()
    assert [x for x in rules if "~" in x] == ["~cp:retention:*", "~cp:{retention}:*"]
    assert "+@scripting" in rules  # the lock is renewed and released by a script
    alerter = redis_permissions("cp")["alerter"].split()  # reads what it publishes, both layouts
    assert "%R~cp:retention:*" in alerter and "%R~cp:{retention}:*" in alerter


def test_credentials_from_before_the_retention_user_gain_it_and_keep_the_rest(
        tmp_path: Path) -> None:
    import json

    path = tmp_path / "credentials.json"
    old = {"kafka": {u: f"k-{u}" for u in USERS if u != "retention"},
           "redis": {u: f"r-{u}" for u in USERS if u != "retention"}}
    path.write_text(json.dumps(old))
    os.chmod(path, 0o600)
    creds = Credentials.load_or_create(path)
    assert creds.kafka["worker"] == "k-worker" and creds.redis["admin"] == "r-admin"
    assert len(creds.kafka["retention"]) == 32 and creds.redis["retention"] not in old["redis"]
    assert Credentials.load_or_create(path) == creds  # written back, private
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
