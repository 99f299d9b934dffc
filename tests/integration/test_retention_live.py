"""Issue 16 live, on the real Kafka and Redis: the retention process joins outcomes from the
topics exactly once across a crash, learns offers and rewards, and the alerter attaches the
published offers to its alerts."""

from __future__ import annotations

import asyncio
import pickle
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from alerts.bandit import BanditState
from alerts.policy import PolicyParams
from alerts.reco import OfferRecommender
from streams.cli.retention import outcomes_from
from streams.dev.crafted import crafted_scores, expected_alert_ids, publish
from streams.kafka.topic_reader import read_topic
from streams.kafka.topics import ensure_topics
from streams.redis.retention_store import AdviceWatcher, RetentionStore, advice_watcher
from streams.retention.run import ensure_outcomes_topic
from streams.retention.service import run_service
from streams.settings import Settings, TopicSettings, load_settings
from streams.signing import signer_from_settings
from streams.timefmt import format_ts

T0 = 1_767_225_600.0  # 2026-01-01
DAY = 86400.0


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    s = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "partitions": 2},
        redis={"url": redis_url, "key_prefix": key_prefix},
        topics={name: f"{name}-{tag}" for name in TopicSettings.model_fields},
        retention={"outcomes_topic": f"retention-outcomes-{tag}", "checkpoint_s": 0.2,
                   "horizon_days": 30, "poll_s": 0.2},
        security={"signing_key": "retention-test-key-" + "k" * 16},
        worker={"app_id": f"rt-{tag}"})
    ensure_topics(s.kafka, s.topics)
    ensure_outcomes_topic(s)
    return s


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


def _action(i: int) -> tuple[str, bytes]:
    cid = f"c-{i:03d}"
    holdout = i % 4 == 0
    rec = {"action_id": f"{cid}:0:high", "alert_id": f"{cid}:0:high", "customer_id": cid,
           "action": "none (holdout)" if holdout else "personal check-in email",
           "recommended_action": "personal check-in email", "holdout": holdout,
           "team": "customer success", "sla_hours": 24.0, "severity": "high",
           "driver_category": "engagement", "segment": "fading" if i % 2 else "power users",
           "ts": format_ts(T0 + i * 60), "decided_at": format_ts(T0 + i * 60)}
    return cid, orjson.dumps(rec)


def _label(cid: str, ts: float) -> tuple[str, bytes]:
    return cid, orjson.dumps({"label_id": f"l-{cid}-{ts:.0f}", "customer_id": cid,
                              "ts": format_ts(ts), "churned": True})


def _event(cid: str, n: int, kind: str, offer: str | None = None) -> tuple[str, bytes]:
    rec: dict[str, Any] = {"event_id": f"e-{cid}-{n}", "customer_id": cid, "event_type": kind,
                           "ts": format_ts(T0 + 3600 + n)}
    if offer is not None:
        rec["properties"] = {"offer": offer}
    return cid, orjson.dumps(rec)


async def _outcomes(settings: Settings) -> list[tuple[bytes | None, bytes | None]]:
    return await read_topic(settings, settings.retention.outcomes_topic, 30)


