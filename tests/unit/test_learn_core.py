"""The pure learning core: label semantics, the learner, and the label loop (exactly once)."""

from __future__ import annotations

import random

import pytest

from online_models.learner import Learner, ModelSlot, PromotionRule, balanced_weight
from online_models.observations import LabelPolicy, Observation, Resolution, expire, resolve_churn
from streams.contracts import ChurnLabel
from streams.learner.loop import LearningLoop
from streams.redis.observation_store import InMemoryObservationStore

DAY = 86400.0
POLICY = LabelPolicy(horizon_s=30 * DAY, interval_s=DAY)


def obs(cid: str, t: float, x: dict[str, float] | None = None, score: float = 0.5) -> Observation:
    return Observation(cid, t, x or {"a": 1.0}, score, "v")


# --- label semantics ------------------------------------------------------------------------

def test_churn_resolves_the_horizon_before_it_as_positive_at_the_exact_bounds() -> None:
    T = 100 * DAY
    pending = [obs("c", t) for t in (T - 30 * DAY - 1, T - 30 * DAY, T - 1, T, T + 1)]
    pos, keep, drop = resolve_churn(pending, T, POLICY)
    assert [r.observation.t for r in pos] == [T - 30 * DAY, T - 1]
    assert all(r.churned for r in pos)
    assert [o.t for o in keep] == [T - 30 * DAY - 1]  # its horizon ended before the churn
    assert [o.t for o in drop] == [T, T + 1]


def test_horizon_expiry_resolves_negative_exactly_when_the_watermark_reaches_it() -> None:
    o = obs("c", 10 * DAY)
    assert expire([o], 40 * DAY - 0.001, POLICY) == ([], [o])
    negatives, waiting = expire([o], 40 * DAY, POLICY)
    assert negatives == [Resolution(o, False)] and waiting == []


def test_one_slot_per_interval() -> None:
    assert POLICY.slot(DAY - 0.001) == 0
    assert POLICY.slot(DAY) == 1
    assert obs("c", 1.5).obs_id == "c@1500"


def test_observation_json_round_trip() -> None:
    o = Observation("c", 12.5, {"a": 0.1, "b": -3.0}, 0.25, "4-logreg", {"reason": "sweep"})
    assert Observation.from_json(o.to_json()) == o


# --- the learner ----------------------------------------------------------------------------

def test_balanced_weights_give_both_classes_equal_total_weight() -> None:
    pos, total = 10, 200
    w1, w0 = balanced_weight(True, pos, total), balanced_weight(False, pos, total)
    assert w1 * pos == pytest.approx(w0 * (total - pos))
    assert balanced_weight(True, 1, 10_000) == 50.0  # capped


def test_test_then_train_metrics_see_the_prediction_before_learning() -> None:
    learner = Learner.create()
    x = {"a": 3.0}
    before = learner.champion.predict(x)
    raw_before = learner.champion.model.raw_proba(x)
    learner.learn(Resolution(obs("c", 1.0, x, score=0.9), True))
    learner.learn(Resolution(obs("d", 2.0, {"a": -3.0}, score=0.1), False))
    recent = list(learner.champion.metrics._recent)
    assert recent[0] == (before, True)  # recorded what was predicted, not what was learned
    assert list(learner.served._recent) == [(0.9, True), (0.1, False)]
    # and then it learned (the ranking model: two outcomes keep the calibrated score at the
    # base rate, issue 10)
    assert learner.champion.model.raw_proba(x) != raw_before


def test_learn_calls_count_each_model_once_per_resolution() -> None:
    learner = Learner.create("logreg", ("logreg_robust",))
    for i in range(25):
        learner.learn(Resolution(obs(f"c{i}", float(i), {"a": float(i % 3)}), i % 4 == 0))
    assert learner.total == 25
    assert learner.learn_calls == 50
    assert [s.learned for s in learner.slots] == [25, 25]
    assert learner.positives == 7


def test_an_expensive_challenger_learns_every_churner_and_a_sample_of_stayers() -> None:
    learner = Learner.create("logreg", ("hat",))
    resolutions = [Resolution(obs(f"c{i}", float(i), {"a": float(i % 3)}), i % 10 == 0)
                   for i in range(2000)]
    learner.learn_batch(resolutions)
    hat = learner.challengers[0]
    assert hat.sample == 4
    taken = [r for r in resolutions if hat.takes(r)]
    assert all(hat.takes(r) for r in resolutions if r.churned)
    assert 0.2 < sum(not r.churned for r in taken) / 1800 < 0.3  # one stayer in four
    assert hat.learned == len(taken) and learner.champion.learned == 2000
    assert hat.metrics.n == len(taken)  # scored on its sample only


