"""A single-node Apache Kafka broker (KRaft, broker+controller) run from Maven Central jars."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from streams.services.common import (
    ServiceError,
    ServiceStatus,
    abandon,
    exited,
    is_loopback,
    log_tail,
    our_pid,
    port_open,
    spawn,
    split_host_port,
    stop_pid,
    wait_for,
)
from streams.services.kafka_config import (
    BIND_HOST,
    KafkaPaths,
    load_cluster_id,
    render_log4j,
    render_server_properties,
)
from streams.services.kafka_jars import ensure_jars
from streams.settings import Settings

NAME = "kafka"


def paths(settings: Settings) -> KafkaPaths:
    return KafkaPaths(settings.services.state_dir.expanduser().resolve())


@contextlib.contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """kafka-python logs every refused probe; keep our polling silent."""
    logger = logging.getLogger("kafka")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def describe(host: str, port: int, timeout_s: float = 3.0) -> tuple[str, int] | None:
    """(cluster id, brokers it reports) when a Kafka broker answers on host:port, else None
    (an answer that is not a description: ``("?", 0)``)."""
    if not port_open(host, port):
        return None
    from kafka import KafkaAdminClient  # type: ignore[import-untyped,unused-ignore]  # slow import

    ms = int(timeout_s * 1000)
    with quiet_kafka_client():
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=f"{host}:{port}", client_id="churnpulse-services-probe",
                bootstrap_timeout_ms=ms, request_timeout_ms=ms,
            )
            try:
                info = admin.describe_cluster()
            finally:
                admin.close()
        except Exception:  # any failure: no working Kafka here
            return None
    if not isinstance(info, dict):
        return "?", 0
    return str(info.get("cluster_id") or "?"), len(info.get("brokers") or ())


def probe(host: str, port: int, timeout_s: float = 3.0) -> str | None:
    """The cluster id when a Kafka broker answers on host:port, else None."""
    seen = describe(host, port, timeout_s)
    return None if seen is None else seen[0]


def _address(settings: Settings) -> tuple[str, int, str]:
    host, port = split_host_port(settings.kafka.bootstrap_servers, 9092)
    return host, port, f"{host}:{port}"


def status(settings: Settings) -> ServiceStatus:
    p = paths(settings)
    host, port, address = _address(settings)
    pid = our_pid(p.pid, p.marker)
    cid = probe(host, port)
    if pid is not None:
        detail = f"cluster {cid}" if cid else "process alive, not answering (yet)"
        return ServiceStatus(NAME, address, "running-ours", pid, p.log, detail)
    if cid is not None:
        return ServiceStatus(NAME, address, "running-external", None, None, f"cluster {cid}")
    detail = "port taken by something that is not Kafka" if port_open(host, port) else ""
    if not detail and p.pid.exists():
        detail = "stale pid file"
    return ServiceStatus(NAME, address, "stopped", None, None, detail)


def format_storage(java: str, libs: Path, p: KafkaPaths, cid: str) -> str:
    """Format the log dir once; the cluster id the data dir actually carries."""
    meta = p.data / "meta.properties"
    if meta.is_file():
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.partition("=")[2].strip()
    cmd = [
        java, "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool",
        "format", "-t", cid, "-c", str(p.props), "--ignore-formatted",
    ]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False, cwd=p.root,
    )
    if res.returncode != 0:
        raise ServiceError(
            f"Kafka storage format failed (exit {res.returncode})",
            "\n".join((res.stdout + res.stderr).splitlines()[-20:]),
        )
    return cid


def _tails(p: KafkaPaths) -> str:
    """JVM output (errors before logging starts) and the end of the broker log."""
    return "\n".join(t for t in (log_tail(p.out, 10), log_tail(p.log, 15)) if t)


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError(
            "Java ('java') is not on PATH: Kafka needs a JRE 17+ "
            "(install it with 'apt-get install -y openjdk-17-jre-headless')"
        )
    return java


LOADING_LIMIT_S = 900.0  # a broker still writing its log (loading old partitions) gets this long


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _partition_logs(data: Path) -> int:
    try:
        return sum(1 for d in data.iterdir() if d.is_dir())
    except OSError:
        return 0


def up(settings: Settings) -> ServiceStatus:
    """Start our broker unless one already answers; wait until it serves requests."""
    svc, p = settings.services, paths(settings)
    host, port, address = _address(settings)
    ctl, timeout = svc.kafka_controller_port, svc.start_timeout_s
    pid = our_pid(p.pid, p.marker)
    if pid is not None:
        if not wait_for(lambda: probe(host, port) is not None, timeout, 0.5):
            raise ServiceError(f"our Kafka (pid {pid}) does not answer on {address}", _tails(p))
        return ServiceStatus(NAME, address, "running-ours", pid, p.log, "already running")
    if (cid := probe(host, port)) is not None:
        return ServiceStatus(NAME, address, "running-external", None, None, f"cluster {cid}")
    if not is_loopback(host):
        raise ServiceError(f"no Kafka answers on {address} and it is not a local address")
    if port_open(host, port):
        raise ServiceError(f"port {port} is taken by something that is not Kafka")
    if port_open(BIND_HOST, ctl):
        raise ServiceError(f"Kafka controller port {ctl} is taken by another process")
    java = find_java()
    libs, fetched_s = ensure_jars(svc.cache_dir, svc.kafka_scala_version, svc.kafka_version)
    p.root.mkdir(parents=True, exist_ok=True)
    p.props.write_text(render_server_properties(port, ctl, p.data))
    p.log4j.write_text(render_log4j(p.log))
    ours = format_storage(java, libs, p, load_cluster_id(p.cluster_id))
    cmd = [
        java, f"-Xmx{svc.kafka_heap}", f"-Xms{svc.kafka_heap}", "-XX:+UseG1GC",
        "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{p.log4j}",
        f"-Dkafka.logs.dir={p.root}", "-cp", f"{libs}/*", "kafka.Kafka", str(p.props),
    ]
    started = time.monotonic()
    proc = spawn(cmd, p.out, p.pid, p.root)
    try:  # ready = OUR cluster id answers (not a broker that raced us to the port)
        ready = wait_for(lambda: probe(host, port) == ours, timeout, 0.5, exited(proc, "Kafka"),
                         progress=lambda: _size(p.log), limit_s=LOADING_LIMIT_S)
    except ServiceError as exc:
        abandon(proc, p.pid)
        if (other := probe(host, port)) is not None:
            detail = f"cluster {other} (took the port while ours started)"
            return ServiceStatus(NAME, address, "running-external", None, None, detail)
        raise ServiceError(f"{exc.message}; see {p.log} and {p.out}", _tails(p)) from None
    except BaseException:
        abandon(proc, p.pid)
        raise
    if not ready:
        abandon(proc, p.pid)
        msg = (f"Kafka did not answer on {address} within {timeout:g}s of its last log line "
               f"(stopped it); its data dir holds {_partition_logs(p.data):,} partition logs")
        raise ServiceError(msg, _tails(p))
    detail = f"ready in {time.monotonic() - started:.1f}s"
    if fetched_s:
        detail += f" (jars fetched in {fetched_s:.0f}s)"
    return ServiceStatus(NAME, address, "started", proc.pid, p.log, detail)


def down(settings: Settings, timeout_s: float = 30.0) -> ServiceStatus:
    """Stop the broker we started (never another one)."""
    p = paths(settings)
    host, port, address = _address(settings)
    pid, detail = stop_pid(p.pid, p.marker, timeout_s)
    if pid is None and probe(host, port) is not None:
        detail = "not started by us: left running"
        return ServiceStatus(NAME, address, "running-external", None, None, detail)
    return ServiceStatus(NAME, address, "stopped", pid, p.log, detail)
