"""Reliability of the served scores of a simulated year, early and late (issue 10).

Reads the ``served.pkl`` that ``bench/bench_alert_year.py serve`` writes and prints, per
seed, the reliability diagram of the daily snapshots (a customer's first score of each UTC
day, scored by a trained version) in the first 60 days and after, the top bins' counts in
customers as well as snapshots, and the ECE::

    python bench/bench_calibration_year.py --dir bench/out --seeds 1 2 3 [--json out.json]

A snapshot's outcome: the customer churned within the horizon after it.
"""

from __future__ import annotations

import argparse
import bisect
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from online_models.calibration import expected_calibration_error, reliability

DAY = 86400.0


def snapshots(dump: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t, p, churned, customer) of each customer's first trained score per UTC day."""
    names = {i: v for v, i in dump["versions"].items()}
    untrained = {i for i, v in names.items() if v.startswith("0-")}
    cids = {i: c for c, i in dump["customers"].items()} if isinstance(
        dump["customers"], dict) else dict(enumerate(dump["customers"]))
    churns: dict[str, list[float]] = {}
    for customer, ts in dump["churns"]:
        churns.setdefault(customer, []).append(ts)
    for times in churns.values():
        times.sort()
    horizon = float(dump["horizon_s"])
    seen: set[tuple[int, int]] = set()
    t_out, p_out, y_out, c_out = [], [], [], []
    for cid, t, p, ver in zip(dump["cid"], dump["t"], dump["p"], dump["version"],
                              strict=True):
        key = (cid, int(t // DAY))
        if key in seen:
            continue
        seen.add(key)
        if ver in untrained:
            continue
        times = churns.get(cids[cid], [])
        i = bisect.bisect_right(times, t)
        y = i < len(times) and times[i] <= t + horizon
        t_out.append(t)
        p_out.append(p)
        y_out.append(y)
        c_out.append(cid)
    return np.array(t_out), np.array(p_out), np.array(y_out), np.array(c_out)


def section(p: np.ndarray, y: np.ndarray, c: np.ndarray) -> dict[str, Any]:
    bins = reliability(p.tolist(), y.tolist())
    rows = []
    for b in bins:
        inside = (p >= b.lo) & (p < b.hi) if b.hi < 1.0 else p >= b.lo
        rows.append({"lo": b.lo, "n": b.n, "customers": len(set(c[inside].tolist())),
                     "predicted": round(b.predicted, 4), "observed": round(b.observed, 4)})
    top = p >= 0.2
    return {"n": len(p), "ece": expected_calibration_error(p.tolist(), y.tolist()),
            "mean_p": float(p.mean()), "churn": float(y.mean()),
            "p_ge_0.2": {"n": int(top.sum()), "predicted": float(p[top].mean()) if top.any()
                         else None, "observed": float(y[top].mean()) if top.any() else None},
            "bins": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("bench/out"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    for seed in args.seeds:
        dump = pickle.loads((args.dir / f"year-{seed}" / "served.pkl").read_bytes())
        t, p, y, c = snapshots(dump)
        early = t <= float(dump["first_ts"]) + args.days * DAY
        out[str(seed)] = {"early": section(p[early], y[early], c[early]),
                          "late": section(p[~early], y[~early], c[~early]),
                          "all_ece": expected_calibration_error(p.tolist(), y.tolist())}
        for name in ("early", "late"):
            s = out[str(seed)][name]
            top = s["p_ge_0.2"]
            print(f"seed {seed} {name}: {s['n']:,} snapshots, ECE {s['ece']:.4f}, mean p "
                  f"{s['mean_p']:.4f} vs churn {s['churn']:.4f}; p>=0.2: {top['n']:,} "
                  f"predicted {top['predicted'] or 0:.3f} observed {top['observed'] or 0:.3f}")
            for b in s["bins"]:
                if b["lo"] >= 0.2:
                    print(f"    {b['lo']:.1f}+ n {b['n']:>6,} ({b['customers']:>4,} customers)"
                          f" predicted {b['predicted']:.3f} observed {b['observed']:.3f}")
        print(f"seed {seed}: whole year ECE {out[str(seed)]['all_ece']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
