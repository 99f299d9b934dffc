"""The model input of a customer: :func:`~online_models.features.catalogue` fused with a
sign-preserving ``log1p`` of counts, ratios and value sums, on the worker's hot path (once per
score). Field names are built once per event type and spec, not per score.
"""

from __future__ import annotations

import functools
import math

from online_models.features import (
    DAY_S,
    DEFAULT_SPEC,
    FeatureSpec,
    FeatureState,
    active_days,
    event_types,
    rate_scale,
)

__all__ = ["feature_vector"]


def _log1p_signed(x: float) -> float:
    """``log1p`` that keeps the sign (heavy tails of either sign, as the model sees them)."""
    return math.log1p(x) if x >= 0.0 else -math.log1p(-x)


@functools.lru_cache(maxsize=4096)
def _type_names(kind: str, spec: FeatureSpec) -> tuple[
        str, str, str, tuple[str, ...], tuple[str, ...], str, str, str, tuple[str, ...],
        tuple[str, ...], str]:
    """State fields and model-input names of one event type (built once, not per score)."""
    hl = spec.half_life_names
    return (f"n.{kind}", f"t.{kind}", f"v.{kind}",
            tuple(f"c{n}.{kind}" for n in hl), tuple(f"s{n}.{kind}" for n in hl),
            f"log_events_total.{kind}", f"days_since.{kind}", f"log_value_total.{kind}",
            tuple(f"log_count_{n}d.{kind}" for n in hl),
            tuple(f"log_value_{n}d.{kind}" for n in hl), f"trend.{kind}")


@functools.lru_cache(maxsize=64)
def _spec_names(spec: FeatureSpec) -> tuple[tuple[str, ...], tuple[str, ...], int, int, int,
                                            tuple[str, ...]]:
    hls = spec.half_lives_days
    return (tuple(f"active_days_{w}d" for w in spec.active_day_windows),
            tuple(f"log_count_{n}d" for n in spec.half_life_names),
            hls.index(spec.trend[0]), hls.index(spec.trend[1]),
            hls.index(spec.ratio_half_life_days),
            tuple(f"log_ratio.{num}_per_{den}" for num, den in spec.ratios))


def feature_vector(state: FeatureState, now: float,
                   spec: FeatureSpec = DEFAULT_SPEC) -> dict[str, float]:
    """The model input for a customer at event time ``now``: the catalogue, with counts,
    ratios and value sums through a sign-preserving ``log1p`` (heavy tails) and everything else
    as is, under the same names prefixed ``log_``.

    It is :func:`catalogue` fused with that transform, with the field names of each event type
    built once: this runs for every score on the worker's hot path (half the time of the
    two-step version; ``tests/unit/test_feature_math.py`` holds them equal, key order included).

    >>> from online_models.features import apply_event
    >>> s = apply_event(apply_event({}, "login", 0.0, None), "login", DAY_S, None)
    >>> v = feature_vector(s, now=2 * DAY_S)
    >>> round(v["log_events_total"], 4), v["tenure_days"], v["days_since.login"]
    (1.0986, 2.0, 1.0)
    """
    n = state.get("n")
    if not n:
        return {}
    lg = _log1p_signed
    t_last = state["t_last"]
    now = max(now, t_last)
    ref = state["r"]
    tenure = (now - state["t_first"]) / DAY_S
    out: dict[str, float] = {"log_events_total": lg(n), "tenure_days": tenure,
                             "days_since_last": (now - t_last) / DAY_S}
    active_names, total_names, short_i, long_i, ratio_i, ratio_names = _spec_names(spec)
    for name, w in zip(active_names, spec.active_day_windows, strict=True):
        out[name] = float(active_days(state, now, w))
    factors = [2.0 ** ((ref - now) / (h * DAY_S)) for h in spec.half_lives_days]
    k = range(len(factors))
    totals = [0.0 for _ in k]
    short_scale = rate_scale(spec.trend[0], tenure)
    long_scale = rate_scale(spec.trend[1], tenure)
    ratio_counts: dict[str, float] = {}
    for kind in event_types(state):
        (n_key, t_key, v_key, c_keys, s_keys, n_out, since_out, total_out, count_outs,
         value_outs, trend_out) = _type_names(kind, spec)
        out[n_out] = lg(state[n_key])
        out[since_out] = (now - state.get(t_key, now)) / DAY_S
        has_value = v_key in state
        if has_value:
            out[total_out] = lg(state[v_key])
        counts = [state.get(c_keys[i], 0.0) * factors[i] for i in k]
        for i in k:
            out[count_outs[i]] = lg(counts[i])
            totals[i] += counts[i]
            if has_value:
                out[value_outs[i]] = lg(state.get(s_keys[i], 0.0) * factors[i])
        long_count = counts[long_i]
        out[trend_out] = (counts[short_i] * short_scale / (long_count * long_scale) - 1.0
                          if long_count > 0.0 else -1.0)
        ratio_counts[kind] = counts[ratio_i]
    for i in k:
        out[total_names[i]] = lg(totals[i])
    long_total = totals[long_i]
    out["trend"] = (totals[short_i] * short_scale / (long_total * long_scale) - 1.0
                    if long_total > 0.0 else -1.0)
    for (num, den), name in zip(spec.ratios, ratio_names, strict=True):
        d = ratio_counts.get(den, 0.0)
        out[name] = lg(ratio_counts.get(num, 0.0) / d) if d else 0.0
    return out
