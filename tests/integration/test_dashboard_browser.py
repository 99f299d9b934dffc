"""The support dashboard end to end: a real ``churnpulse dashboard`` on the real broker and
Redis, driven by headless chromium (DevTools protocol), and its HTTP API without a browser."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.contracts import CustomerEvent
from streams.redis.feature_store import RedisFeatureStore
from streams.settings import FeatureSettings
from streams.timefmt import format_ts
from tests.integration.cdp import chromium_page
from tests.integration.worker_proc import wait_until

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOPICS = ("events", "labels", "scores", "alerts", "dead_letter", "model_events",
          "retention_actions", "alert_outcomes")


@dataclass
class Dashboard:
    url: str
    token: str
    topics: dict[str, str]
    prefix: str
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def dashboard(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    tag = uuid.uuid4().hex[:8]
    topics = {name: f"{name.replace('_', '-')}-{tag}" for name in TOPICS}
    token = f"tok-{uuid.uuid4().hex}"
    env = dict(os.environ)
    env.update({f"CHURN_TOPICS__{k.upper()}": v for k, v in topics.items()})
    env.update({"CHURN_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, "CHURN_REDIS__URL": redis_url,
                "CHURN_REDIS__KEY_PREFIX": f"dash{tag}", "CHURN_KAFKA__PARTITIONS": "2",
                "CHURN_DASHBOARD__TOKENS": orjson.dumps({"alice": token}).decode()})
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "dashboard", "--port", "0"],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_until(lambda: b"listening on" in log.read_bytes() or proc.poll() is not None, 60,
                   "the dashboard to listen")
        assert proc.poll() is None, log.read_text()
        found = re.search(r"listening on (http://\S+)", log.read_text())
        assert found, log.read_text()
        yield Dashboard(found.group(1), token, topics, f"dash{tag}", proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"dash{tag}:*"):
            client.delete(key)
        client.close()


async def caught_up(dash: Dashboard, **read: int) -> None:
    """Wait for the dashboard's feed to be caught up and to have read at least ``read`` records
    of each kind (``scores=36``, ``alerts=2``: its ``/healthz`` counts).

    ``caught_up`` alone is not enough for records published after the dashboard started: it
    reached the end offsets it saw at start (empty topics: at once), not the records since.
    """
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while True:
            async with http.get(dash.url + "healthz") as response:
                health = await response.json()
                if health["caught_up"] and all(health["read"].get(kind, 0) >= n
                                               for kind, n in read.items()):
                    return
            assert time.monotonic() < deadline, dash.log.read_text()
            await asyncio.sleep(0.1)


DRIVERS = [
    {"feature": "count.session.7d", "value": 2.0, "contribution": 0.92, "change": -7.0,
     "text": "sessions in the last 7 days fell from 9 to 2"},
    {"feature": "days_since.last", "value": 6.0, "contribution": 0.55, "change": 5.0,
     "text": "no activity for 6 days"},
    {"feature": "ratio.support_ticket_per_session", "value": 1.5, "contribution": 0.31,
     "change": 1.1, "text": "support tickets per session rose to 1.5"},
    {"feature": "count.purchase.30d", "value": 3.0, "contribution": -0.12, "change": None,
     "text": "still purchasing (3 in 30 days)"},
]
CUSTOMERS = {  # id: (severity, score, team, segment, value)
    "acme-corp": ("critical", 0.93, "customer-success", "power users", "high"),
    "globex": ("high", 0.81, "account-management", "casual", "mid"),
    "initech": ("medium", 0.64, "customer-success", "casual", "low"),
    "umbrella": ("high", 0.77, "growth", "power users", "high"),
    "hooli": ("critical", 0.88, "account-management", "power users", "high"),
}


def alert_record(cid: str, now: float) -> dict[str, Any]:
    severity, score, team, segment, value = CUSTOMERS[cid]
    episode = f"{cid}:{int((now - 3600) * 1000)}"
    return {"schema_version": 1, "alert_id": f"{episode}:{severity}", "kind": "opened",
            "customer_id": cid, "episode_id": episode, "severity": severity,
            "previous_severity": None, "score": score, "previous_score": 0.41,
            "model_version": "3-logreg", "score_id": f"{cid}:e-9:3-logreg", "ts": format_ts(now),
            "processed_at": format_ts(now), "source_timestamp_ms": int(now * 1000),
            "drivers": DRIVERS, "summary": "Sessions in the last 7 days fell from 9 to 2 and "
                                            "there was no activity for 6 days.",
            "lifecycle_stage": "high_risk" if severity == "critical" else "at_risk",
            "segment": segment, "recommended_action": "csm_call", "team": team,
            "sla_hours": 4.0 if severity == "critical" else 24.0, "holdout": False,
            "customer_value": value}


def score_history(cid: str, now: float, points: int = 36) -> list[dict[str, Any]]:
    final = CUSTOMERS[cid][1]
    out = []
    for i in range(points):
        ts = now - (points - i) * 1200
        wobble = 0.03 * ((i * 7) % 5 - 2) / 2
        score = max(0.02, min(0.99, 0.22 + (final - 0.22) * (i / (points - 1)) ** 1.6 + wobble))
        out.append({"schema_version": 1, "score_id": f"{cid}:e-{i}:3-logreg",
                    "customer_id": cid, "score": round(score, 4), "model_version": "3-logreg",
                    "ts": format_ts(ts), "reason": "event", "last_event_id": f"e-{i}",
                    "events_total": 10 + i, "events_applied": 1, "scored_at": format_ts(ts),
                    "source_timestamp_ms": int(ts * 1000), "drivers": DRIVERS})
    return out


async def publish(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send(topic, orjson.dumps(r), key=str(r["customer_id"]).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def seed_features(redis_url: str, prefix: str, cid: str, now: float) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = RedisFeatureStore(client, FeatureSettings(), prefix)
        day = 86400.0
        events = [CustomerEvent(f"e-{i}", cid, kind, now - age * day, value)
                  for i, (kind, age, value) in enumerate(
                      [("session", a, None) for a in (29, 27, 25, 22, 20, 18, 15, 12, 9, 8)]
                      + [("support_ticket", a, None) for a in (10, 7, 6.5)]
                      + [("purchase", a, 49.0) for a in (28, 14, 6.2)]
                      + [("login", 6.1, None)])]
        await store.apply(sorted(events, key=lambda e: e.ts))
    finally:
        await client.aclose()


async def read_outcomes(bootstrap: str, topic: str, want: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    got: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 20
        while len(got) < want:
            assert time.monotonic() < deadline, f"{len(got)} outcomes"
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(orjson.loads(m.value) for m in msgs)
    finally:
        await consumer.stop()
    return got


STATUS = {  # the learner's status, as `model status` reads it (calibration panel, issue 10)
    "version": 12, "champion": "logreg", "resolved": 5400, "positives": 260,
    "served": {"ece": 0.011, "n": 5400, "positives": 260, "reliability": [
        {"lo": 0.0, "hi": 0.1, "n": 4700, "predicted": 0.028, "observed": 0.031},
        {"lo": 0.1, "hi": 0.2, "n": 520, "predicted": 0.14, "observed": 0.13},
        {"lo": 0.2, "hi": 0.3, "n": 130, "predicted": 0.24, "observed": 0.26},
        {"lo": 0.4, "hi": 0.5, "n": 50, "predicted": 0.44, "observed": 0.4}]},
    "models": {"logreg": {"calibration": {"a": 0.93, "b": -0.08, "shift": -2.9,
                                          "churners": 260, "stayers": 5140}}}}


def write_status(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:learner:status", orjson.dumps(STATUS))
    client.close()


def rows_js() -> str:
    return "[...document.querySelectorAll('#board tbody tr[data-customer]')]"


async def test_the_page_shows_alerts_live_filters_opens_a_customer_and_acknowledges(
        dashboard: Dashboard, kafka_bootstrap: str, redis_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    history = [s for cid in CUSTOMERS for s in score_history(cid, now)]
    await publish(kafka_bootstrap, dashboard.topics["scores"], history)  # before the page
    await seed_features(redis_url, dashboard.prefix, "acme-corp", now)
    write_status(redis_url, dashboard.prefix)
    await caught_up(dashboard, scores=len(history))  # the chart below draws all of acme-corp's
    async with chromium_page(tmp_path / "chromium") as page:
        await page.goto(f"{dashboard.url}?token={dashboard.token}")
        assert await page.js("location.search") == ""  # token moved into an HttpOnly cookie
        assert await page.js("document.cookie") == ""
        await page.wait_for("document.querySelector('#live').textContent === 'live'",
                            "the live connection")
        await page.wait_for("document.querySelector('#user').textContent.includes('alice')",
                            "the user name")
        assert await page.js("document.querySelectorAll('#feed li[data-alert-id]').length") == 0
        # the served model's reliability diagram: a bar and a count per bin, the ECE
        await page.wait_for("document.querySelectorAll('#calib-chart svg g.bin').length === 4",
                            "the reliability diagram")
        assert await page.js("document.querySelector('#calib-state').textContent") == \
            "calibrated · 12-logreg"
        assert "ECE 0.011" in await page.js("document.querySelector('#calib-ece').textContent")
        assert "n=4,700" in await page.js("document.querySelector('#calib-chart').textContent")

        published = time.monotonic()
        alerts = [alert_record(cid, now) for cid in CUSTOMERS]
        held = dict(alert_record("hooli", now), customer_id="wayne-ent", holdout=True,
                    alert_id="wayne-ent:1:critical", episode_id="wayne-ent:1", score=0.99)
        await publish(kafka_bootstrap, dashboard.topics["alerts"], [*alerts[:2], held,
                                                                    *alerts[2:]])
        await page.wait_for(f"document.querySelectorAll('#feed li[data-alert-id]').length"
                            f" === {len(alerts)}", "every alert in the live feed")
        feed_latency = time.monotonic() - published
        await page.wait_for(f"{rows_js()}.length === {len(alerts)}", "every customer on the board")
        order = await page.js(f"{rows_js()}.map(r => r.dataset.customer)")
        assert order == sorted(CUSTOMERS, key=lambda c: -CUSTOMERS[c][1])  # riskiest first

        await page.js("const s = document.querySelector('#filter-severity'); s.value = 'high';"
                      "s.dispatchEvent(new Event('change', {bubbles: true}))")
        await page.wait_for(f"{rows_js()}.map(r => r.dataset.customer).join() === "
                            "'globex,umbrella'", "the severity filter")
        await page.js("const t = document.querySelector('#filter-team');"
                      "t.value = 'growth'; t.dispatchEvent(new Event('change', {bubbles: true}))")
        await page.wait_for(f"{rows_js()}.map(r => r.dataset.customer).join() === 'umbrella'",
                            "the team filter")
        await page.js("for (const id of ['#filter-severity', '#filter-team']) {"
                      " document.querySelector(id).value = ''; }"
                      "const g = document.querySelector('#filter-segment'); g.value = 'casual';"
                      "g.dispatchEvent(new Event('change', {bubbles: true}))")
        await page.wait_for(f"{rows_js()}.map(r => r.dataset.customer).join() === "
                            "'globex,initech'", "the segment filter")
        await page.js("document.querySelector('#filter-segment').value = '';"
                      "document.querySelector('#filters').dispatchEvent("
                      "new Event('change', {bubbles: true}))")
        await page.wait_for(f"{rows_js()}.length === {len(alerts)}", "filters cleared")
        # the holdout customer (riskiest of all) only on request, marked, with no actions
        await page.js("document.querySelector('#filter-holdout').click()")
        await page.wait_for(f"{rows_js()}[0]?.dataset.customer === 'wayne-ent'",
                            "the holdout customer shown on request")
        await page.js("document.querySelector('#board tr[data-customer=\"wayne-ent\"]').click()")
        await page.wait_for("!document.querySelector('#cust-holdout').classList.contains("
                            "'hidden')", "the holdout banner")
        assert await page.js("document.querySelector('#btn-assign').disabled") is True
        await page.js("document.querySelector('#filter-holdout').click()")
        await page.wait_for(f"{rows_js()}.length === {len(alerts)}", "the holdout hidden again")
        assert "wayne-ent" not in await page.js(
            "[...document.querySelectorAll('#feed li')].map(li => li.textContent).join()")

        await page.js("document.querySelector('#board tr[data-customer=\"acme-corp\"]').click()")
        await page.wait_for("document.querySelector('#cust-id').textContent === 'acme-corp'",
                            "the customer view")
        points = await page.wait_for(
            "(() => { const d = document.querySelector('#chart path.line');"
            " return d && d.getAttribute('d').split('L').length; })()", "the score chart")
        assert points >= 36  # the history read from churn-scores (plus the alert's point)
        assert await page.js("document.querySelectorAll('#chart circle.mark').length") == 1
        drivers = await page.js("[...document.querySelectorAll('#drivers .text')]"
                                ".map(d => d.textContent)")
        assert drivers[0] == "sessions in the last 7 days fell from 9 to 2"
        activity = await page.wait_for(
            "[...document.querySelectorAll('#activity tbody tr td:first-child')]"
            ".map(td => td.textContent)", "recent activity from Redis")
        assert set(activity) == {"session", "support_ticket", "purchase", "login"}

        await page.js("document.querySelector('#btn-ack').click()")
        await page.wait_for("document.querySelector('#cust-status')?.dataset.status"
                            " === 'acknowledged'", "the acknowledged status")
        await page.wait_for("document.querySelector('#board tr[data-customer=\"acme-corp\"]')"
                            "?.dataset.status === 'acknowledged'", "the board row updated")
        await page.js("document.querySelector('#assignee').value = 'dana';"
                      "document.querySelector('#btn-assign').click()")
        await page.wait_for("document.querySelector('#cust-status')?.textContent"
                            " === 'assigned · dana'", "the assignment")
        await page.wait_for("document.querySelector('#action-msg').textContent"
                            " === 'assign recorded as alice'", "the confirmation")

        # a new alert while the customer is open shows up live too
        late = dict(alert_record("initech", now), severity="critical", kind="escalated",
                    previous_severity="medium", score=0.91)
        late["alert_id"] = f"{late['episode_id']}:critical"
        await publish(kafka_bootstrap, dashboard.topics["alerts"], [late])
        await page.wait_for(f"document.querySelector('#feed li').dataset.alertId === "
                            f"'{late['alert_id']}'", "the escalation at the top of the feed")
        await page.wait_for(f"{rows_js()}[1].dataset.customer === 'initech'",
                            "the escalated customer re-sorted")
        shot = await page.screenshot(ARTIFACTS / "dashboard.png")
        await page.js("document.querySelector('#calibration').scrollIntoView()")
        calib_shot = await page.screenshot(ARTIFACTS / "dashboard-calibration.png")
        assert page.console == [], page.console

    outcomes = await read_outcomes(kafka_bootstrap, dashboard.topics["alert_outcomes"], 2)
    acme = alerts[0]
    assert [(o["action"], o["by"], o["alert_id"], o["customer_id"]) for o in outcomes] == [
        ("acknowledge", "alice", acme["alert_id"], "acme-corp"),
        ("assign", "alice", acme["alert_id"], "acme-corp")]
    assert outcomes[1]["assignee"] == "dana"
    assert shot.stat().st_size > 20_000 and calib_shot.stat().st_size > 20_000
    with capsys.disabled():
        print(f"\nscreenshot: {shot}\nalerts in the browser feed {feed_latency * 1000:.0f} ms "
              f"after publishing ({len(alerts)} alerts)")


async def test_api_needs_a_token_and_validates_outcomes(dashboard: Dashboard,
                                                       kafka_bootstrap: str) -> None:
    now = time.time()
    alert = alert_record("globex", now)
    held = dict(alert_record("initech", now), holdout=True)
    await caught_up(dashboard)
    await publish(kafka_bootstrap, dashboard.topics["alerts"], [held, alert])
    bearer = {"Authorization": f"Bearer {dashboard.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(dashboard.url + "api/calibration", headers=bearer) as response:
            view = await response.json()  # no learner status in Redis yet
            assert view["state"] == "waiting" and "no resolved" in view["svg"]
        for path in ("api/board", "api/customers/globex", "api/stream", "api/calibration", ""):
            async with http.get(dashboard.url + path) as response:
                assert response.status == 401, path
        async with http.get(dashboard.url, headers=bearer) as response:
            assert response.status == 200
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Frame-Options"] == "DENY"
        async with http.get(dashboard.url + "?token=wrong") as response:
            assert response.status == 401
            assert "churnpulse_token" not in response.cookies
        async with http.get(dashboard.url + "api/board",
                            headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        await caught_up(dashboard, alerts=2)  # the holdout's 409 below needs it read too
        async with http.get(dashboard.url + "api/board", headers=bearer) as response:
            rows = (await response.json())["rows"]
        assert [r["alert_id"] for r in rows] == [alert["alert_id"]]  # the holdout only on request
        url = f"{dashboard.url}api/alerts/{alert['alert_id']}/outcome"
        async with http.post(url, data=b"action=resolve", headers={
                **bearer, "Content-Type": "application/x-www-form-urlencoded"}) as response:
            assert response.status == 415  # no form posts (CSRF)
        for body, status in (({"action": "delete"}, 400), ({"action": "assign"}, 400),
                             ({"action": "resolve", "note": 5}, 400)):
            async with http.post(url, json=body, headers=bearer) as response:
                assert response.status == status, body
        held_url = f"{dashboard.url}api/alerts/{held['alert_id']}/outcome"
        async with http.post(held_url, json={"action": "assign", "assignee": "x"},
                             headers=bearer) as response:
            assert response.status == 409  # nobody acts on the holdout
        async with http.post(held_url, json={"action": "acknowledge"},
                             headers=bearer) as response:
            assert response.status == 200
        async with http.post(f"{dashboard.url}api/alerts/nope/outcome", json={
                "action": "resolve"}, headers=bearer) as response:
            assert response.status == 404
        async with http.post(url, json={"action": "resolve", "note": "called, renewed"},
                             headers=bearer) as response:
            assert response.status == 200
            assert (await response.json())["entry"]["status"] == "resolved"
        async with http.get(dashboard.url + "api/board", headers=bearer) as response:
            assert (await response.json())["rows"] == []  # resolved ones are hidden by default
        async with http.get(dashboard.url + "api/board?status=resolved",
                            headers=bearer) as response:
            assert [r["customer_id"] for r in (await response.json())["rows"]] == ["globex"]
    outcomes = await read_outcomes(kafka_bootstrap, dashboard.topics["alert_outcomes"], 2)
    by_action = {o["action"]: o for o in outcomes}  # two customers: two partitions
    assert set(by_action) == {"acknowledge", "resolve"}
    assert by_action["acknowledge"]["customer_id"] == "initech"
    assert by_action["resolve"]["note"] == "called, renewed"
    assert by_action["resolve"]["outcome_id"].startswith(f"{alert['alert_id']}:resolve:")
