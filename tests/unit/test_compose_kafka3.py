"""deploy/compose.kafka3.yml over docker-compose.yml (three brokers): no Docker engine here, so
the merged file is checked instead, with Compose's rule for mappings (keys of the override
win, the rest of the base stays)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
APPS = ("worker", "learner", "alerter", "dispatch", "dashboard")
BROKERS = ("kafka", "kafka-2", "kafka-3")


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    over = yaml.safe_load((ROOT / "deploy" / "compose.kafka3.yml").read_text())
    result = _merge(base, over)
    assert isinstance(result, dict)
    return result


def test_three_kraft_nodes_one_quorum_rf3_min_isr2(merged: dict[str, Any]) -> None:
    services = merged["services"]
    envs = [services[name]["environment"] for name in BROKERS]
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in envs) == [1, 2, 3]
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    for env in envs:
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    for name, env in zip(BROKERS, envs, strict=True):
        assert f"INTERNAL://{name}:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert services[name]["image"] == services["kafka"]["image"]
        assert services[name]["healthcheck"]["test"]


def test_every_process_reaches_the_three_brokers_and_waits_for_them(
        merged: dict[str, Any]) -> None:
    services = merged["services"]
    for name in APPS:
        env = services[name]["environment"]
        assert env["CHURN_KAFKA__BOOTSTRAP_SERVERS"] == ",".join(f"{b}:19092" for b in BROKERS)
        assert env["CHURN_REDIS__URL"]  # the base file's settings stay
        settings = load_settings(kafka={
            "bootstrap_servers": env["CHURN_KAFKA__BOOTSTRAP_SERVERS"],
            "replication_factor": env["CHURN_KAFKA__REPLICATION_FACTOR"],
            "partitions": env["CHURN_KAFKA__PARTITIONS"]})
        assert settings.kafka.replication_factor == 3
        assert len(settings.kafka.bootstrap_list) == 3
        for broker in BROKERS:
            assert services[name]["depends_on"][broker]["condition"] == "service_healthy"
    assert {"kafka-2-data", "kafka-3-data"} <= set(merged["volumes"])


def test_ports_on_loopback_and_no_secret_in_the_file() -> None:
    text = (ROOT / "deploy" / "compose.kafka3.yml").read_text()
    over = yaml.safe_load(text)
    for name in ("kafka-2", "kafka-3"):
        for port in over["services"][name]["ports"]:
            assert port.startswith("127.0.0.1:")
    for found in re.findall(r'password="([^"]*)"', text):
        assert re.fullmatch(r"\$\{CHURN_KAFKA(_ADMIN)?_PASSWORD:\?[^}]+\}", found), found