async def test_outcomes_once_across_a_crash_with_rewards_offers_and_dead_letters(
        settings: Settings, aredis: aioredis.Redis) -> None:
    t = settings.topics
    offers = []
    for i in range(40):
        cid = f"c-{i:03d}"
        offers.append(_event(cid, 0, "offer_accepted" if i % 2 else "offer_declined",
                             "discount_20"))
        offers.append(_event(cid, 1, "offer_declined" if i % 3 else "offer_accepted",
                             "free_month"))
        offers.append(_event(cid, 2, "session"))
    offers.append(_event("c-900", 3, "offer_accepted"))  # no properties.offer: skipped
    publish(settings.kafka.bootstrap_servers, t.events, offers)
    publish(settings.kafka.bootstrap_servers, t.retention_actions,
            [_action(i) for i in range(20)])
    publish(settings.kafka.bootstrap_servers, t.labels,
            [_label(f"c-{i:03d}", T0 + 5 * DAY) for i in range(1, 10)])

    task = asyncio.create_task(run_service(settings, aredis))
    try:
        await until(lambda: _count(settings, 9), 60, "the 9 churned outcomes")
    finally:
        task.cancel()  # a crash: whatever was not checkpointed is read again
        with pytest.raises(asyncio.CancelledError):
            await task
    await aredis.delete(RetentionStore(aredis, settings.redis.key_prefix).lock_key)

    publish(settings.kafka.bootstrap_servers, t.retention_actions,
            [_action(i) for i in range(20, 40)] + [("c-bad", b"{not json")])
    publish(settings.kafka.bootstrap_servers, t.labels, [_label("zz", T0 + 40 * DAY)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, aredis, stop))
    await until(lambda: _count(settings, 40), 60, "all 40 outcomes")
    stop.set()
    service = await asyncio.wait_for(task, 30)

    values = [v for _, v in await _outcomes(settings)]
    by_id: dict[str, bytes] = {}
    for v in values:
        assert v is not None
        oid = orjson.loads(v)["outcome_id"]
        assert by_id.setdefault(oid, v) == v  # a re-publication carries the same bytes
    assert sorted(by_id) == sorted(f"c-{i:03d}:0:high:outcome" for i in range(40))
    records = [orjson.loads(v) for v in by_id.values()]
    assert sorted(r["customer_id"] for r in records if r["outcome"] == "churned") == [
        f"c-{i:03d}" for i in range(1, 10)]
    assert {r["segment"] for r in records} == {"fading", "power users"}
    # rewards: the 30 actioned outcomes (7 churned), never the 10 holdout ones
    bandit = service.loop.bandit
    stats = [bandit.stats(f"{seg}|engagement", "personal check-in email")
             for seg in ("fading", "power users")]
    assert tuple(map(sum, zip(*stats, strict=True))) == (23, 7)
    assert service.loop.counts.offer_answers == 80
    assert service.skipped == {"offer:bad_field": 1}
    dead = await read_topic(settings, t.dead_letter, 30)
    assert len(dead) == 1 and dead[0][1] == b"{not json"
    # the report reads the topic: 40 customers, first outcome each
    got, counts = outcomes_from(values)
    assert len(got) == 40 and counts["malformed"] == 0
    assert counts["duplicates"] == len(values) - 40
    # what the alerter sees: the signed recommender and counts of the last checkpoint
    watcher = advice_watcher(settings, aredis)
    assert watcher is not None
    await watcher.refresh()
    advice = watcher.current()
    assert advice is not None and advice.recommender is not None
    assert set(advice.recommender.offers) == {"discount_20", "free_month"}
    assert advice.recommender.top("c-001", 1)[0].source == "popularity"  # 2 answers < 3
    assert advice.bandit is not None and advice.bandit.counts == bandit.counts
    await watcher.aclose()


async def _count(settings: Settings, n: int) -> bool:
    ids = {orjson.loads(v or b"{}").get("outcome_id") for _, v in await _outcomes(settings)}
    return len(ids) >= n


