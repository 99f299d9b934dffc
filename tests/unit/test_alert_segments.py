"""Behaviour segments and lifecycle stages."""

from __future__ import annotations

import random

from alerts.lifecycle import stage
from alerts.policy import RiskState
from alerts.segments import ARCHETYPES, SegmentModel, behaviour

DAY = 86400.0


def test_each_archetype_is_its_own_nearest_centroid() -> None:
    model = SegmentModel.initial()
    assert [model.assign(c) for _, c in ARCHETYPES] == [n for n, _ in ARCHETYPES]


def test_typical_customers_land_in_readable_segments() -> None:
    model = SegmentModel.initial()
    heavy = behaviour({"count_7d": 45.0, "active_days_30d": 29.0, "tenure_days": 500.0,
                       "value_30d.purchase": 150.0})
    quiet = behaviour({"count_7d": 0.2, "active_days_30d": 1.0, "tenure_days": 500.0})
    tickets = behaviour({"count_7d": 8.0, "active_days_30d": 14.0, "tenure_days": 300.0,
                         "count_30d.support_ticket": 6.0, "count_30d.complaint": 3.0})
    fresh = behaviour({"count_7d": 5.0, "active_days_30d": 6.0, "tenure_days": 6.0})
    assert [model.assign(x) for x in (heavy, quiet, tickets, fresh)] == [
        "power users", "fading", "support-heavy", "newcomers"]


def test_online_learning_follows_the_data_and_is_deterministic() -> None:
    rng = random.Random(3)
    points = [(rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.1), 0.0, 0.0, 0.9) for _ in range(500)]
    a = b = SegmentModel.initial()
    for x in points:
        a, _ = a.learn(x)
        b, _ = b.learn(x)
    assert a == b
    fading = a.centroids[a.names.index("fading")]
    assert fading[4] > 0.85 and fading[0] < 0.07  # moved from the archetype to the data
    assert a.counts[a.names.index("fading")] == 500


def test_lifecycle_first_match_wins() -> None:
    in_episode = RiskState(first_seen=0.0, episode_start=1.0, alerted_tier=2)
    assert stage(in_episode, now=100 * DAY, tenure_days=5.0) == "new"
    assert stage(in_episode, now=100 * DAY) == "high_risk"
    assert stage(RiskState(first_seen=0.0, returned_at=95 * DAY, episode_start=1.0),
                 now=100 * DAY) == "returned"
    assert stage(RiskState(first_seen=0.0, returned_at=10 * DAY), now=100 * DAY) == "active"
    assert stage(RiskState(churned_at=5.0, returned_at=1.0), now=100 * DAY) == "churned"
