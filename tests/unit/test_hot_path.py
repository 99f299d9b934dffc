"""The hot path's fast versions give exactly what the plain ones gave (issue 14): the feature
vector against a frozen copy of the version before the speed-up, the drivers against the
per-feature sort, every float equal to the last bit and every key in the same order."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.explain import LinearExplainer
from online_models.feature_vector import feature_vector
from online_models.features import (
    DAY_S,
    FeatureSpec,
    FeatureState,
    active_days,
    event_types,
    rate_scale,
    replay,
)
from online_models.model import make_model

T0 = 1_767_225_600.0
KINDS = ["session", "support_ticket", "purchase", "login", "a", "b", "c"]
SPECS = [FeatureSpec(), FeatureSpec(half_lives_days=(2.0, 14.0), trend=(2.0, 14.0),
                                    ratio_half_life_days=14.0, ratios=(("a", "b"), ("c", "a")),
                                    active_day_windows=(3,), max_types=3)]
events_st = st.lists(
    st.tuples(st.sampled_from(KINDS), st.floats(min_value=T0, max_value=T0 + 90 * DAY_S),
              st.one_of(st.none(), st.floats(min_value=-500, max_value=5000))),
    min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(events_st, st.floats(min_value=0, max_value=60 * DAY_S), st.sampled_from(SPECS))
def test_feature_vector_is_the_previous_version_exactly(
        events: list[tuple[str, float, float | None]], later: float, spec: FeatureSpec) -> None:
    state = replay(events, spec)
    now = max(ts for _, ts, _ in events) + later
    want, got = reference_vector(state, now, spec), feature_vector(state, now, spec)
    assert list(got.items()) == list(want.items())


def reference_top(e: LinearExplainer, x: dict[str, float], k: int) -> list[dict[str, object]]:
    """LinearExplainer.top before the speed-up: one tuple per feature, a keyed stable sort."""
    inputs = x if e.transform is None else e.transform(x)
    parts = [(f * (v - e.centres[name]), name, x.get(name, v)) for name, v in inputs.items()
             if (f := e.factors.get(name)) is not None]
    parts.sort(key=lambda p: -abs(p[0]))
    return [{"feature": name, "value": v, "contribution": c} for c, name, v in parts[:k]]


def trained(name: str, seed: int) -> LinearExplainer:
    rng = random.Random(seed)
    model = make_model(name)  # type: ignore[arg-type]
    state: dict[str, float] = {}
    for i in range(400):
        state = apply(state, rng)
        model.learn_one(feature_vector(state, T0 + i * 3600.0), rng.random() < 0.3)
    explainer = LinearExplainer.of(model)
    assert explainer is not None
    return explainer


def apply(state: dict[str, float], rng: random.Random) -> dict[str, float]:
    from online_models.features import apply_event

    ts = state.get("t_last", T0) + rng.uniform(0, 2 * DAY_S)
    value = 19.9 if rng.random() < 0.2 else None
    return apply_event(state, rng.choice(KINDS[:5]), ts, value)


EXPLAINERS = [trained(name, seed) for name, seed in
              (("logreg", 1), ("logreg_robust", 2), ("bayes", 3))]


@settings(max_examples=200, deadline=None)
@given(events_st, st.sampled_from(range(len(EXPLAINERS))), st.integers(1, 8))
def test_drivers_are_the_per_feature_sort_exactly(
        events: list[tuple[str, float, float | None]], which: int, k: int) -> None:
    explainer = EXPLAINERS[which]
    state = replay(events)
    x = feature_vector(state, max(ts for _, ts, _ in events) + DAY_S)
    assert explainer.drivers(x, k) == reference_top(explainer, x, k)
    assert [(c.feature, c.value, c.contribution) for c in explainer.top(x, k)] == \
           [(d["feature"], d["value"], d["contribution"]) for d in reference_top(explainer, x, k)]


def test_ties_keep_input_order_and_unknown_inputs_are_skipped() -> None:
    e = LinearExplainer({"a": 1.0, "b": -1.0, "c": 1.0}, {"a": 0.0, "b": 0.0, "c": 0.0}, 0.0)
    x = {"z": 9.0, "c": 2.0, "a": 0.0, "b": 2.0}
    assert [d["feature"] for d in e.drivers(x, 3)] == ["c", "b", "a"]
    assert e.drivers(x, 3) == reference_top(e, x, 3)
    assert LinearExplainer({}, {}, 0.0).drivers(x) == []


# --- the feature vector as it was before the speed-up (frozen reference) ---------------------


def _log1p_signed(x: float) -> float:
    """``log1p`` that keeps the sign (heavy tails of either sign, as the model sees them)."""
    return math.log1p(x) if x >= 0.0 else -math.log1p(-x)


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


def _spec_names(spec: FeatureSpec) -> tuple[tuple[str, ...], tuple[str, ...], int, int, int,
                                            tuple[str, ...]]:
    hls = spec.half_lives_days
    return (tuple(f"active_days_{w}d" for w in spec.active_day_windows),
            tuple(f"log_count_{n}d" for n in spec.half_life_names),
            hls.index(spec.trend[0]), hls.index(spec.trend[1]),
            hls.index(spec.ratio_half_life_days),
            tuple(f"log_ratio.{num}_per_{den}" for num, den in spec.ratios))


def reference_vector(state: FeatureState, now: float,
                     spec: FeatureSpec) -> dict[str, float]:
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
