"""Backtest = live with learning and the sweeper on: the same history gives the same
snapshots, the same outcomes, the same counts and the same final model.

One simulated history runs twice: in-process through the backtest (learning, sweeper, event
clock), and live through a real ``churnpulse worker`` and a real ``churnpulse learner`` (real
broker, one partition, real Redis), published by ``churnpulse replay --speedup 86400``.

Equal (up to the named edges):

* **the snapshots**: one per customer per observation slot (UTC day), taken at the customer's
  first score in the slot (event or sweep). The live ones are read back from the scores topic
  (first score per customer and slot), the backtest's are the resolutions it learned;
* **their outcomes**: the backtest's are exactly the label rule's; the live snapshots agree
  (a churn inside the slot between the two instants could differ);
* **what the learners counted**: resolutions and positives (within 3 %);
* **the served metric leaves out the untrained start** live too: ``served.n`` is the number of
  resolvable snapshots that a trained version served;
* **the final model**: the same resolutions learned in the same per-snapshot order give the
  same weights; the calibration on top is refitted at every learner step from predictions
  made at that step, so it follows the step cadence: scores on the month rows agree to a
  correlation of 0.998–0.999, largest difference 0.024–0.038 (two runs at ``0a1f862``;
  identical to 1e-149 with the calibration of ``c013537``). Since the calibration of issue 10
  (shrunk to the base rate while evidence is thin, clamped to the fitted range, evidence from
  every resolved snapshot) the *raw* models still agree (corr 0.998, largest difference
  0.040–0.084 in four runs; larger than the calibrated 0.024–0.038 before: not understood)
  and the calibrated ones agree on the churn level (mean 0.071 vs 0.063), but not on the
  spread: corr 0.84–0.99, largest difference 0.20–0.64 (two runs, 2026-12-02). That is
  an open gap: the calibration follows the learner's step cadence more than it should.
  Re-scoring the evidence window at every step (``online_models.calibration_window.RESCORE``,
  built, off by default: it cost seed 3 of the simulated years its median warning, 14.5 ->
  13.7 days, docs/alerts.md) closes it: one run gave calibrated corr 0.9971, largest
  difference 0.029, means 0.0539 / 0.0535.

Not equal, and why: the worker scores a customer once per batch, at the batch's newest event,
so a batch that spans several days of event time leaves the earlier days without a snapshot.
Live at one simulated day per second a fetch holds ~17 events; the backtest's default batch
(500 events) spans ~1.5 days of this small history and would take a third fewer snapshots, so
it runs here with ``batch_size=20``. The learner steps once per *wall* second live and once
per batch in the backtest, and the worker picks a new version up within
``CHURN_MODEL__POLL_S``: the version that served a snapshot differs, so served scores are
compared only through the final model. The backtest marks a churn before its sweep; live, a
quiet churner can be re-scored before the learner's mark (that snapshot is dropped by the
label, never learned), so live scores after a churn and before the next event are left out.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from online_models.model import UNTRAINED_VERSION
from streams.contracts import decode_event, decode_label
from streams.kafka.chunk import EVENT
from streams.kafka.topic_reader import read_topic_sync
from streams.offline.backtest import BacktestOptions, run_backtest
from streams.redis.model_registry import RedisModelRegistry
from streams.settings import KafkaSettings, TopicSettings, load_settings
from streams.timefmt import parse_ts
from tests.integration.backtest_data import DAY, simulated
from tests.integration.test_learner_restart import Learner
from tests.integration.worker_proc import Pipeline, wait_until

pytestmark = pytest.mark.integration
SPEEDUP = 86_400  # one simulated day per second: the learner steps about once a day of data
#: Backtest batch: about what the worker fetches in ``batch_within_s`` at this speed (~17).
BATCH = 20


class LearningPipeline(Pipeline):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"CHURN_TOPICS__MODEL_EVENTS": f"model-events-{self.tag}",
                    "CHURN_SWEEP__CLOCK": "event", "CHURN_SWEEP__INTERVAL_S": "0.2",
                    "CHURN_MODEL__POLL_S": "1"})
        return env


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    from streams.kafka.topics import ensure_topics

    p = LearningPipeline(kafka_bootstrap, redis_url, tmp_path)
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=1),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}",
                                model_events=f"model-events-{p.tag}"))
    yield p
    p.close()


@pytest.fixture
def learner(pipeline: Pipeline) -> Iterator[Learner]:
    runner = Learner(pipeline)
    yield runner
    runner.stop_all()


def read_scores(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every score up to the topic's end now (no idle timeout to wait out at the end)."""
    settings = load_settings(kafka={"bootstrap_servers": bootstrap})
    return [orjson.loads(v) for _, v in read_topic_sync(settings, topic, 60) if v]


