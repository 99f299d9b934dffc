"""Per-score explanations: exact for the linear model, none for the others."""

from __future__ import annotations

import math
import random

from online_models.explain import LinearExplainer, contributions
from online_models.model import make_model


def trained(seed: int = 3) -> tuple[object, list[dict[str, float]]]:
    rng = random.Random(seed)
    model = make_model()
    xs = []
    for _ in range(400):
        x = {"tickets": rng.random() * 5, "sessions": rng.random() * 20, "tenure": rng.random()}
        model.learn_one(x, x["tickets"] > 3 or rng.random() < 0.05)
        xs.append(x)
    return model, xs


def test_contributions_add_up_to_the_log_odds_minus_the_intercept() -> None:
    model, xs = trained()
    explainer = LinearExplainer.of(model)
    assert explainer is not None
    for x in xs[:50]:
        p = model.predict_proba_one(x)[True]  # type: ignore[attr-defined]
        total = sum(c.contribution for c in explainer.top(x, k=10))
        assert math.isclose(total, math.log(p / (1 - p)) - explainer.intercept,
                            rel_tol=1e-9, abs_tol=1e-9)


def test_the_driving_feature_comes_first_and_values_are_the_inputs() -> None:
    model, _ = trained()
    x = {"tickets": 4.9, "sessions": 10.0, "tenure": 0.5}
    top = contributions(model, x, top=2)
    assert top[0].feature == "tickets" and top[0].value == 4.9
    assert top[0].contribution > 0
    assert len(top) == 2


def test_unseen_features_contribute_nothing_and_input_is_not_mutated() -> None:
    model, _ = trained()
    x = {"tickets": 1.0, "brand_new": 7.0}
    copy = dict(x)
    names = [c.feature for c in contributions(model, x, top=5)]
    assert names == ["tickets"]
    assert x == copy


def test_trees_and_untrained_models_have_no_explanation() -> None:
    assert contributions(make_model("hat"), {"a": 1.0}) == []
    assert contributions(make_model(), {"a": 1.0}) == []
    assert LinearExplainer.of(make_model("arf")) is None
