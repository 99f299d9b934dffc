"""Per-customer feature state and the model's feature vector: the pure reference.

The state is a flat mapping ``field -> float``, exactly what the Redis feature store keeps in a
customer's hash (``streams/lua/apply_events.lua`` runs the same update inside Redis; an
integration test holds the two to each other). Field names:

==============  ============================================================
``n``           events applied (after deduplication)
``t_first``     earliest event time seen (epoch seconds)
``t_last``      latest event time seen
``k``           number of distinct event types tracked
``n.<type>``    events of that type
``v.<type>``    sum of ``value`` of that type (only when events carry values)
``t.<type>``    latest event time of that type
==============  ============================================================

Types beyond ``max_types`` are counted under :data:`OTHER_TYPE`, so the state of one customer
is bounded whatever vocabulary producers send. Every update is commutative (sums, min, max), so
the state does not depend on the order in which events arrive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

OTHER_TYPE = "_other"
DAY_S = 86400.0

FeatureState = Mapping[str, float]


def tracked_type(state: FeatureState, event_type: str, max_types: int) -> str:
    """The bucket an event type is counted in: itself, or :data:`OTHER_TYPE` when full.

    >>> tracked_type({"k": 1.0, "n.a": 1.0}, "b", max_types=1)
    '_other'
    >>> tracked_type({"k": 1.0, "n.a": 1.0}, "a", max_types=1)
    'a'
    """
    if f"n.{event_type}" in state or event_type == OTHER_TYPE:
        return event_type
    if state.get("k", 0.0) >= max_types:
        return OTHER_TYPE
    return event_type


def apply_event(
    state: FeatureState, event_type: str, ts: float, value: float | None, max_types: int
) -> dict[str, float]:
    """Return the state after one (already deduplicated) event.

    >>> s = apply_event({}, "login", 100.0, None, max_types=8)
    >>> s = apply_event(s, "purchase", 50.0, 9.5, max_types=8)
    >>> s["n"], s["t_first"], s["t_last"], s["k"], s["v.purchase"]
    (2.0, 50.0, 100.0, 2.0, 9.5)
    """
    out = dict(state)
    kind = tracked_type(state, event_type, max_types)
    count_key = f"n.{kind}"
    if count_key not in out and kind != OTHER_TYPE:
        out["k"] = out.get("k", 0.0) + 1.0
    out["n"] = out.get("n", 0.0) + 1.0
    out[count_key] = out.get(count_key, 0.0) + 1.0
    if value is not None:
        out[f"v.{kind}"] = out.get(f"v.{kind}", 0.0) + value
    out["t_first"] = min(out.get("t_first", ts), ts)
    out["t_last"] = max(out.get("t_last", ts), ts)
    last_key = f"t.{kind}"
    out[last_key] = max(out.get(last_key, ts), ts)
    return out


def _signed_log1p(x: float) -> float:
    return math.copysign(math.log1p(abs(x)), x)


def feature_vector(state: FeatureState, now: float) -> dict[str, float]:
    """The model input for a customer at event time ``now``.

    Counts and value sums go through ``log1p`` (heavy tails); times become days.

    >>> v = feature_vector({"n": 3.0, "t_first": 0.0, "t_last": 86400.0, "k": 1.0,
    ...                     "n.login": 3.0, "t.login": 86400.0}, now=2 * 86400.0)
    >>> round(v["log_n"], 4), v["tenure_days"], v["days_since_last"], v["days_since.login"]
    (1.3863, 2.0, 1.0, 1.0)
    """
    out: dict[str, float] = {}
    for field, raw in state.items():
        if field.startswith("n."):
            out["log_" + field] = math.log1p(raw)
        elif field.startswith("v."):
            out["log_" + field] = _signed_log1p(raw)
        elif field.startswith("t."):
            out["days_since." + field[2:]] = max(0.0, (now - raw) / DAY_S)
    out["log_n"] = math.log1p(state.get("n", 0.0))
    if "t_first" in state:
        out["tenure_days"] = max(0.0, (now - state["t_first"]) / DAY_S)
        out["days_since_last"] = max(0.0, (now - state["t_last"]) / DAY_S)
    return out
