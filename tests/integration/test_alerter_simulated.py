"""Done-when check on the real services: simulator → worker + learner → alerter, SIGKILL included.

The simulator publishes a churning customer base live; a real worker scores it, a real learner
learns from the churn labels (so scores come to mean something and cross the thresholds) and a
real alerter turns the scores into alerts; the alerter is SIGKILLed once mid-stream and
restarted. At the end, in the committed alerts topic: every alert id once, and for every
customer the learner never marked churned, exactly the ids the pure policy gives on the
committed scores (one alert per crossing). What customers with a churn label get depends on
when the learner's churn mark landed relative to their scores (and when a returning customer's
mark was cleared), so for them the check is uniqueness.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from alerts.contracts import decode_score
from alerts.policy import PolicyParams, run
from tests.integration.alerter_proc import committed, kill, start_alerter
from tests.integration.test_learner_restart import Learner
from tests.integration.worker_proc import Pipeline, wait_until

SIMULATION = ["--seed", "11", "--customers", "800", "--days", "90", "--churn-rate", "0.08",
              "--signal-strength", "3", "--events-per-day", "1", "--no-progress",
              "--speedup", str(90 * 86400 / 45)]  # 90 simulated days in 45 s
# Scores are calibrated probabilities (docs/learning.md): in 90 simulated days few customers
# reach the default 0.6, so the alerter and the pure policy both run with lower thresholds.
THRESHOLDS = {"enter": 0.2, "exit": 0.1, "high": 0.3, "critical": 0.45}


class SimPipeline(Pipeline):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"CHURN_TOPICS__MODEL_EVENTS": f"model-events-{self.tag}",
                    "CHURN_TOPICS__RETENTION_ACTIONS": f"actions-{self.tag}",
                    "CHURN_TOPICS__ALERT_OUTCOMES": f"outcomes-{self.tag}",
                    "CHURN_MODEL__HORIZON_DAYS": "14", "CHURN_MODEL__POLL_S": "1",
                    "CHURN_SWEEP__CLOCK": "event",
                    **{f"CHURN_ALERTS__{k.upper()}": str(v) for k, v in THRESHOLDS.items()}})
        return env


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = SimPipeline(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


@pytest.fixture
def learner(pipeline: Pipeline) -> Iterator[Learner]:
    runner = Learner(pipeline)
    yield runner
    runner.stop_all()


def test_simulated_customers_alert_once_per_crossing_across_a_kill(
        pipeline: Pipeline, learner: Learner, redis_url: str) -> None:
    pipeline.start_worker()
    learner.start()
    wait_until(lambda: "learner ready" in learner.log(0), 60, "learner ready")
    alerter = start_alerter(pipeline)
    sim_log = pipeline.workdir / "simulate.log"
    sim = subprocess.Popen([sys.executable, "-m", "streams.cli", "simulate", "--live",
                            *SIMULATION], env=pipeline.env(), stdout=sim_log.open("wb"),
                           stderr=subprocess.STDOUT)
    alerts_topic = f"alerts-{pipeline.tag}"
    try:
        wait_until(lambda: len(committed(pipeline, alerts_topic)) >= 20 or sim.poll() is not None,
                   120, "the first alerts", interval_s=0.5)
        kill(alerter)
        start_alerter(pipeline)
        assert sim.wait(timeout=180) == 0, sim_log.read_text(errors="replace")[-2000:]
    finally:
        if sim.poll() is None:
            sim.kill()
    last = [-1]

    def quiet() -> bool:  # the worker has scored everything: the scores topic stopped growing
        n = len(committed(pipeline, pipeline.scores))
        done, last[0] = n == last[0], n
        return done

    wait_until(quiet, 300, "scores to settle", interval_s=3.0)  # 120 s ran out in CI at load ~5
    labelled = {str(label["customer_id"]) for label in committed(pipeline, f"labels-{pipeline.tag}")
                if label.get("churned")}
    seen: dict[str, object] = {}

    def converged() -> bool:
        """The committed alerts of never-churned customers are exactly what the pure policy
        gives on the committed scores. Read both again on every poll: a slow last batch (or
        sweep) can still add a score, and its alert, after the scores topic looked quiet."""
        scores = [decode_score(orjson.dumps(s)) for s in committed(pipeline, pipeline.scores)]
        client = redis.Redis.from_url(redis_url)
        churned = {k.decode() for k in client.hgetall(f"{pipeline.prefix}:churned")}
        client.close()
        # a customer who churned and came back has no mark any more, but its alerts depended
        # on when the mark was visible too: every customer with a churn label counts here
        churned |= labelled
        _, decisions = run(scores, PolicyParams(**THRESHOLDS))
        expected = sorted(d.alert_id for d in decisions if d.customer_id not in churned)
        alerts = committed(pipeline, alerts_topic)
        got = sorted(str(a["alert_id"]) for a in alerts if a["customer_id"] not in churned)
        seen.update(scores=scores, churned=churned, expected=expected, alerts=alerts, got=got)
        return got == expected

    try:
        wait_until(converged, 90, "the alerter's ids to equal the pure policy's", interval_s=3.0)
    except AssertionError:
        assert seen["got"] == seen["expected"]  # shows the difference
        raise
    scores, churned = seen["scores"], seen["churned"]
    expected, alerts = seen["expected"], seen["alerts"]
    assert isinstance(scores, list) and isinstance(churned, set)
    assert isinstance(expected, list) and isinstance(alerts, list)
    assert len(expected) > 10, "the learned model should make some customers cross"
    ids = [str(a["alert_id"]) for a in alerts]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    print(f"\n{len(scores)} scores, {len(alerts)} alerts ({len(expected)} of never-churned "
          f"customers), {len(churned)} customers marked churned")
    assert churned, "the learner marked churned customers (their alerts are checked for uniqueness)"
    actions = committed(pipeline, f"actions-{pipeline.tag}")
    assert sorted(str(x["alert_id"]) for x in actions) == sorted(ids)
