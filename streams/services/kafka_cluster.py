"""A local three-broker Kafka cluster (KRaft; every node broker+controller) from the same jars
as the single broker: replication factor 3, ``min.insync.replicas`` 2, no unclean leaders.

``churnpulse services up kafka3`` (or ``services up --brokers 3``) starts it on
127.0.0.1:29092-29094 (controllers on 29192-29194), small heaps, state under
``<state_dir>/kafka3``; ``services down kafka3`` stops the nodes we started. The single broker on
9092 is left alone. Point the processes at it with
``CHURN_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094``.

Tests build a :class:`BrokerCluster` of their own (free ports, a temp dir) to stop, kill and
restart single nodes (``tests/integration/test_broker_cluster.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from streams.services.common import (
    ServiceError,
    ServiceStatus,
    abandon,
    log_tail,
    our_pid,
    port_open,
    spawn,
    stop_pid,
    wait_for,
)
from streams.services.kafka import describe, find_java, format_storage
from streams.services.kafka_config import (
    BIND_HOST,
    KafkaPaths,
    load_cluster_id,
    render_cluster_node_properties,
    render_log4j,
)
from streams.services.kafka_jars import ensure_jars
from streams.settings import Settings

NAME = "kafka3"
PORTS = (29092, 29093, 29094)
CONTROLLER_PORTS = (29192, 29193, 29194)
HEAP = "384m"
BOOTSTRAP = ",".join(f"{BIND_HOST}:{p}" for p in PORTS)


def _closed(port: int) -> Callable[[], bool]:
    return lambda: not port_open(BIND_HOST, port)


@dataclass(frozen=True)
class BrokerCluster:
    """N broker+controller nodes on loopback ports, state under ``root`` (``node-<i>/``)."""

    root: Path
    ports: tuple[int, ...] = PORTS
    controller_ports: tuple[int, ...] = CONTROLLER_PORTS
    heap: str = HEAP
    cache_dir: Path = Path.home() / ".cache" / "churnpulse"
    scala: str = "2.13"
    version: str = "3.9.1"

    @property
    def size(self) -> int:
        return len(self.ports)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{BIND_HOST}:{p}" for p in self.ports)

    def node(self, i: int) -> KafkaPaths:
        """Files of node ``i`` (0-based; its Kafka ``node.id`` is ``i + 1``)."""
        return KafkaPaths(self.root / f"node-{i + 1}")

    def pid(self, i: int) -> int | None:
        p = self.node(i)
        return our_pid(p.pid, p.marker)

    def cluster_id(self) -> str:
        return load_cluster_id(self.root / "kafka-cluster-id")

    def start_node(self, i: int) -> Popen[bytes]:
        """Write node ``i``'s config, format its storage once, and start it (not waiting)."""
        p = self.node(i)
        for port in (self.ports[i], self.controller_ports[i]):
            # a killed JVM's leader thread is a zombie before its sockets close: wait a bit
            if not wait_for(_closed(port), 15.0, 0.1):
                raise ServiceError(f"port {port} (Kafka node {i + 1}) is taken")
        java = find_java()
        libs, _ = ensure_jars(self.cache_dir, self.scala, self.version)
        p.root.mkdir(parents=True, exist_ok=True)
        p.props.write_text(render_cluster_node_properties(
            i + 1, self.ports, self.controller_ports, p.data))
        p.log4j.write_text(render_log4j(p.log))
        format_storage(java, libs, p, self.cluster_id())
        cmd = [java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseSerialGC",
               "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
               f"-Dlog4j.configuration=file:{p.log4j}", f"-Dkafka.logs.dir={p.root}",
               "-cp", f"{libs}/*", "kafka.Kafka", str(p.props)]
        return spawn(cmd, p.out, p.pid, p.root)

    def ready(self, nodes: tuple[int, ...] | None = None) -> bool:
        """Whether every node of ``nodes`` (default all) answers with our cluster id and
        sees as many brokers as are meant to be up."""
        want = self.cluster_id()
        nodes = tuple(range(self.size)) if nodes is None else nodes
        for i in nodes:
            seen = describe(BIND_HOST, self.ports[i])
            if seen is None or seen[0] != want or seen[1] < len(nodes):
                return False
        return True

    def up(self, timeout_s: float = 180.0) -> list[int]:
        """Start every node that is not running and wait until all answer; their pids."""
        started: list[tuple[int, Popen[bytes]]] = []
        try:
            for i in range(self.size):
                if self.pid(i) is None:
                    started.append((i, self.start_node(i)))

            def dead() -> str | None:
                for i, proc in started:
                    if proc.poll() is not None:
                        return f"Kafka node {i + 1} exited during start-up ({proc.returncode})"
                return None

            if not wait_for(self.ready, timeout_s, 0.5, dead):
                raise ServiceError(f"the {self.size} Kafka nodes did not all answer within "
                                   f"{timeout_s:g}s", self.tails())
        except BaseException:
            for i, proc in started:
                abandon(proc, self.node(i).pid)
            raise
        return [pid for i in range(self.size) if (pid := self.pid(i)) is not None]

    def restart_node(self, i: int, timeout_s: float = 120.0) -> int:
        """Start node ``i`` again (same data) and wait until it answers; its pid."""
        proc = self.start_node(i)

        def answers() -> bool:
            seen = describe(BIND_HOST, self.ports[i])
            return seen is not None and seen[0] == self.cluster_id()

        def dead() -> str | None:
            code = proc.poll()
            return None if code is None else f"Kafka node {i + 1} exited ({code})"

        if not wait_for(answers, timeout_s, 0.5, dead):
            raise ServiceError(f"Kafka node {i + 1} did not answer again within "
                               f"{timeout_s:g}s", log_tail(self.node(i).log))
        return proc.pid

    def kill_node(self, i: int) -> int:
        """SIGKILL node ``i`` (a crash) and wait until it is gone; the pid it had."""
        p = self.node(i)
        pid = self.pid(i)
        if pid is None:
            raise ServiceError(f"Kafka node {i + 1} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_for(lambda: self.pid(i) is None, 30.0, 0.1):
            raise ServiceError(f"Kafka node {i + 1} (pid {pid}) survived SIGKILL")
        p.pid.unlink(missing_ok=True)
        return pid

    def stop_node(self, i: int, timeout_s: float = 30.0) -> tuple[int | None, str]:
        """Stop node ``i`` (SIGTERM: a controlled shutdown; SIGKILL at the deadline)."""
        p = self.node(i)
        return stop_pid(p.pid, p.marker, timeout_s)

    def down(self, timeout_s: float = 30.0) -> list[int]:
        """Stop every node we started, all at once (one by one, the last node's controlled
        shutdown waits for a quorum that is gone); the pids stopped."""
        pids = {i: pid for i in range(self.size) if (pid := self.pid(i)) is not None}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        wait_for(lambda: all(self.pid(i) is None for i in pids), timeout_s, 0.2)
        for i in range(self.size):  # SIGKILL what is left; pid files removed
            self.stop_node(i, 10.0)
        return list(pids.values())

    def tails(self) -> str:
        return "\n".join(f"node {i + 1}: {tail}" for i in range(self.size)
                         if (tail := log_tail(self.node(i).log, 5)))


def cluster(settings: Settings) -> BrokerCluster:
    """The ``services up kafka3`` cluster of these settings (default ports, small heaps)."""
    svc = settings.services
    return BrokerCluster(svc.state_dir.expanduser().resolve() / "kafka3",
                         cache_dir=svc.cache_dir, scala=svc.kafka_scala_version,
                         version=svc.kafka_version)


def _address(c: BrokerCluster) -> str:
    return f"{BIND_HOST}:{c.ports[0]}-{c.ports[-1]}"


def status(settings: Settings) -> ServiceStatus:
    c = cluster(settings)
    pids = [c.pid(i) for i in range(c.size)]
    alive = sum(1 for p in pids if p)
    if c.ready():
        detail = f"{c.size} brokers; {c.bootstrap}"
        if alive == c.size:
            return ServiceStatus(NAME, _address(c), "running-ours", pids[0], c.node(0).log,
                                 detail)
        return ServiceStatus(NAME, _address(c), "running-external", None, None, detail)
    return ServiceStatus(NAME, _address(c), "stopped", None, None,
                         f"{alive} of {c.size} nodes alive")


def up(settings: Settings) -> ServiceStatus:
    """Start the three nodes (the ones not running) and wait until all serve requests."""
    c = cluster(settings)
    if c.ready():
        return status(settings)
    started = time.monotonic()
    pids = c.up(settings.services.start_timeout_s * 2)
    return ServiceStatus(NAME, _address(c), "started", pids[0], c.node(0).log,
                         f"{c.size} brokers, RF 3, min ISR 2, ready in "
                         f"{time.monotonic() - started:.0f}s; {c.bootstrap}")


def down(settings: Settings, timeout_s: float = 30.0) -> ServiceStatus:
    """Stop the nodes we started (their data stays for the next ``up``)."""
    c = cluster(settings)
    stopped = c.down(timeout_s)
    return ServiceStatus(NAME, _address(c), "stopped", None, None,
                         f"{len(stopped)} nodes stopped")
