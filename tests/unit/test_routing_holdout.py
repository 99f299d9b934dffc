"""Routing table and the deterministic holdout."""

from __future__ import annotations

import itertools

import pytest

from alerts.routing import (
    DEFAULT_RULES,
    RoutingTable,
    holdout_bucket,
    in_holdout,
    value_tier,
)
from streams.settings import load_settings


def test_holdout_share_is_ten_percent_on_100k_ids() -> None:
    n = 100_000
    share = sum(in_holdout(f"c-{i}", 0.1) for i in range(n)) / n
    assert abs(share - 0.1) < 0.005  # 5 standard errors is ~0.0047


def test_holdout_is_deterministic_and_nested_and_salted() -> None:
    ids = [f"cust-{i}" for i in range(5000)]
    assert [in_holdout(c, 0.1) for c in ids] == [in_holdout(c, 0.1) for c in ids]
    small = {c for c in ids if in_holdout(c, 0.05)}
    large = {c for c in ids if in_holdout(c, 0.2)}
    assert small < large  # raising the share only adds customers
    salted = {c for c in ids if in_holdout(c, 0.1, salt="exp-2")}
    plain = {c for c in ids if in_holdout(c, 0.1)}
    assert len(salted & plain) < 0.3 * len(plain)  # a new salt re-draws (~10% overlap)
    assert all(0.0 <= holdout_bucket(c) < 1.0 for c in ids[:100])


def test_first_matching_rule_wins_and_every_combination_routes() -> None:
    table = RoutingTable.default()
    assert table.route("support", "critical", "low").action == "senior support callback"
    assert table.route("engagement", "critical", "high").team == "customer success"
    assert table.route("unknown", "medium", "mid").rule == len(DEFAULT_RULES) - 1
    for cat, sev, val in itertools.product(
            ("engagement", "support", "billing", "tenure", "unknown"),
            ("medium", "high", "critical"), ("low", "mid", "high")):
        route = table.route(cat, sev, val)
        assert route.sla_hours > 0 and route.action and route.team


def test_table_validation() -> None:
    with pytest.raises(ValueError, match="no rules"):
        RoutingTable(())
    with pytest.raises(ValueError, match="fallback"):
        RoutingTable.from_rows([{"category": "billing", "severity": "*", "value": "*",
                                 "action": "a", "team": "t", "sla_hours": 1}])


def test_policy_table_from_settings() -> None:
    rows = [{"category": "support", "severity": "*", "value": "*", "action": "call",
             "team": "s", "sla_hours": 2},
            {"category": "*", "severity": "*", "value": "*", "action": "mail", "team": "m",
             "sla_hours": 48}]
    cfg = load_settings(alerts={"policy_table": rows, "holdout_share": 0.25}).alerts.config
    assert cfg.routing.route("support", "high", "low").action == "call"
    assert cfg.routing.route("billing", "high", "low").action == "mail"
    assert cfg.holdout_share == 0.25
    with pytest.raises(ValueError):
        load_settings(alerts={"enter": 0.5, "exit": 0.55})


def test_value_tiers() -> None:
    assert [value_tier(x, 10, 50) for x in (0.0, 10.0, 49.0, 50.0)] == [
        "low", "mid", "mid", "high"]
