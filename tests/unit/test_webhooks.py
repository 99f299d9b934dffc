"""Pure webhook parts: signatures, verification, backoff, retries and dedup (in-memory fakes)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import orjson
import pytest

from alerts.dispatch import (
    Alert,
    BadAlert,
    LogSink,
    MemoryDeliveredStore,
    deliver_once,
    parse_alert,
)
from alerts.webhooks import (
    MemoryTransport,
    RetryPolicy,
    SignatureError,
    WebhookDispatcher,
    WebhookTarget,
    backoff_delay,
    backoff_schedule,
    judge,
    sign,
    signed_headers,
    verify,
)

SECRET = b"whsec-test"


def make_alert(alert_id: str = "c-1:1000:high", severity: str = "high") -> Alert:
    record = {"schema_version": 1, "alert_id": alert_id, "customer_id": "c-1",
              "severity": severity, "score": 0.8, "kind": "opened"}
    body = orjson.dumps(record)
    return parse_alert(orjson.loads(body), body)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def dispatcher(transport: MemoryTransport, sleeps: Sleeps, *, max_attempts: int = 4,
               min_severity: str = "medium") -> WebhookDispatcher:
    target = WebhookTarget("crm", "http://receiver/hook", SECRET, min_severity)
    return WebhookDispatcher(target, transport, policy=RetryPolicy(max_attempts, 0.5, 4.0),
                             clock=lambda: 1_700_000_000.0, random=lambda: 1.0, sleep=sleeps)


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"alert_id":"a"}'
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, body) == f"v1={expected}"
    headers = signed_headers(SECRET, body, "a", 1_700_000_000.7, attempt=3)
    assert headers["X-Churnpulse-Timestamp"] == "1700000000"
    assert headers["Idempotency-Key"] == "a"
    assert headers["X-Churnpulse-Attempt"] == "3"


def test_verify_accepts_the_right_secret_and_any_header_case() -> None:
    body = b'{"x":1}'
    headers = {k.lower(): v for k, v in signed_headers(SECRET, body, "a", 1000.0).items()}
    assert verify([b"old", SECRET], body, headers, now=1100.0) == 1000


@pytest.mark.parametrize(("secrets", "body", "now", "message"), [
    ([b"wrong"], b'{"x":1}', 1000.0, "does not match"),
    ([SECRET], b'{"x":2}', 1000.0, "does not match"),          # body tampered with
    ([SECRET], b'{"x":1}', 1000.0 + 301, "tolerance"),          # stale (replay)
    ([SECRET], b'{"x":1}', 1000.0 - 301, "tolerance"),          # from the future
])
def test_verify_rejects(secrets: list[bytes], body: bytes, now: float, message: str) -> None:
    headers = signed_headers(SECRET, b'{"x":1}', "a", 1000.0)
    with pytest.raises(SignatureError, match=message):
        verify(secrets, body, headers, now=now)


def test_verify_rejects_missing_headers() -> None:
    with pytest.raises(SignatureError, match="missing"):
        verify([SECRET], b"{}", {"Idempotency-Key": "a"}, now=0.0)
    with pytest.raises(SignatureError, match="unix seconds"):
        verify([SECRET], b"{}", {"X-Churnpulse-Timestamp": "soon",
                                 "X-Churnpulse-Signature": "v1=00"}, now=0.0)


def test_backoff_doubles_is_capped_and_jitter_stays_within_half_and_full() -> None:
    assert backoff_schedule(6, 0.5, 4.0) == [0.5, 1.0, 2.0, 4.0, 4.0]
    for attempt in range(1, 8):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        low, high = backoff_delay(attempt, 0.5, 4.0, 0.0), backoff_delay(attempt, 0.5, 4.0, 1.0)
        assert (low, high) == (ceiling / 2, ceiling)
        assert low <= backoff_delay(attempt, 0.5, 4.0, 0.37) <= high
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(0, 0.5, 4.0, 0.5)


def test_judge_statuses() -> None:
    assert [judge(s) for s in (200, 201, 299)] == ["delivered"] * 3
    assert [judge(s) for s in (408, 425, 429, 500, 502, 503)] == ["retry"] * 6
    assert [judge(s) for s in (301, 400, 401, 404, 422)] == ["permanent"] * 5


async def test_retries_until_delivered_with_backoff_and_the_same_idempotency_key() -> None:
    transport = MemoryTransport(responses=[503, None, 500])
    sleeps = Sleeps()
    delivery = await dispatcher(transport, sleeps).dispatch(make_alert())
    assert (delivery.status, delivery.attempts) == ("delivered", 4)
    assert sleeps.waits == [0.5, 1.0, 2.0]
    assert {r.headers["Idempotency-Key"] for r in transport.requests} == {"c-1:1000:high"}
    assert [r.headers["X-Churnpulse-Attempt"] for r in transport.requests] == ["1", "2", "3", "4"]
    for request in transport.requests:
        verify([SECRET], request.body, request.headers, now=1_700_000_000.0)


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    transport = MemoryTransport(default=503)
    sleeps = Sleeps()
    delivery = await dispatcher(transport, sleeps, max_attempts=3).dispatch(make_alert())
    assert (delivery.status, delivery.attempts, delivery.code) == ("dead", 3, "webhook_failed")
    assert "HTTP 503" in delivery.detail
    assert len(transport.requests) == 3 and len(sleeps.waits) == 2


async def test_a_permanent_status_dead_letters_at_once() -> None:
    transport = MemoryTransport(responses=[400])
    delivery = await dispatcher(transport, Sleeps()).dispatch(make_alert())
    assert (delivery.status, delivery.attempts, delivery.code) == ("dead", 1, "webhook_rejected")


async def test_deliver_once_skips_delivered_ids_and_keeps_failed_ones_retryable() -> None:
    store = MemoryDeliveredStore()
    ok = MemoryTransport()
    hook = dispatcher(ok, Sleeps())
    first = await deliver_once(hook, store, make_alert())
    again = await deliver_once(hook, store, make_alert())
    assert (first.status, again.status) == ("delivered", "duplicate")
    assert len(ok.requests) == 1

    failing = dispatcher(MemoryTransport(default=500), Sleeps(), max_attempts=2)
    dead = await deliver_once(failing, store, make_alert("c-1:2000:critical", "critical"))
    assert dead.status == "dead"
    assert not await store.seen("crm", "c-1:2000:critical")  # a re-published dead letter goes


async def test_min_severity_filters_per_target() -> None:
    transport = MemoryTransport()
    hook = dispatcher(transport, Sleeps(), min_severity="critical")
    delivery = await deliver_once(hook, MemoryDeliveredStore(), make_alert(severity="high"))
    assert delivery.status == "skipped" and transport.requests == []


async def test_log_sink_writes_one_line_per_alert() -> None:
    lines: list[str] = []
    sink = LogSink(lines.append)
    store = MemoryDeliveredStore()
    await deliver_once(sink, store, make_alert())
    await deliver_once(sink, store, make_alert())
    assert len(lines) == 1 and lines[0].startswith("ALERT high opened customer=c-1")
    raw: list[str] = []
    await LogSink(raw.append, json_lines=True).dispatch(make_alert())
    assert orjson.loads(raw[0])["alert_id"] == "c-1:1000:high"


@pytest.mark.parametrize(("record", "code"), [
    ([1, 2], "not_an_object"),
    ({"customer_id": "c", "severity": "high"}, "missing_field"),
    ({"alert_id": "", "customer_id": "c", "severity": "high"}, "bad_field"),
    ({"alert_id": "a", "customer_id": "c", "severity": "low"}, "bad_field"),
    ({"schema_version": 2, "alert_id": "a", "customer_id": "c", "severity": "high"},
     "unsupported_schema"),
])
def test_malformed_alerts_are_named(record: object, code: str) -> None:
    with pytest.raises(BadAlert) as info:
        parse_alert(record, b"")
    assert info.value.code == code


def test_targets_and_tokens_from_the_environment_print_masked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from streams.cli.main import main
    from streams.settings import load_settings

    monkeypatch.setenv("CHURN_WEBHOOK__TARGETS", json.dumps([
        {"name": "crm", "url": "https://crm.example/hook", "secret": "whsec-1-0123456789",
         "min_severity": "high"}]))
    monkeypatch.setenv("CHURN_DASHBOARD__TOKENS", json.dumps({"alice": "tok-alice-0123456789"}))
    settings = load_settings()
    target = settings.webhook.targets[0]
    assert (target.name, target.min_severity) == ("crm", "high")
    assert target.secret.get_secret_value() == "whsec-1-0123456789"
    assert settings.dashboard.tokens["alice"].get_secret_value() == "tok-alice-0123456789"
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert "whsec-1-0123456789" not in printed and "tok-alice-0123456789" not in printed
    assert json.loads(printed)["webhook"]["targets"][0]["secret"] == "**********"


def test_a_target_needs_an_http_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from streams.settings import load_settings

    monkeypatch.setenv("CHURN_WEBHOOK__TARGETS", '[{"name": "x", "url": "ftp://h", "secret": "s"}]')
    with pytest.raises(ValidationError, match="url"):
        load_settings()


async def test_holdout_alerts_are_not_sent_unless_the_target_asks_but_are_logged() -> None:
    record = {"alert_id": "c-9:1:high", "customer_id": "c-9", "severity": "high",
              "holdout": True, "kind": "opened", "score": 0.9}
    held = parse_alert(record, orjson.dumps(record))
    transport = MemoryTransport()
    store = MemoryDeliveredStore()
    skipped = await deliver_once(dispatcher(transport, Sleeps()), store, held)
    assert skipped.status == "skipped" and transport.requests == []
    wanting = WebhookDispatcher(
        WebhookTarget("lake", "http://lake/hook", SECRET, include_holdout=True), transport,
        clock=lambda: 0.0, random=lambda: 0.0, sleep=Sleeps())
    assert (await deliver_once(wanting, store, held)).status == "delivered"
    lines: list[str] = []
    await deliver_once(LogSink(lines.append), store, held)
    assert lines[0].endswith("(holdout: no action)")


# -- issue 12: insecure targets, dead targets ----------------------------------------------
GOOD_SECRET = "whsec-0123456789abcdef"


@pytest.mark.parametrize(("target", "message"), [
    ({"url": "http://crm.example/hook"}, "https"),
    ({"url": "http://crm.example/hook", "allow_insecure_http": True}, "localhost"),
    ({"url": "https://crm.example/hook", "secret": ""}, "secret"),
    ({"url": "https://crm.example/hook", "secret": "short"}, "secret"),
    ({"url": "https:///hook"}, "host"),
])
def test_settings_refuse_clear_text_targets_and_weak_secrets(
        monkeypatch: pytest.MonkeyPatch, target: dict[str, object], message: str) -> None:
    import json

    from pydantic import ValidationError

    from streams.settings import load_settings

    monkeypatch.setenv("CHURN_WEBHOOK__TARGETS", json.dumps(
        [{"name": "crm", "secret": GOOD_SECRET, **target}]))
    with pytest.raises(ValidationError, match=message):
        load_settings()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/h",
                                 "http://[::1]:9/h"])
def test_clear_text_only_to_localhost_and_only_when_allowed(url: str) -> None:
    from alerts.webhooks import target_problem

    assert target_problem(url, GOOD_SECRET, allow_insecure_http=True) is None
    assert "https" in (target_problem(url, GOOD_SECRET) or "")
    assert target_problem("https://crm.example/hook", GOOD_SECRET) is None


class Gate:
    """A transport that blocks every POST until released (a receiver that hangs)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   timeout_s: float) -> int:
        self.calls += 1
        await self.release.wait()
        return 503


