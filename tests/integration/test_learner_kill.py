"""The real ``churnpulse learner`` SIGKILLed five times (and restarted) while labels arrive and
it learns: in the end its learn count and model weights equal an uninterrupted learner's on
the same input, and the kills redid work (labels read again after each restart).

Two isolated pipelines get the same input: 600 customers with five packed snapshots each
(realistic 32-44-feature vectors, days 10-50, recorded as workers would), five waves of churn
labels on their labels topics, and the same watermark stages (days 16 ... 86). One learner
runs through it untouched; the other is killed once in each of the five label waves, the last
two while it is also learning (the day-10 and day-20 snapshots' horizons pass then).

How redelivery is counted, without races: the victim's Prometheus counter of label records
fetched is read, then its process group is frozen (SIGSTOP) and its checkpointed label count
read from Redis. A process that fetched more labels since its start than its frozen
checkpoint holds will read those labels again after the kill: that difference is the kill's
redelivery (a lower bound). Until it is positive the victim is resumed (SIGCONT) and the check
repeated; then it is SIGKILLed (its exit status asserted) and restarted. The dead learner's
Redis lock (15 s TTL, fencing in ``test_learner_lock.py``) is deleted once it has exited, so a
restart does not wait for the TTL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from online_models.observations import Observation
from streams.contracts import ChurnLabel, encode
from streams.kafka.producer import ChurnProducer
from streams.kafka.topics import ensure_named_topics
from streams.redis.model_registry import RedisModelRegistry
from streams.redis.observation_store import RedisObservationStore
from streams.settings import KafkaSettings, TopicSettings
from tests.integration.test_learner_restart import POLICY, Learner, labels_read, set_watermark
from tests.integration.worker_proc import Pipeline, wait_until
from tests.ports import free_port
from tests.unit.test_snapshot_format import realistic

pytestmark = pytest.mark.integration
DAY = 86400.0
T0 = 1_767_225_600.0
CUSTOMERS = 600
SNAPSHOT_DAYS = (10, 20, 30, 40, 50)
STAGES = (16, 26, 36, 46, 56, 66, 76, 86)  # watermark days; wave k (k < 5) at stage k
WAVE_RATE = 50.0  # labels/s: each wave of 100 labels flows for ~2 s
KILLS = 5


def churn_time(i: int) -> float | None:
    """Customers i % 6 == k < 5 churn at day 15 + 10k (wave k); i % 6 == 5 never."""
    k = i % 6
    return None if k == 5 else T0 + (15 + 10 * k) * DAY + i


def wave(k: int) -> list[ChurnLabel]:
    return [ChurnLabel(f"l{i}", f"c{i:05d}", t, True) for i in range(CUSTOMERS)
            if i % 6 == k and (t := churn_time(i)) is not None]


def expected_resolved(watermark: float) -> int:
    """Snapshots learned once the watermark passed: horizon over, not dropped by a churn
    at or before their time (a churn label is always released before such a horizon)."""
    n = 0
    for i in range(CUSTOMERS):
        churn = churn_time(i)
        for d in SNAPSHOT_DAYS:
            t = T0 + d * DAY
            if (churn is None or t < churn) and t + POLICY.horizon_s <= watermark:
                n += 1
    return n


def send_wave(pipeline: Pipeline, labels: list[ChurnLabel], per_s: float,
              half_sent: threading.Event) -> None:
    """Produce ``labels`` at ``per_s``; ``half_sent`` is set once half are in the topic."""
    topics = TopicSettings(labels=f"labels-{pipeline.tag}")
    with ChurnProducer(pipeline.bootstrap, topics) as producer:
        start = time.monotonic()
        for i, label in enumerate(labels):
            producer.send_raw(topics.labels, label.customer_id.encode(), encode(label.to_wire()))
            if i + 1 == len(labels) // 2:
                producer.flush()
                half_sent.set()
            lag = (i + 1) / per_s - (time.monotonic() - start)
            if lag > 0 and i % 10 == 9:
                time.sleep(lag)  # pacing the producer, not a sync
        producer.flush()
    half_sent.set()


class MeteredLearner(Learner):
    """A :class:`Learner` serving /metrics on a fresh port at each start."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(pipeline)
        self.port = 0
        self.began = 0.0
        self.start_s: list[float] = []
        self.redis_key_lock = f"{pipeline.prefix}:learner:lock"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["CHURN_METRICS__LEARNER_PORT"] = str(self.port)
        env["CHURN_MODEL__NAME"] = "logreg"  # weights and scaler statistics to compare
        env.pop("CHURN_METRICS__ENABLED", None)
        return env

    def start(self, ready: bool = True) -> subprocess.Popen[bytes]:
        self.port = free_port()
        self.began = time.monotonic()
        proc = super().start()
        if ready:
            self.wait_ready()
        return proc

    def wait_ready(self) -> None:
        n = len(self.procs) - 1
        proc = self.procs[n]
        wait_until(lambda: "learner ready" in self.log(n) or proc.poll() is not None, 60,
                   f"learner {n} ready")
        assert proc.poll() is None, self.log(n)
        self.start_s.append(round(time.monotonic() - self.began, 1))

    def labels_fetched(self) -> int:
        """This process's count of label records fetched from Kafka (Prometheus)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        topic = f'topic="labels-{self.pipeline.tag}"'
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("churnpulse_records_consumed_total") and topic in line)


def record_snapshots(pipeline: Pipeline) -> int:
    vectors = [realistic(seed) for seed in range(40)]

    async def main() -> int:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(pipeline.redis_url)
        store = RedisObservationStore(client, pipeline.prefix, POLICY)
        batch = [Observation(f"c{i:05d}", T0 + d * DAY + 60.0 * (i % 50),
                             vectors[(i * 7 + d) % len(vectors)], 0.05 + (i % 90) / 100.0,
                             "3-logreg")
                 for i in range(CUSTOMERS) for d in SNAPSHOT_DAYS]
        n = await store.record(batch)
        await client.aclose()
        return n

    return asyncio.run(main())


def model_parts(pipeline: Pipeline) -> dict[str, Any]:
    """Weights, intercept and scaler statistics of the newest published model's champion."""

    async def load() -> Any:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(pipeline.redis_url)
        try:
            registry = RedisModelRegistry(client, pipeline.prefix)
            version = await registry.current_version()
            assert version is not None, "no model published"
            return await registry.load(version)
        finally:
            await client.aclose()

    handle = asyncio.run(load())
    raw = getattr(handle.model, "raw", handle.model)
    parts: dict[str, Any] = {"steps": [type(raw).__name__]}
    for step in getattr(raw, "steps", {}).values() or [raw]:
        parts["steps"].append(type(step).__name__)
        if hasattr(step, "weights"):  # the linear model
            parts["weights"], parts["intercept"] = dict(step.weights), step.intercept
        if hasattr(step, "means"):  # the scaler
            parts["means"], parts["vars"] = dict(step.means), dict(getattr(step, "vars", {}))
    assert "weights" in parts, f"no linear model in {parts['steps']}"
    return parts


