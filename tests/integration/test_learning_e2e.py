"""End to end on the real broker and Redis: simulator → worker + learner → better scores.

The simulator publishes customers whose churn depends on their behaviour; a real worker scores
them and records snapshots, a real learner joins the churn labels and the passing horizons to
those snapshots and publishes new model versions, which the worker picks up. The delayed
rolling ROC AUC of the scores that were actually served must rise well above 0.5. A second
test checks that scorers switch to a newly published version within a few seconds.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from kafka import KafkaConsumer

from online_models.model import ModelHandle, make_model
from streams.contracts import CustomerEvent
from streams.kafka.producer import ChurnProducer
from streams.kafka.topic_reader import read_topic_sync
from streams.redis.model_registry import RedisModelRegistry
from streams.settings import TopicSettings, load_settings
from tests.integration.test_learner_restart import Learner
from tests.integration.worker_proc import Pipeline, wait_until

pytestmark = pytest.mark.integration
SIMULATION = ["--seed", "7", "--customers", "1000", "--days", "120", "--churn-rate", "0.08",
              "--signal-strength", "3", "--events-per-day", "1", "--no-progress",
              "--speedup", str(120 * 86400 / 60)]  # 120 simulated days in 60 s


class LearningPipeline(Pipeline):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({
            "CHURN_TOPICS__MODEL_EVENTS": f"model-events-{self.tag}",
            "CHURN_MODEL__HORIZON_DAYS": "14",
            "CHURN_MODEL__CHALLENGERS": "[]",
            "CHURN_MODEL__METRICS_WINDOW": "3000",
            "CHURN_MODEL__POLL_S": "1",
            "CHURN_SWEEP__CLOCK": "event",
        })
        return env


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = LearningPipeline(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


@pytest.fixture
def learner(pipeline: Pipeline) -> Iterator[Learner]:
    runner = Learner(pipeline)
    yield runner
    runner.stop_all()


def test_served_delayed_auc_rises_well_above_chance(pipeline: Pipeline,
                                                    learner: Learner) -> None:
    started = time.monotonic()
    learner.start()  # starts while the worker starts (two process start-ups at once)
    pipeline.start_worker()
    wait_until(lambda: "learner ready" in learner.log(0), 60, "learner ready")
    sim_log = pipeline.workdir / "simulate.log"
    sim = subprocess.Popen([sys.executable, "-m", "streams.cli", "simulate", "--live",
                            *SIMULATION], env=pipeline.env(), stdout=sim_log.open("wb"),
                           stderr=subprocess.STDOUT)
    history: list[tuple[float, int, float]] = []

    def learned_enough() -> bool:
        status = learner.status()
        served = status.get("served", {})
        history.append((time.monotonic() - started, int(served.get("n", 0)),
                        float(served.get("roc_auc") or 0.5)))
        return (sim.poll() is not None and served.get("n", 0) >= 20_000
                and served.get("roc_auc", 0.0) > 0.70)

    try:
        wait_until(learned_enough, 130, "served AUC above 0.70 over 20,000 resolutions",
                   interval_s=1.0)
    finally:
        status = learner.status()
        if sim.poll() is None:
            sim.kill()
        print(f"\nserved delayed AUC over time (s, resolved, auc): "
              f"{[(round(t), n, round(a, 3)) for t, n, a in history[::10]]}")
        print(f"final: resolved {status.get('resolved')}, served {status.get('served')}, "
              f"champion {status.get('models')}, labels {status.get('labels')}, "
              f"version {status.get('version')}, {time.monotonic() - started:.0f}s")
    assert sim.wait() == 0, sim_log.read_text(errors="replace")[-2000:]
    assert status["learn_calls"] == status["resolved"]
    assert status["labels"]["positives"] > 200
    scores = read_scores(pipeline)  # read once (the scores topic was read twice)
    versions = {s["model_version"] for s in scores}
    assert len(versions) > 3  # the worker followed the learner's versions
    check_calibration_flags(scores)


def read_scores(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every score up to the topic's end now (no idle timeout to wait out at the end)."""
    settings = load_settings(kafka={"bootstrap_servers": pipeline.bootstrap})
    return [orjson.loads(v) for _, v in read_topic_sync(settings, pipeline.scores, 60) if v]


def check_calibration_flags(scores: list[dict[str, Any]]) -> None:
    """Issue 10: scores of the untrained start are flagged, the learned versions' are
    calibrated probabilities (no run of 1.000), and scores carry the customer's value."""
    untrained = [s for s in scores if s["model_version"] == "0-untrained"]
    assert untrained and all(s["calibrated"] is False for s in untrained)
    calibrated = [float(s["score"]) for s in scores if s["calibrated"]]
    assert len(calibrated) > len(scores) / 2, (len(calibrated), len(scores))
    saturated = sum(p >= 0.999 for p in calibrated)
    assert saturated <= len(calibrated) / 1000, saturated
    valued = [s["value"] for s in scores if s.get("value") is not None]
    assert len(valued) > len(scores) * 0.3 and all(v >= 0 for v in valued)  # purchases
    print(f"{len(scores):,} scores: {len(untrained):,} untrained, "
          f"{len(scores) - len(calibrated) - len(untrained):,} of calibrating versions, "
          f"{len(calibrated):,} calibrated (max {max(calibrated):.3f}, {saturated} >= 0.999); "
          f"{len(valued):,} with a value")


def test_scorers_switch_to_a_new_version_within_a_few_seconds(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    stop = threading.Event()

    def trickle() -> None:
        topics = TopicSettings(events=pipeline.events)
        with ChurnProducer(pipeline.bootstrap, topics) as producer:
            i = 0
            while not stop.is_set():
                producer.send_event(CustomerEvent(f"e{i}", f"c{i % 5}", "session",
                                                  1_767_225_600.0 + i))
                producer.flush()
                i += 1
                time.sleep(0.05)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    consumer = KafkaConsumer(pipeline.scores, bootstrap_servers=pipeline.bootstrap,
                             auto_offset_reset="earliest", group_id=None)
    try:
        seen: list[str] = []

        def scored(version: str) -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                seen.extend(orjson.loads(m.value)["model_version"] for m in batch)
            return version in seen

        wait_until(lambda: scored("0-untrained"), 60, "first scores")
        model = make_model()
        for i in range(50):
            model.learn_one({"log_events_total": float(i % 5)}, i % 5 > 2)

        async def publish() -> None:
            client = aioredis.Redis.from_url(pipeline.redis_url)
            await RedisModelRegistry(client, pipeline.prefix).publish(
                ModelHandle("1-logreg", model))
            await client.aclose()

        asyncio.run(publish())
        published = time.monotonic()
        wait_until(lambda: scored("1-logreg"), 15, "a score with the new version")
        took = time.monotonic() - published
        print(f"\nnew version served {took:.2f}s after publishing")
        assert took < 5.0
    finally:
        stop.set()
        sender.join()
        consumer.close()
