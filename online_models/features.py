"""Per-customer churn features, streaming: the pure reference of state, update and read.

The batch metric catalogue of "Fighting Churn With Data" (event counts over windows, value
sums, ratios, percent change, days since last event, tenure scaling, active days) as O(1)
updates on a small per-customer state, exact at any instant because decay is applied when the
state is *read*, not when the next event arrives. ``streams/redis/lua/apply_events.lua`` runs
the same update inside Redis; an integration test holds the two to each other on random streams.

State
-----
A flat mapping ``field -> float`` (what a customer's Redis hash holds)::

    n            events applied (after deduplication)
    t_first      earliest event time seen (epoch seconds)
    t_last       latest event time seen
    k            distinct event types tracked
    r            reference time: the UTC day start of t_last
    ad           active-day bitmap: bit j set = an event on day (r / 86400 - j), j < 32
    n.<type>     events of that type (lifetime)
    v.<type>     sum of ``value`` of that type (only types whose events carry values)
    t.<type>     latest event time of that type
    c<h>.<type>  decayed count, half-life h days:  sum of 2^((t_i - r) / (h * 86400))
    s<h>.<type>  decayed value sum, half-life h:   sum of value_i * 2^((t_i - r) / (h * 86400))

Decay referenced to ``r``: each event adds a term that depends only on its own time and ``r``,
so application order does not matter; reading at ``now`` multiplies by
``2^((r - now) / (h * 86400))``. ``r`` only moves forward, to the day start of the newest event,
and every decayed field is then rescaled by ``2^(-(r_new - r_old) / H)``: terms stay below
``2^(1 day / h)``, so nothing overflows however long a customer lives. ``r`` is a function of
the *set* of events (the day of the newest), so the state itself is order independent up to
floating-point rounding.

Types beyond ``max_types`` are counted under :data:`OTHER_TYPE`, so a customer's state is
bounded whatever vocabulary producers send.

Reading
-------
:func:`catalogue` gives the human-readable features at any ``now`` (see ``docs/features.md``
for every formula); :func:`online_models.feature_vector.feature_vector` the model input
(counts and sums through ``log1p``).
A read at ``now`` earlier than the newest event is a read at the newest event time (the state
cannot forget what it has seen).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

OTHER_TYPE = "_other"
DAY_S = 86400.0
ACTIVE_DAY_BITS = 32
_BITS_MOD = float(2**ACTIVE_DAY_BITS)
_LN2 = math.log(2.0)

FeatureState = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What is computed: half-lives, the trend pair, ratios, active-day windows, vocabulary.

    >>> FeatureSpec().half_life_names
    ('1', '7', '30')
    >>> FeatureSpec(trend=(2.0, 30.0))
    Traceback (most recent call last):
    ...
    ValueError: trend half-lives (2.0, 30.0) must be among half_lives_days (1.0, 7.0, 30.0)
    """

    half_lives_days: tuple[float, ...] = (1.0, 7.0, 30.0)
    trend: tuple[float, float] = (7.0, 30.0)
    ratios: tuple[tuple[str, str], ...] = (("support_ticket", "session"),)
    ratio_half_life_days: float = 30.0
    active_day_windows: tuple[int, ...] = (7, 30)
    max_types: int = 32

    def __post_init__(self) -> None:
        hls = self.half_lives_days
        if not hls or len(set(hls)) != len(hls) or min(hls) < 0.05:
            raise ValueError(f"half_lives_days {hls} must be distinct and >= 0.05 days")
        if self.trend[0] not in hls or self.trend[1] not in hls or self.trend[0] >= self.trend[1]:
            raise ValueError(f"trend half-lives {self.trend} must be among half_lives_days {hls}"
                             if self.trend[0] < self.trend[1] else
                             f"trend {self.trend} must be (short, long)")
        if self.ratio_half_life_days not in hls:
            raise ValueError(f"ratio_half_life_days must be among half_lives_days {hls}")
        if any(not 1 <= w <= ACTIVE_DAY_BITS for w in self.active_day_windows):
            raise ValueError(f"active_day_windows must be within 1..{ACTIVE_DAY_BITS} days")
        if self.max_types < 1:
            raise ValueError("max_types must be >= 1")

    @property
    def half_life_names(self) -> tuple[str, ...]:
        """How each half-life appears in field names (``c7.login``)."""
        return _half_life_names(self.half_lives_days)


