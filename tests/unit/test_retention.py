"""Issue 16: outcomes per action, uplift breakdown, the learning policy, offers, patterns."""

from __future__ import annotations

import random

from alerts.bandit import BanditParams, BanditState, choose
from alerts.outcomes import Action, OutcomeJoiner, join_all
from alerts.reco import OfferRecommender, hit_rate
from alerts.uplift import Outcome, breakdown
from streams.offline.patterns import mine, windows


def _a(aid: str, cid: str, ts: float, holdout: bool = False) -> Action:
    return Action(aid, cid, ts, "email", holdout, "s", "engagement", "high", "s|engagement")


def test_outcomes_resolve_once_whatever_the_order_and_duplicates() -> None:
    actions = [_a(f"c{i}:0:high", f"c{i}", 0.0) for i in range(50)]
    labels = [(f"c{i}", 10.0 + i, True) for i in range(0, 50, 5)] + [("zz", 1000.0, True)]
    once = join_all(actions, labels, horizon_s=100.0)
    twice = join_all(actions + actions, labels + labels, horizon_s=100.0)
    assert sorted(o.outcome_id for o in once) == sorted(o.outcome_id for o in twice)
    assert len(once) == 50
    assert sum(o.churned for o in once) == 10


def test_joiner_checkpoint_round_trip_keeps_exactly_once() -> None:
    j = OutcomeJoiner(horizon_s=100.0)
    j.add_action(_a("c1:0:high", "c1", 0.0))
    j.add_action(_a("c2:0:high", "c2", 0.0))
    assert [o.outcome_id for o in j.add_label("c1", 5.0, True)] == ["c1:0:high:outcome"]
    k = OutcomeJoiner.from_json(j.to_json())
    assert not k.add_action(_a("c1:0:high", "c1", 0.0))  # resolved before the checkpoint
    assert [o.stayed for o in k.advance(200.0)] == [True]


def test_breakdown_recovers_each_groups_effect() -> None:
    rng = random.Random(3)
    rows = []
    for i in range(4000):
        action = "call" if i % 2 else "email"
        holdout = rng.random() < 0.3
        p = 0.3 if holdout else (0.15 if action == "call" else 0.45)
        rows.append(Outcome(f"c{i}", holdout, 0.0, rng.random() < p, action, "x"))
    cells = {c.key: c.report for c in breakdown(rows, ("action",))}
    call, email = cells[("call",)], cells[("email",)]
    assert call is not None and email is not None
    assert call.low <= -0.15 <= call.high and call.high < 0
    assert email.low <= 0.15 <= email.high and email.low > 0


def test_bandit_is_the_table_without_evidence_and_replays_decide_the_same() -> None:
    p = BanditParams(explore=0.3, min_pulls=10)
    s = BanditState()
    picks = [choose(s, "ctx", ("a", "b", "c"), f"c{i}:0", p) for i in range(2000)]
    explored = sum(c.action != "a" for c in picks) / len(picks)
    assert 0.1 < explored < 0.3  # at most the exploration share departs from the table
    again = [choose(s, "ctx", ("a", "b", "c"), f"c{i}:0", p) for i in range(2000)]
    assert [c.action for c in picks] == [c.action for c in again]


def test_bandit_learns_the_better_action() -> None:
    rng = random.Random(1)
    p = BanditParams(explore=0.2, min_pulls=20)
    s = BanditState()
    stay = {"a": 0.6, "b": 0.8}
    late = []
    for i in range(3000):
        c = choose(s, "ctx", ("a", "b"), f"e{i}", p)
        s.learn("ctx", c.action, rng.random() < stay[c.action])
        if i >= 2000:
            late.append(c.action)
    assert late.count("b") / len(late) > 0.85


def test_offer_cf_beats_popularity_on_segment_tastes() -> None:
    rng = random.Random(7)
    offers = ("a", "b", "c", "d")
    likes = {0: {"a": 0.6, "b": 0.05, "c": 0.05, "d": 0.3},
             1: {"a": 0.05, "b": 0.6, "c": 0.3, "d": 0.05}}
    seg = {f"u{i}": (0 if i < 140 else 1) for i in range(200)}  # popularity favours a
    train, test = [], []
    for step in range(30):
        for u, g in seg.items():
            o = rng.choice(offers)
            ok = rng.random() < likes[g][o]
            (test if step >= 24 else train).append((u, o, ok))
    rec = OfferRecommender(offers, seed=0)
    rec.learn_many(train, epochs=5)
    held = [(u, o) for u, o, ok in test if ok and seg[u] == 1]
    cf = hit_rate(lambda c, k: [x.offer for x in rec.top(c, k)], held, k=1)
    pop = hit_rate(lambda c, k: sorted(offers, key=lambda o: -rec.popularity(o))[:k], held, k=1)
    assert cf > pop + 0.2


def test_patterns_find_a_planted_sequence() -> None:
    rng = random.Random(5)
    events, churns = [], []
    for i in range(400):
        cid = f"c{i}"
        for d in range(60):
            events.append((cid, d * 86400.0 + 1, "session"))
            if rng.random() < 0.01:
                events.append((cid, d * 86400.0 + 2, rng.choice(["ticket", "complaint", "fail"])))
        if i < 80:  # planted: ticket, then fail, then complaint, then churn
            for k, t in enumerate(("ticket", "fail", "complaint")):
                events.append((cid, (40 + 3 * k) * 86400.0, t))
            churns.append((cid, 55 * 86400.0))
        elif i < 120:
            churns.append((cid, 55 * 86400.0))
    churned, stayed = windows(events, churns)
    top = mine(churned, stayed, min_support=0.1)
    seq = next(p for p in top if p.kind == "sequence" and len(p.items) == 3)
    assert seq.items == ("ticket", "fail", "complaint")
    assert seq.lift > 3 and seq.support_churn > 0.6


def test_the_dashboard_customer_view_shows_the_alerts_offers() -> None:
    from alerts.reco import attach_offers
    from streams.delivery.dashboard.board import Board

    rec = OfferRecommender(("free_month", "discount_20", "training"), seed=0)
    for i in range(30):
        rec.learn(f"u{i}", "training", True)
        rec.learn(f"u{i}", "free_month", False)
    alert = {"schema_version": 1, "alert_id": "c-1:1:high", "kind": "opened",
             "customer_id": "c-1", "episode_id": "c-1:1", "severity": "high", "score": 0.8,
             "ts": "2026-03-01T00:00:00.000+00:00", "processed_at": "2026-03-01T00:00:00.000+00:00",
             "team": "cs", "recommended_action": "personal check-in email", "holdout": False}
    attach_offers(alert, rec)
    board = Board()
    board.on_alert(alert)
    view = board.customer("c-1")
    assert view is not None and view["entry"] is not None
    assert view["entry"]["offers"][0]["offer"] == "training"


def test_joiner_matches_the_definition_on_random_histories() -> None:
    rng = random.Random(11)
    for _ in range(30):
        actions = [_a(f"a{i}", f"c{rng.randrange(8)}", rng.uniform(0, 500)) for i in range(40)]
        labels = [(f"c{rng.randrange(8)}", rng.uniform(0, 700), True) for _ in range(10)]
        clock = max(t for _, t, _ in labels)
        got = {o.action.action_id: o.churned for o in join_all(actions, labels, 100.0)}
        for a in actions:
            churn = any(c == a.customer_id and a.ts < t <= a.ts + 100.0 for c, t, _ in labels)
            if churn:
                assert got[a.action_id] is True
            elif clock >= a.ts + 100.0:
                assert got[a.action_id] is False
            else:
                assert a.action_id not in got
