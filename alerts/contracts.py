"""Wire records of the alert side (see ``docs/alerts.md``): scores in, alerts and actions out.

``churn-scores`` → :func:`decode_score` → the policy → :func:`alert_record` (``churn-alerts``)
and :func:`action_record` (``retention-actions``, one per alert, holdout included). Keys are the
customer id; values are JSON.

>>> s = decode_score(b'{"score_id":"c-1:e-1:1-logreg","customer_id":"c-1","score":0.7,'
...                  b'"ts":"2026-03-01T00:00:00Z","model_version":"1-logreg"}')
>>> s.ts, s.reason, s.drivers
(1772323200.0, 'event', ())
>>> decode_score(b'{"customer_id":"c-1"}')
Traceback (most recent call last):
...
alerts.contracts.BadScore: missing_field: score_id is required
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from alerts import timefmt
from alerts.drivers import DriverView
from alerts.policy import AlertDecision, Driver, ScoreInput
from alerts.routing import HOLDOUT_ACTION, Route
from alerts.timefmt import format_ts

SCHEMA_VERSION = 1
MAX_ID_LENGTH = 256
MAX_DRIVERS = 50
MIN_TS = 946_684_800.0  # 2000-01-01, as the event decoder's default floor
MAX_FUTURE_S = 3600.0


class BadScore(ValueError):
    """A score record that breaks the contract; ``code`` goes to the dead-letter headers."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def parse_ts(raw: object) -> float:
    """Epoch seconds of a record's ``ts``; a bad one raises :class:`BadScore`."""
    return timefmt.parse_ts(raw, error=BadScore)


def _text(obj: Mapping[str, Any], name: str) -> str:
    raw = obj.get(name)
    if raw is None:
        raise BadScore("missing_field", f"{name} is required")
    if not isinstance(raw, str) or not raw:
        raise BadScore("bad_field", f"{name} must be a non-empty string")
    if len(raw) > MAX_ID_LENGTH:
        raise BadScore("bad_field", f"{name} is longer than {MAX_ID_LENGTH} characters")
    return raw


