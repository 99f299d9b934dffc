"""Dispatching alerts to the outside world, behind small interfaces (no I/O here).

A :class:`Dispatcher` takes one :class:`Alert` and reports a :class:`Delivery`. Delivery is at
least once, effect once per dispatcher: :func:`deliver_once` asks a :class:`DeliveredStore`
whether this dispatcher already delivered the alert id, and records it only *after* a
successful delivery. A crash between the two can repeat one delivery; webhook receivers
deduplicate on the ``Idempotency-Key`` header (the alert id) for that case.

Alerts that could not be delivered are *not* remembered: the caller dead-letters them, and an
operator who re-publishes a dead letter after fixing the receiver gets it delivered.

Dispatchers here: :class:`LogSink` (one line per alert); :class:`alerts.webhooks.WebhookDispatcher`
(signed HTTP POST with retries).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

SEVERITIES = ("medium", "high", "critical")

Status = Literal["delivered", "duplicate", "dead", "skipped"]


def severity_rank(severity: str) -> int:
    """Order of severities; unknown ones rank below ``medium``.

    >>> [severity_rank(s) for s in ("medium", "high", "critical", "info")]
    [0, 1, 2, -1]
    """
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


class BadAlert(ValueError):
    """An alert record that breaks the contract (``code`` as in the dead-letter headers)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as dispatchers need it: its ids, severity, the record and its exact bytes."""

    alert_id: str
    customer_id: str
    severity: str
    record: Mapping[str, Any]
    body: bytes

    @property
    def holdout(self) -> bool:
        """The customer is in the experiment's holdout: recorded, not acted on."""
        return self.record.get("holdout") is True


def parse_alert(record: object, body: bytes) -> Alert:
    """Validate a decoded ``churn-alerts`` record (see the alert contract).

    >>> parse_alert({"alert_id": "c-1:5:high", "customer_id": "c-1", "severity": "high"},
    ...             b"{}").severity
    'high'
    >>> parse_alert({"customer_id": "c-1"}, b"{}")
    Traceback (most recent call last):
    ...
    alerts.dispatch.BadAlert: missing_field: alert_id is required
    """
    if not isinstance(record, Mapping):
        raise BadAlert("not_an_object", "an alert must be a JSON object")
    version = record.get("schema_version", 1)
    if version != 1:
        raise BadAlert("unsupported_schema", f"schema_version {version!r} is not 1")
    fields = {}
    for name in ("alert_id", "customer_id", "severity"):
        value = record.get(name)
        if value is None:
            raise BadAlert("missing_field", f"{name} is required")
        if not isinstance(value, str) or not value:
            raise BadAlert("bad_field", f"{name} must be a non-empty string")
        fields[name] = value
    if fields["severity"] not in SEVERITIES:
        raise BadAlert("bad_field", f"severity {fields['severity']!r} is not one of "
                                    f"{', '.join(SEVERITIES)}")
    return Alert(fields["alert_id"], fields["customer_id"], fields["severity"], record, body)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one alert at one dispatcher."""

    status: Status
    attempts: int = 0
    detail: str = ""
    code: str = ""


class Dispatcher(Protocol):
    """Sends alerts somewhere. ``dispatch`` never raises for a failed delivery."""

    name: str

    def wants(self, alert: Alert) -> bool: ...

    async def dispatch(self, alert: Alert) -> Delivery: ...


class DeliveredStore(Protocol):
    """Alert ids already delivered, per dispatcher (bounded by a TTL in real stores)."""

    async def seen(self, dispatcher: str, alert_id: str) -> bool: ...

    async def mark(self, dispatcher: str, alert_id: str) -> None: ...


class MemoryDeliveredStore:
    """In-memory :class:`DeliveredStore` (tests, single-process use)."""

    def __init__(self) -> None:
        self.ids: set[tuple[str, str]] = set()

    async def seen(self, dispatcher: str, alert_id: str) -> bool:
        return (dispatcher, alert_id) in self.ids

    async def mark(self, dispatcher: str, alert_id: str) -> None:
        self.ids.add((dispatcher, alert_id))


async def deliver_once(dispatcher: Dispatcher, store: DeliveredStore, alert: Alert) -> Delivery:
    """Deliver ``alert`` unless this dispatcher already did; remember it when delivered."""
    if not dispatcher.wants(alert):
        return Delivery("skipped", 0, "not for this target (severity or holdout)")
    if await store.seen(dispatcher.name, alert.alert_id):
        return Delivery("duplicate", 0, "already delivered")
    delivery = await dispatcher.dispatch(alert)
    if delivery.status == "delivered":
        await store.mark(dispatcher.name, alert.alert_id)
    return delivery


def log_line(alert: Alert) -> str:
    """The log sink's one line per alert.

    >>> log_line(Alert("c-1:9:high", "c-1", "high", {"score": 0.81, "kind": "opened",
    ...                "team": "csm", "summary": "sessions fell"}, b""))
    'ALERT high opened customer=c-1 score=0.810 team=csm id=c-1:9:high: sessions fell'
    """
    record = alert.record
    score = record.get("score")
    shown = f"{score:.3f}" if isinstance(score, int | float) else "?"
    text = (f"ALERT {alert.severity} {record.get('kind', '?')} customer={alert.customer_id} "
            f"score={shown} team={record.get('team', '?')} id={alert.alert_id}")
    if alert.holdout:
        text += " (holdout: no action)"
    summary = record.get("summary")
    return f"{text}: {summary}" if summary else text


class LogSink:
    """A :class:`Dispatcher` that writes :func:`log_line` (or the raw JSON) per alert."""

    def __init__(self, write: Callable[[str], None], *, name: str = "log",
                 json_lines: bool = False) -> None:
        self.name = name
        self._write = write
        self._json = json_lines

    def wants(self, alert: Alert) -> bool:
        return True

    async def dispatch(self, alert: Alert) -> Delivery:
        self._write(alert.body.decode() if self._json else log_line(alert))
        return Delivery("delivered", 1)
