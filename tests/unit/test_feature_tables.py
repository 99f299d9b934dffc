"""The name tables behind apply_event and feature_vector (built once, bounded) change no value:
past their bounds, with states read from elsewhere (other key objects, any key order)."""

from __future__ import annotations

import random

import msgpack  # type: ignore[import-untyped]

from online_models import feature_vector as fv_module
from online_models import features as features_module
from online_models.feature_vector import feature_vector
from online_models.features import DAY_S, FeatureSpec, apply_event, event_types


def test_more_event_types_than_the_tables_hold_give_the_same_states() -> None:
    spec = FeatureSpec(max_types=3)
    rng = random.Random(11)
    state: dict[str, float] = {}
    for i in range(5000):  # 5,000 distinct types: the per-type table is emptied on the way
        state = apply_event(state, f"type-{i}", 1_767_225_600.0 + i * 60.0,
                            rng.choice([None, 2.5]), spec)
    assert event_types(state) == ["_other", "type-0", "type-1", "type-2"]
    assert state["n._other"] == 4997.0 and state["k"] == 3.0
    assert len(features_module._event_keys(spec).types) <= 4096


def test_vector_of_a_state_with_foreign_key_objects_and_order() -> None:
    rng = random.Random(5)
    state: dict[str, float] = {}
    kinds = ("session", "purchase", "support_ticket", "feature_use")
    for i in range(200):
        kind = rng.choice(kinds)
        state = apply_event(state, kind, 1_767_225_600.0 + i * 3000.0,
                            19.9 if kind == "purchase" else None)
    now = state["t_last"] + DAY_S
    expected = feature_vector(state, now)
    # as a state read from Redis: new key objects, another order
    items = list(msgpack.unpackb(msgpack.packb(state), raw=False).items())
    rng.shuffle(items)
    assert feature_vector(dict(items), now) == expected
    fv_module._KIND_OF.clear()  # a cold table gives the same vector and key order
    assert list(feature_vector(dict(items), now).items()) == list(expected.items())
    # a type the table has not seen since it was emptied is found
    fv_module._KIND_OF.update({k: None for k in range(70_000)})  # type: ignore[misc]
    grown = apply_event(state, "new_type", now, None)
    vector = feature_vector(grown, now)
    assert "log_events_total.new_type" in vector
    assert len(fv_module._KIND_OF) < 70_000  # emptied past its bound