DEFAULT_SPEC = FeatureSpec()


@functools.lru_cache(maxsize=64)
def _half_life_names(half_lives_days: tuple[float, ...]) -> tuple[str, ...]:
    """Built once per configuration: every event update reads them (``apply_event``)."""
    return tuple(half_life_name(h) for h in half_lives_days)


def half_life_name(days: float) -> str:
    """
    >>> half_life_name(7.0), half_life_name(0.5)
    ('7', '0.5')
    """
    return f"{days:g}"


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


def _rebase(state: dict[str, float], new_r: float, spec: FeatureSpec) -> None:
    """Move the reference time forward: rescale decayed fields, shift the day bitmap.

    Only the configured half-lives are rescaled: fields of a half-life removed from the
    configuration go stale (changing half-lives needs a replay, see docs/features.md).
    """
    delta = new_r - state["r"]
    kinds = [f[2:] for f in state if f.startswith("n.")]
    for name, h in zip(spec.half_life_names, spec.half_lives_days, strict=True):
        factor = 2.0 ** (-delta / (h * DAY_S))
        for kind in kinds:
            for key in (f"c{name}.{kind}", f"s{name}.{kind}"):
                if key in state:
                    state[key] = state[key] * factor
    shift = round(delta / DAY_S)
    bits = state.get("ad", 0.0)
    state["ad"] = math.fmod(bits * 2.0**shift, _BITS_MOD) if shift < ACTIVE_DAY_BITS else 0.0
    state["r"] = new_r


def apply_event(state: FeatureState, event_type: str, ts: float, value: float | None,
                spec: FeatureSpec = DEFAULT_SPEC) -> dict[str, float]:
    """Return the state after one (already deduplicated) event.

    >>> s = apply_event({}, "login", 100.0, None)
    >>> s = apply_event(s, "purchase", 50.0, 9.5)
    >>> s["n"], s["t_first"], s["t_last"], s["k"], s["v.purchase"], s["r"]
    (2.0, 50.0, 100.0, 2.0, 9.5, 0.0)
    >>> round(s["c1.login"], 6) == round(2 ** (100 / 86400), 6)
    True
    """
    out = dict(state)
    table = _event_keys(spec)
    keys = table.of(event_type)
    count_key = keys[0]
    if count_key not in out and event_type != OTHER_TYPE:  # tracked_type, inlined
        if out.get("k", 0.0) >= spec.max_types:
            keys = table.of(OTHER_TYPE)
            count_key = keys[0]
        else:
            out["k"] = out.get("k", 0.0) + 1.0
    day_start = math.floor(ts / DAY_S) * DAY_S
    ref = out.get("r")
    if ref is None:
        ref = out["r"] = day_start
        out["ad"] = 0.0
    elif day_start > ref:
        _rebase(out, day_start, spec)
        ref = day_start
    j = round((ref - day_start) / DAY_S)
    if j < ACTIVE_DAY_BITS:
        bits = out["ad"]
        if math.floor(bits / 2.0**j) % 2 == 0:
            out["ad"] = bits + 2.0**j
    out["n"] = out.get("n", 0.0) + 1.0
    out[count_key] = out.get(count_key, 0.0) + 1.0
    for key, value_key, scale in keys[3]:
        w = 2.0 ** ((ts - ref) / scale)
        out[key] = out.get(key, 0.0) + w
        if value is not None:
            out[value_key] = out.get(value_key, 0.0) + value * w
    if value is not None:
        key = keys[2]
        out[key] = out.get(key, 0.0) + value
    out["t_first"] = min(out.get("t_first", ts), ts)
    out["t_last"] = max(out.get("t_last", ts), ts)
    last_key = keys[1]
    out[last_key] = max(out.get(last_key, ts), ts)
    return out