@pytest.fixture
def pipelines(kafka_bootstrap: str, redis_url: str, tmp_path: Path
              ) -> Iterator[tuple[Pipeline, Pipeline]]:
    pair = []
    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
        pair.append(Pipeline(kafka_bootstrap, redis_url, tmp_path / name))
    ensure_named_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=1),
                        [f"labels-{p.tag}" for p in pair])
    yield pair[0], pair[1]
    for p in pair:
        p.close()


class Killer:
    """Kills one learner with the redelivery check of the module docstring."""

    def __init__(self, learner: MeteredLearner) -> None:
        self.learner = learner
        self.proc = learner.start(ready=False)
        self.start_count = 0  # checkpointed labels when the current process started
        self.redelivered: list[int] = []
        self.looks: list[tuple[int, int, int, float]] = []  # start, fetched, checkpointed, s
        self.exit_codes: list[int | None] = []

    def kill_and_restart(self, timeout_s: float = 10.0) -> None:
        learner, proc = self.learner, self.proc
        pgid = proc.pid
        began = time.monotonic()
        deadline = began + timeout_s
        while True:
            fetched = learner.labels_fetched()
            os.killpg(pgid, signal.SIGSTOP)  # frozen: its checkpoint cannot move now
            checkpointed = labels_read(learner)
            ahead = self.start_count + fetched - checkpointed
            if ahead > 0 or time.monotonic() > deadline:
                break
            os.killpg(pgid, signal.SIGCONT)
            time.sleep(0.005)  # not a sync: let it run a few ms between two looks
        os.killpg(pgid, signal.SIGKILL)
        self.looks.append((self.start_count, fetched, checkpointed,
                           round(time.monotonic() - began, 2)))
        self.exit_codes.append(proc.wait(timeout=30))
        self.redelivered.append(max(0, ahead))
        learner.redis.delete(learner.redis_key_lock)  # the dead holder's; see the docstring
        self.start_count = checkpointed
        self.proc = learner.start()