async def test_a_hanging_target_does_not_delay_the_other_targets() -> None:
    from alerts.webhooks import deliver_independently

    hanging, good = Gate(), MemoryTransport()
    dead = WebhookDispatcher(WebhookTarget("dead", "https://dead/h", SECRET), hanging,
                             policy=RetryPolicy(1, 0.5, 4.0), clock=lambda: 0.0,
                             random=lambda: 0.0, sleep=Sleeps())
    crm = WebhookDispatcher(WebhookTarget("crm", "https://crm/h", SECRET), good,
                            clock=lambda: 0.0, random=lambda: 0.0, sleep=Sleeps())
    queues = [[make_alert(f"c-{c}:{i}:high") for i in range(3)] for c in range(4)]
    store = MemoryDeliveredStore()
    task = asyncio.create_task(deliver_independently([dead, crm], store, queues, 2))
    for _ in range(500):  # every task gets the loop many times over (no timing involved)
        if len(good.requests) == 12:
            break
        await asyncio.sleep(0)
    assert len(good.requests) == 12  # every alert reached crm while dead still hangs
    assert not task.done() and hanging.calls == 2  # dead: its own 2 customers at a time
    hanging.release.set()
    results = await asyncio.wait_for(task, 5.0)
    by_target = {name: [d.status for _, _, n, d in results if n == name]
                 for name in ("dead", "crm")}
    assert by_target == {"dead": ["dead"] * 12, "crm": ["delivered"] * 12}
    assert [(q, i) for q, i, n, _ in results if n == "crm"] == [
        (q, i) for q in range(4) for i in range(3)]
    # in order per customer: c-0's alerts reached crm as 0, 1, 2
    ids = [r.headers["Idempotency-Key"] for r in good.requests]
    assert [x for x in ids if x.startswith("c-0:")] == ["c-0:0:high", "c-0:1:high", "c-0:2:high"]


