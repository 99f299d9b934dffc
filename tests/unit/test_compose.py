"""docker-compose.yml cannot run here (no Docker engine); check that it is right instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_kafka_redis_worker_with_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"kafka", "redis", "worker"}
    for name in ("kafka", "redis"):
        image = services[name]["image"]
        _, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{name} image must be pinned: {image}"
    assert services["kafka"]["image"].startswith("apache/kafka:")


def test_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert len(env["CLUSTER_ID"]) == 22


def test_every_service_has_a_healthcheck_and_the_worker_waits_for_them(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "redis"):
        assert services[name]["healthcheck"]["test"]
        assert services["worker"]["depends_on"][name]["condition"] == "service_healthy"


def test_redis_persists(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "--appendonly yes" in " ".join(redis["command"])
    assert any(v.endswith(":/data") for v in redis["volumes"])


def _setting_exists(path: list[str]) -> bool:
    fields: Any = Settings.model_fields
    for i, part in enumerate(path):
        if part not in fields:
            return False
        annotation = fields[part].annotation
        if i < len(path) - 1:
            fields = getattr(annotation, "model_fields", None)
            if fields is None:
                return False
    return True


def test_worker_env_names_real_settings_and_reaches_the_other_services(
        compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    env = {k: str(v) for k, v in services["worker"]["environment"].items()}
    for name in env:
        assert name.startswith("CHURN_"), name
        path = name.removeprefix("CHURN_").lower().split("__")
        assert _setting_exists(path), f"{name} is not a churnpulse setting"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = load_settings()
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    internal = [a.split("://")[1] for a in advertised.split(",") if a.startswith("INTERNAL")]
    assert settings.kafka.bootstrap_list == internal
    assert settings.redis.url.startswith("redis://redis:6379")
    assert services["worker"]["command"] == ["worker"]


def test_dockerfile_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["churnpulse"]' in dockerfile
    assert "FROM python:3.11" in dockerfile


PIPELINE = ("worker", "learner", "alerter", "dispatch", "dashboard", "retention")


def test_the_whole_pipeline_runs_real_commands_with_the_same_settings(
        compose: dict[str, Any]) -> None:
    from streams.cli.main import build_parser

    services = compose["services"]
    assert set(services) >= set(PIPELINE)
    parser = build_parser()
    worker_env = services["worker"]["environment"]
    for name in PIPELINE:
        service = services[name]
        assert service["image"] == services["worker"]["image"], name
        args = parser.parse_args(service["command"])  # exits (fails the test) when unknown
        assert args.command == service["command"][0]
        assert callable(args.func)
        assert service["environment"] == worker_env, f"{name} must share the worker's settings"
        for dependency in ("kafka", "redis"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy"


def test_every_pipeline_process_is_healthy_only_when_its_own_readyz_answers(
        compose: dict[str, Any]) -> None:
    """Each process's healthcheck asks its own metrics port (no two share one), the
    retention process included (issue 16)."""
    metrics = Settings().metrics
    ports = set()
    for name in PIPELINE:
        check = " ".join(compose["services"][name]["healthcheck"]["test"])
        port = metrics.port(name)
        assert f"http://127.0.0.1:{port}/readyz" in check, name
        ports.add(port)
    assert len(ports) == len(PIPELINE)
    assert metrics.port("retention") == 9415


def test_dashboard_is_reachable_from_this_host_only(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["dashboard"]
    port = str(Settings().dashboard.port)
    assert f"127.0.0.1:{port}:{port}" in dashboard["ports"]
    assert dashboard["command"][dashboard["command"].index("--host") + 1] == "0.0.0.0"


def test_every_published_port_listens_on_loopback_only(compose: dict[str, Any]) -> None:
    published = {name: svc.get("ports", []) for name, svc in compose["services"].items()}
    assert published["kafka"] and published["redis"] and published["dashboard"]
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


SECRET_WORDS = ("PASSWORD", "SECRET", "SIGNING_KEY", "TOKEN")


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [str(node)]


def test_no_secret_is_committed_and_each_is_required_from_the_environment(
        compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if any(word in key for word in SECRET_WORDS):
                assert re.fullmatch(r"\$\{CHURN_[A-Z_]+:\?[^}]+\}", str(value)), (
                    f"{name}.{key} must come from the environment (${{VAR:?...}}), not a value")
    for text in _strings(compose):
        for found in re.findall(r'password="([^"]*)"', text):
            assert found == "%s" or (found.startswith("${CHURN_") and ":?" in found), text
    required = set(re.findall(r"\$\{(CHURN_[A-Z_]+):\?", "\n".join(_strings(compose))))
    assert required == {"CHURN_KAFKA_PASSWORD", "CHURN_KAFKA_ADMIN_PASSWORD",
                        "CHURN_REDIS_PASSWORD", "CHURN_SIGNING_KEY"}


def test_redis_and_kafka_require_credentials(compose: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert "REDISCLI_AUTH" in services["redis"]["healthcheck"]["test"][1]
    kafka = services["kafka"]["environment"]
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols["INTERNAL"] == protocols["EXTERNAL"] == "SASL_PLAINTEXT"
    assert "--command-config" in services["kafka"]["healthcheck"]["test"][1]
    for name, value in services["worker"]["environment"].items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings()  # the Kafka section's own checks: SASL needs user and password
    assert settings.kafka.security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka.sasl_username == "churnpulse"
    assert settings.redis.password is not None
    assert settings.security.signing_key is not None