def test_class_weight_is_passed_to_the_model() -> None:
    seen: list[float] = []

    class Spy:
        def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
            return {True: 0.5, False: 0.5}

        def learn_one(self, x: dict[str, float], y: bool, w: float = 1.0) -> None:
            seen.append(w)

    learner = Learner(ModelSlot("spy", Spy()))  # type: ignore[arg-type]
    for i, y in enumerate([False, False, False, True]):
        learner.learn(Resolution(obs("c", float(i)), y))
    assert seen[-1] == pytest.approx(balanced_weight(True, 1, 4))
    assert seen[0] == 0.5  # only stayers so far: their share is 1


class Fixed:
    """A model whose probability is a function of x (it learns nothing)."""

    def __init__(self, good: bool) -> None:
        self.good = good

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        p = x["a"] if self.good else 0.5
        return {True: p, False: 1 - p}

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        return None


def fixed_learner(challenger_good: bool, min_resolved: int = 50) -> Learner:
    return Learner(ModelSlot("flat", Fixed(False)),  # type: ignore[arg-type]
                   [ModelSlot("sharp", Fixed(challenger_good))],  # type: ignore[arg-type]
                   PromotionRule(min_resolved=min_resolved, margin=0.02, min_positives=5))


def feed(learner: Learner, n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    events: list[str] = []
    for i in range(n):
        y = rng.random() < 0.3
        a = min(0.99, max(0.01, (0.7 if y else 0.3) + rng.gauss(0, 0.1)))
        events += learner.learn(Resolution(obs(f"c{i}", float(i), {"a": a}), y))
    return events


def test_a_better_challenger_is_promoted_only_after_min_resolved() -> None:
    learner = fixed_learner(challenger_good=True)
    feed(learner, 49)
    assert learner.champion.name == "flat"
    events = feed(learner, 1, seed=2)
    assert events == ["promoted:sharp"]
    assert learner.champion.name == "sharp"
    assert [s.name for s in learner.challengers] == ["flat"]
    assert learner.promotions == ["sharp"]
    assert learner.report()["champion"] == "sharp"


def test_a_challenger_that_does_not_beat_the_margin_stays_in_shadow() -> None:
    learner = fixed_learner(challenger_good=False)
    feed(learner, 200)
    assert learner.champion.name == "flat" and learner.promotions == []


# --- the label loop -------------------------------------------------------------------------

def label(i: int, cid: str, ts: float, churned: bool = True) -> ChurnLabel:
    return ChurnLabel(f"l{i}", cid, ts, churned)


async def loop_with(*observations: Observation) -> LearningLoop:
    store = InMemoryObservationStore(POLICY)
    await store.record(list(observations))
    marked: list[tuple[str, float]] = []

    async def mark(cid: str, ts: float) -> None:
        marked.append((cid, ts))

    return LearningLoop(store, Learner.create(), POLICY, mark)


async def test_each_snapshot_is_learned_exactly_once_within_a_step() -> None:
    loop = await loop_with(obs("a", 1 * DAY), obs("a", 2 * DAY), obs("b", 1 * DAY))
    loop.positives_at_horizon = False  # learn positives as soon as the label arrives
    pos, _ = await loop.on_label(label(1, "a", 20 * DAY))
    again, _ = await loop.on_label(label(2, "a", 21 * DAY))  # another churn label, same step
    negatives = await loop.on_watermark(40 * DAY)  # a's snapshots' horizons passed as well
    assert [r.observation.t for r in pos] == [DAY, 2 * DAY]
    assert again == []
    assert [r.observation.customer_id for r in negatives] == ["b"]
    assert loop.learner.learn_calls == 3
    await loop.store.remove([r.observation for r in pos + negatives])
    loop.settle()
    assert await loop.store.count() == 0


async def test_positives_are_learned_when_their_horizon_passes_with_the_negatives() -> None:
    loop = await loop_with(obs("a", 1 * DAY), obs("a", 2 * DAY), obs("b", 1 * DAY),
                           obs("a", 25 * DAY))
    pos, dropped = await loop.on_label(label(1, "a", 20 * DAY))
    assert pos == [] and [o.t for o in dropped] == [25 * DAY]  # scored after the churn
    assert loop.learner.learn_calls == 0 and loop.churn_times == {"a": [20 * DAY]}
    first = await loop.on_watermark(31 * DAY + 1)  # horizons of the day-1 snapshots
    assert [(r.observation.customer_id, r.churned) for r in first] == [("a", True),
                                                                       ("b", False)]
    second = await loop.on_watermark(32 * DAY)
    assert [(r.observation.t, r.churned) for r in second] == [(2 * DAY, True)]
    assert (loop.counts.positives, loop.counts.negatives) == (2, 1)
    assert loop.learner.learn_calls == 3
    assert loop.churn_times == {"a": [20 * DAY]}  # a snapshot up to H before it may come due
    await loop.on_watermark(50 * DAY)
    assert loop.churn_times == {}  # no pending snapshot can need that churn any more


async def test_duplicate_and_unmatched_labels_are_counted_not_learned() -> None:
    loop = await loop_with(obs("a", 1 * DAY))
    await loop.on_label(label(1, "a", 5 * DAY))
    dup, _ = await loop.on_label(label(1, "a", 5 * DAY))
    none, _ = await loop.on_label(label(2, "zz", 5 * DAY))
    kept, _ = await loop.on_label(label(3, "a", 6 * DAY, churned=False))
    resolved = await loop.on_watermark(40 * DAY)
    c = loop.counts
    assert (dup, none, kept) == ([], [], [])
    assert [r.churned for r in resolved] == [True]
    assert (c.labels, c.duplicates, c.unmatched, c.not_churned, c.positives) == (4, 1, 1, 1, 1)
    assert loop.learner.learn_calls == 1


async def test_a_label_after_its_horizon_was_resolved_negative_counts_as_late() -> None:
    loop = await loop_with(obs("a", 1 * DAY))
    negatives = await loop.on_watermark(100 * DAY)
    await loop.store.remove([r.observation for r in negatives])
    loop.settle()
    await loop.on_label(label(1, "a", 20 * DAY))
    assert (loop.counts.unmatched, loop.counts.late) == (1, 1)
    assert loop.learner.learn_calls == 1


async def test_snapshots_after_the_churn_are_dropped_unlearned() -> None:
    loop = await loop_with(obs("a", 1 * DAY), obs("a", 9 * DAY))
    _, dropped = await loop.on_label(label(1, "a", 5 * DAY))
    assert [o.t for o in dropped] == [9 * DAY]
    assert loop.counts.dropped == 1
    resolved = await loop.on_watermark(100 * DAY)
    assert [(r.observation.t, r.churned) for r in resolved] == [(DAY, True)]


async def test_labels_are_held_until_the_watermark_reaches_their_time() -> None:
    loop = await loop_with(obs("a", 1 * DAY))
    await loop.on_labels([label(1, "a", 20 * DAY), label(1, "a", 20 * DAY)], 10 * DAY)
    assert len(loop.held) == 1 and loop.counts.duplicates == 1
    assert loop.churn_times == {}
    await loop.store.record([obs("a", 19 * DAY)])  # the worker catches up meanwhile
    await loop.on_labels([], 20 * DAY)
    assert loop.held == [] and loop.churn_times == {"a": [20 * DAY]}
    resolved = await loop.on_watermark(60 * DAY)
    assert [(r.observation.t, r.churned) for r in resolved] == [(DAY, True), (19 * DAY, True)]


def test_recent_ids_forget_the_oldest() -> None:
    from streams.learner.loop import RecentIds

    ids = RecentIds(size=2)
    for i in ("a", "b", "a", "c"):
        ids.append(i)
    assert ("a" in ids, "b" in ids, "c" in ids, len(ids)) == (False, True, True, 2)


async def test_a_deferred_loop_learns_the_step_once_interleaved_on_flush() -> None:
    loop = await loop_with(*(obs("a", d * DAY) for d in range(1, 6)), obs("b", DAY),
                           obs("c", DAY))
    loop.deferred = True
    await loop.on_labels([label(1, "a", 6 * DAY)], 6 * DAY)
    await loop.on_watermark(40 * DAY)  # b, c; a's snapshots are in flight: not again
    assert loop.learner.learn_calls == 0
    assert loop.flush() == 7
    assert loop.learner.learn_calls == 7 and loop.learner.positives == 5
    outcomes = [y for _, y in loop.learner.served._recent]
    assert outcomes != sorted(outcomes, reverse=True)  # not all positives first
    assert loop.flush() == 0