def _drivers(raw: object) -> tuple[Driver, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadScore("bad_field", "drivers must be a list")
    if len(raw) > MAX_DRIVERS:
        raise BadScore("bad_field", f"more than {MAX_DRIVERS} drivers")
    out = []
    isfinite = math.isfinite
    for d in raw:
        if type(d) is dict:  # the usual shape: a name and two finite floats
            feature, value, contribution = d.get("feature"), d.get("value"), d.get("contribution")
            if (type(feature) is str and type(value) is float and type(contribution) is float
                    and isfinite(value) and isfinite(contribution)):
                out.append(Driver(feature, value, contribution))
                continue
        out.append(_driver(d))
    return tuple(out)


def _driver(d: object) -> Driver:
    if not isinstance(d, dict) or not isinstance(d.get("feature"), str):
        raise BadScore("bad_field", "each driver needs a feature name")
    try:
        value, contribution = float(d.get("value", 0.0)), float(d.get("contribution", 0.0))
    except (TypeError, ValueError):
        raise BadScore("bad_field", "driver value and contribution must be numbers") from None
    if not (math.isfinite(value) and math.isfinite(contribution)):
        raise BadScore("bad_field", "driver value and contribution must be finite")
    return Driver(d["feature"], value, contribution)


def decode_score(data: bytes | str, now: float | None = None,
                 max_future_s: float = MAX_FUTURE_S) -> ScoreInput:
    """Decode and validate one ``churn-scores`` record (a missing ``drivers`` is ``[]``).

    ``ts`` before 2000-01-01 is refused (``ts_too_old``), and, given the wall clock ``now``,
    later than ``now + max_future_s`` (``ts_in_future``): a score from the future would move
    its customer's alert episode (dwell, cooldown) for good.

    The alerter's first cost per score: well-formed fields take the short checks, anything
    else the full ones (same errors, in the same order).
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadScore("bad_json", f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BadScore("not_an_object", "a score must be a JSON object")
    get = obj.get
    if get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise BadScore("unsupported_schema", f"schema_version {obj.get('schema_version')!r}")
    score_id, customer_id = get("score_id"), get("customer_id")
    if type(score_id) is not str or not 0 < len(score_id) <= MAX_ID_LENGTH:
        score_id = _text(obj, "score_id")
    if type(customer_id) is not str or not 0 < len(customer_id) <= MAX_ID_LENGTH:
        customer_id = _text(obj, "customer_id")
    score = get("score")
    if type(score) is not float or not 0.0 <= score <= 1.0:  # NaN fails the comparison
        if isinstance(score, bool) or not isinstance(score, int | float) or not (
                math.isfinite(score) and 0.0 <= score <= 1.0):
            raise BadScore("bad_field", "score must be a number in [0, 1]")
        score = float(score)
    raw_ts = get("ts")
    if raw_ts is None and "ts" not in obj:
        raise BadScore("missing_field", "ts is required")
    reason = get("reason", "event")
    if reason != "event" and reason != "sweep":
        raise BadScore("bad_field", f"reason {reason!r} is not event or sweep")
    source = get("source_timestamp_ms") or 0
    ts = parse_ts(raw_ts)
    if ts < MIN_TS:
        raise BadScore("ts_too_old", f"ts {raw_ts!r} is before 2000-01-01")
    if now is not None and ts > now + max_future_s:
        raise BadScore("ts_in_future", f"ts {raw_ts!r} is more than {max_future_s:g} s after "
                                       "the wall clock")
    value = get("value")
    return ScoreInput(customer_id=customer_id, score_id=score_id, score=score, ts=ts,
                      reason=reason, model_version=str(get("model_version") or ""),
                      drivers=_drivers(get("drivers")),
                      source_timestamp_ms=int(source) if isinstance(source, int | float) else 0,
                      value=None if value is None else _value(value),
                      calibrated=get("calibrated") is not False)


def _value(raw: object) -> float | None:
    """The optional customer value per month of a score (budgets ranked by expected loss);
    anything but a finite number >= 0 counts as unknown."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw) if math.isfinite(raw) and raw >= 0 else None


def alert_record(decision: AlertDecision, drivers: Sequence[DriverView], summary: str,
                 lifecycle_stage: str, segment: str, route: Route, holdout: bool,
                 customer_value: str, driver_category: str) -> dict[str, Any]:
    """The ``churn-alerts`` record of a decision (``recommended_action`` even for the holdout:
    what the customer *would* have got; ``holdout`` says it is not carried out)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "alert_id": decision.alert_id,
        "kind": decision.kind,
        "customer_id": decision.customer_id,
        "episode_id": decision.episode_id,
        "severity": decision.severity,
        "previous_severity": decision.previous_severity,
        "score": decision.score,
        "previous_score": decision.previous_score,
        "model_version": decision.model_version,
        "score_id": decision.score_id,
        "ts": format_ts(decision.ts),
        "processed_at": format_ts(decision.processed_at),
        "source_timestamp_ms": decision.source_timestamp_ms,
        "drivers": [d.to_wire() for d in drivers],
        "driver_category": driver_category,
        "summary": summary,
        "lifecycle_stage": lifecycle_stage,
        "segment": segment,
        "recommended_action": route.action,
        "team": route.team,
        "sla_hours": route.sla_hours,
        "holdout": holdout,
        "customer_value": customer_value,
    }


def action_record(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The ``retention-actions`` decision of an alert (holdout: recorded, nothing done).

    >>> a = action_record({"alert_id": "c-1:0:high", "customer_id": "c-1", "holdout": True,
    ...     "recommended_action": "email", "team": "cs", "sla_hours": 24.0, "severity": "high",
    ...     "driver_category": "engagement", "ts": "t", "processed_at": "p"})
    >>> a["action"], a["action_id"]
    ('none (holdout)', 'c-1:0:high')
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "action_id": alert["alert_id"],
        "alert_id": alert["alert_id"],
        "customer_id": alert["customer_id"],
        "action": HOLDOUT_ACTION if alert["holdout"] else alert["recommended_action"],
        "recommended_action": alert["recommended_action"],
        "team": alert["team"],
        "sla_hours": alert["sla_hours"],
        "holdout": alert["holdout"],
        "severity": alert["severity"],
        "driver_category": alert["driver_category"],
        "ts": alert["ts"],
        "decided_at": alert["processed_at"],
    }
