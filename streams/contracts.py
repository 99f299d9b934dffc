"""Wire contract v1: customer events, churn labels and scores as JSON on Kafka.

Customer event (topic ``customer-events``, key = customer id)::

    {"schema_version": 1, "event_id": "e-42", "customer_id": "c-7", "event_type": "session",
     "ts": "2026-03-01T09:30:00.250+00:00", "value": 12.5, "properties": {"plan": "pro"}}

``value`` and ``properties`` are optional; any ``event_type`` vocabulary is accepted (the
feature store bounds how many distinct types it tracks per customer). ``ts`` is RFC 3339 and
must carry an offset (``Z`` or ``+hh:mm``): event time is the only clock of the pipeline.

Churn label (topic ``churn-labels``, key = customer id)::

    {"schema_version": 1, "label_id": "l-9", "customer_id": "c-7",
     "ts": "2026-03-20T00:00:00Z", "churned": true}

Decoding is hand-written (orjson + explicit checks) because it runs once per event on the hot
path; every failure raises :class:`~streams.errors.InvalidMessage` with a reason a person can act
on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.errors import InvalidMessage
from streams.timefmt import format_ts, parse_ts

SCHEMA_VERSION = 1
MAX_ID_LENGTH = 256
MAX_EVENT_TYPE_LENGTH = 64


@dataclass(frozen=True, slots=True)
class CustomerEvent:
    """One customer interaction; ``ts`` is event time in seconds since the Unix epoch (UTC)."""

    event_id: str
    customer_id: str
    event_type: str
    ts: float
    value: float | None = None
    properties: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "event_type": self.event_type,
            "ts": format_ts(self.ts),
        }
        if self.value is not None:
            out["value"] = self.value
        if self.properties:
            out["properties"] = dict(self.properties)
        return out


@dataclass(frozen=True, slots=True)
class ChurnLabel:
    """A churn outcome: ``churned`` at event time ``ts`` (seconds since the epoch)."""

    label_id: str
    customer_id: str
    ts: float
    churned: bool

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "label_id": self.label_id,
            "customer_id": self.customer_id,
            "ts": format_ts(self.ts),
            "churned": self.churned,
        }


def _load_object(data: bytes | str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage("bad_json", f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidMessage("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise InvalidMessage("unsupported_schema", f"schema_version {version!r} is not 1")
    return obj


def _identifier(obj: Mapping[str, Any], field: str, max_len: int = MAX_ID_LENGTH) -> str:
    raw = obj.get(field)
    if raw is None:
        raise InvalidMessage("missing_field", f"{field} is required")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw:
        raise InvalidMessage("bad_field", f"{field} must be a non-empty string")
    if len(raw) > max_len:
        raise InvalidMessage("bad_field", f"{field} is longer than {max_len} characters")
    return raw


def decode_event(data: bytes | str) -> CustomerEvent:
    """Decode and validate one customer event.

    >>> decode_event(b'{"event_id":"e1","customer_id":"c1","event_type":"login",'
    ...              b'"ts":"2026-01-01T00:00:00Z","value":3}').value
    3.0
    >>> decode_event(b'{"event_id":"e1","customer_id":"c1","ts":"2026-01-01T00:00:00Z"}')
    Traceback (most recent call last):
    ...
    streams.errors.InvalidMessage: missing_field: event_type is required
    """
    obj = _load_object(data)
    event_id = _identifier(obj, "event_id")
    customer_id = _identifier(obj, "customer_id")
    event_type = _identifier(obj, "event_type", MAX_EVENT_TYPE_LENGTH)
    if "ts" not in obj:
        raise InvalidMessage("missing_field", "ts is required")
    ts = parse_ts(obj["ts"])
    value = obj.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidMessage("bad_field", "value must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise InvalidMessage("bad_field", "value must be finite")
    properties = obj.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise InvalidMessage("bad_field", "properties must be a JSON object")
    return CustomerEvent(event_id, customer_id, event_type, ts, value, properties or None)


def decode_label(data: bytes | str) -> ChurnLabel:
    """Decode and validate one churn label.

    >>> decode_label(b'{"label_id":"l1","customer_id":"c1","ts":"2026-01-01T00:00:00Z",'
    ...              b'"churned":true}').churned
    True
    """
    obj = _load_object(data)
    label_id = _identifier(obj, "label_id")
    customer_id = _identifier(obj, "customer_id")
    if "ts" not in obj:
        raise InvalidMessage("missing_field", "ts is required")
    ts = parse_ts(obj["ts"])
    churned = obj.get("churned")
    if not isinstance(churned, bool):
        raise InvalidMessage("bad_field", "churned must be true or false")
    return ChurnLabel(label_id, customer_id, ts, churned)


def encode(record: Mapping[str, Any]) -> bytes:
    """Serialise a wire record (compact JSON, UTF-8)."""
    return orjson.dumps(record)
