"""Retention bench (issue 16): per-action uplift coverage, learned policy vs static table, offer
hit-rate@3, on the heterogeneous treatment simulator. ``python bench/bench_retention.py``.

Prints one JSON line per measurement; see docs/retention.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from alerts.bandit import BanditParams
from alerts.contracts import parse_ts as _parse
from alerts.enrich import AlertConfig
from alerts.reco import OfferRecommender, hit_rate
from alerts.uplift import Decision, Label, breakdown, compare, resolve
from streams.simulator.config import SimulationConfig
from streams.simulator.treatment import TreatedRun, TreatmentConfig, run_treated
from streams.simulator.treatment_effects import Heterogeneity


def _ts(raw: str) -> float:
    return float(_parse(raw))


def outcomes_of(run: TreatedRun, horizon_days: int) -> list[Any]:
    decisions = [Decision(a["customer_id"], _ts(a["ts"]), a["holdout"], a["recommended_action"],
                          a.get("segment", ""), a["driver_category"]) for a in run.actions]
    labels = [Label(x["customer_id"], _ts(x["ts"]), True) for x in run.labels]
    return resolve(decisions, labels, horizon_days * 86400.0)


def saved_vs_holdout(run: TreatedRun, horizon_days: int) -> dict[str, float]:
    r = compare(outcomes_of(run, horizon_days))
    return {"actioned": r.actioned.resolved, "holdout_rate": r.holdout.rate,
            "actioned_rate": r.actioned.rate,
            "saved_vs_holdout": (r.holdout.rate - r.actioned.rate) * r.actioned.resolved,
            "truth_net_saved": run.truth["net_saved"], "windows": run.truth["windows"],
            "truth_net_saved_per_1000_windows": 1000.0 * run.truth["net_saved"] / max(
                run.truth["windows"], 1), **second_half(run)}


def second_half(run: TreatedRun) -> dict[str, float]:
    """Windows and net churners saved from the middle of the run on (after learning)."""
    daily = run.truth["cumulative_by_day"]
    w0, s0, c0 = daily[len(daily) // 2]
    w1, s1, c1 = run.truth["windows"], run.truth["saved"], run.truth["caused"]
    return {"second_half_windows": w1 - w0, "second_half_net_saved": (s1 - s0) - (c1 - c0),
            "second_half_net_saved_per_1000": 1000.0 * ((s1 - s0) - (c1 - c0)) / max(w1 - w0, 1)}


def coverage(run: TreatedRun, horizon_days: int, het: Heterogeneity) -> dict[str, Any]:
    cells = breakdown(outcomes_of(run, horizon_days), ("action", "segment"), min_resolved=30)
    hit = total = 0
    rows = []
    for c in cells:
        if c.report is None or c.report.relative_risk is None:
            continue
        action, seg = c.key
        p = c.holdout.rate
        true_rr = het.true_rr(het.effect(action, seg), p)
        rr, lo, hi = c.report.relative_risk
        ok = lo <= true_rr <= hi
        hit += ok
        total += 1
        rows.append([action, seg, round(true_rr, 2), round(rr, 2), round(lo, 2), round(hi, 2)])
    return {"cells": total, "covered": hit, "rows": rows}


def reco_figures(run: TreatedRun) -> dict[str, float]:
    rows = sorted(run.offers, key=lambda r: r["ts"])
    cut = rows[int(len(rows) * 0.8)]["ts"]
    train = [(r["customer_id"], r["properties"]["offer"], r["event_type"] == "offer_accepted")
             for r in rows if r["ts"] < cut]
    test = [(r["customer_id"], r["properties"]["offer"]) for r in rows
            if r["ts"] >= cut and r["event_type"] == "offer_accepted"]
    rec = OfferRecommender(tuple(run.truth["offers"]), seed=0)
    rec.learn_many(train, epochs=3)
    pop = sorted(rec.offers, key=lambda o: -rec.popularity(o))
    segs, prefs = run.truth["customer_segments"], run.truth["offer_prefs"]
    return {"train": len(train), "test": len(test),
            "cf_hit3": hit_rate(lambda c, k: [o.offer for o in rec.top(c, k)], test),
            "popularity_hit3": hit_rate(lambda c, k: pop[:k], test),
            "segment_oracle_hit3": hit_rate(
                lambda c, k: sorted(prefs[segs[c]], key=lambda o: -prefs[segs[c]][o])[:k],
                test)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--days", type=int, default=150)
    ap.add_argument("--policy-customers", type=int, default=20000)
    ap.add_argument("--policy-days", type=int, default=300)
    ap.add_argument("--explore", type=float, default=0.2)
    ap.add_argument("--min-pulls", type=int, default=20)
    ap.add_argument("--context", default="segment",
                    help="the learning policy's context fields, comma-separated")
    ap.add_argument("--part", choices=["uplift", "policy", "all"], default="all")
    args = ap.parse_args(argv)
    het = Heterogeneity()
    for seed in args.seeds:
        if args.part in ("uplift", "all"):
            run = run_treated(SimulationConfig(seed=seed, n_customers=args.customers,
                                               days=args.days),
                              TreatmentConfig(alerts=AlertConfig(holdout_share=0.3), hetero=het))
            print(json.dumps({"seed": seed, "coverage": coverage(run, 30, het),
                              "reco": reco_figures(run)}), flush=True)
        if args.part in ("policy", "all"):
            out: dict[str, Any] = {"seed": seed}
            for name, bandit in (("static", None), ("learned", BanditParams(
                    explore=args.explore, min_pulls=args.min_pulls,
                    context=tuple(args.context.split(","))))):
                run = run_treated(SimulationConfig(seed=seed, n_customers=args.policy_customers,
                                                   days=args.policy_days),
                                  TreatmentConfig(alerts=AlertConfig(holdout_share=0.1),
                                                  hetero=het, bandit=bandit))
                out[name] = saved_vs_holdout(run, 30)
            print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