async def test_a_target_that_keeps_failing_is_skipped_for_a_while() -> None:
    now = [1000.0]
    transport = MemoryTransport(default=503)
    target = WebhookTarget("crm", "https://crm/h", SECRET)
    hook = WebhookDispatcher(target, transport,
                             policy=RetryPolicy(2, 0.5, 4.0, open_after=2, open_for_s=60.0),
                             clock=lambda: now[0], random=lambda: 0.0, sleep=Sleeps())
    first = [await hook.dispatch(make_alert(f"c-1:{i}:high")) for i in range(2)]
    assert [d.code for d in first] == ["webhook_failed", "webhook_failed"]
    assert len(transport.requests) == 4
    skipped = await hook.dispatch(make_alert("c-1:9:high"))
    assert (skipped.status, skipped.code, skipped.attempts) == ("dead", "webhook_unavailable", 0)
    assert len(transport.requests) == 4  # no POST while the circuit is open
    now[0] += 61.0
    transport.default = 200
    assert (await hook.dispatch(make_alert("c-1:10:high"))).status == "delivered"
    transport.default = 503
    assert (await hook.dispatch(make_alert("c-1:11:high"))).code == "webhook_failed"
    assert (await hook.dispatch(make_alert("c-1:12:high"))).code == "webhook_failed"  # 2 again
    assert (await hook.dispatch(make_alert("c-1:13:high"))).code == "webhook_unavailable"
