"""Signed webhooks: signature, verification, retry schedule and delivery, without any I/O.

Wire format of one delivery (a JSON ``POST`` whose body is the alert record, byte for byte as it
was read from ``churn-alerts``)::

    Content-Type: application/json
    X-Churnpulse-Timestamp: 1795461094                 (unix seconds, when it was signed)
    X-Churnpulse-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>
    Idempotency-Key: <alert_id>                        (the same on every retry and redelivery)
    X-Churnpulse-Attempt: 1                            (1, 2, ... per delivery attempt)

A receiver recomputes the HMAC over the raw body with the shared secret, compares in constant
time, rejects timestamps outside a tolerance window (replays) and keeps the idempotency keys it
has processed (the sender delivers at least once: a crash between a receiver's 2xx and the
sender's bookkeeping means one more POST with the same key). :func:`verify` does the first
three; see ``docs/webhooks.md`` for the receiver's dedup.

Errors::

    WebhookError
    ├── SignatureError      verification failed (missing header, bad signature, stale timestamp)
    └── TransportError      the request did not complete (connection refused, timeout);
                            always retried

A response is *delivered* on 2xx, *retried* on 408, 425, 429 and 5xx, and *permanent* (dead
letter at once, retrying cannot help) on any other status.

Hostile or broken receivers (issue 12): a target must be ``https://`` with a secret of at least
16 characters (:func:`target_problem`; clear-text ``http://`` only to a receiver on localhost
and only with ``allow_insecure_http``). Targets are delivered to independently
(:func:`deliver_independently`): a target that hangs or fails delays only its own deliveries,
and after ``open_after`` alerts in a row that it gave up on, it is not tried for
``open_for_s`` (its alerts are dead-lettered at once as ``webhook_unavailable``), so a dead
receiver cannot hold a batch for minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

from alerts.dispatch import (
    Alert,
    DeliveredStore,
    Delivery,
    Dispatcher,
    deliver_once,
    severity_rank,
)

SIGNATURE_HEADER = "X-Churnpulse-Signature"
TIMESTAMP_HEADER = "X-Churnpulse-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Churnpulse-Attempt"
SIGNATURE_VERSION = "v1"
RETRYABLE_STATUS = frozenset({408, 425, 429})
MIN_SECRET_LENGTH = 16

Verdict = Literal["delivered", "retry", "permanent"]


class WebhookError(Exception):
    """Base of the errors of this module."""


class SignatureError(WebhookError):
    """A webhook request whose signature cannot be accepted; the message says why."""


class TransportError(WebhookError):
    """The HTTP request did not complete (no status code to judge)."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value of ``body`` signed at ``timestamp``.

    >>> sign(b"s3cret", 1700000000, b'{"alert_id":"c-1:1:high"}')[:19]
    'v1=63279e1e392e4da9'
    """
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(secret: bytes, body: bytes, alert_id: str, now: float,
                   attempt: int = 1) -> dict[str, str]:
    """Every header of one delivery attempt.

    >>> sorted(signed_headers(b"k", b"{}", "a-1", 1700000000.9))  # doctest: +NORMALIZE_WHITESPACE
    ['Content-Type', 'Idempotency-Key', 'X-Churnpulse-Attempt', 'X-Churnpulse-Signature',
     'X-Churnpulse-Timestamp']
    """
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        IDEMPOTENCY_HEADER: alert_id,
        ATTEMPT_HEADER: str(attempt),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(secrets: Sequence[bytes], body: bytes, headers: Mapping[str, str], now: float,
           tolerance_s: float = 300.0) -> int:
    """Check a received webhook; return its timestamp or raise :class:`SignatureError`.

    ``secrets`` may hold several (the new and the old one while a secret is rotated); header
    names are matched case-insensitively. ``tolerance_s`` bounds the age (and the clock skew
    into the future) of the timestamp, which limits replays of a captured request.

    >>> body = b'{"alert_id":"a"}'
    >>> h = signed_headers(b"k", body, "a", 1000.0)
    >>> verify([b"k"], body, h, now=1010.0)
    1000
    >>> verify([b"wrong"], body, h, now=1010.0)
    Traceback (most recent call last):
    ...
    alerts.webhooks.SignatureError: signature does not match
    >>> verify([b"k"], body, h, now=2000.0)
    Traceback (most recent call last):
    ...
    alerts.webhooks.SignatureError: timestamp 1000 is 1000 s away from now (tolerance 300 s)
    """
    raw_ts = _header(headers, TIMESTAMP_HEADER)
    raw_sig = _header(headers, SIGNATURE_HEADER)
    if raw_ts is None or raw_sig is None:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} {raw_ts!r} is not unix seconds") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is {abs(now - timestamp):.0f} s away from"
                             f" now (tolerance {tolerance_s:.0f} s)")
    offered = [part.strip() for part in raw_sig.split(",")]
    for secret in secrets:
        expected = sign(secret, timestamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return timestamp
    raise SignatureError("signature does not match")


def backoff_delay(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): "full jitter".

    The ceiling doubles per attempt, ``base_s * 2**(attempt-1)``, capped at ``max_s``; the delay
    is ``jitter`` (a uniform draw in [0, 1), injected) times the ceiling, but never less than
    half of it, so retries spread out without collapsing to zero.

    >>> [backoff_delay(n, 0.5, 4.0, 1.0) for n in range(1, 6)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    >>> backoff_delay(3, 0.5, 4.0, 0.0)
    1.0
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(max_s, base_s * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


def backoff_schedule(max_attempts: int, base_s: float, max_s: float) -> list[float]:
    """Worst-case waits between ``max_attempts`` attempts (the bound on time to dead letter).

    >>> backoff_schedule(5, 0.5, 4.0)
    [0.5, 1.0, 2.0, 4.0]
    """
    return [backoff_delay(n, base_s, max_s, 1.0) for n in range(1, max_attempts)]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def target_problem(url: str, secret: str | bytes, allow_insecure_http: bool = False) -> str | None:
    """Why a webhook target must not be used (None: it may).

    >>> target_problem("https://crm.example/hook", "0123456789abcdef") is None
    True
    >>> target_problem("http://crm.example/hook", "0123456789abcdef")[:24]
    'url must be https:// (ht'
    >>> target_problem("https://crm.example/hook", "")[:40]
    'secret must be at least 16 characters (a'
    """
    parts = urlsplit(url)
    if parts.scheme == "http":
        if not allow_insecure_http:
            return ("url must be https:// (http:// sends alerts in clear text; "
                    "allow_insecure_http is for a receiver on localhost)")
        if not _is_loopback(parts.hostname or ""):
            return "allow_insecure_http is for a receiver on localhost only; use https://"
    elif parts.scheme != "https":
        return "url must be https://"
    if not parts.hostname:
        return "url has no host"
    if len(secret) < MIN_SECRET_LENGTH:
        return (f"secret must be at least {MIN_SECRET_LENGTH} characters (an empty or short "
                "secret makes signatures forgeable)")
    return None


def judge(status: int) -> Verdict:
    """What a response status means for the delivery.

    >>> [judge(s) for s in (200, 204, 429, 503, 400, 410)]
    ['delivered', 'delivered', 'retry', 'retry', 'permanent', 'permanent']
    """
    if 200 <= status < 300:
        return "delivered"
    if status in RETRYABLE_STATUS or status >= 500:
        return "retry"
    return "permanent"


class Transport(Protocol):
    """Sends one HTTP POST; returns the status code or raises :class:`TransportError`."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout_s: float) -> int: ...


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class MemoryTransport:
    """An in-memory :class:`Transport`: records requests, answers from a script.

    ``responses`` is consumed in order (an int is a status, ``None`` a transport failure);
    when it runs out every request gets ``default``.
    """

    responses: list[int | None] = field(default_factory=list)
    default: int = 200
    requests: list[Request] = field(default_factory=list)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout_s: float) -> int:
        self.requests.append(Request(url, body, dict(headers)))
        status = self.responses.pop(0) if self.responses else self.default
        if status is None:
            raise TransportError("connection refused (scripted)")
        return status


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One receiver: where, with which secret, and from which severity on."""

    name: str
    url: str
    secret: bytes
    min_severity: str = "medium"
    timeout_s: float = 5.0
    include_holdout: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per alert, their backoff, and when a failing target is skipped for a while."""

    max_attempts: int = 6
    base_s: float = 0.5
    max_s: float = 30.0
    open_after: int = 3
    open_for_s: float = 60.0


