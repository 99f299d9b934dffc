"""The wire contracts as JSON Schema (schemas/*.json) agree with the decoders (issue 12).

Events and labels: a property test holds :func:`streams.contracts.decode_event` /
:func:`~streams.contracts.decode_label` and the schema to the same verdict on generated records
(valid and invalid fields mixed). What a schema cannot say is left out of the generator and
written in the schema's descriptions instead: dates that do not exist (30 February), the
wall-clock and floor bounds of ``ts``, the size and depth of ``properties``, the record key and
the record size. Scores, alerts and actions: what churnpulse produces validates.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.contracts import TS_PATTERN, InputLimits, decode_event, decode_label
from streams.errors import InvalidMessage

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = 1_767_225_600.0  # 2026-01-01: the decoder's injected clock
LIMITS = InputLimits(clock=lambda: NOW)
ABSENT = object()


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


EVENT, LABEL = validator("event"), validator("label")


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Good nine times in ten: records with one bad field (or none) are the interesting ones."""
    return st.integers(0, 9).flatmap(lambda n: good if n else bad)


def ident(max_len: int) -> st.SearchStrategy[object]:
    good = st.one_of(st.text(min_size=1, max_size=max_len),
                     st.integers(-(2**63), 2**64 - 1),
                     st.integers(-(2**53), 2**53).map(float))  # 5.0: an integer in JSON
    bad = st.one_of(st.just(""), st.text(min_size=max_len + 1, max_size=max_len + 3),
                    st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False)
                    .filter(lambda f: not f.is_integer()), st.lists(st.integers(), max_size=1),
                    st.just(ABSENT))
    return mostly(good, bad)


@st.composite
def timestamps(draw: st.DrawFn) -> object:
    """Valid RFC 3339 times inside the bounds, or values the pattern refuses."""
    if draw(st.integers(0, 9)):
        at = draw(st.datetimes(min_value=dt.datetime(2000, 1, 2),
                               max_value=dt.datetime(2025, 12, 30)))
        minutes = draw(st.integers(-14 * 60, 14 * 60))
        zone = dt.timezone(dt.timedelta(minutes=minutes))
        local = at.replace(tzinfo=dt.UTC).astimezone(zone)
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
        digits = draw(st.integers(0, 9))
        if digits:
            text += "." + f"{local.microsecond:06d}{'0' * 3}"[:digits]
        if minutes == 0 and draw(st.booleans()):
            return text + "Z"
        sign = "-" if minutes < 0 else "+"
        return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return draw(st.one_of(
        st.sampled_from(["2026-13-01T00:00:00Z", "2026-01-01T00:00Z", "2026-01-01 00:00:00Z",
                         "2026-01-01T00:00:00", "2026-01-01T24:00:00Z", "2026-01-01t00:00:00z",
                         "2026-01-01T00:00:00+1:00", "2026-01-01T00:00:00.Z", "yesterday",
                         "2026-01-01T00:00:00Z\n", "٢٠٢٦-01-01T00:00:00Z",
                         "2026-01-01T00:00:00.1234567890Z"]),
        st.text(max_size=30).filter(lambda s: _no_pattern(s)),
        st.integers(), st.none(), st.booleans(), st.just(ABSENT)))


def _no_pattern(text: str) -> bool:
    import re

    return re.search(TS_PATTERN, text) is None


values = mostly(
    st.one_of(st.none(), st.floats(-1e12, 1e12), st.integers(-(10**12), 10**12),
              st.just(ABSENT)),
    st.one_of(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: abs(v) > 1e12),
              st.integers(10**12 + 1, 2**63), st.booleans(), st.text(max_size=3),
              st.lists(st.integers(), max_size=1)))
properties = mostly(
    st.one_of(st.none(), st.just(ABSENT),
              st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8),
                              max_size=4)),
    st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=4), st.integers()))
versions = mostly(st.sampled_from([ABSENT, 1, 1.0]), st.sampled_from([2, 0, "1", True, None]))
extras = st.dictionaries(st.sampled_from(["note", "source", "x"]),
                         st.integers() | st.text(max_size=5), max_size=2)


def record(fields: dict[str, object]) -> bytes:
    obj = {k: v for k, v in fields.items() if v is not ABSENT}
    try:
        return orjson.dumps(obj)
    except TypeError:  # e.g. an integer beyond 64 bits: not a JSON document orjson writes
        assume(False)
        raise


def verdicts(data: bytes, schema: Draft202012Validator, decode: Any) -> tuple[bool, bool, str]:
    try:
        decode(data, None, LIMITS)
        decoded, why = True, ""
    except InvalidMessage as exc:
        decoded, why = False, str(exc)
    errors = [e.message for e in schema.iter_errors(orjson.loads(data))]
    return decoded, not errors, f"decoder: {why or 'valid'}; schema: {errors or 'valid'}"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_id=ident(256), customer_id=ident(256), event_type=ident(64), ts=timestamps(),
       value=values, props=properties, version=versions, extra=extras)
