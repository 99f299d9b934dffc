"""Metrics of a backtest report, from resolved predictions: pure numpy, no I/O.

A *resolved prediction* is a score ``p`` made at event time ``t`` whose outcome ``y`` ("churned
within (t, t + H]") is known. The report shows, for the online path and for the batch baseline
side by side:

* ROC AUC over time (:func:`auc_over_time`): one value per period of ``t``;
* precision and recall at the alert threshold (:func:`precision_recall_at`);
* lift by decile (:func:`lift_by_decile`): churn rate of each tenth of the ranking over the base
  rate, and the share of all churners caught down to that decile;
* calibration (:func:`calibration_bins`): mean predicted probability against the observed churn
  rate, per probability bin;
* days of warning (:func:`warning_days`): how long before each churn the first alert (a score at
  or above the threshold inside the horizon before the churn) would have come.

AUC is exact (ranks with ties averaged), not a thresholded approximation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
DAY_S = 86400.0


def _arrays(p: Sequence[float] | FloatArray,
            y: Sequence[bool] | BoolArray) -> tuple[FloatArray, BoolArray]:
    pa = np.asarray(p, dtype=np.float64)
    ya = np.asarray(y, dtype=np.bool_)
    if pa.shape != ya.shape:
        raise ValueError(f"{pa.shape[0]} predictions but {ya.shape[0]} outcomes")
    return pa, ya


def roc_auc(p: Sequence[float] | FloatArray, y: Sequence[bool] | BoolArray) -> float:
    """Exact ROC AUC (Mann-Whitney U with tied scores averaged); NaN with one class only.

    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    >>> roc_auc([0.5, 0.5], [False, True])
    0.5
    >>> math.isnan(roc_auc([0.2, 0.3], [True, True]))
    True
    """
    pa, ya = _arrays(p, y)
    n_pos = int(ya.sum())
    n_neg = ya.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(pa, kind="mergesort")
    sorted_p = pa[order]
    ranks = np.empty(pa.size, dtype=np.float64)
    # average rank of each run of ties (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], sorted_p.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = float(ranks[ya].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


@dataclass(frozen=True, slots=True)
class PeriodAUC:
    start: float
    n: int
    positives: int
    auc: float


def auc_over_time(t: Sequence[float] | FloatArray, p: Sequence[float] | FloatArray,
                  y: Sequence[bool] | BoolArray, period_s: float = 30 * DAY_S,
                  origin: float | None = None) -> list[PeriodAUC]:
    """ROC AUC of the predictions made in each period ``[origin + k·period, ...)``.

    ``origin`` defaults to the first ``t``; periods without predictions are left out.

    >>> rows = auc_over_time([0, 1, 2, 10, 11, 12], [.1, .9, .2, .9, .1, .2],
    ...                      [False, True, False, False, True, False], period_s=10)
    >>> [(r.start, r.n, r.auc) for r in rows]
    [(0.0, 3, 1.0), (10.0, 3, 0.0)]
    """
    ta = np.asarray(t, dtype=np.float64)
    pa, ya = _arrays(p, y)
    if ta.size == 0:
        return []
    first = float(ta.min()) if origin is None else origin
    k = np.floor((ta - first) / period_s).astype(np.int64)
    out = []
    for bucket in np.unique(k):
        sel = k == bucket
        out.append(PeriodAUC(first + float(bucket) * period_s, int(sel.sum()),
                             int(ya[sel].sum()), roc_auc(pa[sel], ya[sel])))
    return out


def precision_recall_at(p: Sequence[float] | FloatArray, y: Sequence[bool] | BoolArray,
                        threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of "alert when ``p >= threshold``".

    >>> r = precision_recall_at([0.9, 0.2, 0.6, 0.7], [True, False, False, True], 0.5)
    >>> r["precision"], r["recall"], r["flagged"]
    (0.6666666666666666, 1.0, 3.0)
    """
    pa, ya = _arrays(p, y)
    flagged = pa >= threshold
    hits = int((flagged & ya).sum())
    n_flag, n_pos = int(flagged.sum()), int(ya.sum())
    precision = hits / n_flag if n_flag else float("nan")
    recall = hits / n_pos if n_pos else float("nan")
    f1 = (2 * precision * recall / (precision + recall)
          if n_flag and n_pos and precision + recall > 0 else float("nan"))
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1,
            "flagged": float(n_flag), "flagged_share": n_flag / pa.size if pa.size else math.nan,
            "positives": float(n_pos), "n": float(pa.size)}


@dataclass(frozen=True, slots=True)
class DecileLift:
    decile: int  # 1 = the riskiest tenth
    n: int
    churn_rate: float
    lift: float
    cumulative_capture: float  # share of all churners in deciles 1..decile


