"""Pure pieces of streams.services: generated configs, ids, argv, addresses (no processes)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from streams.services import ServiceError, ServiceStatus
from streams.services.__main__ import format_table
from streams.services.common import split_host_port
from streams.services.kafka_config import (
    KafkaPaths,
    load_cluster_id,
    new_cluster_id,
    render_log4j,
    render_server_properties,
)
from streams.services.kafka_jars import jars_ready, kafka_home, render_pom
from streams.services.redis_server import RedisPaths, server_args, url_host_port

CLUSTER_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


def parse_properties(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        assert key not in out, f"duplicate key {key}"
        out[key] = value
    return out


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    props = parse_properties(render_server_properties(19092, 19093, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert "CONTROLLER:PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert props["log.dirs"] == str(tmp_path / "data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "4"
    assert int(props["log.cleaner.dedupe.buffer.size"]) <= 32 * 1024 * 1024


def test_server_properties_follow_ports(tmp_path: Path) -> None:
    props = parse_properties(render_server_properties(9092, 9093, tmp_path))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"


def test_log4j_goes_to_file_not_stdout(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    props = parse_properties(render_log4j(log))
    assert props["log4j.rootLogger"].replace(" ", "") == "INFO,file"
    assert props["log4j.appender.file.File"] == str(log)
    assert not any("ConsoleAppender" in v for v in props.values())


def test_cluster_id_format() -> None:
    ids = {new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for cid in ids:
        assert CLUSTER_ID.match(cid), cid
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_cluster_id_is_generated_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "kafka-cluster-id"
    first = load_cluster_id(path)
    assert CLUSTER_ID.match(first)
    assert load_cluster_id(path) == first
    assert path.read_text().strip() == first


def test_kafka_paths_live_in_state_dir(tmp_path: Path) -> None:
    p = KafkaPaths(tmp_path)
    for f in (p.props, p.log4j, p.log, p.out, p.pid, p.data, p.cluster_id):
        assert f.parent == tmp_path
    assert p.marker.endswith(str(p.props))


def _deps(pom: str) -> set[str]:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.fromstring(pom)
    fields = ("groupId", "artifactId", "version")
    return {
        ":".join(d.findtext(f"m:{f}", namespaces=ns) or "" for f in fields)
        for d in root.iterfind("m:dependencies/m:dependency", ns)
    }


def test_pom_brings_kafka_and_reload4j_for_3x() -> None:
    assert _deps(render_pom("2.13", "3.9.1")) == {
        "org.apache.kafka:kafka_2.13:3.9.1",
        "org.slf4j:slf4j-reload4j:1.7.36",
        "ch.qos.reload4j:reload4j:1.2.25",
    }


def test_pom_has_no_reload4j_for_4x() -> None:
    assert _deps(render_pom("2.13", "4.1.0")) == {"org.apache.kafka:kafka_2.13:4.1.0"}


def test_half_download_is_not_ready(tmp_path: Path) -> None:
    home = kafka_home(tmp_path, "2.13", "3.9.1")
    assert home == tmp_path.resolve() / "kafka-2.13-3.9.1"
    (home / "libs").mkdir(parents=True)
    (home / "libs" / "kafka_2.13-3.9.1.jar").write_bytes(b"")
    assert not jars_ready(home, "2.13", "3.9.1")  # no marker: redo the download
    (home / ".complete").write_text("kafka_2.13-3.9.1.jar\n")
    assert jars_ready(home, "2.13", "3.9.1")


def test_redis_args(tmp_path: Path) -> None:
    p = RedisPaths(tmp_path)
    args = server_args("/usr/bin/redis-server", 16379, p)
    assert args[0] == "/usr/bin/redis-server"
    opts = dict(zip(args[1::2], args[2::2], strict=True))
    assert opts["--port"] == "16379"
    assert opts["--bind"] == "127.0.0.1"
    assert opts["--daemonize"] == "no"
    assert opts["--save"] == ""
    assert opts["--appendonly"] == "no"
    assert opts["--dir"] == str(tmp_path / "redis-data")
    assert opts["--logfile"] == str(tmp_path / "redis.log")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379)),
        ("redis://localhost/1", ("localhost", 6379)),
        ("redis://:secret@127.0.0.1:16379/0", ("127.0.0.1", 16379)),
    ],
)
def test_redis_url(url: str, expected: tuple[str, int]) -> None:
    assert url_host_port(url) == expected


def test_redis_url_rejects_unix_socket() -> None:
    with pytest.raises(ServiceError):
        url_host_port("unix:///tmp/redis.sock")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("localhost:19092,other:9092", ("localhost", 19092)),
        ("[::1]:9092", ("::1", 9092)),
        ("broker", ("broker", 9092)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address, 9092) == expected


def test_service_error_is_one_line_plus_log() -> None:
    assert str(ServiceError("port 9092 is taken")) == "port 9092 is taken"
    err = ServiceError("Kafka exited", "line 1\nline 2")
    assert err.message == "Kafka exited"
    assert str(err).splitlines()[0] == "Kafka exited"
    assert "    line 2" in str(err)


def test_format_table() -> None:
    rows = [
        ServiceStatus("kafka", "127.0.0.1:9092", "running-ours", 42, Path("/s/kafka.log"), "x"),
        ServiceStatus("redis", "127.0.0.1:6379", "stopped"),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["SERVICE", "ADDRESS", "STATE", "PID", "DETAIL", "LOG"]
    assert lines[1].split() == [
        "kafka", "127.0.0.1:9092", "running-ours", "42", "x", "/s/kafka.log"
    ]
    assert lines[2].split() == ["redis", "127.0.0.1:6379", "stopped", "-", "-", "-"]


def test_cluster_node_properties_three_brokers_rf3_min_isr2(tmp_path: Path) -> None:
    from streams.services.kafka_config import render_cluster_node_properties

    ports, ctls = (29092, 29093, 29094), (29192, 29193, 29194)
    nodes = [parse_properties(render_cluster_node_properties(i, ports, ctls, tmp_path / str(i)))
             for i in (1, 2, 3)]
    voters = "1@127.0.0.1:29192,2@127.0.0.1:29193,3@127.0.0.1:29194"
    for i, props in enumerate(nodes, 1):
        assert props["node.id"] == str(i)
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == (f"PLAINTEXT://127.0.0.1:{ports[i - 1]},"
                                      f"CONTROLLER://127.0.0.1:{ctls[i - 1]}")
        assert props["log.dirs"] == str(tmp_path / str(i))
        for key in ("default.replication.factor", "offsets.topic.replication.factor",
                    "transaction.state.log.replication.factor"):
            assert props[key] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
    # one node of its own: replication 1, min ISR 1 (a cluster of one still starts)
    one = parse_properties(render_cluster_node_properties(1, (1,), (2,), tmp_path))
    assert one["default.replication.factor"] == one["min.insync.replicas"] == "1"
    with pytest.raises(ValueError, match="node 4"):
        render_cluster_node_properties(4, ports, ctls, tmp_path)


def test_kafka3_cluster_layout_from_settings(tmp_path: Path) -> None:
    from streams.services import kafka_cluster
    from streams.services.manager import OPTIONAL
    from streams.settings import load_settings

    assert set(OPTIONAL["kafka3"]) == {"up", "down", "status"}
    c = kafka_cluster.cluster(load_settings(services={"state_dir": tmp_path}))
    assert c.root == tmp_path.resolve() / "kafka3"
    assert c.size == 3 and c.bootstrap == kafka_cluster.BOOTSTRAP
    assert kafka_cluster.BOOTSTRAP == "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"
    nodes = [c.node(i) for i in range(3)]
    assert len({n.root for n in nodes}) == len({n.marker for n in nodes}) == 3
    assert all(c.pid(i) is None for i in range(3))  # nothing of ours runs there


def test_cli_brokers_flag_is_one_or_three(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main

    assert main(["services", "status", "--brokers", "2"]) == 2
    assert "--brokers is 1" in capsys.readouterr().err


def test_a_broker_still_writing_its_log_is_waited_for_past_the_timeout() -> None:
    # a broker loading thousands of old partition logs is slow, not stuck: each change of the
    # progress mark moves the deadline on (bounded by limit_s); without progress it gives up
    from streams.services.common import wait_for

    calls = {"n": 0}

    def progress() -> int:
        calls["n"] += 1
        return calls["n"]  # changes on every poll: still loading

    def ready() -> bool:
        return calls["n"] > 12  # ready after ~12 polls of 0.02 s = 0.24 s > timeout 0.1 s

    assert wait_for(ready, 0.1, 0.02, progress=progress, limit_s=5.0)
    assert not wait_for(lambda: False, 0.1, 0.02, progress=lambda: 0, limit_s=5.0)
    assert not wait_for(lambda: False, 0.05, 0.01, progress=progress, limit_s=0.15)


def test_cli_reset_takes_no_names(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main

    assert main(["services", "reset", "kafka"]) == 2
    assert "services reset takes no names" in capsys.readouterr().err


def test_reset_removes_the_data_of_stopped_brokers(tmp_path: Path) -> None:
    # no process of this state dir runs: reset deletes the single broker's and the
    # three-broker cluster's data and cluster ids, and says how much
    from streams.services import kafka, kafka_cluster, reset
    from streams.services.common import port_open
    from streams.settings import load_settings
    from tests.ports import free_ports

    kafka_port, controller_port, redis_port = free_ports(3)
    settings = load_settings(kafka={"bootstrap_servers": f"127.0.0.1:{kafka_port}"},
                             redis={"url": f"redis://127.0.0.1:{redis_port}/0"},
                             services={"state_dir": tmp_path,
                                       "kafka_controller_port": controller_port})
    single, three = kafka.paths(settings), kafka_cluster.cluster(settings)
    for data in (single.data, *(three.node(i).data for i in range(3))):
        (data / "churn-events-0").mkdir(parents=True)
        (data / "churn-events-0" / "00000000000000000000.log").write_bytes(b"x" * 2**20)
    single.cluster_id.write_text("abc\n")
    (three.root / "kafka-cluster-id").write_text("def\n")
    three_busy = any(port_open("127.0.0.1", p) for p in three.ports)  # another dir's cluster
    rows = {r.name: r for r in reset(settings)}
    assert rows["kafka"].detail.endswith("data removed (1.0 MiB)"), rows
    assert not single.data.exists() and not single.cluster_id.exists()
    if three_busy:
        assert all(three.node(i).data.exists() for i in range(3))
        assert "kafka3" not in rows
    else:
        assert rows["kafka3"].detail == "data removed (3.0 MiB)", rows
        assert not any(three.node(i).data.exists() for i in range(3))
        assert not (three.root / "kafka-cluster-id").exists()
