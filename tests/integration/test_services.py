"""streams.services against the REAL services: a Kafka broker from Maven jars and redis-server.

Runs on free non-default ports chosen at start (several engineers and CI share one machine,
and anyone may have services on the default ports) with its own state dir under tmp_path, and
stops what it started at the end. The first run on a machine downloads Kafka's jars (under a
minute); later runs start Kafka in a few seconds.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped,unused-ignore]

from streams.services import (
    ServiceError,
    ServiceStatus,
    down,
    redis_server,
    reset,
    status,
    up,
)
from streams.services import kafka as kafka_service
from streams.services.common import pid_alive, port_open
from streams.settings import Settings, load_settings
from tests.ports import free_ports

pytestmark = pytest.mark.timeout(600)


def make_settings(state_dir: Path, kafka_port: int, controller_port: int,
                  redis_port: int) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{kafka_port}"},
        redis={"url": f"redis://127.0.0.1:{redis_port}/0"},
        services={"state_dir": state_dir, "kafka_controller_port": controller_port,
                  "start_timeout_s": 120.0},
    )


def by_name(rows: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {r.name: r for r in rows}


@dataclass(frozen=True)
class Running:
    settings: Settings
    ports: tuple[int, int, int]  # kafka, controller, redis
    pids: dict[str, int]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    kafka_port, controller_port, redis_port = free_ports(3)
    ports = (kafka_port, controller_port, redis_port)
    settings = make_settings(
        tmp_path_factory.mktemp("services-state"), kafka_port, controller_port, redis_port
    )
    try:
        first = by_name(up(settings))
        assert first["kafka"].state == "started", first
        assert first["redis"].state == "started", first
        pids = {name: s.pid for name, s in first.items() if s.pid is not None}
        assert set(pids) == {"kafka", "redis"}
        yield Running(settings, ports, pids)
    finally:
        stopped = by_name(down(settings))
        assert {s.state for s in stopped.values()} == {"stopped"}, stopped
        for name, marker in (("kafka", kafka_service.paths(settings).marker),
                             ("redis", redis_server.MARKER)):
            pid = stopped[name].pid
            assert pid is not None, stopped
            assert not pid_alive(pid, marker)
        for port in ports:
            assert not port_open("127.0.0.1", port)


def test_up_twice_is_idempotent(services: Running) -> None:
    second = by_name(up(services.settings))
    assert {n: s.state for n, s in second.items()} == {
        "kafka": "running-ours", "redis": "running-ours"
    }
    assert {n: s.pid for n, s in second.items()} == services.pids


def test_status_reports_both_running(services: Running) -> None:
    rows = by_name(status(services.settings))
    assert rows["kafka"].state == "running-ours"
    assert rows["kafka"].detail.startswith("cluster ")
    assert rows["redis"].state == "running-ours"
    assert rows["redis"].detail == "PONG"
    assert {n: s.pid for n, s in rows.items()} == services.pids
    kafka_log = rows["kafka"].log
    assert kafka_log is not None
    assert "Kafka Server started" in kafka_log.read_text()


def test_kafka_produce_consume_round_trip(services: Running) -> None:
    bootstrap = services.settings.kafka.bootstrap_servers
    topic = f"services-test-{uuid.uuid4().hex[:8]}"
    payloads = [f"hello-{i}".encode() for i in range(10)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        for value in payloads:
            producer.send(topic, key=b"k", value=value).get(timeout=60)
        producer.flush(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    received: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(payloads) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(r.value for r in records)
    finally:
        consumer.close()
    assert received == payloads  # one key -> one partition -> order kept


def test_redis_ping(services: Running) -> None:
    client = redis.Redis.from_url(services.settings.redis.url)
    try:
        assert client.ping() is True
        client.set("services-test", "1")
        assert client.get("services-test") == b"1"
    finally:
        client.close()


def test_other_state_dir_sees_external_and_never_kills_it(
    services: Running, tmp_path: Path
) -> None:
    stranger = make_settings(tmp_path / "other-state", *services.ports)
    assert {s.state for s in up(stranger)} == {"running-external"}
    assert {s.state for s in down(stranger)} == {"running-external"}
    rows = by_name(reset(stranger))  # the broker is not the stranger's: its data stays
    assert rows["kafka"].state == "running-external", rows
    assert rows["kafka"].detail.endswith("its data is not ours: left alone"), rows
    assert kafka_service.paths(services.settings).data.is_dir()
    still = by_name(status(services.settings))
    assert {n: (s.state, s.pid) for n, s in still.items()} == {
        n: ("running-ours", pid) for n, pid in services.pids.items()
    }


def test_stale_pid_file_is_removed_by_down(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, *free_ports(3))
    (tmp_path / "kafka.pid").write_text("999999999\n")  # beyond pid_max: never a live process
    (tmp_path / "redis.pid").write_text("1\n")  # alive, but not ours: must not be touched
    rows = by_name(down(settings))
    assert rows["kafka"].detail == "stale pid file removed"
    assert rows["redis"].detail == "stale pid file removed"
    assert not (tmp_path / "kafka.pid").exists()
    assert not (tmp_path / "redis.pid").exists()


def test_port_taken_by_something_else_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        port = int(squatter.getsockname()[1])
        (controller_port,) = free_ports(1)
        settings = make_settings(tmp_path, port, controller_port, port)
        taken = f"port {port} is taken by something that is not"
        with pytest.raises(ServiceError, match=f"{taken} Redis"):
            redis_server.up(settings)
        with pytest.raises(ServiceError, match=f"{taken} Kafka"):
            kafka_service.up(settings)
    assert not (tmp_path / "kafka.pid").exists()
    assert not (tmp_path / "redis.pid").exists()


def test_two_ups_racing_for_one_redis_port(tmp_path: Path) -> None:
    kafka_port, controller_port, redis_port = free_ports(3)
    a, b = (make_settings(tmp_path / d, kafka_port, controller_port, redis_port) for d in "ab")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(redis_server.up, (a, b)))
    try:
        assert sorted(r.state for r in results) == ["running-external", "started"], results
        winner = a if results[0].state == "started" else b
        assert redis_server.server_pid(winner) == next(r.pid for r in results if r.pid)
    finally:
        rows = [redis_server.down(s) for s in (a, b)]
    assert not port_open("127.0.0.1", redis_port), rows
    assert not (tmp_path / "a" / "redis.pid").exists()
    assert not (tmp_path / "b" / "redis.pid").exists()


def _topics(bootstrap: str) -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return set(consumer.topics())
    finally:
        consumer.close()


def test_reset_stops_the_services_and_starts_the_broker_empty(tmp_path: Path) -> None:
    """``reset``: the processes stop, the broker's data goes, the next ``up`` formats a new
    cluster without the topics of before."""
    settings = make_settings(tmp_path, *free_ports(3))
    bootstrap = settings.kafka.bootstrap_servers
    files = kafka_service.paths(settings)
    try:
        first = by_name(up(settings))
        topic = f"reset-test-{uuid.uuid4().hex[:8]}"
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
        try:
            producer.send(topic, value=b"x").get(timeout=60)
        finally:
            producer.close()
        assert topic in _topics(bootstrap)
        cluster_id = files.cluster_id.read_text()
        rows = by_name(reset(settings))
        assert {n: r.state for n, r in rows.items()} == {"kafka": "stopped", "redis": "stopped"}
        assert "data removed (" in rows["kafka"].detail, rows
        for name, marker in (("kafka", files.marker), ("redis", redis_server.MARKER)):
            pid = first[name].pid
            assert pid is not None and rows[name].pid == pid
            assert not pid_alive(pid, marker)
        assert not files.data.exists() and not files.cluster_id.exists()
        again = by_name(up(settings))
        assert again["kafka"].state == "started", again
        assert files.cluster_id.read_text() != cluster_id
        assert topic not in _topics(bootstrap)
    finally:
        down(settings)
