"""Delayed progressive evaluation: metrics over the most recent resolved predictions.

Each resolved observation contributes the probability that was predicted for it and its
outcome. ROC AUC is exact over the window, ties counted half (:class:`RollingAUC`; River's
default ``metrics.ROCAUC()`` with 10 thresholds reads ~0.5 on imbalanced streams, and its
``RollingROCAUC`` counts tied scores differently). A drift detector (ADWIN) watches the log
loss.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from river import drift

from online_models.calibration import expected_calibration_error, reliability, reliability_json

EPS = 1e-12


def log_loss(p: float, y: bool) -> float:
    """Binary log loss of one prediction.

    >>> round(log_loss(0.9, True), 4), round(log_loss(0.9, False), 4)
    (0.1054, 2.3026)
    """
    p = min(max(p, EPS), 1 - EPS)
    return -math.log(p if y else 1 - p)


def top_decile_lift(pairs: list[tuple[float, bool]]) -> float:
    """Churn rate among the riskiest 10% over the overall churn rate.

    >>> top_decile_lift([(i / 100, i >= 90) for i in range(100)])
    10.0
    """
    if not pairs:
        return float("nan")
    base = sum(y for _, y in pairs) / len(pairs)
    if base == 0:
        return float("nan")
    top = sorted(pairs, key=lambda py: -py[0])[: max(1, len(pairs) // 10)]
    return (sum(y for _, y in top) / len(top)) / base


class RollingAUC:
    """Exact ROC AUC of the last ``window`` (score, outcome) pairs, ties counting half.

    Keeps the window's positive and negative scores sorted and the Mann-Whitney sum ``U``
    (pairs ranked right) up to date on every insert and eviction: O(log n) searches plus a
    list insert/delete (a memmove), a few µs at a window of 5,000.

    >>> auc = RollingAUC(window=3)
    >>> for p, y in [(0.9, True), (0.1, False), (0.5, True), (0.5, False)]:
    ...     auc.update(p, y)
    >>> auc.get()  # window (0.1, F), (0.5, T), (0.5, F): one pair right, one tie
    0.75
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._pairs: deque[tuple[float, bool]] = deque()
        self._pos: list[float] = []
        self._neg: list[float] = []
        self._u = 0.0

    def _rank(self, p: float, y: bool) -> float:
        if y:  # negatives below p, ties half
            lo, hi = bisect_left(self._neg, p), bisect_right(self._neg, p)
            return lo + 0.5 * (hi - lo)
        lo, hi = bisect_left(self._pos, p), bisect_right(self._pos, p)
        return len(self._pos) - hi + 0.5 * (hi - lo)

    def update(self, p: float, y: bool) -> None:
        if len(self._pairs) == self.window:
            old_p, old_y = self._pairs.popleft()
            side = self._pos if old_y else self._neg
            del side[bisect_left(side, old_p)]
            self._u -= self._rank(old_p, old_y)
        self._u += self._rank(p, y)
        insort(self._pos if y else self._neg, p)
        self._pairs.append((p, y))

    def get(self) -> float:
        """The AUC; NaN while the window holds only one class."""
        pairs = len(self._pos) * len(self._neg)
        return self._u / pairs if pairs else float("nan")


@dataclass
class DelayedMetrics:
    """Rolling metrics of one model on resolved observations."""

    window: int = 5000
    threshold: float = 0.5
    n: int = 0
    positives: int = 0
    drifts: int = 0
    _auc: RollingAUC = field(init=False, repr=False)
    _recent: deque[tuple[float, bool]] = field(init=False, repr=False)
    _detector: drift.ADWIN = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._auc = RollingAUC(self.window)
        self._recent = deque(maxlen=self.window)
        self._detector = drift.ADWIN()

    def update(self, p: float, y: bool) -> bool:
        """Record one resolved prediction; True when the loss drifted."""
        self.n += 1
        self.positives += int(y)
        self._auc.update(p, y)
        self._recent.append((p, y))
        self._detector.update(log_loss(p, y))
        if self._detector.drift_detected:
            self.drifts += 1
            return True
        return False

    def report(self) -> dict[str, Any]:
        """The numbers ``churnpulse model status`` shows and the metrics endpoint exports.

        >>> m = DelayedMetrics(window=10, threshold=0.5)
        >>> for p, y in [(0.9, True), (0.2, False), (0.6, False), (0.7, True)]:
        ...     _ = m.update(p, y)
        >>> r = m.report()
        >>> r["roc_auc"], r["precision"], r["recall"]
        (1.0, 0.6666666666666666, 1.0)
        """
        recent = list(self._recent)
        flagged = [y for p, y in recent if p >= self.threshold]
        actual = sum(y for _, y in recent)
        hits = sum(flagged)
        return {
            "n": self.n,
            "positives": self.positives,
            "window": len(recent),
            "roc_auc": self._auc.get(),
            "log_loss": (sum(log_loss(p, y) for p, y in recent) / len(recent)
                         if recent else float("nan")),
            "brier": (sum((p - y) ** 2 for p, y in recent) / len(recent)
                      if recent else float("nan")),
            "threshold": self.threshold,
            "precision": hits / len(flagged) if flagged else float("nan"),
            "recall": hits / actual if actual else float("nan"),
            "top_decile_lift": top_decile_lift(recent),
            "ece": expected_calibration_error([p for p, _ in recent], [y for _, y in recent]),
            "reliability": reliability_json(reliability([p for p, _ in recent],
                                                        [y for _, y in recent])),
            "drifts": self.drifts,
        }
