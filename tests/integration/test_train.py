"""Warm start: ``churnpulse train`` publishes a model a real worker scores with, and a learner
state ``churnpulse learner`` continues from (real Redis, real broker, real worker process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from streams.contracts import CustomerEvent
from streams.kafka.producer import ChurnProducer
from streams.learner.service import LearnerService, LearnerStateStore
from streams.redis.model_registry import RedisModelRegistry
from streams.redis.observation_store import RedisObservationStore
from streams.settings import KafkaSettings, TopicSettings, load_settings
from streams.timefmt import format_ts
from tests.integration.backtest_data import DAY, simulated
from tests.integration.worker_proc import Pipeline, collect

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    from streams.kafka.topics import ensure_topics

    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=2),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
    yield p
    p.close()


def train(pipeline: Pipeline, sim: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", "train",
                           str(sim / "events.jsonl"), str(sim / "labels.jsonl"), "--no-progress",
                           *extra], env=pipeline.env(), capture_output=True, text=True,
                          timeout=300, check=False)


def test_train_publishes_a_model_workers_score_with_and_the_learner_resumes(
        pipeline: Pipeline, tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    history = simulated(sim, customers=100, days=70)
    done = train(pipeline, sim)
    assert done.returncode == 0, done.stderr
    assert "published model" in done.stdout

    settings = load_settings(redis={"url": pipeline.redis_url,
                                    "key_prefix": pipeline.prefix})

    async def inspect() -> tuple[str | None, object, int, int, LearnerService]:
        client = aioredis.Redis.from_url(pipeline.redis_url)
        registry = RedisModelRegistry(client, pipeline.prefix)
        version = await registry.current_version()
        state = await LearnerStateStore(client, pipeline.prefix).load()
        store = RedisObservationStore(client, pipeline.prefix, LearnerService(
            settings, client).policy)
        pending = await store.count()
        churned = int(await client.hlen(f"{pipeline.prefix}:churned"))
        service = LearnerService(settings, client)
        await service.start(wait_s=5)  # the learner continues from the warm start
        await client.delete(service.states.lock_key)
        await client.aclose()
        return version, state, pending, churned, service

    version, state, pending, churned, service = asyncio.run(inspect())
    assert state is not None
    assert version == f"{state.version}-{settings.model.name}"  # type: ignore[attr-defined]
    assert state.learner.total > 1000  # type: ignore[attr-defined]
    assert pending > 0 and churned > 0
    assert service.state is not None and service.state.version == state.version  # type: ignore[attr-defined]
    assert service.state.learner.total == state.learner.total  # type: ignore[attr-defined]
    assert service.model_version() == version

    # a second train over the same state is refused (after its backtest): it runs while the
    # worker below starts
    again = subprocess.Popen([sys.executable, "-m", "streams.cli", "train",
                              str(sim / "events.jsonl"), str(sim / "labels.jsonl"),
                              "--no-progress"], env=pipeline.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # a worker scores new customers with the warm-started model at once
        pipeline.start_worker()
    finally:
        _, again_err = again.communicate(timeout=300)
    assert again.returncode == 1 and "--replace" in again_err
    t0 = history.ts_ms[-1] / 1000 + DAY
    with ChurnProducer(pipeline.bootstrap, TopicSettings(events=pipeline.events)) as producer:
        for i in range(20):
            producer.send_event(CustomerEvent(f"new-{i}", f"n{i}", "session", t0 + i * 60.0))
    records = collect(pipeline.bootstrap, pipeline.scores,
                      lambda rs: len({r["value"]["customer_id"] for r in rs  # type: ignore[index]
                                      if isinstance(r["value"], dict)}) >= 20, timeout_s=90)
    scores = [r["value"] for r in records if isinstance(r["value"], dict)]
    assert {s["model_version"] for s in scores} == {version}  # type: ignore[index]
    assert all(s["score"] != 0.5 for s in scores)  # type: ignore[index]
    first = [s for s in scores if s["customer_id"] == "n0"]  # type: ignore[index]
    assert first and first[0]["ts"] == format_ts(t0)  # type: ignore[index]