async def current_model(redis_url: str, prefix: str) -> Any:
    client = aioredis.Redis.from_url(redis_url)
    try:
        registry = RedisModelRegistry(client, prefix)
        version = await registry.current_version()
        assert version is not None
        return await registry.load(version)
    finally:
        await client.aclose()


def test_backtest_and_live_learn_the_same_snapshots(pipeline: Pipeline, learner: Learner,
                                                    tmp_path: Path) -> None:
    history = simulated(tmp_path / "sim", customers=150, days=75, seed=5)
    settings = load_settings()
    horizon = settings.model.horizon_days * DAY
    interval = settings.model.observation_interval_hours * 3600.0

    learner.start()  # starts while the worker starts (two process start-ups at once)
    pipeline.start_worker()
    wait_until(lambda: "learner ready" in learner.log(0), 60, "learner ready")
    replay = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "replay", str(tmp_path / "sim" / "events.jsonl"),
         str(tmp_path / "sim" / "labels.jsonl"), "--speedup", str(SPEEDUP), "--no-progress"],
        env=pipeline.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:  # the in-process backtest runs while the replay paces the live run (one core each)
        run = asyncio.run(run_backtest(settings, history, BacktestOptions(batch_size=BATCH)))
        _, replay_err = replay.communicate(timeout=600)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
    assert replay.returncode == 0, replay_err.decode(errors="replace")[-2000:]
    assert run.version > 10 and run.learner.positives > 100

    churns: dict[str, list[float]] = {}
    events: dict[str, list[float]] = {}
    for kind, value in zip(history.kinds, history.values, strict=True):
        if kind == EVENT:
            e = decode_event(value)
            events.setdefault(e.customer_id, []).append(e.ts)
        else:
            lb = decode_label(value)
            churns.setdefault(lb.customer_id, []).append(lb.ts)
    end_mark = history.ts_ms[-1] / 1000 - settings.sweep.allowed_lateness_s

    def closed(t: float) -> bool:  # resolved on both sides whatever the step cadence
        return t + horizon <= end_mark - DAY

    def outcome(cid: str, t: float) -> bool:
        return any(t_churn - horizon <= t < t_churn for t_churn in churns.get(cid, ()))

    def after_churn_before_return(cid: str, t: float) -> bool:
        for t_churn in churns.get(cid, ()):
            times = events.get(cid, [])
            nxt = times[bisect_right(times, t_churn)] if bisect_right(times, t_churn) < len(
                times) else math.inf
            if t_churn <= t < nxt:
                return True
        return False

    seen: list[int] = []

    def settled() -> bool:
        status = learner.status()
        mark = status.get("watermark")
        seen.append(int(status.get("resolved", 0)))
        caught_up = mark is not None and parse_ts(mark) >= end_mark - 1.0
        return caught_up and len(seen) > 4 and seen[-1] == seen[-5] > 0

    wait_until(settled, 300, "the live learner to reach the end of the history", interval_s=1.0)
    live = learner.status()
    live_mark = parse_ts(live["watermark"])

    bt = {(r.customer_id, math.floor(r.t / interval)): r for r in run.resolved if closed(r.t)}
    first: dict[tuple[str, int], dict[str, Any]] = {}
    for s in read_scores(pipeline.bootstrap, pipeline.scores):
        t = parse_ts(s["ts"])
        key = (s["customer_id"], math.floor(t / interval))
        if key not in first or t < parse_ts(first[key]["ts"]):
            first[key] = s
    lv = {k: s for k, s in first.items() if closed(parse_ts(s["ts"]))
          and not after_churn_before_return(k[0], parse_ts(s["ts"]))}
    common = bt.keys() & lv.keys()
    jaccard = len(common) / len(bt.keys() | lv.keys())
    agree = sum(outcome(k[0], parse_ts(lv[k]["ts"])) == bt[k].churned for k in common)
    bt_rule = sum(outcome(k[0], r.t) == r.churned for k, r in bt.items())
    trained = [k for k in common if bt[k].model_version != UNTRAINED_VERSION
               and lv[k]["model_version"] != UNTRAINED_VERSION]
    bt_served = np.array([bt[k].served for k in trained])
    lv_served = np.array([float(lv[k]["score"]) for k in trained])
    corr = float(np.corrcoef(bt_served, lv_served)[0, 1])

    final = asyncio.run(current_model(pipeline.redis_url, pipeline.prefix))
    xs = [row.x for row, _, _ in run.month_rows]
    ours = np.array([run.handle().score(x) for x in xs])
    theirs = np.array([final.score(x) for x in xs])
    model_corr = float(np.corrcoef(ours, theirs)[0, 1])
    ours_raw = np.array([run.handle().raw_score(x) for x in xs])
    theirs_raw = np.array([final.raw_score(x) for x in xs])
    raw_corr = float(np.corrcoef(ours_raw, theirs_raw)[0, 1])
    raw_diff = float(np.abs(ours_raw - theirs_raw).max())
    learned_live = [s for k, s in first.items()  # what the live learner can have resolved
                    if not after_churn_before_return(k[0], parse_ts(s["ts"]))
                    and parse_ts(s["ts"]) + horizon <= live_mark]
    served_n_live = sum(s["model_version"] != UNTRAINED_VERSION for s in learned_live)
    diff = float(np.abs(ours - theirs).max())
    print(f"\nsnapshots backtest {len(bt)}, live {len(lv)}, common {len(common)} "
          f"(jaccard {jaccard:.4f}); outcomes agree {agree}/{len(common)}; resolved "
          f"backtest {run.learner.total} / live {live['resolved']}, positives "
          f"{run.learner.positives} / {live['positives']}; served n live {live['served']['n']}"
          f" vs trained-served live snapshots {served_n_live}; served scores corr {corr:.3f} "
          f"on {len(trained)}; versions backtest {run.version}, live {live['version']}; "
          f"final models corr {model_corr:.4f}, largest |diff| {diff:.2e} on {len(xs)} "
          f"month rows; raw (uncalibrated) corr {raw_corr:.6f}, largest |diff| "
          f"{raw_diff:.2e}; calibrated means {ours.mean():.4f} / {theirs.mean():.4f}, "
          f"mean |diff| {np.abs(ours - theirs).mean():.4f}")

    assert len(common) > 2500
    assert jaccard > 0.97
    assert bt_rule == len(bt)  # the backtest learned exactly the label rule's outcomes
    assert agree >= 0.995 * len(common)  # a churn inside the slot between the two instants
    assert abs(live["resolved"] - run.learner.total) <= 0.03 * run.learner.total
    assert abs(live["positives"] - run.learner.positives) <= 0.03 * run.learner.positives
    assert abs(live["served"]["n"] - served_n_live) <= 0.02 * served_n_live
    assert live["version"] > 10
    # same resolutions, learned one by one in the same order: the same weights (the raw,
    # uncalibrated model); the Platt calibration on top is refitted at each step, on
    # predictions that depend on the step cadence (backtest ~760 steps, live ~24): both are
    # calibrated to the same churn level, but since the prior/clamp calibration of issue 10
    # their spread can differ by far more than the weights do (calibrated corr 0.84-0.99,
    # largest difference 0.20-0.64 in two runs): an open backtest != live gap, see the module
    # docstring
    # (raw: corr 0.998 and largest difference 0.040-0.084 in four runs on 2026-12-02; the two
    # learners resolve a few snapshots apart, 4,322 vs 4,319-4,320, one positive apart)
    assert raw_corr > 0.99 and raw_diff < 0.12
    assert abs(float(ours.mean()) - float(theirs.mean())) < 0.02
