"""The model input of a customer: :func:`~online_models.features.catalogue` fused with a
sign-preserving ``log1p`` of counts, ratios and value sums, on the worker's hot path (once per
score). Field names are built once per event type and spec, not per score.
"""

from __future__ import annotations

import math
from typing import Any

from online_models.features import (
    DAY_S,
    DEFAULT_SPEC,
    FeatureSpec,
    FeatureState,
    day_gap,
    days_in_window,
    rate_scale,
    spec_tables,
)

__all__ = ["feature_vector"]


class _Names:
    """Field and model-input names of one spec, built once (not per score): per event type
    (:meth:`of`) and the spec's own."""

    __slots__ = ("active", "half_life_s", "k", "layouts", "long_i", "ratio", "ratio_i",
                 "short_i", "spec", "totals", "types")

    def __init__(self, spec: FeatureSpec) -> None:
        hls = spec.half_lives_days
        self.spec = spec
        self.active = tuple(zip((f"active_days_{w}d" for w in spec.active_day_windows),
                                spec.active_day_windows, strict=True))
        self.totals = tuple(f"log_count_{n}d" for n in spec.half_life_names)
        self.short_i, self.long_i = hls.index(spec.trend[0]), hls.index(spec.trend[1])
        self.ratio_i = hls.index(spec.ratio_half_life_days)
        self.ratio = tuple(((num, den), f"log_ratio.{num}_per_{den}") for num, den in spec.ratios)
        self.types: dict[str, tuple[Any, ...]] = {}
        self.half_life_s = tuple(h * DAY_S for h in hls)  # the divisors of the decay factors
        self.k = range(len(hls))
        self.layouts: dict[tuple[str, ...], tuple[_Kind, ...]] = {}

    def of(self, kind: str) -> tuple[Any, ...]:
        """State fields and model-input names of one event type."""
        names = self.types.get(kind)
        if names is None:
            if len(self.types) >= 4096:
                self.types.clear()
            hl = self.spec.half_life_names
            names = self.types[kind] = (
                f"n.{kind}", f"t.{kind}", f"v.{kind}",
                tuple(f"c{n}.{kind}" for n in hl), tuple(f"s{n}.{kind}" for n in hl),
                f"log_events_total.{kind}", f"days_since.{kind}", f"log_value_total.{kind}",
                tuple(f"log_count_{n}d.{kind}" for n in hl),
                tuple(f"log_value_{n}d.{kind}" for n in hl), f"trend.{kind}")
        return names


_names = spec_tables(_Names)

_Kind = tuple[str, str, str | None, str | None,
              tuple[tuple[str | None, str | None, str, str], ...], str, str, str, str]
"""What :func:`feature_vector` reads and writes for one event type of a state: the type, its
``n.`` field, its ``t.`` and ``v.`` fields (None when the state has none), per half-life the
count and value-sum fields (None when absent: they count 0) and output names, and the
output names of its total, days since, value total and trend."""


def _layout(state: FeatureState, names: _Names) -> tuple[_Kind, ...]:
    """The event types of ``state`` in sorted order (:func:`_kinds`), each with the fields the
    state has: one look-up per key layout (its field names in order), not per score."""
    present = set(state)
    layout: list[_Kind] = []
    for kind in _kinds(state):
        (n_key, t_key, v_key, c_keys, s_keys, n_out, since_out, total_out, count_outs,
         value_outs, trend_out) = names.of(kind)
        has_value = v_key in present
        per_half_life = tuple(
            (c if c in present else None, s if has_value and s in present else None, co, vo)
            for c, s, co, vo in zip(c_keys, s_keys, count_outs, value_outs, strict=True))
        layout.append((kind, n_key, t_key if t_key in present else None,
                       v_key if has_value else None, per_half_life, n_out, since_out,
                       total_out, trend_out))
    return tuple(layout)


_KIND_OF: dict[str, str | None] = {}
"""State field name -> the event type of an ``n.<type>`` field, None for any other field."""


def _kinds(state: FeatureState) -> list[str]:
    """:func:`~online_models.features.event_types` of ``state``: the scan looks each field name
    up in :data:`_KIND_OF` instead of slicing and comparing it (half the time; names are
    few and their hashes cached). Bounded: emptied past 65,536 names."""
    kind_of = _KIND_OF
    try:
        return sorted([kind for f in state if (kind := kind_of[f]) is not None])
    except KeyError:
        if len(kind_of) >= 65_536:
            kind_of.clear()
        for f in state:
            kind_of[f] = f[2:] if f[:2] == "n." else None
        return sorted([f[2:] for f in state if f[:2] == "n."])


