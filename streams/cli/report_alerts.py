"""``churnpulse report alerts``: what the alerts were worth, from the live topics.

Reads ``churn-alerts`` (read_committed) and ``churn-labels`` (or JSON lines files) and measures
the alerts per week as the backtest does (:func:`alerts.measure.measure`): alerts sent, alerted
customers, precision (alerted customers who churned within the horizon), recall of churners,
days of warning of the alerts that were right. With ``--scores`` it also reads ``churn-scores``
for the active customers of each week: the base churn rate (precision of alerting at random)
and alerted customers per 1,000 active. The labels' clock (newest label time) decides which
alerts are resolved.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from alerts.measure import WEEK_S, measure, week_origin
from streams.settings import Settings
from streams.timefmt import format_ts


def _values(settings: Settings, path: str | None, topic: str,
            timeout: float) -> list[bytes | None]:
    if path:
        return [line for line in Path(path).read_bytes().splitlines() if line.strip()]
    from streams.kafka.topic_reader import read_topic_sync

    return [v for _, v in read_topic_sync(settings, topic, timeout)]


def alerts_from(values: Iterable[bytes | None]) -> tuple[list[tuple[str, float]], int]:
    """(customer, event time) of each alert record, once per alert id; (alerts, malformed)."""
    from alerts.contracts import BadScore, parse_ts

    seen: set[str] = set()
    out, bad = [], 0
    for raw in values:
        try:
            rec = orjson.loads(raw or b"")
            alert_id = str(rec["alert_id"])
            if alert_id not in seen:
                seen.add(alert_id)
                out.append((str(rec["customer_id"]), parse_ts(rec["ts"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, BadScore):
            bad += 1
    return out, bad


def active_from(values: Iterable[bytes | None], origin: float) -> list[tuple[str, float]]:
    """(customer, first score time) per customer and week, from score records."""
    from alerts.contracts import BadScore, decode_score

    first: dict[tuple[str, int], float] = {}
    for raw in values:
        try:
            s = decode_score(raw or b"")
        except BadScore:
            continue
        key = (s.customer_id, math.floor((s.ts - origin) / WEEK_S))
        if key not in first or s.ts < first[key]:
            first[key] = s.ts
    return [(c, t) for (c, _), t in first.items()]


def cmd_report_alerts(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.alerts import labels_from

    alerts, bad_alerts = alerts_from(_values(settings, args.alerts, settings.topics.alerts,
                                             args.timeout))
    labels, bad_labels = labels_from(_values(settings, args.labels, settings.topics.labels,
                                             args.timeout))
    horizon_days = args.horizon_days or settings.model.horizon_days
    churns = [(lb.customer_id, lb.ts) for lb in labels if lb.churned]
    clock = max((lb.ts for lb in labels), default=float("-inf"))
    origin = week_origin(min((t for _, t in alerts), default=0.0))  # UTC ISO weeks
    active = None
    if args.scores:
        active = active_from(_values(settings, None, settings.topics.scores, args.timeout),
                             origin)
    result = measure(alerts, churns, horizon_s=horizon_days * 86400.0, origin=origin,
                     clock=clock, active=active)
    counts = {"alerts": len(alerts), "labels": len(labels), "churns": len(churns),
              "malformed_alerts": bad_alerts, "malformed_labels": bad_labels,
              "horizon_days": horizon_days}
    if args.json:
        print(json.dumps({**counts, **result}))
    else:
        print_alert_report(result, counts)
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _days(w: dict[str, Any]) -> str:
    return "-" if w["median"] is None else (f"{w['median']:.1f} ({w['p25']:.1f}-"
                                            f"{w['p75']:.1f})")


def print_alert_report(result: dict[str, Any], counts: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"Alerts per week (right = churned within {counts['horizon_days']:g} "
                        "days of the alert)")
    for col in ("week of", "alerts", "customers", "per 1,000 active", "resolved", "precision",
                "base rate", "churns", "recall", "days of warning (right)"):
        table.add_column(col, justify="right")
    rows = [*result["weeks"], {**result["total"], "week": "all"}]
    for w in rows:
        per = w.get("per_1000_active")
        week = (format_ts(w["start"])[:10] if isinstance(w["week"], int) and "start" in w
                else str(w["week"]))
        table.add_row(week, f"{w['alerts']:,}", f"{w['customers']:,}",
                      "-" if per is None else f"{per:.1f}", f"{w['resolved']:,}",
                      _pct(w["precision"]), _pct(w["base_rate"]), f"{w['churns']:,}",
                      _pct(w["recall"]), _days(w["warning_days"]))
    console.print(table)
    total = result["total"]
    console.print(f"{counts['alerts']:,} alerts, {counts['churns']:,} churn labels; warned "
                  f"churners: median {_days(total['warned_churner_days'])} days ahead. "
                  f"Malformed: {counts['malformed_alerts']} alerts, "
                  f"{counts['malformed_labels']} labels.")


def register(report_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``report alerts`` under the ``report`` command."""
    p = report_sub.add_parser("alerts", help="alerts per week: precision, recall, days of "
                                             "warning, from churn-alerts and churn-labels")
    p.add_argument("--alerts", metavar="FILE", help="alert records as JSON lines "
                                                    "(default: the topic)")
    p.add_argument("--labels", metavar="FILE", help="churn labels as JSON lines "
                                                    "(default: the topic)")
    p.add_argument("--scores", action="store_true",
                   help="also read churn-scores: active customers, base rate, rate per 1,000")
    p.add_argument("--horizon-days", type=float, default=None,
                   help="an alert is right when the churn follows within this (default: the "
                        "model horizon)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to read a topic to its end")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report_alerts)