EventKeys = tuple[str, str, str, tuple[tuple[str, str, float], ...]]
"""The state fields one event type updates: ``n.<type>``, ``t.<type>``, ``v.<type>`` and per
half-life (``c<h>.<type>``, ``s<h>.<type>``, ``h * DAY_S``)."""


class _EventKeys:
    """The field names :func:`apply_event` updates, per event type of one spec, built once
    (not per event): every state then shares the same key objects, which also makes
    :func:`online_models.feature_vector.feature_vector`'s look-up by key layout cheap."""

    __slots__ = ("half_lives", "types")

    def __init__(self, spec: FeatureSpec) -> None:
        self.half_lives = tuple(zip(spec.half_life_names,
                                    [h * DAY_S for h in spec.half_lives_days], strict=True))
        self.types: dict[str, EventKeys] = {}

    def of(self, kind: str) -> EventKeys:
        keys = self.types.get(kind)
        if keys is None:
            if len(self.types) >= 4096:  # event types come from the input: bounded
                self.types.clear()
            keys = self.types[kind] = (
                f"n.{kind}", f"t.{kind}", f"v.{kind}",
                tuple((f"c{name}.{kind}", f"s{name}.{kind}", scale)
                      for name, scale in self.half_lives))
        return keys


def spec_tables(build: Callable[[FeatureSpec], T]) -> Callable[[FeatureSpec], T]:
    """A look-up of the tables ``build`` makes from a spec, built once per spec object and
    found by its identity: a process holds one or two spec objects, so the frozen spec is not
    hashed field by field on every event (a closure, as cheap to call as a function)."""
    tables: dict[int, tuple[FeatureSpec, T]] = {}

    def lookup(spec: FeatureSpec) -> T:
        hit = tables.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        if len(tables) >= 64:
            tables.clear()
        table = build(spec)
        tables[id(spec)] = (spec, table)
        return table
    return lookup


_event_keys = spec_tables(_EventKeys)


def event_types(state: FeatureState) -> list[str]:
    """The types a state tracks, sorted.

    >>> event_types({"n": 2.0, "n.b": 1.0, "n.a": 1.0, "t.a": 0.0})
    ['a', 'b']
    """
    return sorted(f[2:] for f in state if f.startswith("n."))


def active_days(state: FeatureState, now: float, window_days: int) -> int:
    """Distinct UTC days with an event among the ``window_days`` days ending with ``now``'s.

    >>> s = {}
    >>> for day in (0, 1, 1, 5, 9):
    ...     s = apply_event(s, "login", day * DAY_S + 60, None)
    >>> active_days(s, 9 * DAY_S, 7), active_days(s, 9 * DAY_S, 30), active_days(s, 40 * DAY_S, 7)
    (2, 4, 0)
    """
    if "r" not in state:
        return 0
    now = max(now, state.get("t_last", now))
    return days_in_window(int(state["ad"]), day_gap(state["r"], now), window_days)


def day_gap(ref: float, now: float) -> int:
    """Days from the top day of the active-day mask (the state's ``r``) to ``now``'s, >= 0 for a
    ``now`` at or after the state's last event."""
    return math.floor(now / DAY_S) - round(ref / DAY_S)


def days_in_window(bits: int, gap: int, window_days: int) -> int:
    """Active days of the mask ``bits`` among the ``window_days`` days ending ``gap`` days after
    its top day (:func:`active_days` of a state, with the gap computed once for all windows)."""
    width = min(window_days - gap, ACTIVE_DAY_BITS)
    return (bits & ((1 << width) - 1)).bit_count() if width > 0 else 0


def rate_scale(h_days: float, tenure_days: float) -> float:
    """Events per day for a decayed count of 1, corrected for short tenure.

    A decayed count with half-life h weighs the past like a window of ``h / ln 2`` days; a
    customer younger than that has been exposed for only ``(h / ln 2) (1 - 2^(-T/h))`` weighted
    days (tenure scaling, with T at least one day).
    """
    t = max(tenure_days, 1.0)
    return _LN2 / (h_days * -math.expm1(-_LN2 * t / h_days))