def lift_by_decile(p: Sequence[float] | FloatArray,
                   y: Sequence[bool] | BoolArray) -> list[DecileLift]:
    """Churn rate of each tenth of the ranking (riskiest first) over the overall rate.

    Ties are broken by position (stable sort), so equal scores never favour churners.

    >>> rows = lift_by_decile([i / 100 for i in range(100)], [i >= 90 for i in range(100)])
    >>> rows[0].lift, rows[0].cumulative_capture, rows[1].lift
    (10.0, 1.0, 0.0)
    """
    pa, ya = _arrays(p, y)
    if pa.size < 10 or not ya.any():
        return []
    order = np.argsort(-pa, kind="stable")
    ranked = ya[order]
    base = float(ya.mean())
    total = int(ya.sum())
    out, caught = [], 0
    for d, part in enumerate(np.array_split(ranked, 10), start=1):
        rate = float(part.mean())
        caught += int(part.sum())
        out.append(DecileLift(d, int(part.size), rate, rate / base, caught / total))
    return out


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    lo: float
    hi: float
    n: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(p: Sequence[float] | FloatArray, y: Sequence[bool] | BoolArray,
                     bins: int = 10) -> list[CalibrationBin]:
    """Mean prediction against observed churn rate in equal-width probability bins.

    >>> [(b.lo, b.n, b.observed_rate) for b in calibration_bins([.05, .15, .95, .99],
    ...                                                          [False, False, True, False])]
    [(0.0, 1, 0.0), (0.1, 1, 0.0), (0.9, 2, 0.5)]
    """
    pa, ya = _arrays(p, y)
    idx = np.minimum((pa * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        if n:
            out.append(CalibrationBin(round(b / bins, 10), round((b + 1) / bins, 10), n,
                                      float(pa[sel].mean()), float(ya[sel].mean())))
    return out


@dataclass(frozen=True, slots=True)
class ChurnWarning:
    """The first alert before one churn (``days`` is None when none came in time)."""

    customer_id: str
    churn_t: float
    alert_t: float | None

    @property
    def days(self) -> float | None:
        return None if self.alert_t is None else (self.churn_t - self.alert_t) / DAY_S


def warning_days(churns: Sequence[tuple[str, float]],
                 scores: Mapping[str, tuple[FloatArray, FloatArray]],
                 threshold: float, horizon_s: float) -> list[ChurnWarning]:
    """For each churn ``(customer, T)``, the first score ``>= threshold`` in ``[T − H, T)``.

    ``scores`` maps a customer to ``(times, probabilities)`` sorted by time. A churner whose
    scores never reached the threshold inside the horizon gets ``alert_t = None``.

    >>> s = {"a": (np.array([0., 5., 8.]), np.array([.9, .7, .2])),
    ...      "b": (np.array([9.]), np.array([.1]))}
    >>> [w.alert_t for w in warning_days([("a", 10.0), ("b", 10.0)], s, 0.5, 6.0)]
    [5.0, None]
    """
    out = []
    for cid, churn_t in churns:
        times, probs = scores.get(cid, (np.empty(0), np.empty(0)))
        lo = np.searchsorted(times, churn_t - horizon_s, side="left")
        hi = np.searchsorted(times, churn_t, side="left")
        hits = np.flatnonzero(probs[lo:hi] >= threshold)
        out.append(ChurnWarning(cid, churn_t, float(times[lo + hits[0]]) if hits.size else None))
    return out


def warning_summary(warnings: Sequence[ChurnWarning],
                    edges_days: Sequence[float] = (0, 1, 3, 7, 14, 21, 31)) -> dict[str, Any]:
    """Share of churners warned, median/quartile days of warning, and a histogram.

    >>> w = [ChurnWarning("a", 10 * DAY_S, 3 * DAY_S), ChurnWarning("b", 5 * DAY_S, None)]
    >>> s = warning_summary(w)
    >>> s["churners"], s["warned"], s["median_days"], s["histogram"][3]
    (2, 1, 7.0, {'from_days': 7, 'to_days': 14, 'churners': 1})
    """
    days = np.array([w.days for w in warnings if w.days is not None], dtype=np.float64)
    hist = []
    for lo, hi in itertools.pairwise(edges_days):
        hist.append({"from_days": lo, "to_days": hi,
                     "churners": int(((days >= lo) & (days < hi)).sum())})
    return {
        "churners": len(warnings),
        "warned": int(days.size),
        "warned_share": days.size / len(warnings) if warnings else float("nan"),
        "median_days": float(np.median(days)) if days.size else float("nan"),
        "p25_days": float(np.percentile(days, 25)) if days.size else float("nan"),
        "p75_days": float(np.percentile(days, 75)) if days.size else float("nan"),
        "histogram": hist,
    }


def summarize(t: Sequence[float] | FloatArray, p: Sequence[float] | FloatArray,
              y: Sequence[bool] | BoolArray, threshold: float,
              period_s: float = 30 * DAY_S, origin: float | None = None) -> dict[str, Any]:
    """Every metric of one model on its resolved predictions, as plain data (JSON-ready)."""
    pa, ya = _arrays(p, y)
    return {
        "n": int(pa.size),
        "positives": int(ya.sum()),
        "roc_auc": roc_auc(pa, ya),
        "auc_over_time": [_row(r) for r in auc_over_time(t, pa, ya, period_s, origin)],
        "at_threshold": precision_recall_at(pa, ya, threshold),
        "lift_by_decile": [_row(r) for r in lift_by_decile(pa, ya)],
        "calibration": [_row(r) for r in calibration_bins(pa, ya)],
        "brier": float(((pa - ya) ** 2).mean()) if pa.size else float("nan"),
    }


def _row(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}
