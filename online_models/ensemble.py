"""Two differently-biased linear learners averaged: the SGD ``logreg`` and the tempered ``bayes``.

Issue 11: on fifteen simulated histories the first-order ``logreg`` (SGD, class-balanced) and
the second-order tempered Bayesian logistic regression (unweighted) each beat the monthly
batch refit in 13 of 15 runs, with different misses (``logreg`` converges slowly where a price
wave or a social cascade changes what predicts churn; ``bayes`` follows noisy labels more
closely). :class:`MeanLogOdds` serves the mean of their log-odds of churn, each on the
probability scale of the data: ``logreg``'s log-odds with its class weights taken back (the
prior correction, :func:`online_models.calibration.prior_shift`) and ``bayes``'s as they are
(it learns unweighted). Averaging is not fitted to anything, so there is nothing to tune; the
learner's Platt calibration then maps the mean to a probability like any single model's.

Each member learns exactly as it does alone: ``logreg`` with the class-balancing weight the
learner gives a balanced model (computed here from the same running counts, so the ensemble's
slot is configured unweighted), ``bayes`` unweighted. Both are linear in their inputs, so the
ensemble's log-odds are linear too and explanations stay exact
(:meth:`MeanLogOdds.contribution_terms`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, cast

import numpy as np
from river import base

from online_models.bayes import LogOddsClassifier
from online_models.bayes_batch import learn_bayes_rows
from online_models.calibration import logit, prior_shift
from online_models.linear_batch import (
    Rows,
    bayes_log_odds_many,
    learn_rows,
    linear_plan,
    log_odds_many,
    logit_of_sigmoid,
    split_transform,
)

CAP = 50.0  # the learner's cap on class weights (online_models.learner.balanced_weight)


def class_weight(y: bool, positives: int, total: int) -> float:
    """The learner's class-balancing weight (``online_models.learner.balanced_weight``).

    >>> round(class_weight(True, 10, 100), 2), round(class_weight(False, 10, 100), 2)
    (5.0, 0.56)
    """
    if total == 0:
        return 1.0
    share = (positives if y else total - positives) / total
    if share <= 0:
        return 1.0
    return min(CAP, max(1.0 / CAP, 0.5 / share))


class MeanLogOdds(LogOddsClassifier):
    """Mean of a class-balanced member's prior-corrected log-odds and an unweighted member's.

    >>> from online_models.model import make_model
    >>> m = MeanLogOdds(make_model("logreg"), make_model("bayes"))
    >>> m.predict_proba_one({"x": 1.0})[True]
    0.5
    """

    def __init__(self, balanced: base.Classifier, plain: base.Classifier) -> None:
        self.balanced = balanced
        self.plain = plain
        self.positives = 0
        self.total = 0

    @property
    def members(self) -> tuple[base.Classifier, base.Classifier]:
        """The two models (explanations: :class:`online_models.explain.MeanExplainer`)."""
        return self.balanced, self.plain

    @property
    def shift(self) -> float:
        """The prior correction of the balanced member (0 before any example)."""
        if not self.total:
            return 0.0
        return prior_shift(class_weight(True, self.positives, self.total),
                           class_weight(False, self.positives, self.total))

    def _weight(self, y: bool) -> float:
        self.total += 1
        self.positives += int(y)
        return class_weight(y, self.positives, self.total)

    def learn_one(self, x: dict[Hashable, Any], y: base.typing.ClfTarget,
                  w: float = 1.0) -> None:
        churned = bool(y)
        member: Any = self.balanced
        member.learn_one(x, churned, w=w * self._weight(churned))
        plain: Any = self.plain
        plain.learn_one(x, churned)

    def weights_for(self, ys: Sequence[bool]) -> list[float]:
        """The balanced member's weights for ``ys`` learned in order (counts advance)."""
        return [self._weight(bool(y)) for y in ys]

    def learn_rows(self, rows: Rows, index: Sequence[int], ys: Sequence[bool],
                   ws: Sequence[float]) -> None:
        """``learn_one`` of the rows at ``index`` in order (the learner's batched path): the
        balanced member through :func:`online_models.linear_batch.learn_rows` when it is a
        linear pipeline, the plain one through :func:`online_models.bayes_batch.learn_bayes_rows`
        when it is a Bayesian logistic regression (both take River's per-row steps)."""
        balanced = [w * b for w, b in zip(ws, self.weights_for(ys), strict=True)]
        plan = linear_plan(self.balanced)
        if plan is not None:
            learn_rows(plan, rows, ys, balanced, index)
        else:
            member: Any = self.balanced
            for i, y, w in zip(index, ys, balanced, strict=True):
                member.learn_one(dict(rows.rows[i]), bool(y), w=w)
        split = split_transform(self.plain)
        final, transform = (self.plain, None) if split is None else (split[1], split[0])
        if learn_bayes_rows(final, rows, transform, index, ys, [1.0] * len(ys)):
            return
        plain: Any = self.plain
        for i, y in zip(index, ys, strict=True):
            plain.learn_one(dict(rows.rows[i]), bool(y))

    def log_odds_rows(self, rows: Rows, index: Sequence[int]) -> list[float]:
        """``logit(predict_proba_one(x)[True])`` of the rows at ``index`` at once (members
        scored by matrix where they are linear pipelines or Bayesian logistic regressions)."""
        plan = linear_plan(self.balanced)
        if plan is not None:
            a = np.asarray(log_odds_many(plan, rows, index)) + self.shift
        else:
            a = np.array([self.member_log_odds(rows.rows[i])[0] for i in index])
        split = split_transform(self.plain)
        zs = None if split is None else bayes_log_odds_many(split[1], rows, split[0], index)
        if zs is not None:
            b = logit_of_sigmoid(np.asarray(zs))
        else:
            b = np.array([self.member_log_odds(rows.rows[i])[1] for i in index])
        out: list[float] = logit_of_sigmoid(0.5 * (a + b)).tolist()
        return out

    def member_log_odds(self, x: Mapping[str, float]) -> tuple[float, float]:
        """(balanced member's prior-corrected log-odds, plain member's log-odds)."""
        xs = cast(dict[Hashable, Any], x)
        a = float(self.balanced.predict_proba_one(xs).get(True, 0.0))
        b = float(self.plain.predict_proba_one(xs).get(True, 0.0))
        return logit(a) + self.shift, logit(b)

    def log_odds(self, x: Mapping[str, float]) -> float:
        a, b = self.member_log_odds(x)
        return 0.5 * (a + b)

