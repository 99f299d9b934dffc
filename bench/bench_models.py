"""Model-quality benchmark: every simulator scenario × seeds through the in-process backtest.

Not part of the pass/fail suite. Run by hand (no Kafka, no Redis)::

    python bench/bench_models.py [--scenarios default,mix,...] [--seeds 1,2,3]
                                 [--customers 1000] [--days 240] [--data DIR] [--json OUT]

For each scenario (:mod:`streams.simulator.scenarios`) and seed, the simulator writes the
history once (cached under ``--data``; the same files are reused by later runs), then
:func:`streams.offline.backtest.run_backtest` replays it with the default settings — the same
configuration for every scenario — and the run is measured:

* ``served``: AUC, log loss, ECE (10 equal-width bins) and top-decile lift of the snapshots the
  learner resolved, with the score that was *served* when each was taken (the untrained
  start left out, as the report does);
* ``monthly``: the report's same-rows view: every active customer at each UTC month start,
  scored by the online model version current then and by the monthly batch refit
  (:func:`online_models.baseline.run_baseline`, L2 = 1) on the same rows: AUC of both, and
  ``won`` when online ≥ batch;
* ``labels/s``: resolutions learned per second spent inside ``Learner.learn_batch``;
  ``events/s``: backtest events per wall second.

``--generate-only`` writes the histories and stops: run the measuring part of another
checkout on the same files with ``PYTHONPATH=<checkout> python bench/bench_models.py --data
DIR`` (the measuring part only imports modules that exist since commit 3fa26b6).
A progress line per run goes to stderr; the table to stdout; ``--json`` holds every figure so
far (rewritten after each run; ``--resume`` carries on from it). Runs go seed by seed, so a
partial run covers every scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SCENARIOS = ("default", "mix", "social", "price-shock", "noisy-labels")


def history_dir(data: Path, scenario: str, seed: int, customers: int, days: int) -> Path:
    return data / f"{scenario}-s{seed}-c{customers}-d{days}"


def generate(out: Path, scenario: str, seed: int, customers: int, days: int) -> None:
    """Write ``events.jsonl`` / ``labels.jsonl`` of one scenario (skipped when present)."""
    if (out / "labels.jsonl").exists():
        return
    from streams.simulator import SimulationConfig, run_to_files
    from streams.simulator.scenarios import scenario as named

    config = named(scenario).apply(SimulationConfig(seed=seed, n_customers=customers, days=days))
    run_to_files(config, out, "jsonl")


# -- metrics (plain numpy; the same for every scenario) -------------------------------------
def auc(p: np.ndarray, y: np.ndarray) -> float:
    from online_models.report_metrics import roc_auc

    return float(roc_auc(p, y))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    if p.size == 0:
        return math.nan
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: bin-size-weighted |mean score - churn rate| over 10 bins."""
    if p.size == 0:
        return math.nan
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(float(p[sel].mean()) - float(y[sel].mean()))
    return total / p.size


