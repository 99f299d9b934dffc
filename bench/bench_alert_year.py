"""Alert budgets on simulated years: the figures of issue 10's done-when, per seed.

Two stages, so the expensive one runs once per seed::

    # 1. simulate, serve every score through the backtest (worker + learner in-process),
    #    keep the served scores, churns and the batch baseline's rows (bench/out/year-<seed>/)
    python bench/bench_alert_year.py serve --customers 2000 --days 365 --seed 1

    # 2. replay the alert policy (budget code of the working tree) over the served scores
    python bench/bench_alert_year.py replay --seeds 1 2 3 --budget 0.02

    # 3. a per-day trace of the budget (level, thresholds, customers above enter, alerts, held)
    python bench/bench_alert_year.py trace --seed 1 --from 2025-09-29 --to 2025-10-27

    # 4. where warned churners' days of warning go: first chance vs first alert, what held it
    python bench/bench_alert_year.py delays --seeds 1 2 3

    # 5. how soon churn follows a served score, by its probability (what bounds the warning)
    python bench/bench_alert_year.py lead --seeds 1 2 3

``serve`` writes ``served.pkl`` (score columns, churns, baseline rows, served ECE) and the
full backtest ``report.json``; ``replay`` prints, per seed and after the first month (weeks
are UTC ISO weeks: Monday 00:00 UTC): the share of weeks within ±15 % of the budget, the
volume range, precision over the base rate of the same weeks, recall, the days of warning of
warned churners (median, quartiles) and the served ECE, and writes
``bench/out/alert_year.json``. Process CPU seconds are printed beside wall seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import pickle
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def serve(args: argparse.Namespace) -> None:
    from online_models.baseline import run_baseline
    from streams.offline.backtest import BacktestOptions, outcomes, run_backtest
    from streams.offline.backtest_report import build_report, write_report
    from streams.offline.history import load_history
    from streams.settings import load_settings

    out = Path(args.out or OUT / f"year-{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    sim = out / "sim"
    w0, c0 = time.time(), time.process_time()
    if not (sim / "events.jsonl").exists():
        subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--out", str(sim),
                        "--customers", str(args.customers), "--days", str(args.days),
                        "--seed", str(args.seed), "--start", args.start, "--no-progress"],
                       check=True)
    settings = load_settings()
    history = load_history(sim / "events.jsonl", sim / "labels.jsonl")
    run = asyncio.run(run_backtest(settings, history, BacktestOptions()))
    served_s = time.time() - w0
    print(f"seed {args.seed}: {run.n_events:,} events, {run.n_labels:,} labels served in "
          f"{served_s:.0f} s wall ({run.events_per_second:,.0f} events/s)", flush=True)
    config = settings.alerts.config
    budget = year_budget(settings, args.budget)
    report = build_report(run, settings.model.alert_threshold, alert_policy=config.policy,
                          alert_budget=budget)
    write_report(report, out)
    rows = outcomes(run)
    base = run_baseline([r for r, _, _ in rows], run.policy.horizon_s)
    s = run.scores
    dump = {"customers": s.customers, "versions": s.versions, "cid": s.cid.tolist(),
            "t": s.t.tolist(), "p": s.p.tolist(), "version": s.version.tolist(),
            "sweep": s.sweep.tolist(), "churns": run.churns, "first_ts": run.first_ts,
            "last_ts": run.last_ts, "horizon_s": run.policy.horizon_s,
            "baseline": [(r.customer_id, r.t, p) for r, p in base.scored],
            "ece_served": report["calibration"]["ece_served"],
            "events": run.n_events, "labels": run.n_labels, "scores": len(s),
            "serve_wall_s": served_s, "serve_cpu_s": time.process_time() - c0}
    (out / "served.pkl").write_bytes(pickle.dumps(dump))
    print(f"seed {args.seed}: wrote {out / 'served.pkl'} ({len(s):,} scores; wall "
          f"{time.time() - w0:.0f} s, cpu {time.process_time() - c0:.0f} s)", flush=True)


def year_budget(settings: Any, share: float) -> Any:
    """The settings' budget in budget mode at ``share`` of the active customers a week, one
    partition (the served scores are replayed as one)."""
    return settings.alerts.budget.model_copy(
        update={"mode": "budget", "share_per_week": share}).params(1)


def load_scores(dump: dict[str, Any]) -> Any:
    from streams.offline.backtest_stores import ScoreLog

    log = ScoreLog("scores")
    log.customers, log.versions = dump["customers"], dump["versions"]
    log.cid, log.t, log.p = array("l", dump["cid"]), array("d", dump["t"]), array("d", dump["p"])
    log.version, log.sweep = array("l", dump["version"]), array("b", dump["sweep"])
    return log


def replay_one(path: Path, share: float) -> dict[str, Any]:
    from streams.offline.backtest_alerts import alert_section
    from streams.settings import load_settings

    dump = pickle.loads(path.read_bytes())
    settings = load_settings()
    budget = year_budget(settings, share)
    w0, c0 = time.time(), time.process_time()
    section = alert_section(load_scores(dump), dump["churns"], horizon_s=dump["horizon_s"],
                            origin=dump["first_ts"], clock=dump["last_ts"],
                            policy=settings.alerts.config.policy, budget=budget,
                            baseline=dump["baseline"])
    later, total = section["after_first_month"], section["online"]["total"]
    return {"served": str(path), "events": dump["events"], "labels": dump["labels"],
            "scores": dump["scores"], "customers": len(dump["customers"]),
            "alerts": total["alerts"], "by_severity": section["by_severity"],
            "per_1000_active": total["per_1000_active"], "after_first_month": later,
            "recall": total["recall"], "warned_churner_days": total["warned_churner_days"],
            "warned_churner_median_90ci": total["warned_churner_median_90ci"],
            "right_alert_days": total["warning_days"], "ece_served": dump["ece_served"],
            "baseline": {k: section["baseline"]["total"][k] for k in
                         ("precision", "recall", "warned_churner_days")}
            if "baseline" in section else None,
            "online_same_span": {k: section["online_from_baseline_start"]["total"][k] for k in
                                 ("precision", "recall", "warned_churner_days")}
            if "baseline" in section else None,
            "replay_wall_s": time.time() - w0, "replay_cpu_s": time.process_time() - c0,
            "weeks": [{k: r.get(k) for k in ("week", "start", "alerts", "budget", "customers",
                                              "precision", "base_rate")}
                      for r in section["online"]["weeks"]]}


def trace(args: argparse.Namespace) -> None:
    """Per event-time day of one served year: the budget's level and thresholds at the day's
    first score, the smoothed alerts wanted per day, the week's budget and alerts sent before
    the day; the day's scores, customers, customers above enter (already alerted / free to
    alert), alerts, episodes the cap held, and the 99.5th percentile of the day's scores."""
    from datetime import UTC, date, datetime

    from alerts.budget import DAY_S, BudgetState, free_to_alert
    from alerts.measure import week_start_day
    from alerts.policy import RiskState
    from streams.offline.backtest_alerts import score_inputs
    from streams.settings import load_settings

    dump = pickle.loads((Path(args.dir or OUT) / f"year-{args.seed}" / "served.pkl").read_bytes())
    scores, settings = load_scores(dump), load_settings()
    budget = year_budget(settings, args.budget)
    assert budget is not None
    policy = settings.alerts.config.policy
    lo, hi = (math.floor(datetime.combine(date.fromisoformat(d), datetime.min.time(), UTC)
                         .timestamp() / DAY_S) for d in (args.start, args.end))
    state, risk = BudgetState.initial(budget), dict[str, RiskState]()
    team = state.teams[budget.budgets[0].team]
    days: dict[int, dict[str, Any]] = {}
    for i, s in score_inputs(scores):
        day = math.floor(s.ts / DAY_S)
        if day >= hi + 2:  # scores come in offset order, up to ~0.7 days out of time order
            break
        cid = s.customer_id
        before = risk.get(cid, RiskState())
        row = None
        if lo <= day < hi:
            p = state.policy_for(s, policy)
            if day not in days:
                first = week_start_day(day)
                days[day] = {"level": team.level, "th": (p.enter, p.exit, p.high, p.critical),
                             "rate": team.rate or 0.0, "week": state.weekly_budget(team_name(
                                 budget)), "sent": team.sent_since(first) - team.sent_since(day),
                             "scores": [], "cust": set(), "alerted": set(), "free": set(),
                             "alerts": 0, "held": 0}
            row = days[day]
            row["scores"].append(s.score)
            row["cust"].add(cid)
            if s.score >= p.enter:
                row["free" if free_to_alert(before, s.ts, policy) else "alerted"].add(cid)
        waiting = len(team.waiting)
        risk[cid], out = state.step(i, before, s, policy, 0.0)
        if row is not None:
            row["alerts"] += len(out)
            row["held"] += len(team.waiting) > waiting
    print("day         level    q %   enter   exit    high    crit  wanted  week  sent | "
          "scores  cust above alerted free | alerts held | p99.5")
    for d, r in sorted(days.items()):
        xs = sorted(r["scores"])
        enter, exit_, high, crit = r["th"]
        when = datetime.fromtimestamp(d * DAY_S, UTC).strftime("%Y-%m-%d %a")[:13]
        print(f"{when} {r['level']:6.2f} {100 * 2 ** r['level']:5.2f} {enter:.4f} {exit_:.4f} "
              f"{high:.4f} {crit:.4f} {r['rate']:6.1f} {r['week']:5.1f} {r['sent']:5d} | "
              f"{len(xs):6d} {len(r['cust']):5d} {len(r['alerted']) + len(r['free']):5d} "
              f"{len(r['alerted']):7d} {len(r['free']):4d} | {r['alerts']:6d} {r['held']:4d} | "
              f"{xs[int(0.995 * len(xs))]:.3f}")


