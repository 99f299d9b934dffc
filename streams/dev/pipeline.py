"""An isolated pipeline of real ``churnpulse`` processes, for integration tests and benchmarks.

A :class:`Pipeline` names its own topics, consumer group and Redis key prefix (a random tag), so
runs share one Kafka and one Redis without seeing each other; it starts ``churnpulse worker``
and ``churnpulse alerter`` subprocesses, waits for their readiness line, stops them and deletes
its Redis keys. Tests (``tests/integration``) and ``bench/`` both use it, so neither imports the
other.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

WORKER_READY = b"[^Worker]: Ready"
ALERTER_READY = b"alerter ready"


def wait_until(check: Callable[[], bool], timeout_s: float, what: str,
               interval_s: float = 0.1) -> None:
    """Poll ``check`` until true; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def stop_procs(procs: list[subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left at the deadline."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process group (a crash, for recovery tests)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def frozen(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    """SIGSTOP the process groups of ``procs`` for the block, SIGCONT them after (one killed
    inside is skipped). A fault test counts progress and injects the fault inside, so the fault
    begins exactly where the count says, however slowly the test's own process runs."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        os.killpg(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)


def where_it_waits(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 10.0,
                   keep: int = 40) -> list[str]:
    """The churnpulse frames of every thread and asyncio task of a running Faust worker.

    SIGUSR1 makes a Faust (mode) worker print the stack of every thread and task to its
    stderr (``mode.utils.logging.cry``); this waits for that dump in ``log`` and keeps its
    frames and task names in our own code (``/streams/``), deduplicated, at most ``keep``: a
    compact answer to "where is it stuck?" for a test that timed out."""
    if proc.poll() is not None:
        return ["(the process has exited)"]
    start = log.stat().st_size
    os.kill(proc.pid, signal.SIGUSR1)
    deadline, size, still_since = time.monotonic() + timeout_s, start, time.monotonic()
    while time.monotonic() < deadline:  # the dump is written once the log stops growing
        now = log.stat().st_size
        if now != size:
            size, still_since = now, time.monotonic()
        elif size > start and time.monotonic() - still_since > 0.5:
            break
        time.sleep(0.1)
    with log.open("rb") as f:
        f.seek(start)
        dump = f.read()
    lines = dict.fromkeys(  # frames and task names, not the local variables
        line.strip() for line in dump.decode(errors="replace").splitlines()
        if "/streams/" in line and line.lstrip().startswith(('File "', "<Task")))
    return list(lines)[:keep] or ["(no stack dump within the deadline)"]


def forget_prefix(redis_url: str, prefix: str) -> int:
    """Delete a run's Redis keys (``<prefix>:*``); returns how many there were."""
    from streams.redis.client import make_sync_redis
    from streams.settings import RedisSettings

    client = make_sync_redis(RedisSettings(url=redis_url))  # a redis+cluster:// URL too
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return len(keys)
    finally:
        client.close()


@dataclass
class Pipeline:
    """Names and environment of one isolated pipeline (own topics, group, Redis prefix)."""

    bootstrap: str
    redis_url: str
    workdir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def events(self) -> str:
        return f"events-{self.tag}"

    @property
    def scores(self) -> str:
        return f"scores-{self.tag}"

    @property
    def dead_letter(self) -> str:
        return f"dlq-{self.tag}"

    @property
    def prefix(self) -> str:
        return f"it{self.tag}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "CHURN_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "CHURN_REDIS__URL": self.redis_url,
            "CHURN_TOPICS__EVENTS": self.events,
            "CHURN_TOPICS__SCORES": self.scores,
            "CHURN_TOPICS__DEAD_LETTER": self.dead_letter,
            "CHURN_TOPICS__LABELS": f"labels-{self.tag}",
            "CHURN_TOPICS__ALERTS": f"alerts-{self.tag}",
            "CHURN_WORKER__APP_ID": f"it-{self.tag}",
            "CHURN_WORKER__DATA_DIR": str(self.workdir / "faust"),
            "CHURN_WORKER__SESSION_TIMEOUT_S": "6",
            "CHURN_REDIS__KEY_PREFIX": self.prefix,
        })
        return env

    def alert_env(self) -> dict[str, str]:
        """:meth:`env` plus the alert side's topics and INFO logs (the readiness line)."""
        env = self.env()
        env.update({
            "CHURN_TOPICS__RETENTION_ACTIONS": f"actions-{self.tag}",
            "CHURN_TOPICS__ALERT_OUTCOMES": f"outcomes-{self.tag}",
            "CHURN_TOPICS__MODEL_EVENTS": f"models-{self.tag}",
            "CHURN_LOG_LEVEL": "INFO",
        })
        return env

    def start(self, command: str, env: dict[str, str], ready: bytes,
              timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        """Start ``churnpulse <command>``; returns once its log shows ``ready``."""
        n = len(self.procs)
        path = self.workdir / f"{command}-{n}.log"
        log = path.open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", command], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        wait_until(lambda: ready in path.read_bytes() or proc.poll() is not None, timeout_s,
                   f"{command} {n} ready")
        assert proc.poll() is None, f"{command} exited early:\n{path.read_text(errors='replace')}"
        return proc

    def start_worker(self, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        return self.start("worker", self.env(), WORKER_READY, timeout_s)

    def start_alerter(self, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        return self.start("alerter", self.alert_env(), ALERTER_READY, timeout_s)

    def worker_log(self, n: int) -> str:
        return (self.workdir / f"worker-{n}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        stop_procs(self.procs)

    def close(self) -> None:
        """End of a run: stop its processes, delete its Redis keys."""
        self.stop_all()
        forget_prefix(self.redis_url, self.prefix)
