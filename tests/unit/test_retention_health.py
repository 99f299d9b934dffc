"""Issue 16 in operation: the retention process's counts (checkpointed, so exactly once across a
restart), its metric families and its /healthz, /readyz and /metrics server."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka.strategy import Batch
from streams.observability import sources
from streams.observability.sources import retention_metrics
from streams.retention.health import serve_retention_health
from streams.retention.service import RetentionService
from streams.retention.tally import RetentionTally
from streams.settings import load_settings
from streams.timefmt import format_ts
from tests.unit.test_retention_live import DAY, T0, MemoryRetentionStore, _action, _rec

ACTIONS, LABELS, EVENTS = "retention-actions", "churn-labels", "customer-events"


def _inputs() -> list[Any]:
    offers = [{"offer": "free_month", "score": 0.4}]
    recs = [_rec(ACTIONS, 0, _action(0, offers=offers,
                                     policy={"context": "fading|engagement", "explored": True})),
            _rec(ACTIONS, 1, _action(1, offers=offers,
                                     policy={"context": "fading|engagement", "explored": False})),
            _rec(ACTIONS, 2, _action(2, holdout=True)),
            _rec(ACTIONS, 3, _action(0)),  # a duplicate id: not counted again
            _rec(ACTIONS, 4, b"{not json"),
            _rec(ACTIONS, 5, {"customer_id": "c7"}),  # missing fields
            _rec(LABELS, 0, {"label_id": "l1", "customer_id": "c1",
                             "ts": format_ts(T0 + DAY), "churned": True}, "c1"),
            _rec(LABELS, 1, b"{}", "c5"),  # malformed label: skipped (the learner DLQs it)
            _rec(EVENTS, 0, {"event_id": "o1", "customer_id": "c2",
                             "event_type": "offer_declined", "ts": format_ts(T0 + 60),
                             "properties": {"offer": "free_month"}}, "c2")]
    return recs


def _families(svc: RetentionService) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in retention_metrics(svc, 1e9):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_counts_follow_the_checkpoint_and_survive_a_restart_once() -> None:
    settings = load_settings(retention={"checkpoint_s": 1e-9, "horizon_days": 30})
    store = MemoryRetentionStore()
    svc = RetentionService(settings, store)  # type: ignore[arg-type]
    await svc.start()
    assert svc.locked
    await svc.process(Batch(_inputs()))
    t = svc.tally
    assert (t.actions, t.holdout, t.with_offers, t.policy, t.explored) == (3, 1, 2, 2, 1)
    assert t.outcomes == {"churned": 1}
    assert t.input_errors == {"action:bad_json": 1, "action:missing_field": 1,
                              "label:missing_field": 1}
    assert svc.loop.counts.duplicate_actions == 1
    assert store.saved is not None
    assert orjson.loads(store.saved[1])["tally"] == t.to_json()
    # a restart from that checkpoint resumes the totals; the same records are not re-read
    again = RetentionService(settings, store)  # type: ignore[arg-type]
    await again.start()
    assert again.tally == t
    late = _rec(LABELS, 2, {"label_id": "l2", "customer_id": "zz",
                            "ts": format_ts(T0 + 40 * DAY), "churned": True}, "zz")
    await again.process(Batch([late]))  # the horizon passes: c0 and c2 stayed
    assert again.tally.outcomes == {"churned": 1, "stayed": 2}
    assert again.tally.joined == 3 and again.tally.actions == 3

    fams = _families(again)
    assert fams["churnpulse_retention_actions_read_total"][()] == 3
    assert fams["churnpulse_retention_actions_with_offers_total"][()] == 2
    assert fams["churnpulse_retention_actions_holdout_total"][()] == 1
    assert fams["churnpulse_retention_actions_duplicate_total"][()] == 1
    decisions = fams["churnpulse_retention_policy_decisions_total"]
    assert decisions[(("explored", "true"),)] == 1 and decisions[(("explored", "false"),)] == 1
    outcomes = fams["churnpulse_retention_outcomes_total"]
    assert outcomes[(("outcome", "churned"),)] == 1 and outcomes[(("outcome", "stayed"),)] == 2
    assert fams["churnpulse_retention_rewards_total"][()] == 2  # actioned c0, c1; not c2
    assert fams["churnpulse_retention_offer_answers_total"][()] == 1
    errors = fams["churnpulse_retention_input_errors_total"]
    assert errors[(("reason", "action:bad_json"),)] == 1
    assert fams["churnpulse_retention_pending_actions"][()] == 0
    assert fams["churnpulse_retention_checkpoint_version"][()] == again.version >= 2


def test_a_checkpoint_from_before_the_tally_loads_as_zeros() -> None:
    assert RetentionTally.from_json(None) == RetentionTally()
    assert RetentionTally.from_json({"actions": 4}).actions == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Redis:
    def __init__(self) -> None:
        self.up = True

    async def ping(self) -> bool:
        if not self.up:
            raise ConnectionError("redis down")
        return True


async def test_server_is_live_at_once_ready_with_the_lock_and_serves_the_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the assignment is process-wide: a retention consumer run earlier in this process (the
    # integration tests, as CI orders them) would make "partitions" ok from the start
    from streams.observability import metrics
    monkeypatch.delitem(metrics._owned, "retention", raising=False)
    port = _free_port()
    settings = load_settings(metrics={"retention_port": port},
                             retention={"checkpoint_s": 1e-9, "horizon_days": 30})
    svc = RetentionService(settings, MemoryRetentionStore())  # type: ignore[arg-type]
    redis = _Redis()
    server = await serve_retention_health(settings, svc, redis)
    assert server is not None and server.port == port
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as r:
                assert r.status == 200 and (await r.json())["process"] == "retention"
            async with http.get(base + "/readyz") as r:  # before the lock and the consumer
                body = await r.json()
                assert r.status == 503 and body["checks"]["redis"] == "ok"
                assert body["checks"]["lock"].startswith("retention lock not held")
                assert body["checks"]["partitions"] != "ok"
            await svc.start()
            server.checks["partitions"] = _ok  # the runner's assignment: integration test
            async with http.get(base + "/readyz") as r:
                assert r.status == 200, await r.text()
            redis.up = False
            async with http.get(base + "/readyz") as r:
                assert r.status == 503
                assert (await r.json())["checks"]["redis"] == "ConnectionError: redis down"
            await svc.process(Batch(_inputs()))
            async with http.get(base + "/metrics") as r:
                text = await r.text()
        got = {s.name: s.value for f in text_string_to_metric_families(text)
               for s in f.samples if not s.labels}
        assert got["churnpulse_retention_actions_read_total"] == 3
        assert got["churnpulse_retention_actions_with_offers_total"] == 2
    finally:
        await server.stop()
        sources.SOURCES.remove("retention")


async def _ok() -> None:
    return None
