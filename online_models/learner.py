"""The learner's pure core: champion and challengers learning from resolved observations.

Every resolution is learned exactly once by every model (the caller guarantees "once"). For each
model the step is test-then-train: predict on the snapshot, record the delayed metrics, then
``learn_one`` with a class weight that balances churners against the (many more) stayers.
:meth:`Learner.learn_batch` predicts a whole batch before learning any of it: one churn label
resolves several snapshots of the same customer at once, and predicting the second after
learning the first would flatter the metrics (the snapshots are nearly the same). The
champion is also evaluated on the score that was actually served when the snapshot was taken
(``served``), which is what retention teams experienced.

A challenger replaces the champion when, over at least ``min_resolved`` resolutions, its rolling
ROC AUC beats the champion's by ``margin``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, cast

from river import base

from online_models.evaluation import DelayedMetrics
from online_models.model import make_model
from online_models.observations import Resolution


@dataclass
class PromotionRule:
    min_resolved: int = 2000
    margin: float = 0.02


def _accepts_weight(model: base.Classifier) -> bool:
    try:
        params = inspect.signature(model.learn_one).parameters
    except (TypeError, ValueError):
        return False
    return "w" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@dataclass
class ModelSlot:
    """One model with its own delayed metrics."""

    name: str
    model: base.Classifier
    metrics: DelayedMetrics = field(default_factory=DelayedMetrics)
    learned: int = 0

    def predict(self, x: dict[str, float]) -> float:
        proba = self.model.predict_proba_one(cast(dict[Hashable, Any], x))
        return float(proba.get(True, 0.0))


def balanced_weight(y: bool, positives: int, total: int, cap: float = 50.0) -> float:
    """Class weight so both classes carry equal total weight (capped).

    >>> round(balanced_weight(True, 10, 100), 2), round(balanced_weight(False, 10, 100), 2)
    (5.0, 0.56)
    >>> balanced_weight(True, 0, 0)
    1.0
    """
    if total == 0:
        return 1.0
    share = (positives if y else total - positives) / total
    if share <= 0:
        return 1.0
    return min(cap, max(1.0 / cap, 0.5 / share))


@dataclass
class Learner:
    champion: ModelSlot
    challengers: list[ModelSlot] = field(default_factory=list)
    rule: PromotionRule = field(default_factory=PromotionRule)
    served: DelayedMetrics = field(default_factory=DelayedMetrics)
    positives: int = 0
    total: int = 0
    learn_calls: int = 0
    promotions: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, champion: str = "logreg", challengers: tuple[str, ...] = (),
               threshold: float = 0.5, window: int = 5000,
               rule: PromotionRule | None = None, learning_rate: float = 0.01,
               l2: float = 0.0) -> Learner:
        def slot(name: str) -> ModelSlot:
            model = make_model(name, learning_rate=learning_rate, l2=l2)  # type: ignore[arg-type]
            return ModelSlot(name, model, DelayedMetrics(window=window, threshold=threshold))

        return cls(slot(champion), [slot(n) for n in challengers], rule or PromotionRule(),
                   DelayedMetrics(window=window, threshold=threshold))

    @property
    def slots(self) -> list[ModelSlot]:
        return [self.champion, *self.challengers]

    def learn(self, resolution: Resolution) -> list[str]:
        """Test-then-train every model on one resolution; returns events (drift, promotion)."""
        return self.learn_batch([resolution])

    def learn_batch(self, resolutions: list[Resolution]) -> list[str]:
        """Test on every resolution of the batch, then train on each, once per model.

        >>> from online_models.observations import Observation
        >>> learner = Learner.create()
        >>> batch = [Resolution(Observation("c", float(t), {"a": 1.0}, 0.5, "v"), True)
        ...          for t in range(3)]
        >>> _ = learner.learn_batch(batch)
        >>> learner.learn_calls, [p for p, _ in learner.champion.metrics._recent]
        (3, [0.5, 0.5, 0.5])
        """
        events: list[str] = []
        if not resolutions:
            return events
        xs = [dict(r.observation.x) for r in resolutions]
        ys = [r.churned for r in resolutions]
        for r in resolutions:
            if self.served.update(r.observation.score, r.churned):
                events.append("drift:served")
        for slot in self.slots:
            drifted = False
            for x, y in zip(xs, ys, strict=True):
                drifted |= slot.metrics.update(slot.predict(x), y)
            if drifted:
                events.append(f"drift:{slot.name}")
        weights = []
        for y in ys:
            self.total += 1
            self.positives += int(y)
            weights.append(balanced_weight(y, self.positives, self.total))
        for slot in self.slots:
            weighted = _accepts_weight(slot.model)
            for x, y, w in zip(xs, ys, weights, strict=True):
                params: dict[str, float] = {"w": w} if weighted else {}
                slot.model.learn_one(cast(dict[Hashable, Any], x), y, **params)
                slot.learned += 1
                self.learn_calls += 1
        promoted = self.maybe_promote()
        if promoted:
            events.append(f"promoted:{promoted}")
        return events

    def maybe_promote(self) -> str | None:
        """Swap in the best challenger if it beats the champion by the margin."""
        best: ModelSlot | None = None
        if not any(s.metrics.n >= self.rule.min_resolved for s in self.challengers):
            return None  # report() is O(window): never call it per learn when no one is ready
        champion_auc = self.champion.metrics.report()["roc_auc"]
        for slot in self.challengers:
            if slot.metrics.n < self.rule.min_resolved:
                continue
            auc = slot.metrics.report()["roc_auc"]
            if math.isnan(auc):
                continue
            if (math.isnan(champion_auc) or auc >= champion_auc + self.rule.margin) and (
                    best is None or auc > best.metrics.report()["roc_auc"]):
                best = slot
        if best is None:
            return None
        self.challengers.remove(best)
        self.challengers.append(self.champion)
        self.champion = best
        self.promotions.append(best.name)
        return best.name

    def report(self) -> dict[str, Any]:
        return {
            "champion": self.champion.name,
            "served": self.served.report(),
            "models": {s.name: {**s.metrics.report(), "learned": s.learned} for s in self.slots},
            "resolved": self.total,
            "positives": self.positives,
            "promotions": list(self.promotions),
        }