def feature_vector(state: FeatureState, now: float,
                   spec: FeatureSpec = DEFAULT_SPEC) -> dict[str, float]:
    """The model input for a customer at event time ``now``: the catalogue, with counts,
    ratios and value sums through a sign-preserving ``log1p`` (heavy tails) and everything else
    as is, under the same names prefixed ``log_``.

    It is :func:`catalogue` fused with that transform, with the field names of each event type
    built once and the fields a state has looked up once per key layout (:func:`_layout`):
    this runs for every score on the worker's hot path (``tests/unit/test_feature_math.py``
    holds it equal to the two-step version, key order included; ``tests/unit/test_hot_path.py``
    to the previous version, bit for bit).

    >>> from online_models.features import apply_event
    >>> s = apply_event(apply_event({}, "login", 0.0, None), "login", DAY_S, None)
    >>> v = feature_vector(s, now=2 * DAY_S)
    >>> round(v["log_events_total"], 4), v["tenure_days"], v["days_since.login"]
    (1.0986, 2.0, 1.0)
    """
    n = state.get("n")
    if not n:
        return {}
    log1p = math.log1p
    t_last = state["t_last"]
    if now < t_last:  # max(now, t_last), without the call
        now = t_last
    ref = state["r"]
    tenure = (now - state["t_first"]) / DAY_S
    out: dict[str, float] = {"log_events_total": log1p(n) if n >= 0.0 else -log1p(-n),
                             "tenure_days": tenure,
                             "days_since_last": (now - t_last) / DAY_S}
    names = _names(spec)
    gap, bits = day_gap(ref, now), int(state["ad"])  # active_days, the gap once
    for name, w in names.active:
        out[name] = float(days_in_window(bits, gap, w))
    key = tuple(state)
    layout = names.layouts.get(key)
    if layout is None:
        if len(names.layouts) >= 4096:
            names.layouts.clear()
        layout = names.layouts[key] = _layout(state, names)
    age = ref - now
    factors = [2.0 ** (age / h) for h in names.half_life_s]
    k = names.k
    totals = [0.0] * len(k)
    short_i, long_i, ratio_i = names.short_i, names.long_i, names.ratio_i
    short_scale = rate_scale(spec.trend[0], tenure)
    long_scale = rate_scale(spec.trend[1], tenure)
    ratio_counts: dict[str, float] = {}
    for kind, n_key, t_key, v_key, per_half_life, n_out, since_out, total_out, trend_out \
            in layout:
        x = state[n_key]
        out[n_out] = log1p(x) if x >= 0.0 else -log1p(-x)
        out[since_out] = (now - (state[t_key] if t_key is not None else now)) / DAY_S
        counts = []
        if v_key is None:
            for (c_key, _, count_out, _), f in zip(per_half_life, factors, strict=False):
                c = state[c_key] * f if c_key is not None else 0.0
                out[count_out] = log1p(c) if c >= 0.0 else -log1p(-c)
                counts.append(c)
        else:
            x = state[v_key]
            out[total_out] = log1p(x) if x >= 0.0 else -log1p(-x)
            for (c_key, s_key, count_out, value_out), f in zip(
                    per_half_life, factors, strict=False):
                c = state[c_key] * f if c_key is not None else 0.0
                out[count_out] = log1p(c) if c >= 0.0 else -log1p(-c)
                counts.append(c)
                x = state[s_key] * f if s_key is not None else 0.0
                out[value_out] = log1p(x) if x >= 0.0 else -log1p(-x)
        for i in k:
            totals[i] += counts[i]
        long_count = counts[long_i]
        out[trend_out] = (counts[short_i] * short_scale / (long_count * long_scale) - 1.0
                          if long_count > 0.0 else -1.0)
        ratio_counts[kind] = counts[ratio_i]
    for x, name in zip(totals, names.totals, strict=True):
        out[name] = log1p(x) if x >= 0.0 else -log1p(-x)
    long_total = totals[long_i]
    out["trend"] = (totals[short_i] * short_scale / (long_total * long_scale) - 1.0
                    if long_total > 0.0 else -1.0)
    for (num, den), name in names.ratio:
        d = ratio_counts.get(den, 0.0)
        if d:
            x = ratio_counts.get(num, 0.0) / d
            out[name] = log1p(x) if x >= 0.0 else -log1p(-x)
        else:
            out[name] = 0.0
    return out
