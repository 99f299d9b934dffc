"""The matrix form of the robust transform equals the per-row transform's matrix exactly."""

from __future__ import annotations

import math
import random

import numpy as np

from online_models.linear_batch import Rows
from online_models.transform_batch import robust_matrix
from online_models.transforms import robust


def _rows(n: int, seed: int) -> list[dict[str, float]]:
    """Rows of varying keys and key order; some without a 30-day total, or a zero one."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        row: dict[str, float] = {}
        if i % 5:
            row["log_count_30d"] = 0.0 if i % 11 == 0 else rnd.uniform(0, 5)
        row["tenure_days"] = rnd.choice([0.0, -1.0, rnd.uniform(0, 900)])
        for kind in ("login", "support", "purchase"):
            if rnd.random() < 0.7:
                row[f"log_count_30d.{kind}"] = rnd.uniform(0, 4)
                row[f"days_since.{kind}"] = rnd.expovariate(0.1)
        row["trend"] = rnd.gauss(0, 1)
        if i % 7 == 0:  # another key order
            row = dict(reversed(list(row.items())))
        rows.append(row)
    return rows


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def test_robust_matrix_equals_the_transformed_dicts_matrix() -> None:
    for seed in range(6):
        rows = _rows(400, seed)
        if seed == 1:
            rows[0].pop("log_count_30d", None)  # the first row has no shares
        names, x = Rows(rows).matrix(None)
        expected = Rows([robust(r) for r in rows]).matrix(None)
        got = robust_matrix(names, x, [tuple(r) for r in rows])
        assert got is not None
        assert got[0] == expected[0]
        assert _same(got[1], expected[1])


def test_rows_use_the_matrix_form_only_when_nan_means_missing() -> None:
    rows = _rows(300, 9)
    fast = Rows(rows)
    assert fast.matrix(robust)[0] == Rows([robust(r) for r in rows]).matrix(None)[0]
    assert robust not in fast._dicts  # the per-row transform did not run
    rows[5]["trend"] = math.nan  # a NaN value: the dicts decide
    slow = Rows(rows)
    got = slow.matrix(robust)
    assert robust in slow._dicts
    assert _same(got[1], Rows([robust(r) for r in rows]).matrix(None)[1])


def test_a_share_that_would_overwrite_a_key_is_left_to_the_rows() -> None:
    names = ["log_count_30d", "log_count_30d.a", "share_30d.a"]
    x = np.array([[1.0, 0.5, 0.3]])
    assert robust_matrix(names, x, [tuple(names)]) is None
    rows = Rows([dict(zip(names, x[0], strict=True))])
    assert rows.matrix(robust)[0] == list(robust(rows.rows[0]))
