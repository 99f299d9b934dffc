"""The batched linear steps equal River's own learn_one / predict_proba_one loops."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from online_models.linear_batch import Rows, learn_rows, linear_plan, proba_many
from online_models.model import make_model


def _rows(n: int, seed: int, sparse: bool) -> list[dict[str, float]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        row = {"tenure_days": rnd.uniform(0, 900), "log_count_30d": rnd.uniform(0, 5),
               "log_count_30d.login": rnd.uniform(0, 4), "days_since.login": rnd.expovariate(0.1),
               "trend": rnd.gauss(0, 1), "const": 1.0}
        if sparse and i % 3:
            row.pop("trend")
        if sparse and i > n // 2:
            row["late_feature"] = rnd.gauss(2, 3)
        rows.append(row)
    return rows


def _state(model: Any) -> tuple[dict[str, float], float, dict[str, float], dict[str, float]]:
    steps = list(model.steps.values())
    scaler, glm = steps[-2], steps[-1]
    return glm._weights.to_dict(), glm.intercept, dict(scaler.means), dict(scaler.vars)


def _close(a: dict[str, float], b: dict[str, float]) -> float:
    assert set(a) == set(b)
    return max((abs(a[k] - b[k]) / max(1e-9, abs(b[k])) for k in a), default=0.0)


@pytest.mark.parametrize("name", ["logreg", "logreg_robust", "logreg_adagrad", "svm"])
@pytest.mark.parametrize("sparse", [False, True])
def test_learn_rows_equals_rivers_learn_one_loop(name: str, sparse: bool) -> None:
    rows = _rows(3000, 1, sparse)
    rnd = random.Random(2)
    ys = [rnd.random() < 0.2 + 0.6 * (r["trend"] > 1 if "trend" in r else 0) for r in rows]
    ws = [5.0 if y else 0.7 for y in ys]
    river_model = make_model(name, learning_rate=0.01)  # type: ignore[arg-type]
    ours = copy.deepcopy(river_model)
    for x, y, w in zip(rows, ys, ws, strict=True):
        river_model.learn_one(x, y, w=w)
    plan = linear_plan(ours)
    assert plan is not None
    for lo in range(0, len(rows), 700):  # batch boundaries do not matter
        learn_rows(plan, Rows(rows[lo:lo + 700]), ys[lo:lo + 700], ws[lo:lo + 700])
    w_river, b_river, m_river, v_river = _state(river_model)
    w_ours, b_ours, m_ours, v_ours = _state(ours)
    assert _close(w_ours, w_river) < 1e-9
    assert abs(b_ours - b_river) < 1e-9 * max(1.0, abs(b_river))
    assert _close(m_ours, m_river) < 1e-12
    assert _close(v_ours, v_river) < 1e-12
    assert list(river_model.steps.values())[-1].optimizer.n_iterations == 3000
    assert list(ours.steps.values())[-1].optimizer.n_iterations == 3000
    probe = _rows(200, 3, sparse)
    expected = [river_model.predict_proba_one(x)[True] for x in probe]
    got = proba_many(plan, Rows(probe))
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-9


def test_models_that_are_not_linear_pipelines_have_no_plan() -> None:
    assert linear_plan(make_model("bayes")) is None
    assert linear_plan(make_model("hat")) is None
    assert linear_plan(make_model("logreg")) is not None


def test_rows_share_a_transform_and_its_matrix() -> None:
    calls = []

    def double(x: Any) -> dict[str, float]:
        calls.append(1)
        return {k: 2 * v for k, v in x.items()}

    rows = Rows([{"a": 1.0}, {"a": 2.0, "b": 1.0}])
    assert rows.dicts(double) is rows.dicts(double)
    cols, x = rows.matrix(double)
    assert cols == ["a", "b"] and x[1].tolist() == [4.0, 2.0] and x[0, 0] == 2.0
    assert x[0, 1] != x[0, 1]  # NaN: absent
    assert rows.matrix(double)[1] is x
    assert len(calls) == 2


def test_bayes_log_odds_many_equals_the_models_own() -> None:
    from online_models.bayes import BayesLogistic
    from online_models.linear_batch import bayes_log_odds_many
    from online_models.transforms import robust

    model = BayesLogistic(warmup=50)
    rows = _rows(600, 4, sparse=True)
    for i, x in enumerate(rows[:400]):
        model.learn_one(robust(x), i % 5 == 0)
    probe = rows[400:]
    probe[3] = {**probe[3], "trend": float("nan")}
    batch = Rows(probe)
    got = bayes_log_odds_many(model, batch, robust, list(range(0, 200, 2)))
    assert got is not None
    expected = [model.log_odds(robust(probe[i])) for i in range(0, 200, 2)]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-9
    assert bayes_log_odds_many(make_model("logreg"), batch, None, [0]) is None