def top_decile_lift(p: np.ndarray, y: np.ndarray) -> float:
    if p.size < 10 or y.sum() == 0:
        return math.nan
    k = max(p.size // 10, 1)
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def measure(events: Path, labels: Path) -> dict[str, Any]:
    """One backtest with the default settings, and its figures."""
    from online_models.baseline import run_baseline
    from online_models.model import UNTRAINED_VERSION
    from streams.offline.backtest import Backtest, outcomes
    from streams.offline.history import load_history
    from streams.settings import Settings

    history = load_history(events, labels)
    settings = Settings()
    backtest = Backtest(settings)
    learner = backtest.run.learner
    spent = [0.0, 0]
    learn_batch: Callable[..., Any] = learner.learn_batch

    def timed(resolutions: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return learn_batch(resolutions, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began
            spent[1] += len(resolutions)

    setattr(learner, "learn_batch", timed)  # noqa: B010 (time the learner in place)
    run = asyncio.run(backtest.execute(history))

    res = [r for r in run.resolved if r.model_version != UNTRAINED_VERSION]
    p = np.array([r.served for r in res], dtype=float)
    y = np.array([r.churned for r in res], dtype=float)
    rows = outcomes(run)
    base = run_baseline([row for row, _, _ in rows], run.policy.horizon_s, l2=1.0)
    base_p = {(row.customer_id, row.t): q for row, q in base.scored}
    same = [(row, q) for row, q, _ in rows if (row.customer_id, row.t) in base_p]
    my = np.array([row.churned for row, _ in same], dtype=float)
    mo = np.array([q for _, q in same], dtype=float)
    mb = np.array([base_p[(row.customer_id, row.t)] for row, _ in same], dtype=float)
    return {
        "events": run.n_events, "labels": run.n_labels, "churns": len(run.churns),
        "served_n": int(p.size), "served_pos": int(y.sum()),
        "served_auc": auc(p, y), "served_logloss": log_loss(p, y), "served_ece": ece(p, y),
        "served_lift": top_decile_lift(p, y),
        "monthly_n": int(my.size), "monthly_pos": int(my.sum()),
        "monthly_online_auc": auc(mo, my), "monthly_batch_auc": auc(mb, my),
        "monthly_online_logloss": log_loss(mo, my), "monthly_online_ece": ece(mo, my),
        "monthly_online_lift": top_decile_lift(mo, my),
        "monthly_batch_lift": top_decile_lift(mb, my),
        "labels_per_s": spent[1] / spent[0] if spent[0] > 0 else math.nan,
        "events_per_s": run.events_per_second, "seconds": run.seconds,
        "champion": learner.champion.name, "versions": run.version,
    }


# -- table ------------------------------------------------------------------------------------
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("served AUC", "served_auc", "{:.3f}"),
    ("monthly online", "monthly_online_auc", "{:.3f}"),
    ("monthly batch", "monthly_batch_auc", "{:.3f}"),
    ("log loss", "served_logloss", "{:.3f}"),
    ("ECE", "served_ece", "{:.3f}"),
    ("lift@10%", "served_lift", "{:.2f}"),
    ("labels/s", "labels_per_s", "{:,.0f}"),
    ("events/s", "events_per_s", "{:,.0f}"),
)


def _fmt(fmt: str, value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else fmt.format(value)


def _won(r: dict[str, Any]) -> bool:
    """Online AUC at the monthly dates ≥ the batch refit's (False when either is missing)."""
    return bool(r["monthly_online_auc"] >= r["monthly_batch_auc"])


def table(results: Sequence[dict[str, Any]]) -> str:
    head = ["scenario", "seed", *[c[0] for c in COLUMNS], "won"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        won = _won(r)
        cells = [r["scenario"], str(r["seed"]), *[_fmt(f, r[k]) for _, k, f in COLUMNS],
                 "yes" if won else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["scenario"], []).append(r)
    lines += ["", "| scenario | runs | " + " | ".join(c[0] for c in COLUMNS[:6])
              + " | online − batch | won |", "|" + "---|" * 10]
    for name, rs in by.items():
        means = [_fmt(f, statistics.fmean(r[k] for r in rs)) for _, k, f in COLUMNS[:6]]
        gap = statistics.fmean(r["monthly_online_auc"] - r["monthly_batch_auc"] for r in rs)
        won = sum(_won(r) for r in rs)
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(means)
                     + f" | {gap:+.3f} | {won}/{len(rs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--days", type=int, default=240)
    ap.add_argument("--data", type=Path, default=None,
                    help="where histories are cached (default: a temporary directory)")
    ap.add_argument("--json", type=Path, default=None,
                    help="write every figure here (after each run)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the runs already in --json, do the others")
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        data = args.data or Path(tmp)
        results: list[dict[str, Any]] = []
        if args.resume and args.json is not None and args.json.exists():
            results = json.loads(args.json.read_text())
        done = {(r["scenario"], r["seed"]) for r in results}
        # seed-major: a partial run still covers every scenario
        runs = [(sc, seed) for seed in seeds for sc in scenarios]
        for i, (sc, seed) in enumerate(runs, 1):
            if (sc, seed) in done and not args.generate_only:
                continue
            out = history_dir(data, sc, seed, args.customers, args.days)
            began = time.perf_counter()
            generate(out, sc, seed, args.customers, args.days)
            if args.generate_only:
                print(f"[{i}/{len(runs)}] {sc} seed {seed}: {out}", file=sys.stderr)
                continue
            r = measure(out / "events.jsonl", out / "labels.jsonl")
            r |= {"scenario": sc, "seed": seed, "customers": args.customers, "days": args.days}
            results.append(r)
            if args.json is not None:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=1, default=str))
            print(f"[{i}/{len(runs)}] {sc} seed {seed}: {r['events']:,} events, "
                  f"{r['churns']} churns, served AUC {r['served_auc']:.3f}, monthly online "
                  f"{r['monthly_online_auc']:.3f} vs batch {r['monthly_batch_auc']:.3f} "
                  f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
        if results:
            print(f"{args.customers} customers, {args.days} days, seeds {args.seeds}")
            order = {name: i for i, name in enumerate(scenarios)}
            print(table(sorted(results, key=lambda r: (order.get(r["scenario"], 99),
                                                       r["seed"]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
