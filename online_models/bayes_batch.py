"""The online Bayesian logistic model learned a batch at a time, with its own per-row steps.

:meth:`online_models.bayes.BayesLogistic.learn_one` turns each input dict into a vector
(a Python loop over its ~50 features), standardises it, and takes one Newton step on the
mean and the covariance (~60 µs a row, most of it outside the numpy step). Once every feature
of a batch is placed (its centre and scale frozen after ``warmup`` values) the standardised
rows do not depend on the steps, so :func:`learn_bayes_rows` standardises the whole batch as
one matrix (:meth:`online_models.linear_batch.Rows.matrix`, shared with the other models of
the batch) and runs only the step per row, with the same numpy operations in the same order:
the mean and covariance after a batch are *bitwise* equal to the ``learn_one`` loop's
(``tests/unit/test_bayes_batch.py``). Rows met while a feature still waits to be placed, or
that carry a feature the model has not seen, go through ``learn_one`` itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, cast

import numpy as np

from online_models.bayes import CLIP, BayesLogistic, _sigmoid
from online_models.linear_batch import FloatArray, Rows, Transform


def _placed(model: BayesLogistic, cols: Sequence[str]) -> bool:
    """Every feature placed (none waits for its warmup) and every column of the batch known."""
    index = model.index
    return bool((model.seen >= model.warmup).all()) and all(c in index for c in cols)


def _standardised(model: BayesLogistic, cols: Sequence[str], x: FloatArray) -> FloatArray:
    """The rows as ``learn_one`` standardises them (a missing or non-finite value is 0)."""
    raw = np.zeros((len(x), len(model.mean)))
    raw[:, [model.index[c] for c in cols]] = np.where(np.isfinite(x), x, 0.0)
    v: FloatArray = np.clip((raw - model.centre) / model.scale, -CLIP, CLIP) * model.active
    v[:, 0] = 1.0
    return v


def learn_bayes_rows(model: Any, rows: Rows, transform: Transform | None,
                     index: Sequence[int], ys: Sequence[bool], ws: Sequence[float]) -> bool:
    """``model.learn_one(transform(row), y, w=w)`` for the rows at ``index`` in order (module
    docstring); False, and nothing learned, when ``model`` is not a
    :class:`~online_models.bayes.BayesLogistic`.

    >>> from online_models.bayes import BayesLogistic
    >>> import copy
    >>> rows = Rows([{"a": float(i % 7), "b": float(i % 3)} for i in range(600)])
    >>> ys, ws = [i % 5 == 0 for i in range(600)], [1.0] * 600
    >>> one, many = BayesLogistic(), BayesLogistic()
    >>> for r, y in zip(rows.rows, ys):
    ...     one.learn_one(dict(r), y)
    >>> learn_bayes_rows(many, rows, None, range(600), ys, ws)
    True
    >>> bool((one.cov == many.cov).all() and (one.mean == many.mean).all())
    True
    """
    if not isinstance(model, BayesLogistic) or not hasattr(model, "active"):
        return False
    cols, x = rows.matrix(transform)
    n = len(index)
    k = 0
    while k < n and not _placed(model, cols):  # placing features: learn_one itself
        row = rows.row(transform, index[k])
        model.learn_one(cast(dict[Hashable, Any], dict(row)), ys[k], w=ws[k])
        k += 1
    if k == n:
        return True
    model._table = None
    v_all = _standardised(model, cols, x[np.asarray(index[k:], dtype=np.intp)])
    mean, cov = model.mean.copy(), model.cov.copy()
    forget, temper = model.forget, model.temper
    outer = np.outer
    for j in range(k, n):
        v = v_all[j - k]
        if forget > 0.0:
            cov *= 1.0 + forget
        px = cov @ v
        s = float(v @ px)
        p = _sigmoid(float(mean @ v))
        w = ws[j] * temper
        h = w * p * (1.0 - p)
        denom = 1.0 + h * s
        mean += (w * (float(ys[j]) - p) / denom) * px
        cov -= outer(px, px) * (h / denom)
    model.mean, model.cov = mean, cov
    return True
