"""Issue 16: the heterogeneous treatment simulator is deterministic and keeps its truth."""

from __future__ import annotations

from alerts.bandit import BanditParams
from alerts.enrich import AlertConfig
from alerts.routing import RoutingTable
from streams.simulator.config import SimulationConfig
from streams.simulator.treatment import TreatmentConfig, run_treated
from streams.simulator.treatment_effects import SEGMENTS, Heterogeneity


def _run(bandit: BanditParams | None):  # type: ignore[no-untyped-def]
    return run_treated(SimulationConfig(seed=5, n_customers=800, days=90),
                       TreatmentConfig(alerts=AlertConfig(holdout_share=0.3),
                                       hetero=Heterogeneity(), bandit=bandit))


def test_hetero_run_is_deterministic_and_learning_policy_stays_in_the_row() -> None:
    a, b = _run(BanditParams(explore=0.3, min_pulls=5)), _run(BanditParams(explore=0.3,
                                                                           min_pulls=5))
    assert a.actions == b.actions and a.labels == b.labels and a.offers == b.offers
    table = RoutingTable.default()
    for alert, action in zip(a.alerts, a.actions, strict=True):
        route = table.route(alert["driver_category"], alert["severity"], alert["customer_value"])
        assert action["recommended_action"] in route.allowed
        assert action["segment"] in SEGMENTS
        if action["holdout"]:
            assert action["action"] == "none (holdout)"
    assert {x["event_type"] for x in a.offers} == {"offer_accepted", "offer_declined"}
    assert a.truth["planted_pattern"] == ["support_ticket", "payment_failure", "complaint"]
    assert a.truth["saved"] >= 0 and a.truth["windows"] > 0
