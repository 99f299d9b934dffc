"""``churnpulse`` retention commands (issue 16): the uplift breakdown (``report uplift --by``),
``report patterns``, ``report offers`` and the heterogeneous ``simulate-treatment --hetero``.
See ``docs/retention.md``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from alerts.uplift import Cell, Outcome
from streams.settings import Settings


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:.1f}%"


def cell_json(c: Cell) -> dict[str, Any]:
    r = c.report
    rr = None if r is None else r.relative_risk
    return {"key": list(c.key),
            "actioned": {"resolved": c.actioned.resolved, "churned": c.actioned.churned},
            "holdout": {"resolved": c.holdout.resolved, "churned": c.holdout.churned},
            "difference": None if r is None else r.difference,
            "ci_low": None if r is None else r.low, "ci_high": None if r is None else r.high,
            "relative_risk": None if rr is None else {"value": rr[0], "ci_low": rr[1],
                                                      "ci_high": rr[2]}}


def print_cells(cells: list[Cell], by: tuple[str, ...], confidence: float) -> None:
    table = Table(title=f"Uplift by {' × '.join(by)} (each against its own holdout; "
                        f"{confidence * 100:g}% CI)")
    for col in (*by, "actioned", "holdout", "churn A", "churn H", "difference [CI]",
                "rel. risk [CI]"):
        table.add_column(col, justify="left" if col in by else "right")
    for c in cells:
        r = c.report
        diff = ("too few" if r is None else
                f"{r.difference * 100:+.1f} [{r.low * 100:+.1f}, {r.high * 100:+.1f}]")
        rr = None if r is None else r.relative_risk
        rrs = "n/a" if rr is None else f"{rr[0]:.2f} [{rr[1]:.2f}, {rr[2]:.2f}]"
        table.add_row(*c.key, str(c.actioned.resolved), str(c.holdout.resolved),
                      _pct(c.actioned.rate), _pct(c.holdout.rate), diff, rrs)
    Console().print(table)


def outcomes_from(values: Iterable[bytes | None]) -> tuple[list[Outcome], dict[str, int]]:
    """Per customer the outcome of their first action, from ``retention-outcomes`` records
    (the first record of each ``outcome_id`` counts; the same id again is a re-publication
    after a crash, see ``streams.retention.service``)."""
    from alerts.contracts import BadScore, parse_ts

    seen: set[str] = set()
    first: dict[str, Outcome] = {}
    counts = {"records": 0, "duplicates": 0, "malformed": 0}
    for raw in values:
        counts["records"] += 1
        try:
            rec = json.loads(raw or b"")
            oid = str(rec["outcome_id"])
            if oid in seen:
                counts["duplicates"] += 1
                continue
            o = Outcome(str(rec["customer_id"]), bool(rec["holdout"]), parse_ts(rec["t0"]),
                        rec["outcome"] == "churned", str(rec.get("action") or ""),
                        str(rec.get("segment") or ""), str(rec.get("driver_category") or ""))
        except (ValueError, KeyError, TypeError, BadScore):
            counts["malformed"] += 1
            continue
        seen.add(oid)
        held = first.get(o.customer_id)
        if held is None or o.t0 < held.t0:
            first[o.customer_id] = o
    return [first[c] for c in sorted(first)], counts


def report_from_outcomes(settings: Settings, args: argparse.Namespace) -> int:
    """``report uplift --outcomes``: the report from the retention process's outcomes."""
    from alerts.uplift import breakdown, compare, z_of
    from streams.cli import alerts as cli_alerts

    values: list[bytes | None] = (
        _topic(settings, settings.retention.outcomes_topic, args.timeout)
        if args.outcomes == "topic" else list(cli_alerts._lines(Path(args.outcomes))))
    outcomes, counts = outcomes_from(values)
    horizon_days = settings.retention.horizon_days or settings.model.horizon_days
    n_actioned = sum(1 for o in outcomes if not o.holdout)
    n_holdout = len(outcomes) - n_actioned
    info = {**counts, "customers": len(outcomes), "resolved": len(outcomes), "unresolved": 0,
            "horizon_days": horizon_days}
    if min(n_actioned, n_holdout) < args.min_resolved:
        message = (f"not enough resolved customers yet: {n_actioned} actioned and {n_holdout} "
                   f"holdout (need {args.min_resolved} in each)")
        if args.json:
            print(json.dumps({"status": "not_enough_data", "message": message, **info}))
        else:
            print(f"churnpulse: {message}", file=sys.stderr)
        return cli_alerts.NOT_ENOUGH
    z = z_of(args.confidence)
    report = compare(outcomes, z=z, confidence=args.confidence)
    by = tuple(b.strip() for b in args.by.split(",") if b.strip())
    cells = breakdown(outcomes, by, z=z, confidence=args.confidence,
                      min_resolved=args.min_cell) if by else []
    if args.json:
        print(json.dumps({"status": "ok", "source": "outcomes", **info,
                          **cli_alerts.report_json(report),
                          **({"breakdown": by, "cells": [cell_json(c) for c in cells]}
                             if by else {})}))
        return 0
    cli_alerts.print_report(report, info)
    if by:
        print_cells(cells, by, args.confidence)
    return 0


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    from streams.retention.run import run_retention

    return run_retention(settings)


