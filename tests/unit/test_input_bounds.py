"""Hostile input at the decoder: event time, numbers, sizes and the record key (issue 12)."""

from __future__ import annotations

import orjson
import pytest

from streams.contracts import (
    DEFAULT_LIMITS,
    InputLimits,
    decode_event,
    decode_label,
)
from streams.errors import InvalidMessage

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the injected wall clock
LIMITS = InputLimits(clock=lambda: NOW)


def event(**fields: object) -> bytes:
    base: dict[str, object] = {"event_id": "e1", "customer_id": "c1", "event_type": "login",
                               "ts": "2025-12-31T23:00:00Z"}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def label(**fields: object) -> bytes:
    base: dict[str, object] = {"label_id": "l1", "customer_id": "c1", "churned": True,
                               "ts": "2025-12-31T23:00:00Z"}
    base.update(fields)
    return orjson.dumps(base)


def code_of(data: bytes, *, key: bytes | None = None, kind: str = "event") -> str:
    decode = decode_event if kind == "event" else decode_label
    with pytest.raises(InvalidMessage) as info:
        decode(data, key=key, limits=LIMITS)
    return info.value.code


@pytest.mark.parametrize("kind", ["event", "label"])
def test_far_future_time_is_refused(kind: str) -> None:
    make = event if kind == "event" else label
    assert code_of(make(ts="9000-01-01T00:00:00Z"), kind=kind) == "ts_in_future"
    assert code_of(make(ts="2026-01-01T01:00:01Z"), kind=kind) == "ts_in_future"
    # within the allowed skew (1 h by default) of the injected clock: accepted
    ok = make(ts="2026-01-01T00:59:59Z")
    got = (decode_event(ok, limits=LIMITS) if kind == "event"
           else decode_label(ok, limits=LIMITS))
    assert got.ts == NOW + 3599


@pytest.mark.parametrize("kind", ["event", "label"])
def test_time_before_the_floor_is_refused(kind: str) -> None:
    make = event if kind == "event" else label
    assert code_of(make(ts="1999-12-31T23:59:59Z"), kind=kind) == "ts_too_old"
    assert code_of(make(ts="0001-01-01T00:00:00Z"), kind=kind) == "ts_too_old"


def test_old_history_replays_with_the_default_clock() -> None:
    """Only the future bound follows the clock: a replay of 2019 is fine years later."""
    assert decode_event(event(ts="2019-06-01T00:00:00Z")).ts == 1559347200.0
    assert decode_event(event(ts="2019-06-01T00:00:00Z"), limits=LIMITS).ts == 1559347200.0


def test_skew_and_floor_are_settings() -> None:
    strict = InputLimits(max_future_s=0.0, min_ts=NOW - 86400, clock=lambda: NOW)
    with pytest.raises(InvalidMessage, match="ts_in_future"):
        decode_event(event(ts="2026-01-01T00:00:01Z"), limits=strict)
    with pytest.raises(InvalidMessage, match="ts_too_old"):
        decode_event(event(ts="2025-12-30T00:00:00Z"), limits=strict)


@pytest.mark.parametrize("value", [1e308, -1e308, 1e13, -1e13, 10**400])
def test_huge_values_are_refused(value: object) -> None:
    data = (event(value=None)[:-1] + b',"value":' + str(value).encode() + b"}")
    assert code_of(data) in {"value_out_of_range", "bad_json"}
    if isinstance(value, float):
        assert code_of(data) == "value_out_of_range"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_values_are_refused(literal: bytes) -> None:
    data = event()[:-1] + b',"value":' + literal + b"}"
    assert code_of(data) in {"bad_json", "bad_field", "value_out_of_range"}


def test_value_cap_is_a_setting_and_inclusive() -> None:
    capped = InputLimits(max_abs_value=100.0, clock=lambda: NOW)
    assert decode_event(event(value=100), limits=capped).value == 100.0
    with pytest.raises(InvalidMessage, match="value_out_of_range"):
        decode_event(event(value=-100.5), limits=capped)


def test_oversized_properties_are_refused() -> None:
    big = {"note": "x" * (DEFAULT_LIMITS.max_properties_bytes + 1)}
    assert code_of(event(properties=big)) == "properties_too_large"
    small = {"plan": "pro", "seats": 3}
    assert decode_event(event(properties=small), limits=LIMITS).properties == small


def test_deeply_nested_properties_are_refused() -> None:
    deep: object = 1
    for _ in range(40):
        deep = {"a": deep}
    assert code_of(event(properties=deep)) == "properties_too_large"
    very_deep = b'{"a":' * 2000 + b"1" + b"}" * 2000
    assert code_of(event()[:-1] + b',"properties":' + very_deep + b"}") in {
        "bad_json", "properties_too_large", "record_too_large"}


def test_oversized_record_is_refused_before_parsing() -> None:
    padding = "p" * (DEFAULT_LIMITS.max_record_bytes + 1)
    assert code_of(event(event_type="login", pad=padding)) == "record_too_large"


def test_record_key_must_be_the_customer_id() -> None:
    assert code_of(event(), key=b"c2") == "key_mismatch"
    assert code_of(label(), key=b"c2", kind="label") == "key_mismatch"
    assert code_of(event(), key=b"\xff\xfe") == "key_mismatch"
    assert decode_event(event(), key=b"c1", limits=LIMITS).customer_id == "c1"
    assert decode_event(event(), key=None, limits=LIMITS).customer_id == "c1"
    assert decode_event(event(customer_id=42), key=b"42", limits=LIMITS).customer_id == "42"


def test_bad_utf8_and_unknown_schema_are_refused() -> None:
    assert code_of(b'{"event_id":"e\xff","customer_id":"c1"}') == "bad_json"
    assert code_of(event(schema_version=2)) == "unsupported_schema"


def test_found_by_the_schema_property_test() -> None:
    """JSON has one number type: 5.0 is the integer 5; true is not the version 1."""
    assert decode_event(event(customer_id=5.0), limits=LIMITS).customer_id == "5"
    assert code_of(event(schema_version=True)) == "unsupported_schema"


def score_code(**fields: object) -> str:
    from alerts.contracts import BadScore, decode_score

    base: dict[str, object] = {"score_id": "c1:e1:v", "customer_id": "c1", "score": 0.5,
                               "ts": "2025-12-31T23:00:00Z", "model_version": "v"}
    base.update(fields)
    with pytest.raises(BadScore) as info:
        decode_score(orjson.dumps(base), now=NOW)
    return info.value.code


def test_scores_are_bounded_like_events() -> None:
    """A score from the future would move a customer's alert episode (dwell, cooldown)."""
    from alerts.contracts import decode_score

    assert score_code(ts="9000-01-01T00:00:00Z") == "ts_in_future"
    assert score_code(ts="1999-01-01T00:00:00Z") == "ts_too_old"
    assert score_code(customer_id="c" * 300) == "bad_field"
    assert score_code(drivers=[{"feature": "f", "value": "nan"}]) == "bad_field"
    assert score_code(drivers=[{"feature": "f", "value": 1.0}] * 1000) == "bad_field"
    ok = {"score_id": "s", "customer_id": "c1", "score": 0.5, "ts": "2026-01-01T00:59:00Z"}
    assert decode_score(orjson.dumps(ok), now=NOW).ts == NOW + 3540
    assert decode_score(orjson.dumps(ok)).score == 0.5  # no clock given: no future bound