async def test_alerter_attaches_the_published_offers_and_refuses_unsigned_state(
        settings: Settings, aredis: aioredis.Redis) -> None:
    """Offers and the learning policy (on, no exploration) from a published checkpoint whose
    counts make ``discount offer`` the best action for unknown-segment engagement alerts."""
    from streams.alerter.service import build_alerter

    settings = settings.model_copy(update={"retention": settings.retention.model_copy(
        update={"bandit": True, "explore": 0.0, "min_pulls": 30})})
    store = RetentionStore(aredis, settings.redis.key_prefix, signer_from_settings(settings))
    counts = BanditState()
    for i in range(100):
        counts.learn("unknown|engagement", "discount offer", stayed=i % 10 != 0)
    rec = OfferRecommender(("discount_20", "free_month", "upgrade_trial", "pause_plan"))
    for i in range(20):
        rec.learn(f"u{i}", "free_month", True)
        rec.learn(f"u{i}", "pause_plan", i % 4 != 0)
        rec.learn(f"u{i}", "upgrade_trial", False)
    await store.save(1, {"loop": {}, "offsets": {}, "outbox": []}, counts.to_json(), rec)

    alerter = build_alerter(settings, aredis)
    task = asyncio.create_task(alerter.run())
    scores = crafted_scores(customers=40, per_customer=12, seed=5)
    first = [r for r in scores if r[0] < "c-00010"]
    rest = [r for r in scores if r[0] >= "c-00010"]
    try:
        publish(settings.kafka.bootstrap_servers, settings.topics.scores, first)
        n_first = len(expected_alert_ids(first, PolicyParams()))
        await until(lambda: _has(settings, settings.topics.alerts, n_first), 60,
                    "the first part's alerts")
        publish(settings.kafka.bootstrap_servers, settings.topics.scores, rest)
        n_all = n_first + len(expected_alert_ids(rest, PolicyParams()))
        await until(lambda: _has(settings, settings.topics.alerts, n_all), 60,
                    "the second part's alerts")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    alerts = [orjson.loads(v or b"") for _, v in await read_topic(settings,
                                                                    settings.topics.alerts)]
    later = [a for a in alerts if a["customer_id"] >= "c-00010"]
    assert len(later) >= 5 and all(a.get("advice_version") == "1" for a in later)
    for a in later:
        assert [o["offer"] for o in a["offers"]] == ["free_month", "pause_plan",
                                                     "discount_20"]
    actions = {a["action_id"]: a for _, v in await read_topic(
        settings, settings.topics.retention_actions) for a in [orjson.loads(v or b"")]}
    for a in later:
        action = actions[a["alert_id"]]
        assert action["offers"] == ["free_month", "pause_plan", "discount_20"]
        assert action["segment"] == a["segment"] == "unknown"  # no features in Redis
        assert a["recommended_action"] == "discount offer"  # the policy's, not the table's
        assert a["policy"]["table_action"] != "discount offer" and not a["policy"]["explored"]
        assert action["action"] == ("none (holdout)" if a["holdout"] else "discount offer")
        assert action["policy"]["context"] == "unknown|engagement"

    # an unsigned recommender put in Redis is never unpickled; the held advice stays
    watcher = AdviceWatcher(store, None, poll_s=0.0)
    await watcher.refresh()
    first_advice = watcher.current()
    assert first_advice is not None and first_advice.recommender is not None
    # a checkpoint without a new recommender: the counts are reloaded, the pickle is not
    await store.save(2, {"loop": {}, "offsets": {}, "outbox": []}, counts.to_json(), None)
    await watcher.refresh()
    second = watcher.current()
    assert second is not None and second.version == "2"
    assert second.recommender is first_advice.recommender
    await aredis.set(store.reco_key, pickle.dumps(rec))
    await aredis.set(store.reco_version_key, "3")
    await aredis.set(store.version_key, "3")
    await watcher.refresh()
    held = watcher.current()
    assert held is not None and held.version == "2"
    await watcher.aclose()  # the refresh current() started is not left running on a closing client


async def _has(settings: Settings, topic: str, n: int) -> bool:
    return len(await read_topic(settings, topic, 30)) >= n


