"""Model-side transforms applied to a whole batch matrix at once.

:func:`online_models.transforms.robust` runs per row inside the models that use it (a River
``FuncTransformer``: ~14 µs a row at 44 features). The learner lays a batch out as a matrix
once (:class:`online_models.linear_batch.Rows`, NaN where a row lacks a key);
:func:`robust_matrix` computes the matrix of the transformed rows from it column by column —
the same values, the same columns in the same order, NaN where the per-row transform leaves
a key out (``tests/unit/test_transform_batch.py`` compares it with ``Rows`` of the
transformed dicts). ``Rows`` calls it only when no row holds a NaN *value* (then a NaN in
the matrix always means a missing key).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from online_models.transforms import _DURATION, _KINDS, SHARE_WINDOW, _kind, robust

FloatArray = npt.NDArray[np.float64]
Keys = Sequence[tuple[str, ...]]
MatrixTransform = Callable[[list[str], FloatArray, Keys], tuple[list[str], FloatArray] | None]


def _kinds(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        kind = _KINDS.get(name)
        if kind is None:
            kind = _KINDS[name] = _kind(name)
        out.append(kind)
    return out


def _apply(func: Callable[[float], float], col: FloatArray) -> FloatArray:
    """``func`` of each value, by the ``math`` function the per-row transform calls (numpy's
    vectorised ``log1p``/``expm1`` differ from it in the last bit for a few % of inputs)."""
    return np.fromiter(map(func, col.tolist()), dtype=np.float64, count=len(col))


def _order(keys: Keys, has: Sequence[bool]) -> list[str]:
    """The transformed rows' columns in order of first appearance (as ``Rows`` lays out the
    transformed dicts): per row its keys, each followed by its share when the row has one."""
    cols: dict[str, None] = {}
    patterns: set[tuple[tuple[str, ...], bool]] = set()
    for k, h in zip(keys, has, strict=True):
        if (k, h) in patterns:
            continue
        patterns.add((k, h))
        for name, kind in zip(k, _kinds(k), strict=True):
            cols[name] = None
            if h and kind and kind != _DURATION:
                cols[kind] = None
    return list(cols)


def robust_matrix(names: list[str], x: FloatArray, keys: Keys
                  ) -> tuple[list[str], FloatArray] | None:
    """``Rows([robust(r) for r in rows]).matrix(None)`` from ``Rows(rows).matrix(None)``
    (``names``, ``x``) and each row's keys in order (module docstring); None when a share
    column would collide with a key (left to the per-row transform).

    >>> import math
    >>> names = ["tenure_days", "log_count_30d", "log_count_30d.login"]
    >>> x = np.array([[99.0, math.log(11), math.log(9)]])
    >>> cols, m = robust_matrix(names, x, [tuple(names)])
    >>> cols[3], [round(v, 3) for v in m[0].tolist()]
    ('share_30d.login', [4.605, 2.398, 2.197, 0.8])
    """
    kinds = _kinds(names)
    shares = [k for k in kinds if k and k != _DURATION]
    if len(set(shares)) != len(shares) or set(shares) & set(names):
        return None
    n = len(x)
    if SHARE_WINDOW in names:
        total = x[:, names.index(SHARE_WINDOW)]
        has = total > 0.0  # NaN (no total) is not
        denom = _apply(math.expm1, np.where(has, total, 0.0))
        denom[~has] = 1.0
    else:
        has = np.zeros(n, dtype=bool)
        denom = np.ones(n)
    columns: dict[str, FloatArray] = {}
    for j, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        col = x[:, j]
        if kind == _DURATION:
            positive = col > 0.0
            columns[name] = np.where(np.isnan(col), np.nan, np.where(
                positive, _apply(math.log1p, np.where(positive, col, 0.0)), 0.0))
            continue
        columns[name] = col
        if kind:
            columns[kind] = np.where(has, _apply(math.expm1, col) / denom, np.nan)
    order = _order(keys, has.tolist())
    matrix = np.empty((n, len(order)))
    for j, name in enumerate(order):
        matrix[:, j] = columns[name]
    return order, matrix


#: Per-row transforms with a matrix form, by identity (read by ``Rows.matrix``).
VECTORISED: dict[object, MatrixTransform] = {robust: robust_matrix}