def test_decoder_and_schema_agree_on_events(event_id: object, customer_id: object,
                                            event_type: object, ts: object, value: object,
                                            props: object, version: object,
                                            extra: dict[str, object]) -> None:
    data = record({**extra, "schema_version": version, "event_id": event_id,
                   "customer_id": customer_id, "event_type": event_type, "ts": ts,
                   "value": value, "properties": props})
    decoded, valid, detail = verdicts(data, EVENT, decode_event)
    assert decoded == valid, f"{data!r}: {detail}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_id=ident(256), customer_id=ident(256), ts=timestamps(),
       churned=mostly(st.booleans(), st.one_of(st.none(), st.integers(0, 1),
                                               st.text(max_size=4), st.just(ABSENT))),
       version=versions, extra=extras)
def test_decoder_and_schema_agree_on_labels(label_id: object, customer_id: object, ts: object,
                                            churned: object, version: object,
                                            extra: dict[str, object]) -> None:
    data = record({**extra, "schema_version": version, "label_id": label_id,
                   "customer_id": customer_id, "ts": ts, "churned": churned})
    decoded, valid, detail = verdicts(data, LABEL, decode_label)
    assert decoded == valid, f"{data!r}: {detail}"


def test_schemas_use_the_decoders_time_pattern() -> None:
    for name in ("event", "label", "score", "alert", "action"):
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        assert schema["properties"]["ts"]["pattern"] == TS_PATTERN, name
        Draft202012Validator.check_schema(schema)


def test_examples_in_the_schemas_decode() -> None:
    for name, decode in (("event", decode_event), ("label", decode_label)):
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        for example in schema["examples"]:
            decode(orjson.dumps(example), None, LIMITS)


async def test_records_churnpulse_produces_validate() -> None:
    """A score from the processor, an alert and an action from the alert side."""
    from alerts.contracts import action_record, decode_score
    from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
    from streams.records import MemorySink, RawRecord
    from streams.redis.feature_store import InMemoryFeatureStore
    from streams.settings import FeatureSettings, TopicSettings
    from streams.worker.processor import EventBatchProcessor

    class Model:
        async def current(self) -> ModelHandle:
            return ModelHandle(UNTRAINED_VERSION, make_model())

    topics, sink = TopicSettings(), MemorySink()
    proc = EventBatchProcessor(InMemoryFeatureStore(FeatureSettings()), Model(), sink, topics,
                               wall_clock=lambda: NOW, limits=LIMITS)
    event = {"event_id": "e1", "customer_id": "c-1", "event_type": "login",
             "ts": "2025-12-31T10:00:00Z"}
    await proc.process([RawRecord(topics.events, 0, 0, b"c-1", orjson.dumps(event), 1)])
    score = orjson.loads(sink.on(topics.scores)[0].value)
    errors = [e.message for e in validator("score").iter_errors(score)]
    assert errors == []
    decode_score(orjson.dumps(score))
    alert = {"schema_version": 1, "alert_id": "c-1:1:high", "kind": "opened",
             "customer_id": "c-1", "episode_id": "c-1:1", "severity": "high",
             "previous_severity": None, "score": 0.8, "previous_score": None,
             "model_version": "1-logreg", "score_id": "s", "ts": "2026-01-01T00:00:00.000+00:00",
             "processed_at": "2026-01-01T00:00:01.000+00:00", "source_timestamp_ms": 1,
             "drivers": [{"feature": "f", "value": 1.0, "contribution": 0.5, "change": None,
                          "text": "t"}],
             "driver_category": "engagement", "summary": "s", "lifecycle_stage": "active",
             "segment": "x", "recommended_action": "email", "team": "cs", "sla_hours": 24.0,
             "holdout": False, "customer_value": "mid"}
    assert [e.message for e in validator("alert").iter_errors(alert)] == []
    action = action_record(alert)
    assert [e.message for e in validator("action").iter_errors(action)] == []


@pytest.mark.parametrize("bad", [
    {"score": 1.5}, {"score": True}, {"score_id": ""}, {"ts": "2026-01-01T00:00:00"},
    {"reason": "whim"}, {"schema_version": 2},
])
def test_scores_the_alerter_refuses_the_schema_refuses(bad: dict[str, object]) -> None:
    from alerts.contracts import BadScore, decode_score

    score = {"score_id": "c-1:e1:v", "customer_id": "c-1", "score": 0.5,
             "ts": "2026-01-01T00:00:00Z", "model_version": "v", **bad}
    with pytest.raises(BadScore):
        decode_score(orjson.dumps(score))
    assert not validator("score").is_valid(score)
