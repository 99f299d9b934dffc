"""A local ``redis-server`` (Debian's package) run under our own pid file."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from streams.redis.client import make_sync_redis
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
    stop_pid,
    wait_for,
)
from streams.settings import Settings

NAME = "redis"
BIND_HOST = "127.0.0.1"
MARKER = "redis-server"  # redis rewrites its title to "<argv0> 127.0.0.1:<port>"


@dataclass(frozen=True)
class RedisPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "redis-data"

    @property
    def log(self) -> Path:
        return self.root / "redis.log"

    @property
    def out(self) -> Path:
        return self.root / "redis.out"

    @property
    def pid(self) -> Path:
        return self.root / "redis.pid"


def paths(settings: Settings) -> RedisPaths:
    return RedisPaths(settings.services.state_dir.expanduser().resolve())


def url_host_port(url: str) -> tuple[str, int]:
    """Host and port of a ``redis://`` URL (port 6379 when absent)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ServiceError(f"cannot run a local server for {parts.scheme or 'a schemeless'} URL")
    try:
        return parts.hostname or "127.0.0.1", parts.port or 6379
    except ValueError:
        raise ServiceError(f"bad port in Redis URL {url!r}") from None


def server_args(binary: str, port: int, p: RedisPaths) -> list[str]:
    """argv of our redis-server: loopback only, in the foreground, no persistence."""
    return [
        binary, "--port", str(port), "--bind", BIND_HOST, "--daemonize", "no",
        "--dir", str(p.data), "--logfile", str(p.log), "--save", "", "--appendonly", "no",
        "--protected-mode", "yes",
    ]


def probe(settings: Settings, timeout_s: float = 1.0) -> str | None:
    """'PONG' (or why it is a Redis anyway) when a Redis answers at ``redis.url``, else None."""
    host, port = url_host_port(settings.redis.url)
    if not port_open(host, port):
        return None
    client = make_sync_redis(settings.redis, timeout_s=timeout_s)
    try:
        return "PONG" if client.ping() else None
    except redis.AuthenticationError:
        return "answers (authentication failed)"
    except redis.ResponseError as exc:  # NOAUTH and friends come from a real Redis
        return f"answers ({str(exc).split()[0]})"
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def server_pid(settings: Settings, timeout_s: float = 1.0) -> int | None:
    """The pid the Redis at ``redis.url`` reports (INFO server), None when it does not answer."""
    host, port = url_host_port(settings.redis.url)
    if not port_open(host, port):
        return None
    client = make_sync_redis(settings.redis, timeout_s=timeout_s)
    try:
        info = client.info("server")
        return int(info["process_id"])
    except (redis.RedisError, OSError, KeyError, TypeError, ValueError):
        return None
    finally:
        client.close()


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
        timeout=900, check=False,
    )


def ensure_binary() -> str:
    """Path of ``redis-server``, installing Debian's package when it is missing."""
    if (found := shutil.which("redis-server")) is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise ServiceError("redis-server is not installed and there is no apt-get to install it")
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") is not None:
        prefix = ["sudo", "-n"]
    else:
        raise ServiceError("redis-server is missing: run 'apt-get install -y redis-server' as root")
    install = [*prefix, apt, "install", "-y", "-q", "redis-server"]
    res = _run(install)
    if res.returncode != 0:
        _run([*prefix, apt, "update", "-q"])
        res = _run(install)
    found = shutil.which("redis-server")
    if res.returncode != 0 or found is None:
        raise ServiceError(
            f"could not install redis-server ('{' '.join(install)}' exited {res.returncode})",
            "\n".join((res.stdout + res.stderr).splitlines()[-10:]),
        )
    return found


def status(settings: Settings) -> ServiceStatus:
    p = paths(settings)
    host, port = url_host_port(settings.redis.url)
    address = f"{host}:{port}"
    pid = our_pid(p.pid, MARKER)
    answer = probe(settings)
    if pid is not None:
        detail = answer or "process alive, not answering (yet)"
        return ServiceStatus(NAME, address, "running-ours", pid, p.log, detail)
    if answer is not None:
        return ServiceStatus(NAME, address, "running-external", None, None, answer)
    detail = "port taken by something that is not Redis" if port_open(host, port) else ""
    if not detail and p.pid.exists():
        detail = "stale pid file"
    return ServiceStatus(NAME, address, "stopped", None, None, detail)


def _tails(p: RedisPaths) -> str:
    return "\n".join(t for t in (log_tail(p.out, 10), log_tail(p.log, 15)) if t)


def up(settings: Settings) -> ServiceStatus:
    """Start our redis-server unless a Redis already answers; wait until PING works."""
    p, timeout = paths(settings), settings.services.start_timeout_s
    host, port = url_host_port(settings.redis.url)
    address = f"{host}:{port}"
    pid = our_pid(p.pid, MARKER)
    if pid is not None:
        if not wait_for(lambda: probe(settings) is not None, timeout):
            msg = f"our Redis (pid {pid}) does not answer on {address}"
            raise ServiceError(msg, log_tail(p.log))
        return ServiceStatus(NAME, address, "running-ours", pid, p.log, "already running")
    if (answer := probe(settings)) is not None:
        return ServiceStatus(NAME, address, "running-external", None, None, answer)
    if not is_loopback(host):
        raise ServiceError(f"no Redis answers on {address} and it is not a local address")
    if port_open(host, port):
        raise ServiceError(f"port {port} is taken by something that is not Redis")
    binary = ensure_binary()
    p.data.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = spawn(server_args(binary, port, p), p.out, p.pid, p.root)
    try:
        ready = wait_for(  # ready = OUR server answers (not one that raced us to the port)
            lambda: server_pid(settings) == proc.pid, timeout, 0.05, exited(proc, "redis-server")
        )
    except ServiceError as exc:
        abandon(proc, p.pid)
        if (other := probe(settings)) is not None:
            detail = f"{other} (took the port while ours started)"
            return ServiceStatus(NAME, address, "running-external", None, None, detail)
        raise ServiceError(f"{exc.message}; see {p.log}", _tails(p)) from None
    except BaseException:
        abandon(proc, p.pid)
        raise
    if not ready:
        abandon(proc, p.pid)
        raise ServiceError(
            f"Redis did not answer on {address} within {timeout:g}s (stopped it)", _tails(p)
        )
    detail = f"ready in {time.monotonic() - started:.2f}s"
    return ServiceStatus(NAME, address, "started", proc.pid, p.log, detail)


def down(settings: Settings, timeout_s: float = 15.0) -> ServiceStatus:
    """Stop the redis-server we started (never another one)."""
    p = paths(settings)
    host, port = url_host_port(settings.redis.url)
    pid, detail = stop_pid(p.pid, MARKER, timeout_s)
    if pid is None and probe(settings) is not None:
        detail = "not started by us: left running"
        return ServiceStatus(NAME, f"{host}:{port}", "running-external", None, None, detail)
    return ServiceStatus(NAME, f"{host}:{port}", "stopped", pid, p.log, detail)
