"""Shadow predictions (what each model would have served), paired promotion, old states."""

from __future__ import annotations

import pickle
import random
from typing import Any

from online_models.learner import Learner, ModelSlot, PromotionRule
from online_models.model import make_model
from online_models.observations import Observation, Resolution
from online_models.served import CalibratedModel

DAY = 86400.0


class Memo:
    """Remembers each customer's outcome: perfect on customers it has learned, blind otherwise
    (what a tree that memorises customers looks like when scored at resolution time)."""

    def __init__(self) -> None:
        self.seen: dict[float, bool] = {}

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        y = self.seen.get(x["id"])
        p = 0.5 if y is None else (0.99 if y else 0.01)
        return {True: p, False: 1 - p}

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        self.seen[x["id"]] = y


class Honest:
    """Knows a noisy signal of churn, the same before and after learning."""

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        return {True: x["a"], False: 1 - x["a"]}

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        return None


def daily(days: int, customers: int, seed: int = 1) -> list[list[Resolution]]:
    """One snapshot per customer and day; a new cohort of customers every 30 days (a churner
    is gone by the time its snapshots resolve)."""
    rnd = random.Random(seed)
    churner = {c: rnd.random() < 0.2 for c in range(customers * (days // 30 + 1))}
    out = []
    for d in range(days):
        batch = []
        for i in range(customers):
            c = d // 30 * customers + i
            y = churner[c]
            a = min(0.95, max(0.05, (0.6 if y else 0.4) + rnd.gauss(0, 0.15)))
            x = {"id": float(c), "a": a}
            batch.append(Resolution(Observation(f"c{c}", d * DAY, x, 0.5, "v"), y))
        out.append(batch)
    return out


def run(learner: Learner, days: list[list[Resolution]], shadow: bool) -> list[str]:
    learner.keep_copies(DAY, 40 * DAY)
    events: list[str] = []
    for d, batch in enumerate(days):
        # snapshots of day d resolve 30 days later; with `now` the learner scores them with
        # its copies of day d, without it with the models as they are at resolution
        events += learner.learn_batch(batch, now=(d + 30) * DAY if shadow else None)
    return events


def memo_learner() -> Learner:
    return Learner(ModelSlot("honest", Honest()),  # type: ignore[arg-type]
                   [ModelSlot("memo", Memo())],  # type: ignore[arg-type]
                   PromotionRule(min_resolved=500, min_positives=20))


def test_a_memorising_challenger_wins_at_resolution_time_but_not_in_shadow() -> None:
    days = daily(60, 100)
    naive = memo_learner()
    assert "promoted:memo" in run(naive, days, shadow=False)  # the old, flattered way
    honest = memo_learner()
    events = run(honest, days, shadow=True)
    assert not [e for e in events if e.startswith("promoted")]
    assert honest.champion.name == "honest"
    memo = honest.challengers[0]
    assert memo.paired.mean() < 0  # worse than the champion on the same snapshots
    assert 0.45 < memo.metrics._auc.get() < 0.55  # what it would have served: nothing


def test_shadow_scores_leave_out_snapshots_taken_before_the_first_copy() -> None:
    learner = Learner.create()
    learner.keep_copies(DAY, 40 * DAY)
    batch = [Resolution(Observation(f"c{i}", 5 * DAY, {"a": float(i % 2)}, 0.5, "0-untrained"),
                        i % 2 == 0) for i in range(10)]
    learner.learn_batch(batch, now=35 * DAY)  # first copy: as of day 35
    assert learner.champion.metrics.n == 0 and learner.served.n == 0
    later = [Resolution(Observation(f"c{i}", 36 * DAY, {"a": float(i % 2)}, 0.3, "1-logreg"),
                        i % 2 == 0) for i in range(10)]
    learner.learn_batch(later, now=66 * DAY)
    assert learner.champion.metrics.n == 10 and learner.served.n == 10


def test_promotion_check_is_cheap_whatever_the_window() -> None:
    learner = Learner.create("logreg", ("logreg_robust",), window=100_000)
    for d, batch in enumerate(daily(3, 200)):
        learner.learn_batch(batch, now=(d + 30) * DAY)
    calls: list[int] = []
    original = learner.champion.metrics.report

    def spy() -> dict[str, Any]:
        calls.append(1)
        return original()

    learner.champion.metrics.report = spy  # type: ignore[method-assign]
    learner.learn_batch(daily(1, 200, seed=2)[0], now=40 * DAY)
    assert calls == []  # no O(window) report per learn


def test_a_learner_state_from_before_calibration_loads_and_keeps_learning() -> None:
    learner = Learner.create("logreg_robust", ("hat",))
    for slot in learner.slots:  # what an earlier churnpulse pickled: bare models, no new fields
        raw = slot.model.raw
        for name in ("sample", "balanced", "ring", "paired"):
            del slot.__dict__[name]
        slot.__dict__["model"] = raw
    state = pickle.dumps(learner)
    back = pickle.loads(state)
    assert all(isinstance(s.model, CalibratedModel) for s in back.slots)
    assert back.challengers[0].sample == 1 and back.champion.balanced
    back.keep_copies(DAY, 40 * DAY)
    for d, batch in enumerate(daily(3, 50)):
        back.learn_batch(batch, now=(d + 30) * DAY)
    assert back.champion.learned == 150
    assert isinstance(make_model("logreg_robust"), object)
