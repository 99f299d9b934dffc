"""Drivers in plain words and their categories."""

from __future__ import annotations

import math

import pytest

from alerts.drivers import category, describe, main_category, summary, views
from alerts.policy import DriverChange


@pytest.mark.parametrize(("feature", "value", "previous", "text"), [
    ("log_count_7d.session", math.log1p(13.0), None, "sessions per week: 9"),
    ("log_count_7d.session", math.log1p(2.9), math.log1p(13.0),
     "sessions per week fell from 9 to 2"),
    ("log_count_1d.login", math.log1p(3.0), math.log1p(1.0), "logins per day rose from 0.7 to 2.1"),
    ("log_count_30d", math.log1p(100.0), None, "events per month: 69"),
    ("log_count_30d.support_ticket", math.log1p(4.33), None, "support tickets per month: 3"),
    ("days_since.session", 12.0, 3.0, "days since the last session rose from 3 to 12"),
    ("days_since_last", 0.25, None, "6 hours since the last activity"),
    ("active_days_30d", 4.0, 20.0, "active days in the last 30 days fell from 20 to 4"),
    ("trend", 0.25, None, "overall activity is up 25% on its longer-term rate"),
    ("log_events_total.complaint", math.log1p(2.0), None, "complaints in total: 2"),
    ("tenure_days", 400.0, 399.0, "tenure in days rose from 399 to 400"),
    ("log_value_30d.purchase", -math.log1p(10.0), None, "purchase spend per month: -6.9"),
])
def test_describe(feature: str, value: float, previous: float | None, text: str) -> None:
    assert describe(feature, value, previous) == text


@pytest.mark.parametrize(("feature", "cat"), [
    ("log_count_7d.session", "engagement"), ("days_since_last", "engagement"),
    ("active_days_7d", "engagement"), ("trend.feature_use", "engagement"),
    ("log_count_30d.support_ticket", "support"), ("days_since.complaint", "support"),
    ("log_ratio.support_ticket_per_session", "support"), ("log_count_7d.live_chat", "support"),
    ("days_since.payment_failure", "billing"), ("log_value_30d.purchase", "billing"),
    ("log_count_30d.invoice_overdue", "billing"), ("tenure_days", "tenure"),
    ("log_count_7d.webinar", "engagement"),
])
def test_category(feature: str, cat: str) -> None:
    assert category(feature) == cat


def test_summary_uses_only_drivers_towards_churn() -> None:
    v = views([DriverChange("log_count_7d.session", math.log1p(2.9), -0.4, math.log1p(13.0)),
               DriverChange("days_since.payment_failure", 2.0, 1.2, None),
               DriverChange("log_count_30d.support_ticket", math.log1p(4.33), 0.3, None)])
    assert main_category(v) == "billing"
    assert summary(0.9, 0.5, v) == ("Churn risk 90% (was 50%): 2 days since the last payment "
                                    "failure; support tickets per month: 3.")
    assert v[0].to_wire()["change"] == pytest.approx(math.log1p(2.9) - math.log1p(13.0))
