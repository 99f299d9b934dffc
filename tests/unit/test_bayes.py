"""The tempered online Bayesian logistic regression (a member of the default champion)."""

from __future__ import annotations

import pickle
import random
from collections.abc import Hashable
from typing import Any

from online_models.bayes import TEMPER, BayesLogistic
from online_models.ensemble import MeanLogOdds
from online_models.learner import Learner
from streams.settings import Settings


def _stream(n: int, seed: int) -> list[tuple[dict[Hashable, Any], bool]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rnd.gauss(0, 1), rnd.gauss(0, 3)
        x: dict[Hashable, Any] = {"a": a, "b": b}
        out.append((x, rnd.random() < 1 / (1 + 2.718 ** -(1.5 * a - 0.3 * b - 1))))
    return out


def test_k_copies_tempered_by_one_over_k_count_as_one_example() -> None:
    """30 snapshots of one customer-month, each worth 1/30, move the belief like the one
    example they repeat; untempered, the same copies make it overconfident."""
    rows = _stream(1500, 1)
    once, tempered, untempered = (BayesLogistic(temper=1.0), BayesLogistic(temper=1 / 30),
                                  BayesLogistic(temper=1.0))
    for x, y in rows:
        once.learn_one(x, y)
        for _ in range(30):
            tempered.learn_one(x, y)
            untempered.learn_one(x, y)
    w1, wt = once.linear_terms()[0], tempered.linear_terms()[0]
    for name in ("a", "b"):
        assert abs(wt[name] - w1[name]) < 0.1 * abs(w1[name]) + 0.02, (name, wt, w1)
    # the untempered belief is ~30x too sure: its posterior variance is far below the others'
    assert untempered.cov[1, 1] < 0.2 * tempered.cov[1, 1]


def test_default_temper_is_interval_over_horizon_at_the_defaults() -> None:
    m = Settings().model
    assert abs(TEMPER - m.observation_interval_hours / (24.0 * m.horizon_days)) < 1e-12


def test_a_belief_pickled_before_tempering_keeps_learning_as_it_did() -> None:
    rows = _stream(400, 2)
    old, ref = BayesLogistic(temper=1.0), BayesLogistic(temper=1.0)
    for x, y in rows[:300]:
        old.learn_one(x, y)
        ref.learn_one(x, y)
    state = old.__getstate__()
    del state["temper"]  # what a pickle of the earlier class holds
    loaded = BayesLogistic.__new__(BayesLogistic)
    loaded.__setstate__(state)
    loaded = pickle.loads(pickle.dumps(loaded))
    assert loaded.temper == 1.0
    for x, y in rows[300:]:
        loaded.learn_one(x, y)
        ref.learn_one(x, y)
    probe: dict[Hashable, Any] = {"a": 0.7, "b": -1.0}
    assert loaded.predict_proba_one(probe)[True] == ref.predict_proba_one(probe)[True]


def test_the_bayes_slot_is_the_unweighted_tempered_model() -> None:
    """Alone (``CHURN_MODEL__NAME=bayes``) and as the default champion's unweighted member."""
    m = Settings().model
    champion = Learner.create(m.name, tuple(m.challengers)).champion
    assert m.name == "ensemble" and not champion.balanced
    ensemble = champion.model.raw
    assert isinstance(ensemble, MeanLogOdds)
    slot = Learner.create("bayes").champion
    assert not slot.balanced
    for raw in (slot.model.raw, ensemble.plain):
        assert raw.steps[list(raw.steps)[-1]].temper == TEMPER  # type: ignore[attr-defined]
