"""A local Redis Cluster: three masters and three replicas from the same ``redis-server``, on
ports 7001-7006 (loopback), joined with ``redis-cli --cluster create``.

``churnpulse services up cluster`` starts it (reused when it already answers), ``services down
cluster`` stops the nodes we started; the plain Redis on 6379 is left alone. Point the
processes at it with ``CHURN_REDIS__URL=redis+cluster://127.0.0.1:7001`` (or
``CHURN_REDIS__CLUSTER=true``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from streams.services.common import (
    ServiceError,
    ServiceStatus,
    log_tail,
    our_pid,
    port_open,
    spawn,
    stop_pid,
    wait_for,
)
from streams.settings import Settings

NAME = "cluster"
HOST = "127.0.0.1"
PORTS = (7001, 7002, 7003, 7004, 7005, 7006)
MARKER = "redis-server"
URL = f"redis+cluster://{HOST}:{PORTS[0]}"


def root(settings: Settings) -> Path:
    return settings.services.state_dir.expanduser().resolve() / "redis-cluster"


def node_args(binary: str, port: int, data: Path) -> list[str]:
    """argv of one node: cluster mode, loopback, AOF on (a restarted node keeps its data)."""
    return [binary, "--port", str(port), "--bind", HOST, "--daemonize", "no",
            "--dir", str(data), "--logfile", str(data / "redis.log"), "--save", "",
            "--appendonly", "yes", "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "3000",
            "--protected-mode", "yes"]


def cluster_ok(timeout_s: float = 1.0) -> bool:
    """Whether a cluster answers on the first port with every slot served."""
    if not port_open(HOST, PORTS[0]):
        return False
    client = redis.Redis(host=HOST, port=PORTS[0], socket_timeout=timeout_s)
    try:
        info = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        return isinstance(info, dict) and str(info.get("cluster_state")) == "ok"
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def replicas_online(timeout_s: float = 1.0) -> bool:
    """Whether every primary serving slots has each replica ``CLUSTER NODES`` gives it
    attached and in sync (``state=online`` in its ``INFO replication``).

    ``cluster_state:ok`` comes before that: a replica still loading its first full copy
    confirms no ``WAIT``, so a process writing with the replica barrier
    (``CHURN_REDIS__WAIT_REPLICAS``) right after ``--cluster create`` would time out.
    The first node's ``CLUSTER NODES`` also lags ``--cluster create`` by a gossip round
    (replicas still listed as empty masters), so every primary of this local cluster
    (one replica each) is held to at least one, whatever that view says; and a view in which
    the primaries checked do not serve all 16,384 slots (a primary not yet known to serve
    any, so skipped) is not in sync either: a CI run's cluster tests found 7002's replica
    still waiting for its first copy after ``up`` had returned."""
    client = redis.Redis(host=HOST, port=PORTS[0], socket_timeout=timeout_s)
    try:
        nodes = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
    if not isinstance(nodes, dict):
        return False
    wanted: dict[str, int] = {}
    for n in nodes.values():
        flags = str(n.get("flags", ""))
        if "slave" in flags and "fail" not in flags:
            wanted[str(n.get("master_id"))] = wanted.get(str(n.get("master_id")), 0) + 1
    covered = 0
    for addr, n in nodes.items():
        flags = str(n.get("flags", ""))
        if "master" not in flags or not n.get("slots") or "fail" in flags:
            continue
        want = max(wanted.get(str(n.get("node_id")), 0), 1)
        if online_replicas(str(addr), timeout_s) < want:
            return False
        covered += slots_served(n.get("slots"))
    return covered == CLUSTER_SLOTS


CLUSTER_SLOTS = 16384


def slots_served(ranges: object) -> int:
    """How many slots a ``CLUSTER NODES`` entry's ``slots`` (as redis-py parses them: lists
    of ``[start, end]`` or ``[slot]`` strings; importing/migrating marks ignored) covers.

    >>> slots_served([["0", "5460"]]), slots_served([["5461"], ["5462", "5463"]])
    (5461, 3)
    >>> slots_served([["[5460->-abc]"]]), slots_served(None)
    (0, 0)
    """
    if not isinstance(ranges, list):
        return 0
    total = 0
    for r in ranges:
        if isinstance(r, list) and r and all(str(x).isdigit() for x in r):
            total += int(r[-1]) - int(r[0]) + 1
    return total


def online_replicas(addr: str, timeout_s: float) -> int:
    """How many replicas the primary at ``host:port`` (``@cport`` allowed) has in sync."""
    host, _, port = addr.split("@")[0].rpartition(":")
    client = redis.Redis(host=host or HOST, port=int(port), socket_timeout=timeout_s)
    try:
        info = client.info("replication")
    except (redis.RedisError, OSError):
        return 0
    finally:
        client.close()
    return sum(1 for key, value in info.items()
               if key.startswith("slave") and isinstance(value, dict)
               and value.get("state") == "online")


def status(settings: Settings) -> ServiceStatus:
    base = root(settings)
    pids = [our_pid(base / str(p) / "pid", MARKER) for p in PORTS]
    address = f"{HOST}:{PORTS[0]}-{PORTS[-1]}"
    if cluster_ok():
        if all(pids):
            return ServiceStatus(NAME, address, "running-ours", pids[0], None, "cluster_state:ok")
        return ServiceStatus(NAME, address, "running-external", None, None, "cluster_state:ok")
    return ServiceStatus(NAME, address, "stopped", None, None,
                         f"{sum(1 for p in pids if p)} of {len(PORTS)} nodes alive")


def up(settings: Settings) -> ServiceStatus:
    """Start the six nodes and join them, unless a cluster already answers; either way,
    return once every replica is in sync with its primary (see :func:`replicas_online`)."""
    if cluster_ok():
        if not wait_for(replicas_online, settings.services.start_timeout_s, 0.1):
            raise ServiceError("the cluster's replicas did not come in sync with their primaries",
                               log_tail(root(settings) / str(PORTS[0]) / "redis.log"))
        return status(settings)
    binary = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if binary is None or cli is None:
        raise ServiceError("redis-server and redis-cli are needed for the local cluster")
    base = root(settings)
    timeout = settings.services.start_timeout_s
    fresh = []
    for port in PORTS:
        data = base / str(port)
        if our_pid(data / "pid", MARKER) is not None:
            continue
        if port_open(HOST, port):
            raise ServiceError(f"port {port} is taken by something we did not start")
        data.mkdir(parents=True, exist_ok=True)
        fresh.append(not (data / "nodes.conf").exists())
        spawn(node_args(binary, port, data), data / "redis.out", data / "pid", data)
    if not wait_for(lambda: all(port_open(HOST, p) for p in PORTS), timeout, 0.05):
        raise ServiceError("cluster nodes did not open their ports",
                           log_tail(base / str(PORTS[0]) / "redis.log"))
    if fresh and all(fresh):
        res = subprocess.run(
            [cli, "--cluster", "create", *(f"{HOST}:{p}" for p in PORTS),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=120, check=False,
            stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise ServiceError("redis-cli --cluster create failed",
                               "\n".join((res.stdout + res.stderr).splitlines()[-10:]))
    if not wait_for(cluster_ok, timeout, 0.1):
        raise ServiceError("the cluster did not reach cluster_state:ok",
                           log_tail(base / str(PORTS[0]) / "redis.log"))
    if not wait_for(replicas_online, timeout, 0.1):
        raise ServiceError("the cluster's replicas did not come in sync with their primaries",
                           log_tail(base / str(PORTS[0]) / "redis.log"))
    return ServiceStatus(NAME, f"{HOST}:{PORTS[0]}-{PORTS[-1]}", "started", None,
                         base / str(PORTS[0]) / "redis.log", f"3 masters + 3 replicas; {URL}")


def down(settings: Settings, timeout_s: float = 15.0) -> ServiceStatus:
    """Stop the nodes we started (their data and nodes.conf stay for the next ``up``)."""
    base = root(settings)
    stopped = [stop_pid(base / str(p) / "pid", MARKER, timeout_s)[0] for p in PORTS]
    detail = f"{sum(1 for s in stopped if s)} nodes stopped"
    return ServiceStatus(NAME, f"{HOST}:{PORTS[0]}-{PORTS[-1]}", "stopped", None, None, detail)