def cmd_report_uplift(settings: Settings, args: argparse.Namespace) -> int:
    """The overall report, then the breakdown when ``--by`` is given."""
    from streams.cli import alerts as cli_alerts

    if args.outcomes:
        return report_from_outcomes(settings, args)

    code = cli_alerts.cmd_report_uplift(settings, args)
    if code != 0 or not args.by:
        return code
    from alerts.uplift import breakdown, resolve, z_of

    by = tuple(b.strip() for b in args.by.split(",") if b.strip())
    decisions, _ = cli_alerts.decisions_from(
        cli_alerts._lines(Path(args.actions)) if args.actions else _topic(
            settings, settings.topics.retention_actions, args.timeout))
    labels, _ = cli_alerts.labels_from(
        cli_alerts._lines(Path(args.labels)) if args.labels else _topic(
            settings, settings.topics.labels, args.timeout))
    horizon_days = args.horizon_days or settings.model.horizon_days
    cells = breakdown(resolve(decisions, labels, horizon_days * 86400.0), by,
                      z=z_of(args.confidence), confidence=args.confidence,
                      min_resolved=args.min_cell)
    if args.json:
        print(json.dumps({"breakdown": by, "cells": [cell_json(c) for c in cells]}))
    else:
        print_cells(cells, by, args.confidence)
    return 0


def _topic(settings: Settings, topic: str, timeout: float) -> list[bytes | None]:
    from streams.kafka.topic_reader import read_topic_sync

    return [v for _, v in read_topic_sync(settings, topic, timeout)]


