"""Running real ``churnpulse worker`` processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from kafka import KafkaConsumer

READY = b"[^Worker]: Ready"


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

    def start_worker(self, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        log = (self.workdir / f"worker-{n}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=self.env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        path = self.workdir / f"worker-{n}.log"
        wait_until(lambda: READY in path.read_bytes() or proc.poll() is not None, timeout_s,
                   f"worker {n} ready")
        assert proc.poll() is None, f"worker exited early:\n{path.read_text(errors='replace')}"
        return proc

    def worker_log(self, n: int) -> str:
        return (self.workdir / f"worker-{n}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        stop_procs(self.procs)

    def close(self) -> None:
        """End of a test: stop its processes, delete its Redis keys."""
        self.stop_all()
        import redis

        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=f"{self.prefix}:*", count=1000):
            client.delete(key)
        client.close()


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


def wait_until(check: Callable[[], bool], timeout_s: float, what: str,
               interval_s: float = 0.1) -> None:
    """Poll ``check`` until true; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def collect(bootstrap: str, topic: str, done: Callable[[list[dict[str, object]]], bool],
            timeout_s: float) -> list[dict[str, object]]:
    """Read ``topic`` from the start until ``done(records)`` holds, or fail at the deadline."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, enable_auto_commit=False)
    records: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not done(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} records")
            for batch in consumer.poll(timeout_ms=200).values():
                for msg in batch:
                    records.append({"value": _json_or_none(msg.value),
                                    "raw": msg.value, "key": msg.key,
                                    "headers": dict(msg.headers or [])})
    finally:
        consumer.close()
    return records




def _json_or_none(raw: bytes | None) -> object:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