def catalogue(state: FeatureState, now: float,
              spec: FeatureSpec = DEFAULT_SPEC) -> dict[str, float]:
    """Every feature of a customer at time ``now``, human-readable (counts, days, fractions).

    >>> s = {}
    >>> for i, kind in enumerate(["session", "session", "support_ticket", "purchase"]):
    ...     s = apply_event(s, kind, i * DAY_S, 20.0 if kind == "purchase" else None)
    >>> f = catalogue(s, now=10 * DAY_S)
    >>> f["events_total"], f["tenure_days"], f["days_since_last"], f["days_since.session"]
    (4.0, 10.0, 7.0, 9.0)
    >>> round(f["count_7d.session"], 4), round(f["value_30d.purchase"], 4)
    (0.7817, 17.0133)
    >>> f["active_days_7d"], f["active_days_30d"], round(f["ratio.support_ticket_per_session"], 4)
    (0.0, 4.0, 0.5176)
    >>> round(f["trend.session"], 4), round(f["trend"], 4)
    (-0.3153, -0.2579)
    >>> catalogue({}, now=0.0)
    {}
    """
    if not state.get("n"):
        return {}
    now = max(now, state["t_last"])
    ref = state["r"]
    tenure = (now - state["t_first"]) / DAY_S
    out: dict[str, float] = {
        "events_total": state["n"],
        "tenure_days": tenure,
        "days_since_last": (now - state["t_last"]) / DAY_S,
    }
    for w in spec.active_day_windows:
        out[f"active_days_{w}d"] = float(active_days(state, now, w))
    factors = {name: 2.0 ** ((ref - now) / (h * DAY_S))
               for name, h in zip(spec.half_life_names, spec.half_lives_days, strict=True)}
    totals = dict.fromkeys(factors, 0.0)
    for kind in event_types(state):
        out[f"events_total.{kind}"] = state[f"n.{kind}"]
        out[f"days_since.{kind}"] = (now - state.get(f"t.{kind}", now)) / DAY_S
        has_value = f"v.{kind}" in state
        if has_value:
            out[f"value_total.{kind}"] = state[f"v.{kind}"]
        for name, factor in factors.items():
            count = state.get(f"c{name}.{kind}", 0.0) * factor
            out[f"count_{name}d.{kind}"] = count
            totals[name] += count
            if has_value:
                out[f"value_{name}d.{kind}"] = state.get(f"s{name}.{kind}", 0.0) * factor
        out[f"trend.{kind}"] = _trend(out, f".{kind}", spec, tenure)
    for name, total in totals.items():
        out[f"count_{name}d"] = total
    out["trend"] = _trend(out, "", spec, tenure)
    ratio_hl = half_life_name(spec.ratio_half_life_days)
    for num, den in spec.ratios:
        d = out.get(f"count_{ratio_hl}d.{den}", 0.0)
        out[f"ratio.{num}_per_{den}"] = out.get(f"count_{ratio_hl}d.{num}", 0.0) / d if d else 0.0
    return out


def _trend(features: Mapping[str, float], suffix: str, spec: FeatureSpec,
           tenure_days: float) -> float:
    """Percent change (as a fraction) of the short-half-life rate against the long one."""
    short, long = spec.trend
    long_count = features[f"count_{half_life_name(long)}d{suffix}"]
    if long_count <= 0.0:
        return -1.0
    short_rate = features[f"count_{half_life_name(short)}d{suffix}"] * rate_scale(
        short, tenure_days)
    return short_rate / (long_count * rate_scale(long, tenure_days)) - 1.0


def replay(events: Iterable[tuple[str, float, float | None]],
           spec: FeatureSpec = DEFAULT_SPEC) -> dict[str, float]:
    """The state after ``(event_type, ts, value)`` events, in the order given.

    >>> replay([("a", 5.0, None), ("a", 1.0, 2.0)])["t_first"]
    1.0
    """
    state: dict[str, float] = {}
    for kind, ts, value in events:
        state = apply_event(state, kind, ts, value, spec)
    return state
