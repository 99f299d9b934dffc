"""Delayed progressive evaluation: metrics over the most recent resolved predictions.

Each resolved observation contributes the probability that was predicted for it and its
outcome. ROC AUC is exact over the window (River's ``RollingROCAUC``; the default
``metrics.ROCAUC()`` with 10 thresholds reads ~0.5 on imbalanced streams). A drift detector
(ADWIN) watches the log loss.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from river import drift, metrics

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


@dataclass
class DelayedMetrics:
    """Rolling metrics of one model on resolved observations."""

    window: int = 5000
    threshold: float = 0.5
    n: int = 0
    positives: int = 0
    drifts: int = 0
    _auc: metrics.RollingROCAUC = field(init=False, repr=False)
    _recent: deque[tuple[float, bool]] = field(init=False, repr=False)
    _detector: drift.ADWIN = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._auc = metrics.RollingROCAUC(window_size=self.window)
        self._recent = deque(maxlen=self.window)
        self._detector = drift.ADWIN()

    def update(self, p: float, y: bool) -> bool:
        """Record one resolved prediction; True when the loss drifted."""
        self.n += 1
        self.positives += int(y)
        self._auc.update(y, p)
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
            "roc_auc": self._auc.get() if actual and actual < len(recent) else float("nan"),
            "log_loss": (sum(log_loss(p, y) for p, y in recent) / len(recent)
                         if recent else float("nan")),
            "brier": (sum((p - y) ** 2 for p, y in recent) / len(recent)
                      if recent else float("nan")),
            "threshold": self.threshold,
            "precision": hits / len(flagged) if flagged else float("nan"),
            "recall": hits / actual if actual else float("nan"),
            "top_decile_lift": top_decile_lift(recent),
            "drifts": self.drifts,
        }
