"""feature_vector's per-layout look-up (:func:`online_models.feature_vector._layout`): a state
missing some fields gives what the field at its neutral value gives (a count or value sum of 0,
a last time of ``now``), as the former ``state.get(field, default)`` did; the table is bounded."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from online_models import feature_vector as fv_module
from online_models.feature_vector import feature_vector
from online_models.features import DAY_S, DEFAULT_SPEC, apply_event

T0 = 1_767_225_600.0
KINDS = ("session", "purchase", "support_ticket", "feature_use")


def history(seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    state: dict[str, float] = {}
    for i in range(40):
        kind = rng.choice(KINDS)
        state = apply_event(state, kind, T0 + i * 5000.0, 19.9 if kind == "purchase" else None)
    return state


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.floats(min_value=0, max_value=40 * DAY_S), st.data())
def test_a_missing_field_counts_as_its_neutral_value(seed: int, later: float,
                                                      data: st.DataObject) -> None:
    state = history(seed)
    now = state["t_last"] + later
    optional = sorted(f for f in state if f[:2] in ("c1", "c7", "c3", "s1", "s7", "s3", "t."))
    dropped = data.draw(st.sets(st.sampled_from(optional), min_size=1, max_size=6))
    missing = {f: v for f, v in state.items() if f not in dropped}
    neutral = {f: (now if f.startswith("t.") else 0.0) if f in dropped else v
               for f, v in state.items()}
    got, want = feature_vector(missing, now), feature_vector(neutral, now)
    assert list(got.items()) == list(want.items())
    assert list(feature_vector(state, now)) == list(got)


def test_the_layout_table_is_bounded() -> None:
    layouts = fv_module._names(DEFAULT_SPEC).layouts
    layouts.clear()
    layouts.update({(str(i),): () for i in range(5000)})
    state = history(1)
    vector = feature_vector(state, state["t_last"])
    assert len(layouts) == 1 and vector["log_events_total"] > 0.0
