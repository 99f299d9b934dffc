"""Redis goes away mid-stream: the worker retries, acknowledges nothing, and loses nothing."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.kafka.producer import ChurnProducer
from streams.kafka.topics import ensure_topics
from streams.settings import KafkaSettings, TopicSettings
from tests.integration.test_pipeline import make_events, redis_counts
from tests.integration.worker_proc import Pipeline, wait_until
from tests.ports import free_port

pytestmark = pytest.mark.integration


class RedisProcess:
    """A redis-server of this test's own, so that it can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (churnpulse services up installs it)")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # persistence on, so that a restart keeps what was confirmed before the outage
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.workdir), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 20, "redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


def test_worker_survives_a_redis_outage_without_losing_events(
        kafka_bootstrap: str, own_redis: RedisProcess, tmp_path: Path) -> None:
    p = Pipeline(kafka_bootstrap, own_redis.url, tmp_path)
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
    first = make_events(2000, 100, seed=5)
    second = make_events(2000, 100, seed=6, start=first[-1].ts + 30)
    expected = Counter(e.customer_id for e in first + second)
    try:
        p.start_worker()
        with ChurnProducer(kafka_bootstrap, TopicSettings(events=p.events)) as producer:
            for e in first:
                producer.send_event(e)
        customers = set(expected)
        wait_until(lambda: sum(redis_counts(p, customers).values()) == len(first), 60,
                   "the first half applied")
        own_redis.stop()
        with ChurnProducer(kafka_bootstrap, TopicSettings(events=p.events)) as producer:
            for e in second:
                producer.send_event(e)
        wait_until(lambda: "retrying" in p.worker_log(0), 60, "the worker to notice the outage")
        own_redis.start()
        wait_until(lambda: redis_counts(p, customers) == dict(expected), 90,
                   "every event applied exactly once after the outage")
        assert p.procs[0].poll() is None, "the worker must ride out the outage"
    finally:
        p.stop_all()
