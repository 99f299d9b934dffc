"""Model-side feature transforms: heavy tails tamed, behaviour mixes as shares.

The worker's feature vector (:func:`online_models.features.feature_vector`) already takes
``log1p`` of counts and sums. Two kinds of input still carry scale a linear model handles
badly, whatever the customer base: durations in days (tenure, days since an event type, which
run from minutes to years) and *mixes* of behaviour (which share of a customer's recent
activity is support tickets, say) that only exist as differences of logs. :func:`robust` turns
durations into ``log1p`` days and adds, per event type, its share of the 30-day activity.
It runs inside the model (a River ``FuncTransformer`` step), so snapshots keep the worker's
features and every model version applies its own transform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

SHARE_WINDOW = "log_count_30d"
_PREFIX = SHARE_WINDOW + "."


def robust(x: Mapping[str, float]) -> dict[str, float]:
    """Durations to ``log1p`` days, plus 30-day shares per event type.

    >>> out = robust({"tenure_days": 99.0, "days_since.login": 0.0, "log_count_30d": math.log(11),
    ...               "log_count_30d.login": math.log(9), "trend": -0.5})
    >>> round(out["tenure_days"], 3), out["days_since.login"], round(out["share_30d.login"], 3)
    (4.605, 0.0, 0.8)
    >>> out["trend"]
    -0.5
    """
    out: dict[str, float] = {}
    total = x.get(SHARE_WINDOW)
    denom = math.expm1(total) if total is not None and total > 0.0 else 0.0
    kinds = _KINDS
    for name, value in x.items():
        kind = kinds.get(name)
        if kind is None:
            kind = kinds[name] = _kind(name)
        if kind == _DURATION:
            out[name] = math.log1p(value) if value > 0.0 else 0.0
            continue
        out[name] = value
        if kind and denom:
            out[kind] = math.expm1(value) / denom
    return out


_DURATION = "-"
_KINDS: dict[str, str] = {}  # feature name -> "" (as is), _DURATION, or its share's name


def _kind(name: str) -> str:
    if name.startswith("days_since") or name == "tenure_days":
        return _DURATION
    if name.startswith(_PREFIX):
        return "share_30d." + name[len(_PREFIX):]
    return ""