def test_five_sigkills_end_with_the_uninterrupted_learners_count_and_weights(
        pipelines: tuple[Pipeline, Pipeline]) -> None:
    began = time.monotonic()
    ref_pipe, kill_pipe = pipelines
    assert record_snapshots(ref_pipe) == record_snapshots(kill_pipe) == CUSTOMERS * 5
    reference, victim = MeteredLearner(ref_pipe), MeteredLearner(kill_pipe)
    try:
        reference.start(ready=False)
        killer = Killer(victim)
        reference.wait_ready()
        victim.wait_ready()
        produced = 0
        for stage, day in enumerate(STAGES):
            labels = wave(stage) if stage < KILLS else []
            if labels:  # frozen while half the wave arrives: its next step reads a backlog
                os.killpg(killer.proc.pid, signal.SIGSTOP)
            halves = [threading.Event() for _ in pipelines]
            senders = [threading.Thread(target=send_wave, args=(p, labels, WAVE_RATE, h))
                       for p, h in zip(pipelines, halves, strict=True)]
            for s in senders:
                s.start()
            watermark = T0 + day * DAY
            for p in pipelines:
                set_watermark(p, watermark)
            try:
                if labels:  # one kill per wave, while its labels flow in
                    assert halves[1].wait(30), "half the wave produced"
                    os.killpg(killer.proc.pid, signal.SIGCONT)
                    killer.kill_and_restart()
            finally:
                for s in senders:
                    s.join()
            produced += len(labels)
            want = expected_resolved(watermark)
            for runner in (reference, victim):
                wait_until(lambda r=runner, n=produced, w=want:  # type: ignore[misc]
                           labels_read(r) == n and r.status().get("resolved", -1) == w, 60,
                           f"stage {stage}: {produced} labels read, {want} resolved")
        ref, got = reference.status(), victim.status()
    finally:
        for proc in victim.procs + reference.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
        reference.stop_all()
        victim.stop_all()
    # the kills happened: five SIGKILL exits, five restarts that came up ready
    assert killer.exit_codes == [-signal.SIGKILL] * KILLS
    assert len(victim.procs) == KILLS + 1
    assert all("learner ready at version" in victim.log(n) for n in range(KILLS + 1))
    # work was redone: labels fetched again after restarts
    assert sum(killer.redelivered) > 0, killer.redelivered
    # and nothing lost or doubled: the same counts and the same model as uninterrupted
    total = expected_resolved(T0 + STAGES[-1] * DAY)
    assert ref["resolved"] == got["resolved"] == total
    assert ref["learn_calls"] == got["learn_calls"] == total  # one model: one call each
    assert ref["labels"] == got["labels"]
    assert got["labels"]["labels"] == produced and got["labels"]["duplicates"] == 0
    assert got["positives"] == ref["positives"] > 0 and got["pending"] == 0
    ref_model, got_model = model_parts(ref_pipe), model_parts(kill_pipe)
    assert len(ref_model["weights"]) > 30
    assert got_model == ref_model
    print(f"learner kill x{KILLS}: redelivered labels per kill {killer.redelivered} "
          f"(start, fetched, checkpointed, s: {killer.looks}); starts {victim.start_s}, "
          f"reference {reference.start_s}; {total} resolutions; {time.monotonic() - began:.1f}s",
          file=sys.stderr)