def team_name(budget: Any) -> str:
    return str(budget.budgets[0].team)


def _f(x: Any, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def replay(args: argparse.Namespace) -> None:
    results = {}
    for seed in args.seeds:
        path = Path(args.dir or OUT) / f"year-{seed}" / "served.pkl"
        r = replay_one(path, args.budget)
        results[str(seed)] = r
        later, d = r["after_first_month"], r["warned_churner_days"]
        ci = ("-" if r["warned_churner_median_90ci"] is None else
              "{:.1f}-{:.1f}".format(*r["warned_churner_median_90ci"]))
        print(f"seed {seed}: {r['customers']:,} customers, {r['alerts']:,} alerts "
              f"{r['by_severity']}; after month 1: {later['weeks']} weeks, "
              f"{_f(later['weeks_within_15pct'], '.0%')} within ±15 % "
              f"(volume {_f(later['volume_ratio_min'], '.2f')}-"
              f"{_f(later['volume_ratio_max'], '.2f')} x budget); precision "
              f"{_f(later['precision'])} / base {_f(later['base_rate'])} = "
              f"{_f(later['precision_over_base'], '.1f')}x; recall {_f(r['recall'])}; warned "
              f"churners' warning median {_f(d['median'], '.1f')} d (p25 {_f(d['p25'], '.1f')}, "
              f"p75 {_f(d['p75'], '.1f')}, n {d['n']}, median 90 % CI {ci}); served ECE "
              f"{_f(r['ece_served'])}; "
              f"replay {r['replay_cpu_s']:.1f} s cpu", flush=True)
    OUT.mkdir(exist_ok=True)
    target = Path(args.json or OUT / "alert_year.json")
    target.write_text(json.dumps({"budget": args.budget, "seeds": results}, indent=1))
    print(f"wrote {target}")


def delays(args: argparse.Namespace) -> None:
    """Where the days of warning go, per seed: for each churner warned after the first month,
    the first chance (their first score at or above *enter* while free to alert, in the
    horizon before the churn) against the first alert; of those alerted more than a day after
    it, how many episodes the cap held and how many closed unalerted in between; and how often
    churners are scored in the horizon before their churn (gaps, sweeper share)."""
    from statistics import median, quantiles

    from alerts.budget import BudgetState, free_to_alert
    from alerts.policy import RiskState, episode_id
    from streams.offline.backtest_alerts import score_inputs
    from streams.settings import load_settings

    settings = load_settings()
    policy = settings.alerts.config.policy
    for seed in args.seeds:
        dump = pickle.loads((Path(args.dir or OUT) / f"year-{seed}" / "served.pkl").read_bytes())
        scores = load_scores(dump)
        budget = year_budget(settings, args.budget)
        assert budget is not None
        state, risk = BudgetState.initial(budget), dict[str, RiskState]()
        team = state.teams[budget.budgets[0].team]
        churns: dict[str, list[float]] = {}
        for c, t in dump["churns"]:
            churns.setdefault(c, []).append(t)
        seen: dict[str, dict[str, list[float]]] = {}  # customer -> kind -> event times
        for i, s in score_inputs(scores):
            cid = s.customer_id
            before = risk.get(cid, RiskState())
            p = state.policy_for(s, policy)
            risk[cid], out = state.step(i, before, s, policy, 0.0)
            new, marks = risk[cid], seen.setdefault(cid, {})
            if cid in churns:
                marks.setdefault(s.reason, []).append(s.ts)
            if s.score >= p.enter and free_to_alert(before, s.ts, policy):
                marks.setdefault("chance", []).append(s.ts)
            if out:
                marks.setdefault("alert", []).append(s.ts)
            elif new.episode_start is not None and episode_id(
                    cid, new.episode_start) in team.waiting:
                marks.setdefault("held", []).append(s.ts)
            if before.in_episode and not new.in_episode and before.alerted_tier < 0:
                marks.setdefault("closed", []).append(s.ts)
        horizon, start = dump["horizon_s"], dump["first_ts"] + 28 * 86400.0
        first_chance, late, gaps, swept, kinds = [], [], [], [], {"held": 0, "closed only": 0,
                                                                   "neither": 0}
        for c, ts in churns.items():
            m = seen.get(c, {})
            for t in (t for t in ts if t >= start):
                def within(kind: str, lo: float, hi: float, m: dict[str, list[float]] = m
                           ) -> list[float]:
                    return [x for x in m.get(kind, []) if lo <= x < hi]
                scored = sorted(within("event", t - horizon, t) + within("sweep", t - horizon, t))
                gaps += [(b - a) / 86400.0 for a, b in itertools.pairwise(scored)]
                swept.append((len(within("sweep", t - horizon, t)), len(scored)))
                alerts, chances = within("alert", t - horizon, t), within("chance", t - horizon, t)
                if not alerts or not chances:
                    continue
                first_chance.append((t - min(chances)) / 86400.0)
                wait = (min(alerts) - min(chances)) / 86400.0
                late.append(wait)
                if wait > 1.0:
                    kind = ("held" if within("held", min(chances), min(alerts)) else
                            "closed only" if within("closed", min(chances), min(alerts))
                            else "neither")
                    kinds[kind] += 1
        if len(late) < 2 or len(gaps) < 2:
            print(f"seed {seed}: too few warned churners to say")
            continue
        q, g = quantiles(late, n=20), quantiles(gaps, n=20)
        print(f"seed {seed}: {len(late)} warned churners: first chance a median "
              f"{median(first_chance):.1f} d before the churn; first alert a median "
              f"{median(late):.2f} d after it (p75 {q[14]:.1f}, p90 {q[17]:.1f}); "
              f"{sum(x > 1 for x in late)} more than a day after it, of which the cap held "
              f"{kinds['held']}, an episode closed unalerted (only) {kinds['closed only']}, "
              f"neither {kinds['neither']}; churners in their horizon are scored every "
              f"{median(gaps):.2f} d (median; p90 {g[17]:.2f}), "
              f"{sum(a for a, _ in swept) / max(1, sum(b for _, b in swept)):.0%} by the "
              f"sweeper", flush=True)


LEAD_BINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0000001)