def test_churnpulse_retention_killed_mid_stream_learns_each_outcome_once(
        kafka_bootstrap: str, redis_url: str, tmp_path: Any) -> None:
    """The real process, SIGKILLed while outcomes are being published: after a restart every
    action has exactly one outcome id on the topic (a re-publication is byte-identical) and
    the bandit counts in Redis hold each actioned outcome once."""
    import signal

    from streams.dev.pipeline import Pipeline, kill, wait_until
    from streams.kafka.topic_reader import read_topic_sync

    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    key = "retention-kill-test-" + "k" * 16
    env = {**p.alert_env(), "CHURN_RETENTION__OUTCOMES_TOPIC": f"rout-{p.tag}",
           "CHURN_RETENTION__HORIZON_DAYS": "30", "CHURN_RETENTION__CHECKPOINT_S": "0.3",
           "CHURN_SECURITY__SIGNING_KEY": key}
    settings = load_settings(kafka={"bootstrap_servers": kafka_bootstrap},
                             redis={"url": redis_url, "key_prefix": p.prefix},
                             retention={"outcomes_topic": f"rout-{p.tag}"},
                             security={"signing_key": key})
    actions_topic, labels_topic = f"actions-{p.tag}", f"labels-{p.tag}"
    n = 3000
    churners = {i for i in range(n) if i % 5 == 1}

    def outcome_ids() -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for _, v in read_topic_sync(settings, settings.retention.outcomes_topic, 30):
            assert v is not None
            assert out.setdefault(orjson.loads(v)["outcome_id"], v) == v
        return out

    try:
        p.start("retention", env, b"retention ready")
        for lo, hi in ((0, n // 2), (n // 2, n)):
            publish(kafka_bootstrap, actions_topic, [_action(i) for i in range(lo, hi)])
            publish(kafka_bootstrap, labels_topic,
                    [_label(f"c-{i:03d}", T0 + i * 60 + DAY) for i in range(lo, hi)
                     if i in churners])
            if lo == 0:  # kill while part 1's outcomes are being published
                wait_until(lambda: len(outcome_ids()) >= 20, 60, "the first outcomes")
                kill(p.procs[-1])
                p.start("retention", env, b"retention ready")
        publish(kafka_bootstrap, labels_topic, [_label("zz", T0 + 90 * DAY)])
        wait_until(lambda: len(outcome_ids()) >= n, 90, "every action's outcome")
        p.procs[-1].send_signal(signal.SIGTERM)
        p.procs[-1].wait(30)
        got = outcome_ids()
        assert sorted(got) == sorted(f"c-{i:03d}:0:high:outcome" for i in range(n))
        churned = {orjson.loads(v)["customer_id"] for v in got.values()
                   if orjson.loads(v)["outcome"] == "churned"}
        assert churned == {f"c-{i:03d}" for i in churners}

        async def counts() -> Any:
            client = aioredis.Redis.from_url(redis_url)
            try:
                saved = await RetentionStore(client, p.prefix,
                                             signer_from_settings(settings)).load()
            finally:
                await client.aclose()
            assert saved is not None
            return saved.state["loop"]["bandit"]["counts"]

        actioned = [i for i in range(n) if i % 4]
        stayed = sum(1 for i in actioned if i not in churners)
        totals = [sum(v[0] for v in (asyncio.run(counts())).values()),
                  sum(v[1] for v in (asyncio.run(counts())).values())]
        assert totals == [stayed, len(actioned) - stayed]
    finally:
        p.close()


async def test_retention_store_round_trip_on_one_redis_and_on_a_cluster(
        any_redis: aioredis.Redis, key_prefix: str) -> None:
    """Checkpoint, load and the alerter's view, with the keys in one slot on a cluster."""
    from streams.signing import StateSigner

    store = RetentionStore(any_redis, key_prefix, StateSigner(b"store-test-key-" + b"k" * 16))
    rec = OfferRecommender(("a", "b"))
    rec.learn("u1", "b", True)
    await store.save(1, {"loop": {}, "offsets": {"t:0": 5}, "outbox": []},
                     {"counts": {"x\x1fa": [2, 1]}}, rec, {"e:0": 3})
    assert await store.acquire("tok", 1.0) and not await store.acquire("other", 0.0)
    assert await store.renew("tok")
    saved = await store.load()
    assert saved is not None and saved.version == 1 and saved.reco_offsets == {"e:0": 3}
    assert saved.state["offsets"] == {"t:0": 5}
    assert saved.recommender is not None and saved.recommender.top("zz", 1)[0].offer == "b"
    watcher = AdviceWatcher(store, None, poll_s=0.0)
    await watcher.refresh()
    advice = watcher.current()
    assert advice is not None and advice.bandit is not None
    assert advice.bandit.stats("x", "a") == (2, 1)
    await watcher.aclose()
    await store.release("tok")
    assert await store.acquire("other", 0.0)
    await store.release("other")


async def test_report_offers_reads_the_published_recommender(
        aredis: aioredis.Redis, redis_url: str, key_prefix: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main
    from streams.signing import StateSigner

    key = "report-offers-key-" + "k" * 16
    monkeypatch.setenv("CHURN_REDIS__URL", redis_url)
    monkeypatch.setenv("CHURN_REDIS__KEY_PREFIX", key_prefix)
    monkeypatch.setenv("CHURN_SECURITY__SIGNING_KEY", key)
    store = RetentionStore(aredis, key_prefix, StateSigner(key.encode()))
    rec = OfferRecommender(("a", "b", "c"))
    for i in range(10):
        rec.learn(f"u{i}", "c", True)
    await store.save(1, {"loop": {}, "offsets": {}, "outbox": []}, {"counts": {}}, rec)
    code = await asyncio.to_thread(main, ["report", "offers", "--customer", "c-1", "-k", "2"])
    assert code == 0
    [line] = capsys.readouterr().out.splitlines()
    got = orjson.loads(line)
    assert got["source"] == "published" and [o["offer"] for o in got["offers"]] == ["c", "a"]
