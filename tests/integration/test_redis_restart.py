"""Redis (AOF on) is killed and restarted during a replay: the worker pauses, resumes by itself,
and every event is counted exactly once.

The test runs its own ``redis-server`` on a free port (the shared one stays up) with
``appendfsync always``, so a write Redis acknowledged survives a SIGKILL: with ``everysec`` the
last second of acknowledged writes may be lost, which no client can detect (see
docs/scaling.md). The replay arrives in three parts; Redis is killed twice, each time while
events of the part are still to be applied.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.contracts import CustomerEvent
from streams.dev.pipeline import Pipeline, frozen, wait_until
from streams.kafka.producer import ChurnProducer
from streams.kafka.topics import ensure_topics
from streams.settings import KafkaSettings, TopicSettings
from tests.ports import free_port

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0
EVENTS, CUSTOMERS, PARTS = 9_000, 300, 3


class OwnRedis:
    """A redis-server of this test: AOF on, fsync on every write, killed and restarted."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.dir = root / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        wait_until(self.answers, 30, "our redis-server answering", 0.05)

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_worker_rides_out_two_redis_restarts(kafka_bootstrap: str, own_redis: OwnRedis,
                                             tmp_path: Path) -> None:
    p = Pipeline(kafka_bootstrap, own_redis.url, tmp_path)
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
    events = [CustomerEvent(f"x{i}", f"c{(i * 31) % CUSTOMERS}", "session", T0 + i * 10.0, None)
              for i in range(EVENTS)]
    expected = Counter(e.customer_id for e in events)
    part = EVENTS // PARTS
    client = redis.Redis(port=own_redis.port, socket_timeout=2)

    def applied() -> int:
        try:
            pipe = client.pipeline(transaction=False)
            for cid in expected:
                pipe.hget(f"{p.prefix}:{{c:{cid}}}:f", "n")
            return sum(int(n or 0) for n in pipe.execute())
        except redis.ConnectionError:
            return -1

    try:
        p.start_worker()
        in_flight = 0
        with ChurnProducer(kafka_bootstrap, TopicSettings(events=p.events)) as producer:
            for k in range(PARTS):
                for e in events[k * part:(k + 1) * part]:
                    producer.send_event(e)
                producer.flush()
                if k == PARTS - 1:
                    break
                target = k * part + part // 3
                wait_until(lambda t=target: applied() > t, 120, f"{target} applied", 0.02)
                with frozen(p.procs[0]):  # the crash begins where this count says
                    in_flight += applied() < (k + 1) * part
                    own_redis.kill()
                own_redis.start()  # same port, same AOF: the worker reconnects by itself
        assert own_redis.starts == PARTS
        wait_until(lambda: applied() == EVENTS, 180, "every event after the restarts")
        pipe = client.pipeline(transaction=False)
        for cid in expected:
            pipe.hget(f"{p.prefix}:{{c:{cid}}}:f", "n")
        assert {cid: int(n or 0) for cid, n in zip(expected, pipe.execute(), strict=True)} \
            == dict(expected)  # nothing lost, nothing applied twice
        assert in_flight > 0, "Redis went down only after the events were applied"
        assert p.procs[0].poll() is None, "the worker died instead of waiting for Redis"
    finally:
        client.close()
        p.stop_all()
