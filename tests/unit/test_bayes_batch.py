"""The batched Bayesian logistic steps equal the model's own learn_one loop, bit for bit."""

from __future__ import annotations

import copy
import math
import random

import numpy as np

from online_models.bayes import BayesLogistic
from online_models.bayes_batch import learn_bayes_rows
from online_models.linear_batch import Rows
from online_models.model import make_model
from online_models.transforms import robust


def _rows(n: int, seed: int) -> list[dict[str, float]]:
    """Rows with a feature missing from some, a late feature, and non-finite values."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        row = {"tenure_days": rnd.uniform(0, 900), "log_count_30d": rnd.uniform(0, 5),
               "log_count_30d.login": rnd.uniform(0, 4),
               "days_since.login": rnd.expovariate(0.1), "trend": rnd.gauss(0, 1)}
        if i % 3:
            row.pop("trend")
        if i > n // 2:
            row["late_feature"] = rnd.gauss(2, 3)
        if i % 97 == 0:
            row["trend"] = math.inf
        rows.append(row)
    return rows


def _outcomes(rows: list[dict[str, float]], seed: int) -> list[bool]:
    rnd = random.Random(seed)
    return [rnd.random() < 1 / (1 + math.exp(3 - r["log_count_30d"])) for r in rows]


def test_learn_bayes_rows_is_bitwise_the_learn_one_loop() -> None:
    rows = _rows(2500, 1)
    ys = _outcomes(rows, 2)
    ws = [3.0 if y else 0.8 for y in ys]
    one = BayesLogistic(forget=1e-4)
    many = copy.deepcopy(one)
    for x, y, w in zip(rows, ys, ws, strict=True):
        one.learn_one(dict(x), y, w=w)
    for lo in range(0, len(rows), 600):  # batches cross the warmup and the late feature
        hi = lo + 600
        assert learn_bayes_rows(many, Rows(rows[lo:hi]), None, range(len(rows[lo:hi])),
                                ys[lo:hi], ws[lo:hi])
    assert one.index == many.index
    assert np.array_equal(one.mean, many.mean)
    assert np.array_equal(one.cov, many.cov)
    assert np.array_equal(one.centre, many.centre) and np.array_equal(one.scale, many.scale)
    probe = rows[-1]
    assert one.log_odds(probe) == many.log_odds(probe)


def test_learn_bayes_rows_takes_the_rows_at_index_through_the_transform() -> None:
    rows = _rows(1200, 3)
    ys = _outcomes(rows, 4)
    pipeline = make_model("bayes")
    steps = list(pipeline.steps.values())
    final = steps[-1]
    expected = copy.deepcopy(final)
    index = [i for i in range(len(rows)) if i % 4 != 1]
    for i in index:
        expected.learn_one(robust(rows[i]), ys[i])
    assert learn_bayes_rows(final, Rows(rows), robust, index, [ys[i] for i in index],
                            [1.0] * len(index))
    assert np.array_equal(expected.mean, final.mean)
    assert np.array_equal(expected.cov, final.cov)


def test_other_models_are_left_to_the_caller() -> None:
    model = make_model("logreg")
    assert not learn_bayes_rows(model, Rows([{"a": 1.0}]), None, [0], [True], [1.0])