def cmd_report_patterns(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline.files import read_records
    from streams.offline.patterns import mine, svg_chart, windows

    events = ((str(r["customer_id"]), _epoch(r["ts"]), str(r["event_type"]))
              for r in read_records(Path(args.events)))
    churns = [(str(r["customer_id"]), _epoch(r["ts"]))
              for r in read_records(Path(args.labels), kind="label")
              if r.get("churned", True)]
    churned, stayed = windows(events, churns, args.window_days)
    patterns = mine(churned, stayed, args.min_support, args.max_len)
    if args.svg:
        Path(args.svg).write_text(svg_chart(patterns, args.top))
    if args.png:
        from streams.offline.patterns import png_chart

        png_chart(patterns, args.png, args.top)
    if args.json:
        print(json.dumps({"churners": len(churned), "stayers": len(stayed), "patterns": [
            {"pattern": list(p.items), "kind": p.kind, "support_churn": p.support_churn,
             "support_stay": p.support_stay, "confidence": p.confidence, "lift": p.lift}
            for p in patterns[:args.top]]}))
        return 0
    table = Table(title=f"Event patterns in the {args.window_days:g} days before churn "
                        f"({len(churned)} churners) vs stayers ({len(stayed)})")
    for col in ("pattern", "kind", "churners", "stayers", "confidence", "lift"):
        table.add_column(col, justify="left" if col in ("pattern", "kind") else "right")
    for p in patterns[:args.top]:
        table.add_row(p.text, p.kind, _pct(p.support_churn), _pct(p.support_stay),
                      _pct(p.confidence), f"{p.lift:.2f}")
    Console().print(table)
    for chart in (args.svg, args.png):
        if chart:
            print(f"chart: {chart}")
    return 0


def _epoch(raw: Any) -> float:
    from alerts.contracts import parse_ts

    return float(parse_ts(raw))


def cmd_simulate_treatment(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli import alerts as cli_alerts

    if not args.hetero:
        return cli_alerts.cmd_simulate_treatment(settings, args)
    from alerts.bandit import BanditParams
    from alerts.enrich import AlertConfig
    from streams.simulator.config import SimulationConfig
    from streams.simulator.treatment import TreatmentConfig, run_treated
    from streams.simulator.treatment_effects import Heterogeneity

    base = settings.alerts.config
    alerts = AlertConfig(policy=base.policy, routing=base.routing,
                         holdout_share=args.holdout_share if args.holdout_share is not None
                         else base.holdout_share, holdout_salt=base.holdout_salt)
    config = SimulationConfig(seed=args.seed, n_customers=args.customers, days=args.days)
    bandit = (BanditParams(explore=args.explore, min_pulls=args.min_pulls)
              if args.bandit else None)
    treatment = TreatmentConfig(effect=args.effect, horizon_days=args.horizon_days,
                                alerts=alerts, hetero=Heterogeneity(), bandit=bandit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sink = (out / "events.jsonl").open("wb") if args.events else None
    try:
        run = run_treated(config, treatment, events_out=sink)
    finally:
        if sink is not None:
            sink.close()
    paths = run.write(out)
    truth = run.truth
    print(f"{len(run.alerts)} alerts, {len(run.actions)} decisions, {run.treated} treatment "
          f"windows; churners saved {truth['saved']}, caused {truth['caused']} (net "
          f"{truth['net_saved']}); {len(run.offers)} offer answers; {truth['leavers']} planted "
          f"leavers; {len(run.labels)} churn labels")
    if sink is not None:
        print(f"  events: {out / 'events.jsonl'}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def _published_recommender(settings: Settings) -> Any:
    """The recommender the retention process published to Redis (None: none yet)."""
    import asyncio

    from streams.redis.client import make_redis
    from streams.redis.retention_store import RetentionStore
    from streams.signing import signer_from_settings

    async def load() -> Any:
        client = make_redis(settings.redis)
        try:
            store = RetentionStore(client, settings.redis.key_prefix,
                                   signer_from_settings(settings))
            return await store.recommender()
        finally:
            await client.aclose()

    return asyncio.run(load())


def cmd_report_offers(settings: Settings, args: argparse.Namespace) -> int:
    """Top offers per customer from an offers file (CF with a popularity fallback), or from
    the recommender the retention process published (without ``--offers``)."""
    from alerts.reco import OfferRecommender
    from streams.contracts import decode_event, offer_of
    from streams.errors import InvalidMessage

    if not args.offers:
        published = _published_recommender(settings)
        if published is None:
            print("churnpulse: no recommender published yet (run `churnpulse retention`)",
                  file=sys.stderr)
            return 3
        for cid in args.customer:
            print(json.dumps({"customer_id": cid, "source": "published",
                              "offers": [o.to_wire() for o in published.top(cid, args.k)]}))
        return 0

    answers_at: list[tuple[float, str, str, bool]] = []
    bad = 0
    for line in Path(args.offers).read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            event = decode_event(line)
            got = offer_of(event)
        except InvalidMessage:
            bad += 1
            continue
        if got is not None and got[1] in ("accepted", "declined"):
            answers_at.append((event.ts, event.customer_id, got[0], got[1] == "accepted"))
    answers = [(c, o, a) for _, c, o, a in sorted(answers_at)]
    if bad:
        print(f"churnpulse: {bad} malformed offer events skipped", file=sys.stderr)
    catalogue = tuple(sorted({o for _, o, _ in answers}))
    rec = OfferRecommender(catalogue, seed=0)
    rec.learn_many(answers, epochs=3)
    for cid in args.customer:
        print(json.dumps({"customer_id": cid,
                          "offers": [o.to_wire() for o in rec.top(cid, args.k)]}))
    return 0


def register(report_sub: argparse._SubParsersAction[argparse.ArgumentParser],
             uplift: argparse.ArgumentParser, treat: argparse.ArgumentParser,
             sub: argparse._SubParsersAction[argparse.ArgumentParser] | None = None) -> None:
    """Add the retention options to ``report uplift`` and ``simulate-treatment``, the
    ``report patterns`` and ``report offers`` commands, and ``churnpulse retention``."""
    if sub is not None:
        sub.add_parser("retention", help="run the retention process: outcomes from the "
                                         "topics, offer recommender, learning policy"
                       ).set_defaults(func=cmd_retention)
    uplift.add_argument("--outcomes", nargs="?", const="topic", default=None, metavar="FILE",
                        help="report from the retention process's outcomes (the topic, or "
                             "a JSON lines FILE) instead of joining actions and labels")
    uplift.add_argument("--by", default="", metavar="FIELDS",
                        help="break the effect down by action, segment, driver_category "
                             "(comma-separated)")
    uplift.add_argument("--min-cell", type=int, default=30,
                        help="resolved customers needed in each arm of a breakdown cell")
    uplift.set_defaults(func=cmd_report_uplift)

    treat.add_argument("--hetero", action="store_true",
                       help="segments, heterogeneous effects, offers, a planted churn pattern")
    treat.add_argument("--bandit", action="store_true",
                       help="(with --hetero) the learning policy chooses the action")
    treat.add_argument("--explore", type=float, default=0.1)
    treat.add_argument("--min-pulls", type=int, default=30)
    treat.add_argument("--events", action="store_true", help="also write events.jsonl")
    treat.set_defaults(func=cmd_simulate_treatment)

    pat = report_sub.add_parser("patterns", help="event-type sets and sequences before churn "
                                                 "vs among stayers (support, confidence, lift)")
    pat.add_argument("--events", required=True, metavar="FILE")
    pat.add_argument("--labels", required=True, metavar="FILE")
    pat.add_argument("--window-days", type=float, default=30.0)
    pat.add_argument("--min-support", type=float, default=0.05,
                     help="share of churners' windows a pattern must appear in")
    pat.add_argument("--max-len", type=int, default=3)
    pat.add_argument("--top", type=int, default=15)
    pat.add_argument("--svg", metavar="FILE", help="write a bar chart of the lifts")
    pat.add_argument("--png", metavar="FILE", help="the same chart as PNG (matplotlib)")
    pat.add_argument("--json", action="store_true")
    pat.set_defaults(func=cmd_report_patterns)

    offers = report_sub.add_parser("offers", help="top offers per customer (collaborative "
                                                  "filtering, popularity for cold starts)")
    offers.add_argument("--offers", metavar="FILE",
                        help="offer_accepted / offer_declined events as JSON lines (default: "
                             "the recommender churnpulse retention published to Redis)")
    offers.add_argument("--customer", action="append", default=[], required=True)
    offers.add_argument("-k", type=int, default=3)
    offers.set_defaults(func=cmd_report_offers)
