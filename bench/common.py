"""Helpers shared by the benchmarks: isolated topics, worker processes, pre-produced events."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from streams.contracts import encode
from streams.dev.pipeline import WORKER_READY, forget_prefix, stop_procs
from streams.timefmt import format_ts

__all__ = ["PacedPublisher", "bench_env", "cpu_seconds", "event_bytes", "forget_prefix",
           "forget_topics", "new_tag", "produce", "start_worker", "stop"]
T0 = 1_767_225_600.0
KINDS = ("session", "session", "feature_use", "purchase", "support_ticket", "payment_failure")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def bench_env(tag: str, workdir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CHURN_TOPICS__EVENTS": f"bench-events-{tag}",
        "CHURN_TOPICS__SCORES": f"bench-scores-{tag}",
        "CHURN_TOPICS__DEAD_LETTER": f"bench-dlq-{tag}",
        "CHURN_TOPICS__LABELS": f"bench-labels-{tag}",
        "CHURN_TOPICS__ALERTS": f"bench-alerts-{tag}",
        "CHURN_WORKER__APP_ID": f"bench-{tag}",
        "CHURN_WORKER__DATA_DIR": str(workdir / f"faust-{tag}"),
        "CHURN_REDIS__KEY_PREFIX": f"b{tag}",
        "CHURN_LOG_LEVEL": "INFO",
    })
    env.update(extra)
    return env


def forget_topics(bootstrap: str, env: dict[str, str]) -> None:
    """Delete a run's topics (``bench_env``'s names and the worker app's own): a broker that
    keeps every run's partitions grows by thousands of them (a local broker here stopped with
    "No space left on device" at ~5,900 partitions)."""
    names = [v for k, v in env.items() if k.startswith("CHURN_TOPICS__") and v.startswith("bench-")]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        app = env.get("CHURN_WORKER__APP_ID", "")  # Faust's own, e.g. <app>-__assignor-__leader
        names += [n for n in existing if app.startswith("bench-") and n.startswith(app + "-")]
        if gone := [n for n in names if n in existing]:
            admin.delete_topics(gone)
    except KafkaError as exc:
        print(f"could not delete the run's topics {names}: {exc}")
    finally:
        admin.close()


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


def event_bytes(i: int, customers: int, rng: random.Random) -> tuple[bytes, bytes]:
    cid = f"c-{rng.randrange(customers):07d}"
    kind = rng.choice(KINDS)
    record = {"schema_version": 1, "event_id": f"b-{i}", "customer_id": cid, "event_type": kind,
              "ts": format_ts(T0 + i * 0.5)}
    if kind == "purchase":
        record["value"] = 19.9
    return cid.encode(), encode(record)


def produce(bootstrap: str, topic: str, n: int, customers: int, seed: int = 1) -> float:
    """Publish n events as fast as possible; returns seconds taken."""
    rng = random.Random(seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024,
                             acks=1, compression_type=None)
    start = time.perf_counter()
    for i in range(n):
        key, value = event_bytes(i, customers, rng)
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return time.perf_counter() - start


class PacedPublisher(threading.Thread):
    """Publishes :func:`event_bytes` events to ``topic`` at ``rate`` per second for ``seconds``
    (kafka-python, linger 2 ms, leader acks; ``stopping`` ends it early); ``sent`` counts them."""

    def __init__(self, bootstrap: str, topic: str, rate: float, seconds: float,
                 customers: int) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.seconds, self.customers = seconds, customers
        self.sent = 0
        self.began = 0.0  # wall time of the first send
        self.stopping = threading.Event()

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=2, acks=1)
        # the topic's metadata before the clock starts: fetched by the first send instead, it
        # held the first 250-500 events back and released them as one burst
        producer.partitions_for(self.topic)
        rng = random.Random(2)
        self.began = time.time()
        start = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() - start < self.seconds:
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                key, value = event_bytes(self.sent, self.customers, rng)
                producer.send(self.topic, key=key, value=value)
                self.sent += 1
            time.sleep(0.002)
        producer.flush()
        producer.close()


def start_worker(env: dict[str, str], log: Path, naive: bool = False,
                 cmd: list[str] | None = None) -> subprocess.Popen[bytes]:
    """The worker (or the naive one, or ``cmd``) started with ``env``, once it logs ready."""
    cmd = cmd or ([sys.executable, str(Path(__file__).with_name("naive_worker.py"))] if naive
                  else [sys.executable, "-m", "streams.cli", "worker"])
    proc = subprocess.Popen(cmd, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while WORKER_READY not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_procs([proc], timeout_s=30.0)
