"""Delayed metrics: exact rolling AUC, the other numbers, and the drift event."""

from __future__ import annotations

import math
import random

import pytest

from online_models.evaluation import DelayedMetrics, log_loss, top_decile_lift


def brute_auc(pairs: list[tuple[float, bool]]) -> float:
    """P(score of a positive > score of a negative), ties count half."""
    pos = [p for p, y in pairs if y]
    neg = [p for p, y in pairs if not y]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rolling_auc_is_exact_over_the_window_on_an_imbalanced_stream(seed: int) -> None:
    rng = random.Random(seed)
    m = DelayedMetrics(window=300, threshold=0.5)
    pairs = []
    for _ in range(1000):
        y = rng.random() < 0.08
        p = round(min(1.0, max(0.0, rng.gauss(0.62 if y else 0.4, 0.15))), 3)  # with ties
        pairs.append((p, y))
        m.update(p, y)
    window = pairs[-300:]
    assert m.report()["roc_auc"] == pytest.approx(brute_auc(window), abs=1e-9)
    assert m.report()["window"] == 300 and m.n == 1000


def test_report_numbers_match_their_definitions() -> None:
    pairs = [(0.9, True), (0.8, False), (0.3, True), (0.2, False), (0.6, True)]
    m = DelayedMetrics(window=10, threshold=0.5)
    for p, y in pairs:
        m.update(p, y)
    r = m.report()
    assert r["log_loss"] == pytest.approx(sum(log_loss(p, y) for p, y in pairs) / 5)
    assert r["brier"] == pytest.approx(sum((p - y) ** 2 for p, y in pairs) / 5)
    assert r["precision"] == pytest.approx(2 / 3)  # 0.9, 0.8, 0.6 flagged; two churned
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["roc_auc"] == pytest.approx(brute_auc(pairs))
    assert r["top_decile_lift"] == pytest.approx(1 / (3 / 5))


def test_auc_is_nan_with_one_class_only() -> None:
    m = DelayedMetrics(window=10)
    for p in (0.1, 0.2):
        m.update(p, False)
    assert math.isnan(m.report()["roc_auc"])
    assert math.isnan(top_decile_lift([(0.1, False)]))


def test_a_shift_in_the_loss_raises_a_drift_event() -> None:
    rng = random.Random(7)
    m = DelayedMetrics(window=500)
    calm = []
    for _ in range(3000):  # a good model
        y = rng.random() < 0.3
        calm.append(m.update(0.8 if y else 0.2, y))
    assert not any(calm[1000:])
    drifted = []
    for _ in range(2000):  # the world changed: the same scores are now mostly wrong
        y = rng.random() < 0.3
        drifted.append(m.update(0.2 if y else 0.8, y))
    assert any(drifted)
    assert m.drifts >= 1
    assert m.report()["drifts"] == m.drifts


def test_rolling_auc_equals_counting_every_pair_and_loads_the_old_form() -> None:
    import pickle
    import random

    from online_models.evaluation import RollingAUC

    rnd = random.Random(3)
    auc = RollingAUC(window=300)
    seen: list[tuple[float, bool]] = []
    for i in range(1000):
        p = round(rnd.random(), 2)  # ties
        y = rnd.random() < 0.2 + 0.5 * p
        auc.update(p, y)
        seen.append((p, y))
        if i % 97 == 50 or i == 999:
            window = seen[-300:]
            pos = [q for q, t in window if t]
            neg = [q for q, t in window if not t]
            right = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
            assert abs(auc.get() - right / (len(pos) * len(neg))) < 1e-12
    old = {"window": 300, "_pairs": auc._pairs, "_pos": [], "_neg": [], "_u": 1.0}
    loaded = RollingAUC.__new__(RollingAUC)
    loaded.__setstate__(old)
    assert loaded.get() == auc.get()
    assert pickle.loads(pickle.dumps(auc)).get() == auc.get()