class WebhookDispatcher:
    """A :class:`~alerts.dispatch.Dispatcher` that POSTs signed alerts to one target.

    Retries with :func:`backoff_delay` until delivered, a permanent status, or
    ``policy.max_attempts`` attempts; never raises for a failed delivery (the result says
    ``dead`` with the reason, and the caller dead-letters the alert).
    """

    def __init__(self, target: WebhookTarget, transport: Transport, *,
                 policy: RetryPolicy = RetryPolicy(),
                 clock: Callable[[], float],
                 random: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.name = target.name
        self.target = target
        self._transport = transport
        self._policy = policy
        self._clock = clock
        self._random = random
        self._sleep = sleep
        self._failures = 0  # alerts in a row this target gave up on
        self._open_until = float("-inf")

    def wants(self, alert: Alert) -> bool:
        if alert.holdout and not self.target.include_holdout:
            return False  # the holdout gets no action: a CRM that saw it would act on it
        return severity_rank(alert.severity) >= severity_rank(self.target.min_severity)

    async def dispatch(self, alert: Alert) -> Delivery:
        policy = self._policy
        if self._clock() < self._open_until:
            return Delivery("dead", 0, f"target unavailable: gave up on {self._failures} alerts"
                                       f" in a row, not tried for {policy.open_for_s:g} s",
                            code="webhook_unavailable")
        delivery = await self._attempts(alert)
        if delivery.code == "webhook_failed":
            self._failures += 1
            if self._failures >= policy.open_after:
                self._open_until = self._clock() + policy.open_for_s
        else:
            self._failures = 0
        return delivery

    async def _attempts(self, alert: Alert) -> Delivery:
        target, policy = self.target, self._policy
        last = ""
        for attempt in range(1, policy.max_attempts + 1):
            headers = signed_headers(target.secret, alert.body, alert.alert_id, self._clock(),
                                     attempt)
            try:
                status = await self._transport.post(target.url, alert.body, headers,
                                                    target.timeout_s)
            except TransportError as exc:
                verdict: Verdict = "retry"
                last = f"transport error: {exc}"
            else:
                verdict = judge(status)
                last = f"HTTP {status}"
            if verdict == "delivered":
                return Delivery("delivered", attempt, last)
            if verdict == "permanent":
                return Delivery("dead", attempt, f"{last} (not retryable)",
                                code="webhook_rejected")
            if attempt < policy.max_attempts:
                await self._sleep(backoff_delay(attempt, policy.base_s, policy.max_s,
                                                self._random()))
        return Delivery("dead", policy.max_attempts,
                        f"gave up after {policy.max_attempts} attempts, last: {last}",
                        code="webhook_failed")


Outcome = tuple[int, int, str, Delivery]
"""(queue, position in the queue, dispatcher name, what happened)."""


async def deliver_independently(dispatchers: Sequence[Dispatcher], store: DeliveredStore,
                                queues: Sequence[Sequence[Alert]],
                                concurrency: int) -> list[Outcome]:
    """Deliver every queue (one customer's alerts, in order) to every dispatcher.

    Each dispatcher works through the queues on its own, up to ``concurrency`` queues at once:
    a target that hangs or keeps failing delays only its own deliveries. Returns one outcome
    per alert and dispatcher, ordered by queue, position, then dispatcher. An error (e.g. the
    delivered-ids store is down) is raised once every delivery has finished.
    """
    async def run(d: Dispatcher, gate: asyncio.Semaphore, q: int) -> list[Outcome]:
        out: list[Outcome] = []
        async with gate:
            for i, alert in enumerate(queues[q]):
                out.append((q, i, d.name, await deliver_once(d, store, alert)))
        return out

    jobs = []
    for d in dispatchers:
        gate = asyncio.Semaphore(concurrency)
        jobs += [run(d, gate, q) for q in range(len(queues))]
    done = await asyncio.gather(*jobs, return_exceptions=True)
    for result in done:
        if isinstance(result, BaseException):
            raise result
    order = {d.name: n for n, d in enumerate(dispatchers)}
    flat = [o for result in done if not isinstance(result, BaseException) for o in result]
    return sorted(flat, key=lambda o: (o[0], o[1], order[o[2]]))
