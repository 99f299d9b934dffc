"""The learner's pure core: champion and challengers learning from resolved observations.

Every resolution is learned exactly once by every model (the caller guarantees "once"). A
batch is first *tested*, then learned (test-then-train, the whole batch predicted before any of
it is learned):

* **served**: the score the worker actually served when the snapshot was taken (scores of the
  untrained start, version ``0-untrained``, are no predictions and are left out, as in the
  backtest report);
* **shadow**, per model: the prediction that model would have served at the snapshot's time,
  from its frozen copy of that time (:mod:`online_models.shadow`). These are the models'
  delayed metrics (``model status`` columns) and the input of the promotion rule. Snapshots
  taken before a model's first copy are not scored (untrained).

Then each model learns each resolution with a class weight that balances churners against the
(many more) stayers, its prior correction is updated from those weights, and its calibration
(:mod:`online_models.calibration`) is refitted on each pair's log-odds from the model as it
was before learning its batch (a frozen copy's scale lags it by a horizon). With
``calibration_window.RESCORE`` (off by default) it is refitted instead on the evidence window
— the last 10,000 resolved rows — re-scored by the version about to be published, which
makes it independent of the step cadence (:mod:`online_models.calibration_window`). Expensive
models
(trees, forests) may learn and be scored on a deterministic sample: every churner and one
stayer in ``sample``, weighted ``sample``.

A challenger replaces the champion when, paired on the same snapshots, its log loss beats the
champion's with ``z ≥ rule.z`` (cluster-robust, :class:`online_models.shadow.PairedLoss`),
over at least ``rule.min_resolved`` pairs and ``rule.min_positives`` churners, and its shadow
ROC AUC is at least the champion's plus ``rule.margin``. Checked once per batch: O(buckets).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from online_models import calibration_window
from online_models.bayes_batch import learn_bayes_rows
from online_models.calibration import PlattCalibrator, prior_shift
from online_models.calibration_window import EvidenceWindow, log_odds_of, refit_calibration
from online_models.evaluation import DelayedMetrics
from online_models.linear_batch import (
    Rows,
    learn_rows,
    linear_plan,
    split_transform,
)
from online_models.model import UNTRAINED_VERSION, make_model, model_config
from online_models.observations import Resolution
from online_models.served import CalibratedModel, accepts_weight
from online_models.shadow import PairedLoss, StateRing


def _learn_many(model: CalibratedModel, rows: Rows, index: list[int], ys: list[bool],
                ws: list[float]) -> None:
    """``model.learn_one`` of the rows at ``index`` in order, through the fastest path that
    takes the same steps (:mod:`online_models.linear_batch`)."""
    ensemble = getattr(model.raw, "learn_rows", None)  # steps its members (.ensemble)
    if ensemble is not None:
        ensemble(rows, index, ys, ws)
        return
    plan = linear_plan(model.raw)
    if plan is not None:
        learn_rows(plan, rows, ys, ws, index)
        return
    split = split_transform(model.raw)
    if learn_bayes_rows(model.raw if split is None else split[1], rows,
                        None if split is None else split[0], index, ys, ws):
        return
    if split is None:
        for i, y, w in zip(index, ys, ws, strict=True):
            model.learn_one(cast(dict[Hashable, Any], dict(rows.rows[i])), y, w=w)
        return
    dicts, final = rows.dicts(split[0]), split[1]
    if accepts_weight(final):
        for i, y, w in zip(index, ys, ws, strict=True):
            final.learn_one(dict(dicts[i]), y, w=w)
    else:
        for i, y in zip(index, ys, strict=True):
            final.learn_one(dict(dicts[i]), y)


@dataclass
class PromotionRule:
    min_resolved: int = 2000
    margin: float = 0.0
    z: float = 3.0
    min_positives: int = 50


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


def _restore(obj: Any, saved: dict[str, Any]) -> None:
    """Unpickle a dataclass written by an earlier churnpulse: new fields get defaults."""
    for f in dataclasses.fields(obj):
        if f.name not in saved:
            if f.default_factory is not dataclasses.MISSING:
                saved[f.name] = f.default_factory()
            elif f.default is not dataclasses.MISSING:
                saved[f.name] = f.default
    obj.__dict__.update(saved)


@dataclass
class ModelSlot:
    """One model with its calibration, frozen copies and shadow metrics."""

    name: str
    model: CalibratedModel
    metrics: DelayedMetrics = field(default_factory=DelayedMetrics)
    learned: int = 0
    sample: int = 1
    balanced: bool = True
    ring: StateRing = field(default_factory=StateRing)
    paired: PairedLoss = field(default_factory=PairedLoss)
    calibrator: PlattCalibrator = field(default_factory=PlattCalibrator)

    def __post_init__(self) -> None:
        if not isinstance(self.model, CalibratedModel):
            self.model = CalibratedModel(self.model)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        _restore(self, saved)
        if not isinstance(self.model, CalibratedModel):  # a state from before calibration
            self.model = CalibratedModel(self.model)

    def predict(self, x: dict[str, float]) -> float:
        """The calibrated probability of the model as it is now."""
        return self.model.proba(x)

    def takes(self, r: Resolution) -> bool:
        """Whether this slot learns (and is scored on) ``r``: all of them unless sampled."""
        return (self.sample <= 1 or r.churned
                or zlib.crc32(r.observation.obs_id.encode()) % self.sample == 0)


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
    evidence: EvidenceWindow = field(default_factory=EvidenceWindow)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        _restore(self, saved)

    @classmethod
    def create(cls, champion: str = "logreg", challengers: tuple[str, ...] = (),
               threshold: float = 0.5, window: int = 5000,
               rule: PromotionRule | None = None, learning_rate: float = 0.01,
               l2: float = 0.0) -> Learner:
        def slot(name: str) -> ModelSlot:
            config = model_config(name)
            model = make_model(name, learning_rate=learning_rate, l2=l2)  # type: ignore[arg-type]
            return ModelSlot(name, CalibratedModel(model),
                             DelayedMetrics(window=window, threshold=threshold),
                             sample=config.sample, balanced=config.balanced)

        return cls(slot(champion), [slot(n) for n in challengers], rule or PromotionRule(),
                   DelayedMetrics(window=window, threshold=threshold))

    @property
    def slots(self) -> list[ModelSlot]:
        return [self.champion, *self.challengers]

    def serve(self, x: dict[str, float]) -> float:
        """What the champion serves for ``x`` now (the calibrated probability)."""
        return self.champion.predict(x)

    def keep_copies(self, period_s: float, keep_s: float) -> None:
        """Frozen copies every ``period_s`` of event time, for ``keep_s`` (the horizon and a
        little more: a snapshot resolves a horizon after it was taken)."""
        for slot in self.slots:
            slot.ring.period_s, slot.ring.keep_s = period_s, keep_s

    def learn(self, resolution: Resolution, now: float | None = None) -> list[str]:
        """Test-then-train every model on one resolution; returns events (drift, promotion)."""
        return self.learn_batch([resolution], now)

    def _weights(self, resolutions: list[Resolution]) -> list[float]:
        weights = []
        for r in resolutions:
            self.total += 1
            self.positives += int(r.churned)
            weights.append(balanced_weight(r.churned, self.positives, self.total))
        return weights

    def learn_batch(self, resolutions: list[Resolution], now: float | None = None) -> list[str]:
        """Test on every resolution of the batch, then train on each, once per model.

        ``now``: the event time reached (the learner's watermark); a frozen copy of every
        model is taken when a period passed. Without it (tests, one-off calls) the shadow
        prediction is the model as it is now.

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
        for r in resolutions:
            if r.observation.model_version != UNTRAINED_VERSION and self.served.update(
                    r.observation.score, r.churned):
                events.append("drift:served")
        rows = Rows([r.observation.x for r in resolutions])
        # the rows each slot is scored and trained on (sampled slots: a hash per row)
        slots = self.slots  # the champion first
        takes = [[i for i, r in enumerate(resolutions) if slot.takes(r)] for slot in slots]
        ids = [r.observation.obs_id for r in resolutions]
        champion_losses = self._test(slots[0], resolutions, takes[0], rows, now, None, events,
                                     ids)
        for slot, taken in zip(slots[1:], takes[1:], strict=True):
            self._test(slot, resolutions, taken, rows, now, champion_losses, events, ids)
        weights = self._weights(resolutions)
        if calibration_window.RESCORE:  # the window costs ~1.9 MB of state: kept only when used
            self.evidence.add(rows, resolutions)
        w_pos = balanced_weight(True, self.positives, self.total)
        w_neg = balanced_weight(False, self.positives, self.total)
        for slot, taken in zip(slots, takes, strict=True):
            model = slot.model
            ys = [resolutions[i].churned for i in taken]
            sampled = float(slot.sample) if slot.sample > 1 else 1.0
            ws = [(weights[i] if slot.balanced else 1.0) * (1.0 if y else sampled)
                  for i, y in zip(taken, ys, strict=True)]
            _learn_many(model, rows, taken, ys, ws)
            slot.learned += len(taken)
            self.learn_calls += len(taken)
            if slot.balanced:
                model.shift = prior_shift(w_pos, w_neg)
            cal = slot.calibrator
            if not self._refit(slot):
                cal.fit()
            model.set_calibration(cal)
            slot.paired.forget(len(resolutions))
            if now is not None:
                slot.ring.take(now, model)
        promoted = self.maybe_promote()
        if promoted:
            events.append(f"promoted:{promoted}")
        return events

    def _refit(self, slot: ModelSlot) -> bool:
        """Refit ``slot``'s calibration on the evidence window re-scored by the model about to
        be published (:func:`online_models.calibration_window.refit_calibration`)."""
        return refit_calibration(slot.model, slot.calibrator, self.evidence, slot.sample)

    def _test(self, slot: ModelSlot, resolutions: list[Resolution], taken: list[int],
              rows: Rows, now: float | None, champion_losses: dict[str, float] | None,
              events: list[str], ids: list[str]) -> dict[str, float]:
        """Shadow-score the batch for ``slot`` (the resolutions at ``taken``): metrics,
        calibration evidence, pairing.

        Log-odds are computed per model (copy) for all its rows at once
        (:func:`online_models.linear_batch.log_odds_many` for linear pipelines)."""
        losses: dict[str, float] = {}
        cal = slot.calibrator
        # calibration evidence comes from the model as it is now (before this batch is
        # learned): the version about to be published is what it must fit, and a copy's
        # scale lags it by a horizon (measured: that lag cost 0.02 AUC pooled over time);
        # also for snapshots older than the first copy, or the first horizon of versions
        # would serve an uncalibrated model (issue 10: 1.000 at the top of the demo)
        z_now = log_odds_of(slot.model, rows, taken)
        ys = [resolutions[i].churned for i in taken]
        if slot.learned:  # an untrained model's log-odds are one constant: no evidence
            sampled = float(slot.sample) if slot.sample > 1 else 1.0
            cal.update_many(z_now, ys, [1.0 if y else sampled for y in ys])
        # each row's copy (StateRing.at, for all rows at once): its index in the ring, -1
        # before the first; one matrix product per copy
        scored: list[tuple[int, float, float]] = []  # (row, log-odds, calibrated p)
        if now is None:
            calibrate = slot.model.calibrate
            scored = [(j, z, calibrate(z)) for j, z in enumerate(z_now)]
        elif slot.ring.states and taken:
            states = slot.ring.states
            at = np.searchsorted(np.array([t for t, _ in states]),
                                 np.array([resolutions[i].observation.t for i in taken]),
                                 side="right") - 1
            for k in np.unique(at[at >= 0]).tolist():
                copy = states[k][1]
                js = np.flatnonzero(at == k).tolist()
                calibrate = copy.calibrate
                scored += [(j, z, calibrate(z)) for j, z in zip(
                    js, log_odds_of(copy, rows, [taken[j] for j in js]), strict=True)]
            scored.sort()
        drifted, row_losses = slot.metrics.update_many([p for _, _, p in scored],
                                                       [ys[j] for j, _, _ in scored])
        paired = slot.paired
        for (j, z, _), loss in zip(scored, row_losses, strict=True):
            i = taken[j]
            oid = ids[i]
            losses[oid] = loss
            if champion_losses is not None:
                other = champion_losses.get(oid)
                if other is not None and math.isfinite(z):
                    paired.update(resolutions[i].observation.customer_id, other, loss)
        if drifted:
            events.append(f"drift:{slot.name}")
        return losses

    def maybe_promote(self) -> str | None:
        """Swap in the challenger whose paired log-loss gain is significant (module docstring).

        O(challengers × buckets): nothing here grows with the metrics window.
        """
        rule = self.rule
        best: tuple[float, ModelSlot] | None = None
        champion_auc = self.champion.metrics._auc.get()
        for slot in self.challengers:
            paired = slot.paired
            if paired.count < rule.min_resolved or slot.metrics.positives < rule.min_positives:
                continue
            z = paired.z()
            if z < rule.z or paired.mean() <= 0:
                continue
            auc = slot.metrics._auc.get()
            if math.isnan(auc) or (not math.isnan(champion_auc)
                                   and auc < champion_auc + rule.margin):
                continue
            if best is None or z > best[0]:
                best = (z, slot)
        if best is None:
            return None
        winner = best[1]
        self.challengers.remove(winner)
        self.challengers.append(self.champion)
        self.champion = winner
        for slot in self.challengers:
            slot.paired = PairedLoss()
        self.promotions.append(winner.name)
        return winner.name

    def report(self, window: bool = True) -> dict[str, Any]:
        """Delayed metrics: ``served`` (what the worker served), per model the shadow
        predictions (what it would have served), calibration and the paired comparison.

        ``window=False``: the metrics' counters only, not the figures over their windows
        (AUC, log loss, ECE...: O(window) each, tens of ms for all models)."""
        models: dict[str, Any] = {}
        for s in self.slots:
            m = s.model
            metrics = s.metrics.report() if window else s.metrics.counts()
            models[s.name] = {**metrics, "learned": s.learned,
                              "calibration": {"a": m.a, "b": m.b, "shift": m.shift,
                                              "churners": m.churners, "stayers": m.stayers,
                                              "calibrated": m.calibrated,
                                              "tail": None if m.tail is None else [
                                                  list(m.tail[0]), list(m.tail[1])]},
                              "paired_gain": s.paired.mean() if s is not self.champion
                              else None,
                              "paired_z": s.paired.z() if s is not self.champion else None,
                              "paired_n": s.paired.count if s is not self.champion else None}
        return {
            "champion": self.champion.name,
            "served": self.served.report() if window else self.served.counts(),
            "models": models,
            "resolved": self.total,
            "positives": self.positives,
            "promotions": list(self.promotions),
        }