def constant_hazard_median(q: float, horizon_days: float) -> float:
    """Median days to churn, among customers who churn within the horizon, of a customer whose
    probability of churning within it is ``q`` and whose daily hazard stays constant:
    ``1 - (1-h)^t = q/2`` with ``(1-h)^H = 1 - q``. Falls from ``H/2`` (q near 0) as q rises.

    >>> round(constant_hazard_median(0.01, 30), 1), round(constant_hazard_median(0.35, 30), 1)
    (15.0, 13.4)
    """
    if q <= 0.0:
        return horizon_days / 2
    if q >= 1.0:
        return 0.0
    return horizon_days * math.log1p(-q / 2) / math.log1p(-q)


def lead(args: argparse.Namespace) -> None:
    """How soon churn follows a served score, by the score's probability, per seed: of the
    scores after the first month, per probability bin, the share whose customer churned within
    the horizon (the calibration), the median (quartiles) of the days from score to churn among
    those, and the constant-hazard median for that share; then where the budget's alerts sit
    (probability at each warned churner's first right alert, how many were warned 7 and 14
    days ahead). A calibrated score that is high means a churn that is near: this is what
    bounds the days of warning at a precision."""
    import bisect
    from statistics import median, quantiles

    from alerts.measure import Churns
    from streams.offline.backtest_alerts import replay_alerts, score_inputs
    from streams.settings import load_settings

    settings = load_settings()
    for seed in args.seeds:
        dump = pickle.loads((Path(args.dir or OUT) / f"year-{seed}" / "served.pkl").read_bytes())
        scores = load_scores(dump)
        horizon, start = dump["horizon_s"], dump["first_ts"] + 28 * 86400.0
        h_days = horizon / 86400.0
        churns = Churns(dump["churns"])
        alerts, _ = replay_alerts(scores, settings.alerts.config.policy,
                                  year_budget(settings, args.budget))
        first: dict[tuple[str, float], tuple[str, float]] = {}  # (customer, churn) -> alert
        for cid, sent, _sev in alerts:
            c = churns.next_after(cid, sent, horizon)
            if sent >= start and c is not None and (cid, c) not in first:
                first[(cid, c)] = (cid, sent)
        alerted = {a: 0.0 for a in first.values()}  # first right alert -> its probability
        n = [0] * (len(LEAD_BINS) - 1)
        days: list[list[float]] = [[] for _ in n]
        for _, s in score_inputs(scores):
            if (s.customer_id, s.ts) in alerted:
                alerted[(s.customer_id, s.ts)] = s.score
            if s.ts < start or s.ts > dump["last_ts"] - horizon:
                continue  # the first month; the last horizon's outcomes are not known yet
            b = bisect.bisect_right(LEAD_BINS, s.score) - 1
            n[b] += 1
            c = churns.next_after(s.customer_id, s.ts, horizon)
            if c is not None:
                days[b].append((c - s.ts) / 86400.0)
        print(f"seed {seed}: days from a served score to its customer's churn, among the scores "
              f"followed by a churn within {h_days:.0f} d (scores after month 1):")
        for b, (lo, hi) in enumerate(itertools.pairwise(LEAD_BINS)):
            if n[b] == 0:
                continue
            q = len(days[b]) / n[b]
            if len(days[b]) >= 4:
                qs = quantiles(days[b], n=4)
                spread = f"median {median(days[b]):5.1f} d ({qs[0]:.1f}-{qs[2]:.1f})"
            else:
                spread = "too few to say"
            print(f"  p {lo:.2f}-{min(hi, 1.0):.2f}: {n[b]:>7,} scores, {q:6.1%} churn within "
                  f"the horizon, {spread}; constant hazard: "
                  f"{constant_hazard_median(q, h_days):.1f} d")
        if len(first) >= 4:
            ps = [alerted[a] for a in first.values()]
            ws = [(c - sent) / 86400.0 for (_, c), (_, sent) in first.items()]
            qp = quantiles(ps, n=4)
            print(f"  budget {args.budget:.0%}: {len(first)} warned churners, probability at "
                  f"the first right alert median {median(ps):.2f} ({qp[0]:.2f}-{qp[2]:.2f}), "
                  f"days of warning median {median(ws):.1f}; warned at least 14 d before "
                  f"{sum(w >= 14 for w in ws)}, at least 7 d {sum(w >= 7 for w in ws)}",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--customers", type=int, default=2000)
    s.add_argument("--days", type=int, default=365)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--start", default="2025-09-01", help="a Monday, a year in the past")
    s.add_argument("--budget", type=float, default=0.02)
    s.add_argument("--out", type=Path)
    r = sub.add_parser("replay")
    r.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    r.add_argument("--budget", type=float, default=0.02)
    r.add_argument("--dir", type=Path, help="where the year-<seed> folders are")
    r.add_argument("--json", type=Path)
    t = sub.add_parser("trace")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--from", dest="start", default="2025-09-29", help="first day (UTC)")
    t.add_argument("--to", dest="end", default="2025-10-27", help="day after the last")
    t.add_argument("--budget", type=float, default=0.02)
    t.add_argument("--dir", type=Path, help="where the year-<seed> folders are")
    d = sub.add_parser("delays")
    d.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    d.add_argument("--budget", type=float, default=0.02)
    d.add_argument("--dir", type=Path, help="where the year-<seed> folders are")
    e = sub.add_parser("lead")
    e.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    e.add_argument("--budget", type=float, default=0.02)
    e.add_argument("--dir", type=Path, help="where the year-<seed> folders are")
    args = parser.parse_args()
    {"serve": serve, "replay": replay, "trace": trace, "delays": delays,
     "lead": lead}[args.stage](args)


if __name__ == "__main__":
    main()
