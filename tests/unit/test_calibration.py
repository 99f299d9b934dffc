"""Calibrated scores: prior correction + online Platt on shadow predictions; ECE; old versions."""

from __future__ import annotations

import math
import pickle
import random

from online_models.calibration import expected_calibration_error, reliability, sigmoid
from online_models.learner import Learner
from online_models.model import ModelHandle, dump_checkpoint, load_checkpoint, make_model
from online_models.observations import Observation, Resolution

DAY = 86400.0


def stream(days: int, per_day: int, seed: int) -> list[list[Resolution]]:
    """Daily batches of an imbalanced stream (about 4 % churn), two features on other scales."""
    rnd = random.Random(seed)
    out = []
    for d in range(days):
        batch = []
        for i in range(per_day):
            a, b = rnd.gauss(0, 1), rnd.gauss(50, 20)
            y = rnd.random() < sigmoid(1.5 * a - 0.02 * (b - 50) - 3.6)
            batch.append(Resolution(Observation(f"c{i}", d * DAY, {"a": a, "b": b}, 0.5, "v"),
                                    y))
        out.append(batch)
    return out


def served_pairs(learner: Learner, days: list[list[Resolution]]) -> tuple[list[float], list[bool]]:
    """Learn day by day; each day's snapshots scored by the model published the day before."""
    learner.keep_copies(DAY, 40 * DAY)
    ps: list[float] = []
    ys: list[bool] = []
    for d, batch in enumerate(days):
        if d >= 10:  # after a warm-up
            handle = ModelHandle(str(d), learner.champion.model)
            ps += [handle.score(dict(r.observation.x)) for r in batch]
            ys += [r.churned for r in batch]
        learner.learn_batch(batch, now=d * DAY + 1)
    return ps, ys


def test_served_probabilities_match_observed_churn_per_bin() -> None:
    for seed in (1, 2, 3):
        ps, ys = served_pairs(Learner.create(), stream(60, 800, seed))
        base = sum(ys) / len(ys)
        assert 0.02 < base < 0.08
        assert abs(sum(ps) / len(ps) - base) < 0.01  # not the inflated balanced scores
        assert expected_calibration_error(ps, ys) < 0.015
        for b in reliability(ps, ys, bins=10):
            if b.n >= 500:
                tolerance = 3 * math.sqrt(b.observed * (1 - b.observed) / b.n) + 0.02
                assert abs(b.predicted - b.observed) < tolerance, (seed, b)


def test_calibration_does_not_change_the_ranking() -> None:
    learner = Learner.create()
    served_pairs(learner, stream(20, 400, 4))
    model = learner.champion.model
    xs = [{"a": a / 10, "b": 50.0} for a in range(-30, 30)]
    raw = [model.raw_proba(x) for x in xs]
    cal = [model.proba(x) for x in xs]
    assert sorted(range(60), key=raw.__getitem__) == sorted(range(60), key=cal.__getitem__)
    assert max(cal) < max(raw)  # the balanced raw scores were inflated


def test_the_version_carries_its_calibration_and_old_checkpoints_still_load() -> None:
    learner = Learner.create()
    served_pairs(learner, stream(15, 400, 5))
    handle = ModelHandle("15-logreg", learner.champion.model)
    back = load_checkpoint(dump_checkpoint(handle))
    x = {"a": 1.0, "b": 40.0}
    assert back.calibrated and back.score(x) == handle.score(x)
    assert back.raw_score(x) == handle.raw_score(x) != handle.score(x)
    # a checkpoint written before calibration: a bare River pipeline
    old = make_model("logreg", learning_rate=0.01)
    for i in range(50):
        old.learn_one({"a": float(i % 3)}, i % 3 == 0)
    legacy = load_checkpoint(pickle.dumps({"version": "3-logreg", "river": _river(),
                                           "model": old, "meta": {}}))
    assert not legacy.calibrated
    assert legacy.score({"a": 0.0}) == legacy.raw_score({"a": 0.0}) == \
        old.predict_proba_one({"a": 0.0})[True]


def _river() -> str:
    from online_models.model import RIVER_VERSION

    return RIVER_VERSION


def test_status_json_reliability_renders_as_the_model_status_diagram() -> None:
    from online_models.calibration import reliability_json, reliability_text
    from online_models.evaluation import DelayedMetrics
    from streams.cli.model import _bins

    metrics = DelayedMetrics(window=1000)
    for i in range(1000):
        metrics.update(0.05 if i % 2 else 0.85, i % 20 == 0 if i % 2 else i % 10 < 8)
    report = metrics.report()
    assert 0.0 < report["ece"] < 0.1
    bins = report["reliability"]
    assert [b["n"] for b in bins] == [500, 500]
    text = reliability_text(_bins(bins))
    assert "0.00-0.10" in text and "0.80-0.90" in text
    assert reliability_json(_bins(bins)) == bins
