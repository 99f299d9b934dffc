"""A batch scored at once (online_models.score_batch) gives what scoring row by row gave: the
served score of every linear model within 1e-12 of River's / the model's own, the drivers of
LinearExplainer equal to the last bit, and a row's score independent of the batch it is in."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.calibration import PlattCalibrator
from online_models.explain import LinearExplainer
from online_models.feature_vector import feature_vector
from online_models.features import DAY_S, apply_event
from online_models.model import ModelHandle, make_model
from online_models.score_batch import BatchScorer
from online_models.served import CalibratedModel
from streams.timefmt import format_ts
from streams.worker.scoring import Stamps

T0 = 1_767_225_600.0
KINDS = ["session", "support_ticket", "purchase", "login", "payment_failure", "rare"]


def customer(rng: random.Random, events: int, kinds: list[str]) -> tuple[dict[str, float], float]:
    state: dict[str, float] = {}
    ts = T0
    for _ in range(events):
        ts += rng.uniform(0, 3 * DAY_S)
        state = apply_event(state, rng.choice(kinds), ts, 19.9 if rng.random() < 0.2 else None)
    return state, ts + rng.uniform(0, 20 * DAY_S)


def trained(name: str, seed: int, calibrated: bool) -> ModelHandle:
    rng = random.Random(seed)
    model = make_model(name)  # type: ignore[arg-type]
    for _ in range(300):
        state, now = customer(rng, rng.randrange(1, 30), KINDS[:5])
        model.learn_one(feature_vector(state, now), rng.random() < 0.3)  # type: ignore[arg-type]
    if not calibrated:
        return ModelHandle(f"1-{name}", model)
    served = CalibratedModel(model, shift=-1.3)
    cal = PlattCalibrator()
    for _ in range(400):
        z = rng.gauss(0.0, 2.0)
        cal.update(z, rng.random() < 1 / (1 + 2.718 ** -z))
    cal.fit()
    served.set_calibration(cal)
    return ModelHandle(f"2-{name}", served)


HANDLES = [trained(name, seed, calibrated)
           for seed, name in enumerate(("logreg", "logreg_robust", "logreg_adagrad", "svm",
                                        "bayes"))
           for calibrated in (False, True)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.sampled_from(range(len(HANDLES))),
       st.integers(1, 8))
def test_scores_and_drivers_are_the_per_row_ones(seed: int, n: int, which: int,
                                                 k: int) -> None:
    rng = random.Random(seed)
    handle = HANDLES[which]
    xs = []
    for _ in range(n):  # customers with different event types: several groups of names
        state, now = customer(rng, rng.randrange(1, 40), rng.sample(KINDS, rng.randrange(1, 6)))
        xs.append(feature_vector(state, now))
    scorer = BatchScorer.of(handle.model)
    assert scorer is not None
    explainer = LinearExplainer.of(handle.model)
    assert explainer is not None
    scores, drivers = scorer.score(xs, k)
    for x, score, got in zip(xs, scores, drivers, strict=True):
        assert score == pytest.approx(handle.score(x), abs=1e-12, rel=1e-12)
        assert got == explainer.drivers(x, k)
    # a row scores the same to the last bit alone, in any batch, in any order
    alone = [scorer.score([x], k)[0][0] for x in xs]
    backwards = scorer.score(xs[::-1], k)[0][::-1]
    assert alone == scores == backwards


def test_untrained_models_score_their_prior_without_drivers() -> None:
    x = {"log_events_total": 1.0, "tenure_days": 3.0}
    for model in (make_model(), make_model("bayes"), CalibratedModel(make_model())):
        scorer = BatchScorer.of(model)
        assert scorer is not None
        assert scorer.score([x, {}], 5) == ([0.5, 0.5], [[], []])


def test_models_without_a_linear_form_have_no_batch_scorer() -> None:
    assert BatchScorer.of(make_model("hat")) is None
    assert BatchScorer.of(CalibratedModel(make_model("arf"))) is None
    assert BatchScorer.of(object()) is None
    assert BatchScorer.of(make_model()).score([], 5) == ([], [])  # type: ignore[union-attr]


def test_ties_keep_each_rows_input_order() -> None:
    model = make_model()
    rng = random.Random(5)
    for _ in range(200):  # a and b always equal: same scaling, same weight
        v = rng.uniform(0, 5)
        model.learn_one({"a": v, "b": v, "c": rng.uniform(0, 1)}, v > 2.5)
    scorer, explainer = BatchScorer.of(model), LinearExplainer.of(model)
    assert scorer is not None and explainer is not None
    assert explainer.factors["a"] == explainer.factors["b"]
    xs = [{"b": 4.0, "a": 4.0, "c": 0.5}, {"a": 4.0, "b": 4.0, "c": 0.5},
          {"c": 0.5, "z": 1.0, "b": 1.0}, {"z": 3.0}]
    _, drivers = scorer.score(xs, 2)
    assert drivers == [explainer.drivers(x, 2) for x in xs]
    assert [d["feature"] for d in drivers[0]] == ["b", "a"]
    assert [d["feature"] for d in drivers[1]] == ["a", "b"]
    assert drivers[3] == []


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.floats(min_value=0.0, max_value=4.1e9),
                 st.integers(0, 4_100_000_000).map(lambda s: s + 0.0005),  # half a ms
                 st.integers(0, 4_100_000_000_000_000).map(lambda us: us / 1e6),
                 st.integers(0, 4_100_000_000).map(lambda s: s - 1e-7)))
def test_stamps_are_format_ts_exactly(ts: float) -> None:
    assert Stamps()(ts) == format_ts(ts)


def test_stamps_across_hours_days_and_years() -> None:
    stamps = Stamps()
    t = 1_767_225_599.0  # 2025-12-31T23:59:59Z
    for step in (0.0, 0.4995, 0.9994999, 0.9995, 0.99999949, 0.9999995, 1.0, 3600.0, 86400.5):
        assert stamps(t + step) == format_ts(t + step)
