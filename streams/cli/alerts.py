"""``churnpulse`` subcommands of the alert side: ``alerter``, ``report uplift`` and ``report
alerts`` (:mod:`streams.cli.report_alerts`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from alerts.uplift import Decision, Label, UpliftReport, compare, resolve, z_of
from streams.settings import Settings

NOT_ENOUGH = 3  # exit code: too few labels resolved yet


def cmd_alerter(settings: Settings, args: argparse.Namespace) -> int:
    from streams.alerter.service import run_alerter

    return run_alerter(settings)


def decisions_from(values: Iterable[bytes | None]) -> tuple[list[Decision], int]:
    """Retention decisions from ``retention-actions`` records; returns (decisions, malformed)."""
    from alerts.contracts import BadScore, parse_ts

    out, bad = [], 0
    for raw in values:
        try:
            rec = orjson.loads(raw or b"")
            out.append(Decision(str(rec["customer_id"]), parse_ts(rec["ts"]),
                                bool(rec["holdout"]), str(rec.get("recommended_action") or ""),
                                str(rec.get("segment") or ""),
                                str(rec.get("driver_category") or "")))
        except (orjson.JSONDecodeError, KeyError, TypeError, BadScore):
            bad += 1
    return out, bad


def labels_from(values: Iterable[bytes | None]) -> tuple[list[Label], int]:
    from streams.contracts import decode_label
    from streams.errors import InvalidMessage

    out, bad = [], 0
    for raw in values:
        try:
            label = decode_label(raw or b"")
        except InvalidMessage:
            bad += 1
            continue
        out.append(Label(label.customer_id, label.ts, label.churned))
    return out, bad


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def cmd_report_uplift(settings: Settings, args: argparse.Namespace) -> int:
    if args.actions:
        action_values: list[bytes | None] = list(_lines(Path(args.actions)))
    else:
        from streams.kafka.topic_reader import read_topic_sync

        action_values = [v for _, v in read_topic_sync(settings, settings.topics.
                                                       retention_actions, args.timeout)]
    if args.labels:
        label_values: list[bytes | None] = list(_lines(Path(args.labels)))
    else:
        from streams.kafka.topic_reader import read_topic_sync

        label_values = [v for _, v in read_topic_sync(settings, settings.topics.labels,
                                                      args.timeout)]
    decisions, bad_actions = decisions_from(action_values)
    labels, bad_labels = labels_from(label_values)
    horizon_days = args.horizon_days or settings.model.horizon_days
    outcomes = resolve(decisions, labels, horizon_days * 86400.0)
    resolved = [o for o in outcomes if o.churned is not None]
    n_actioned = sum(1 for o in resolved if not o.holdout)
    n_holdout = len(resolved) - n_actioned
    counts = {"decisions": len(decisions), "customers": len(outcomes),
              "resolved": len(resolved), "unresolved": len(outcomes) - len(resolved),
              "malformed_actions": bad_actions, "malformed_labels": bad_labels,
              "labels": len(labels), "horizon_days": horizon_days}
    if min(n_actioned, n_holdout) < args.min_resolved:
        message = (f"not enough resolved customers yet: {n_actioned} actioned and {n_holdout} "
                   f"holdout resolved (need {args.min_resolved} in each); a customer resolves "
                   f"{horizon_days:g} days after their first action, or at a churn label. "
                   f"{counts['unresolved']} customers are waiting.")
        if args.json:
            print(json.dumps({"status": "not_enough_data", "message": message, **counts}))
        else:
            print(f"churnpulse: {message}", file=sys.stderr)
        return NOT_ENOUGH
    report = compare(outcomes, z=z_of(args.confidence), confidence=args.confidence)
    if args.json:
        print(json.dumps({"status": "ok", **counts, **report_json(report)}))
    else:
        print_report(report, counts)
    return 0


def report_json(r: UpliftReport) -> dict[str, Any]:
    rr = r.relative_risk
    return {
        "actioned": {"customers": r.actioned.customers, "resolved": r.actioned.resolved,
                     "churned": r.actioned.churned, "churn_rate": r.actioned.rate},
        "holdout": {"customers": r.holdout.customers, "resolved": r.holdout.resolved,
                    "churned": r.holdout.churned, "churn_rate": r.holdout.rate},
        "difference": r.difference, "ci_low": r.low, "ci_high": r.high,
        "confidence": r.confidence, "significant": r.significant,
        "relative_risk": None if rr is None else {"value": rr[0], "ci_low": rr[1],
                                                  "ci_high": rr[2]},
    }


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:.1f}%"


def print_report(r: UpliftReport, counts: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"Retention uplift (churn within {counts['horizon_days']:g} days of "
                        "the first action)")
    for col in ("arm", "customers", "resolved", "churned", "churn rate"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for name, a in (("actioned", r.actioned), ("holdout", r.holdout)):
        table.add_row(name, str(a.customers), str(a.resolved), str(a.churned), _pct(a.rate))
    console.print(table)
    ci = f"{r.confidence * 100:g}% CI"
    console.print(f"difference (actioned - holdout): {r.difference * 100:+.1f} points, "
                  f"{ci} [{r.low * 100:+.1f}, {r.high * 100:+.1f}]")
    if r.relative_risk is not None:
        rr, lo, hi = r.relative_risk
        console.print(f"relative churn risk: {rr:.2f} ({ci} {lo:.2f}-{hi:.2f}); "
                      f"churn reduced by {(1 - rr) * 100:.0f}%")
    verdict = ("the actions reduce churn" if r.high < 0 else
               "the actions increase churn" if r.low > 0 else
               "no effect distinguishable from chance yet")
    console.print(f"verdict: {verdict}. unresolved customers: {counts['unresolved']}")


def cmd_simulate_treatment(settings: Settings, args: argparse.Namespace) -> int:
    from alerts.enrich import AlertConfig
    from streams.simulator.config import SimulationConfig
    from streams.simulator.treatment import TreatmentConfig, run_treated

    base = settings.alerts.config
    alerts = AlertConfig(policy=base.policy, routing=base.routing,
                         holdout_share=args.holdout_share if args.holdout_share is not None
                         else base.holdout_share, holdout_salt=base.holdout_salt)
    config = SimulationConfig(seed=args.seed, n_customers=args.customers, days=args.days)
    run = run_treated(config, TreatmentConfig(effect=args.effect,
                                              horizon_days=args.horizon_days, alerts=alerts))
    paths = run.write(Path(args.out))
    print(f"{len(run.alerts)} alerts, {len(run.actions)} decisions, {run.treated} customers "
          f"actioned ({run.saved} churns prevented), {len(run.labels)} churn labels")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    print(f"then: churnpulse report uplift --actions {paths['actions']} --labels "
          f"{paths['labels']} --horizon-days {args.horizon_days}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``churnpulse`` parser."""
    alerter = sub.add_parser("alerter", help="run the alerter: scores -> alerts and actions")
    alerter.set_defaults(func=cmd_alerter)

    report = sub.add_parser("report", help="reports over the topics")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    uplift = report_sub.add_parser(
        "uplift", help="churn of actioned customers vs the holdout, with a confidence interval")
    uplift.add_argument("--actions", metavar="FILE",
                        help="retention decisions as JSON lines (default: the topic)")
    uplift.add_argument("--labels", metavar="FILE",
                        help="churn labels as JSON lines (default: the topic)")
    uplift.add_argument("--horizon-days", type=float, default=None,
                        help="outcome window after the first action (default: model horizon)")
    uplift.add_argument("--confidence", type=float, default=0.95)
    uplift.add_argument("--min-resolved", type=int, default=30,
                        help="resolved customers needed in each arm")
    uplift.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to read a topic to its end")
    uplift.add_argument("--json", action="store_true")
    uplift.set_defaults(func=cmd_report_uplift)
    from streams.cli.report_alerts import register as register_report_alerts

    register_report_alerts(report_sub)

    treat = sub.add_parser("simulate-treatment",
                           help="simulated customers whose retention actions have a known effect")
    treat.add_argument("--effect", type=float, default=0.4,
                       help="share of actioned customers the action retains for the horizon")
    treat.add_argument("--horizon-days", type=int, default=30)
    treat.add_argument("--customers", type=int, default=4000)
    treat.add_argument("--days", type=int, default=150)
    treat.add_argument("--seed", type=int, default=42)
    treat.add_argument("--holdout-share", type=float, default=None,
                       help="default: alerts.holdout_share")
    treat.add_argument("--out", required=True, help="directory for the JSON lines files")
    treat.set_defaults(func=cmd_simulate_treatment)

    from streams.cli.retention import register as register_retention

    register_retention(report_sub, uplift, treat, sub)
