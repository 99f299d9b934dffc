"""Issue 10: a score is a probability a person can trust from the first version on.

A young model's versions serve (near) the base rate rather than 0.5 or 1.0; scores of the
untrained start or of a version still calibrating say so (``calibrated: false``) and the
alerter does not act on them; score records carry the customer's ``value`` that budgets ranked
by expected loss weigh them with.
"""

from __future__ import annotations

import pickle
import random

import orjson

from alerts.budget import rank_value
from alerts.contracts import decode_score
from alerts.enrich import AlertConfig
from alerts.policy import PolicyParams
from online_models.calibration import MIN_CLASS_OUTCOMES, PlattCalibrator, sigmoid
from online_models.customer_value import monthly_value
from online_models.features import DEFAULT_SPEC, apply_event
from online_models.learner import Learner
from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from online_models.observations import Observation, Resolution
from online_models.served import CalibratedModel, model_calibrated
from streams.alerter.processor import AlertBatchProcessor
from streams.records import RawRecord
from streams.redis.alert_store import InMemoryAlertStore
from streams.settings import TopicSettings
from streams.worker.scoring import build_score

DAY = 86400.0


def first_horizon(n: int, seed: int) -> list[Resolution]:
    """The learner's first batch: snapshots taken a horizon ago (no frozen copy of that time
    exists), about 4 % churners, one informative feature on a large scale."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        a = rnd.gauss(0, 1)
        y = rnd.random() < sigmoid(1.5 * a - 3.6)
        out.append(Resolution(Observation(f"c{i}", 0.0, {"a": a, "b": rnd.gauss(500, 200)},
                                          0.5, UNTRAINED_VERSION), y))
    return out


def test_the_first_versions_serve_probabilities_near_the_base_rate_not_certainties() -> None:
    for seed in (1, 2, 3):
        learner = Learner.create()
        learner.keep_copies(DAY, 32 * DAY)
        first, second = first_horizon(800, seed), first_horizon(800, seed + 10)
        learner.learn_batch(first, now=30 * DAY)  # the first copy is taken only now
        model = learner.champion.model
        ps = [model.proba(dict(r.observation.x)) for r in second]
        base = sum(r.churned for r in first) / len(first)
        # the untrained model's log-odds (one constant) are no evidence: version 1 has no
        # calibration yet and says so (before issue 10 it served up to 1.000 unflagged); with
        # the re-scored window (calibration_window.RESCORE, off by default) it is calibrated
        # on its own first batch
        assert not model.calibrated and not model_calibrated(model, "1-logreg")
        assert base > 0.02 and ps
        learner.learn_batch(second, now=31 * DAY)  # evidence from version 1: it ranks
        ps = [model.proba(dict(r.observation.x)) for r in first]
        base2 = sum(r.churned for r in first + second) / 1600
        assert abs(sum(ps) / len(ps) - base2) < 0.02, (seed, sum(ps) / len(ps), base2)
        assert max(ps) < 0.9 and min(ps) > 1e-5, (seed, max(ps), min(ps))
        truth = [sigmoid(1.5 * r.observation.x["a"] - 3.6) for r in first]
        gap = sum(abs(p - q) for p, q in zip(ps, truth, strict=True)) / len(ps)
        assert gap < 0.03, (seed, gap)  # near the true churn probability of each customer
        pos = [p for p, r in zip(ps, first, strict=True) if r.churned]
        neg = [p for p, r in zip(ps, first, strict=True) if not r.churned]
        assert sum(pos) / len(pos) > 1.5 * sum(neg) / len(neg)


def test_thin_evidence_is_shrunk_to_the_base_rate_and_flagged() -> None:
    cal = PlattCalibrator()
    rnd = random.Random(4)
    for i in range(60):  # 60 outcomes, 3 churners, of a model sure of everything
        cal.update(rnd.choice((-25.0, 25.0)), i % 20 == 0)
    cal.fit()
    model = CalibratedModel(make_model())
    model.set_calibration(cal)
    assert 0.0 < cal(25.0) < 0.5 and 0.0 < cal(-25.0) < 0.2
    assert not model.calibrated and (model.churners, model.stayers) == (3, 57)
    for _ in range(MIN_CLASS_OUTCOMES):
        cal.update(25.0, True)
    cal.fit()
    model.set_calibration(cal)
    assert model.calibrated


def test_the_clamp_keeps_an_outlier_inside_what_the_calibration_saw() -> None:
    cal = PlattCalibrator()
    for i in range(400):
        cal.update(-4.0 + i / 100, i % 10 == 0)
    cal.fit()
    assert cal.z_lo == -4.0 and abs(cal.z_hi + 0.01) < 1e-9
    assert cal(1e6) == cal(cal.z_hi) < 0.5


def test_versions_without_counts_load_and_count_as_calibrating() -> None:
    old = CalibratedModel(make_model())
    state = old.__getstate__()
    for k in ("z_lo", "z_hi", "churners", "stayers", "tail"):
        state.pop(k)
    blank = CalibratedModel.__new__(CalibratedModel)
    blank.__setstate__(state)
    # a version published before the counts: served as before, trusted as before
    assert blank.calibrate(0.0) == 0.5 and blank.calibrated
    assert model_calibrated(blank, "9-logreg") and not model_calibrated(blank, UNTRAINED_VERSION)
    assert model_calibrated(make_model(), "1-complaints")  # a model without calibration
    cal = pickle.loads(pickle.dumps(PlattCalibrator()))
    assert cal.churners == 0
    old_cal = PlattCalibrator.__new__(PlattCalibrator)  # pickled before the tail cap
    old_cal.__setstate__({k: v for k, v in PlattCalibrator().__dict__.items() if k != "tail"})
    assert old_cal.tail is None and old_cal(0.0) == 0.5


def state_of(events: list[tuple[str, float, float | None]]) -> dict[str, float]:
    s: dict[str, float] = {}
    for kind, t, value in events:
        s = apply_event(s, kind, t, value, DEFAULT_SPEC)
    return s


def record(handle: ModelHandle, state: dict[str, float], now: float) -> dict[str, object]:
    rec, _ = build_score("c-1", state, now, handle, DEFAULT_SPEC, reason="event",
                         scored_at="2026-01-01T00:00:00+00:00", last_event_id="e1")
    return rec


def test_score_records_say_whether_calibrated_and_carry_the_value() -> None:
    t0 = 1_767_225_600.0  # 2026-01-01
    state = state_of([("purchase", t0, 29.99), ("session", t0 + 3600, None),
                      ("purchase", t0 + 30 * DAY, 29.99)])
    now = t0 + 60 * DAY
    assert monthly_value(state, now) == round(59.98 / 60 * 365.25 / 12, 2)
    untrained = record(ModelHandle(UNTRAINED_VERSION, make_model()), state, now)
    assert untrained["calibrated"] is False and untrained["score"] == 0.5
    assert untrained["value"] == monthly_value(state, now)
    learner = Learner.create()
    learner.learn_batch(first_horizon(800, 1), now=30 * DAY)
    learner.learn_batch(first_horizon(800, 2), now=31 * DAY)
    served = record(ModelHandle("1-logreg", learner.champion.model), state, now)
    assert served["calibrated"] is True
    no_revenue = record(ModelHandle("1-logreg", learner.champion.model),
                        state_of([("session", t0, None)]), now)
    assert no_revenue["value"] is None
    # the alerter reads both; expected loss = probability x value
    score = decode_score(orjson.dumps(served))
    assert score.calibrated and score.value == served["value"]
    assert rank_value(score, "expected_loss") == score.score * served["value"]
    assert rank_value(decode_score(orjson.dumps(no_revenue)), "expected_loss") == \
        no_revenue["score"]
    assert not decode_score(orjson.dumps(untrained)).calibrated
    old = {k: v for k, v in served.items() if k not in ("calibrated", "value")}
    assert decode_score(orjson.dumps(old)).calibrated  # records from before the field


def test_the_pure_policy_skips_them_too() -> None:
    from alerts.policy import ScoreInput, run

    p = PolicyParams(min_dwell_s=0.0, min_scores=1)
    flagged = [ScoreInput("c", f"s{i}", 0.97, 1000.0 + i, calibrated=False) for i in range(3)]
    state, decisions = run(flagged, p)
    assert decisions == [] and state["c"].scores_skipped == 3 and state["c"].last_ts is None
    _, decisions = run([*flagged, ScoreInput("c", "s9", 0.97, 2000.0)], p)
    assert [d.score_id for d in decisions] == ["s9"]


async def test_the_alerter_does_not_alert_on_scores_of_a_calibrating_version() -> None:
    config = AlertConfig(holdout_share=0.0, policy=PolicyParams(min_dwell_s=0.0, min_scores=1))

    def scores(calibrated: bool) -> list[RawRecord]:
        return [RawRecord("scores", 0, i, None, orjson.dumps({
            "score_id": f"c-{i}:s", "customer_id": f"c-{i}", "score": 0.97,
            "ts": "2026-01-01T00:00:00Z", "model_version": "3-logreg",
            "calibrated": calibrated})) for i in range(5)]

    for calibrated, alerts in ((False, 0), (True, 5)):
        p = AlertBatchProcessor(InMemoryAlertStore(), None, config, TopicSettings(),
                                wall_clock=lambda: 1_800_000_000.0)
        result = await p.process(scores(calibrated))
        assert result.alerts == alerts
        assert p.totals.uncalibrated == (0 if calibrated else 5)
        assert not [r for r in result.out if r.topic == TopicSettings().dead_letter]
