"""Record a history's learning stream once, then replay model configurations on it quickly.

The snapshots a backtest learns from (their features, outcomes and the step that resolved
them) do not depend on the model: the worker snapshots what it scores whatever the score, and
labels and the watermark decide the outcomes. So one backtest of a history gives a stream that
any learner configuration can be replayed on in a fraction of the time, with the scores it
would have served: each snapshot is scored, at its own event time, by the model as it was
after the last learner step before that time (what the worker would have held), and learned
when its step comes. Month-start rows (the batch baseline's rows) are scored the same way and
compared to the monthly refit on the same rows.

    python bench/learning_stream.py record EVENTS LABELS OUT.pkl
    python bench/learning_stream.py replay OUT.pkl [OUT2.pkl ...] --configs asrun,logreg,bayes

``asrun`` prints the recorded backtest's own figures; ``default`` replays the learner of the
default settings (champion, challengers, promotion: ``CHURN_MODEL__*`` variables apply); any
other name is a one-model learner spec of :func:`online_models.grid.config_learner` (e.g.
``logreg``, ``bayes``, ``ensemble``: each weighted as the live learner weighs it).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from online_models.baseline import run_baseline
from online_models.evaluation import log_loss, top_decile_lift
from online_models.learner import Learner
from online_models.model import UNTRAINED_VERSION
from online_models.observations import Observation, Resolution

DAY_S = 86400.0


def auc(scores: list[float], ys: list[bool]) -> float:
    """Exact ROC AUC, ties counted half."""
    s = np.asarray(scores)
    y = np.asarray(ys, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    order = s.argsort(kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def record(events: Path, labels: Path, out: Path) -> None:
    from streams.offline.backtest import outcomes
    from streams.offline.history import load_history
    from streams.settings import Settings

    steps: list[tuple[float, list[tuple[str, float, dict[str, float], bool]]]] = []
    history = load_history(events, labels)
    settings = Settings()
    holder: dict[str, Any] = {}
    original = Learner.learn_batch

    def spy(self: Learner, resolutions: list[Resolution], now: float | None = None
            ) -> list[str]:
        if resolutions:
            now = holder["bt"].now
            steps.append((now, [(r.observation.customer_id, r.observation.t,
                                 dict(r.observation.x), r.churned) for r in resolutions]))
        return original(self, resolutions, now)

    from streams.offline import backtest as bt_mod

    Learner.learn_batch = spy  # type: ignore[method-assign]
    began = time.monotonic()
    backtest = bt_mod.Backtest(settings)
    holder["bt"] = backtest
    run = asyncio.run(backtest.execute(history))
    Learner.learn_batch = original  # type: ignore[method-assign]
    rows = outcomes(run)
    base = run_baseline([r for r, _, _ in rows], run.policy.horizon_s)
    base_p = {(row.customer_id, row.t): p for row, p in base.scored}
    month = [(row.customer_id, row.t, dict(row.x), row.churned,
              base_p.get((row.customer_id, row.t)), online) for row, online, _ in rows]
    served = [(r.t, r.served, r.churned, r.model_version != UNTRAINED_VERSION)
              for r in run.resolved]
    with out.open("wb") as f:
        pickle.dump({"steps": steps, "month": month, "served": served,
                     "horizon_s": run.policy.horizon_s}, f, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"{out}: {sum(len(b) for _, b in steps):,} resolutions in {len(steps):,} steps, "
          f"{len(month):,} month rows, {time.monotonic() - began:.0f} s")
    print("backtest as run: " + _line(summary({"served": served, "month": month})))


def summary(data: dict[str, Any]) -> dict[str, float]:
    """The figures of a recorded backtest as it ran (served scores, month rows)."""
    from online_models.calibration import expected_calibration_error

    served = [(p, y) for _, p, y, trained in data["served"] if trained]
    ps, ys = [p for p, _ in served], [y for _, y in served]
    pairs = [(r[5], r[3], r[4]) for r in data["month"] if r[4] is not None and len(r) > 5]
    return {
        "served_auc": auc(ps, ys),
        "served_logloss": sum(log_loss(p, y) for p, y in served) / max(1, len(served)),
        "served_ece": expected_calibration_error(ps, ys),
        "served_lift": top_decile_lift(list(zip(ps, ys, strict=True))),
        "month_auc": auc([p for p, _, _ in pairs], [y for _, y, _ in pairs]),
        "baseline_auc": auc([b for _, _, b in pairs], [y for _, y, _ in pairs]),
        "month_ece": expected_calibration_error([p for p, _, _ in pairs],
                                                [y for _, y, _ in pairs]),
        "n": float(len(ps)),
        "rows": float(len(pairs)),
    }


def _line(figures: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" if k not in ("n", "rows") else f"{k} {int(v)}"
                    for k, v in figures.items())


def replay(data: dict[str, Any], learner: Learner) -> dict[str, float]:
    """Serve and learn the recorded stream with ``learner``; the figures of the report."""
    from online_models.calibration import expected_calibration_error

    steps = data["steps"]
    learner.keep_copies(DAY_S, data["horizon_s"] + 2 * DAY_S)
    # every snapshot is scored at its time t by the model after the last step at or before t
    creations: list[tuple[float, int, int]] = []
    for s, (_, batch) in enumerate(steps):
        for i, (_, t, _, _) in enumerate(batch):
            creations.append((t, s, i))
    creations.sort()
    served: dict[tuple[int, int], float] = {}
    month = sorted(data["month"], key=lambda r: r[1])
    month_scores: list[float] = []
    step_times = [now for now, _ in steps]
    c = m = learned = 0
    cpu = 0.0
    trained = False
    for s in range(len(steps) + 1):
        until = step_times[s] if s < len(steps) else math.inf
        while c < len(creations) and creations[c][0] < until:
            t, cs, ci = creations[c]
            x = steps[cs][1][ci][2]
            served[(cs, ci)] = learner.serve(x) if trained else math.nan
            c += 1
        while m < len(month) and month[m][1] < until:
            month_scores.append(learner.serve(month[m][2]) if trained else math.nan)
            m += 1
        if s == len(steps):
            break
        batch = steps[s][1]
        began = time.process_time()
        learner.learn_batch([Resolution(Observation(cid, t, x, served[(s, i)]
                                                    if not math.isnan(served[(s, i)]) else 0.5,
                                                    "v"), y)
                             for i, (cid, t, x, y) in enumerate(batch)], now=steps[s][0])
        cpu += time.process_time() - began
        learned += len(batch)
        trained = True
    ps, ys = [], []
    for s, (_, batch) in enumerate(steps):
        for i, row in enumerate(batch):
            p = served[(s, i)]
            if not math.isnan(p):
                ps.append(p)
                ys.append(row[3])
    pairs = [(p, r[3], r[4]) for p, r in zip(month_scores, month, strict=True)
             if r[4] is not None and not math.isnan(p)]
    return {
        "served_auc": auc(ps, ys),
        "served_logloss": sum(log_loss(p, y) for p, y in zip(ps, ys, strict=True)) / len(ps),
        "served_ece": expected_calibration_error(ps, ys),
        "served_lift": top_decile_lift(list(zip(ps, ys, strict=True))),
        "month_auc": auc([p for p, _, _ in pairs], [y for _, y, _ in pairs]),
        "baseline_auc": auc([b for _, _, b in pairs], [y for _, y, _ in pairs]),
        "month_ece": expected_calibration_error([p for p, _, _ in pairs],
                                                [y for _, y, _ in pairs]),
        "n": float(len(ps)),
        "rows": float(len(pairs)),
        "labels_per_cpu_s": learned / cpu if cpu > 0 else float("nan"),
    }


def default_learner() -> Learner:
    """The learner the default settings build (champion, challengers, promotion rule)."""
    from streams.learner.service import new_learner
    from streams.settings import Settings

    return new_learner(Settings())


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("events", type=Path)
    rec.add_argument("labels", type=Path)
    rec.add_argument("out", type=Path)
    rep = sub.add_parser("replay")
    rep.add_argument("data", type=Path, nargs="+")
    rep.add_argument("--configs", default="default")
    args = parser.parse_args()
    if args.cmd == "record":
        record(args.events, args.labels, args.out)
        return 0
    from online_models.grid import config_learner

    for path in args.data:
        with path.open("rb") as f:
            data = pickle.load(f)
        for name in args.configs.split(","):
            began = time.monotonic()
            raw = name.endswith(":raw")  # serve the uncalibrated score (the earlier way)
            learner = (None if name == "asrun" else default_learner() if name == "default"
                       else config_learner(name.removesuffix(":raw")))
            if learner is not None and raw:
                learner.serve = learner.champion.model.raw_proba  # type: ignore[method-assign]
            figures = summary(data) if learner is None else replay(data, learner)
            print(f"{path.name:<18} {name:<18} " + _line(figures)
                  + f" ({time.monotonic() - began:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
