"""Issue 16 live: the alert's offers and learned action, the retention loop and its process
step (checkpoint, outbox, restart) on an in-memory store."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import orjson
import pytest

from alerts.advice import Advice
from alerts.bandit import BanditParams, BanditState
from alerts.enrich import AlertConfig, enrich
from alerts.policy import Driver, PolicyParams, RiskState, ScoreInput, update
from alerts.reco import OfferRecommender
from alerts.retention_loop import BadAction, RetentionLoop, action_of
from alerts.routing import HOLDOUT_ACTION
from streams.kafka.strategy import Batch
from streams.records import RawRecord
from streams.redis.retention_store import Checkpoint
from streams.retention.service import RetentionService
from streams.settings import load_settings
from streams.timefmt import format_ts

T0 = 1_767_225_600.0  # 2026-01-01
DAY = 86400.0


def _decision(cid: str = "c-1", score: float = 0.8) -> tuple[Any, Any]:
    cfg = PolicyParams(min_dwell_s=0, min_scores=1)
    state, [d] = update(RiskState(), ScoreInput(cid, "s1", score, T0, drivers=(
        Driver("log_count_7d.session", 0.1, 0.7),)), cfg, T0)
    return d, state


def _recommender() -> OfferRecommender:
    r = OfferRecommender(("free_month", "discount_20", "upgrade_trial"), seed=1)
    for i in range(30):
        r.learn(f"u{i}", "discount_20", True)
        r.learn(f"u{i}", "free_month", i % 3 == 0)
        r.learn(f"u{i}", "upgrade_trial", False)
    return r


def test_alert_carries_top_offers_and_action_record_the_segment() -> None:
    d, s = _decision()
    advice = Advice("3", _recommender())
    cfg = AlertConfig(holdout_share=0.0, advice=lambda: advice)
    alert, action = enrich(d, s, None, "fading", cfg)
    assert [o["offer"] for o in alert["offers"]] == ["discount_20", "free_month",
                                                      "upgrade_trial"]
    assert {o["source"] for o in alert["offers"]} == {"popularity"}  # c-1 has no answers
    assert alert["advice_version"] == "3" and "policy" not in alert
    assert action["segment"] == "fading"
    assert action["offers"] == ["discount_20", "free_month", "upgrade_trial"]
    assert action["action"] == alert["recommended_action"] == "personal check-in email"
    plain_alert, plain_action = enrich(d, s, None, "fading", AlertConfig(holdout_share=0.0))
    assert "offers" not in plain_alert and plain_action["segment"] == "fading"


def test_learning_policy_picks_the_alternative_with_evidence_and_keeps_the_holdout() -> None:
    d, s = _decision()
    counts = BanditState()
    ctx = "fading|engagement"
    for i in range(60):
        counts.learn(ctx, "personal check-in email", stayed=i % 2 == 0)  # 0.50
        counts.learn(ctx, "discount offer", stayed=i % 10 != 0)  # 0.90
    params = BanditParams(explore=0.0, min_pulls=30)
    advice = Advice("9", None, counts, params)
    cfg = AlertConfig(holdout_share=0.0, advice=lambda: advice)
    alert, action = enrich(d, s, None, "fading", cfg)
    assert alert["recommended_action"] == action["action"] == "discount offer"
    assert alert["policy"]["table_action"] == "personal check-in email"
    assert action["policy"] == {"context": ctx, "table_action": "personal check-in email",
                                "explored": False, "version": "9"}
    held, held_action = enrich(d, s, None, "fading", replace(cfg, holdout_share=1.0))
    assert held["recommended_action"] == "discount offer"  # recorded would-be choice
    assert held_action["action"] == HOLDOUT_ACTION  # nothing done
    # the same episode decides the same (a replay), also with exploration
    explore = Advice("9", None, counts, BanditParams(explore=1.0, min_pulls=30))
    picks = {enrich(d, s, None, "fading", replace(cfg, advice=lambda: explore))[0][
        "recommended_action"] for _ in range(20)}
    assert len(picks) == 1


def _action(i: int, holdout: bool = False, ts: float = T0, **extra: Any) -> dict[str, Any]:
    return {"action_id": f"c{i}:0:high", "alert_id": f"c{i}:0:high", "customer_id": f"c{i}",
            "action": HOLDOUT_ACTION if holdout else "re-engagement email",
            "recommended_action": "re-engagement email", "holdout": holdout,
            "severity": "high", "driver_category": "engagement", "segment": "fading",
            "ts": format_ts(ts), **extra}


def test_loop_rewards_actioned_outcomes_once_and_never_the_holdout() -> None:
    loop = RetentionLoop(horizon_s=30 * DAY, params=BanditParams())
    for i in range(10):
        assert loop.on_action(_action(i, holdout=i >= 8)) == []
    assert loop.on_action(_action(0)) == []  # at-least-once delivery: a duplicate
    out = loop.on_label("c1", T0 + DAY, True) + loop.on_label("c9", T0 + DAY, True)
    assert sorted(o.outcome_id for o in out) == ["c1:0:high:outcome", "c9:0:high:outcome"]
    out += loop.on_label("zz", T0 + 31 * DAY, True)  # the labels' clock passes the horizon
    assert len(out) == 10 and len({o.outcome_id for o in out}) == 10
    assert loop.bandit.stats("fading|engagement", "re-engagement email") == (7, 1)
    assert loop.counts.rewards == 8 and loop.counts.duplicate_actions == 1
    back = RetentionLoop.from_json(orjson.loads(orjson.dumps(loop.to_json())), loop.params,
                                   None)
    assert back.on_action(_action(3)) == []  # resolved before the checkpoint stays resolved
    assert back.counts.duplicate_actions == 2
    assert back.bandit.stats("fading|engagement", "re-engagement email") == (7, 1)


def test_loop_learns_offers_grows_the_catalogue_and_attaches_accepted() -> None:
    loop = RetentionLoop(horizon_s=10 * DAY)
    loop.on_action(_action(1))
    assert loop.on_offer("c1", T0 + DAY, "free_month", "accepted")
    assert loop.on_offer("c2", T0 + DAY, "discount_20", "declined")
    assert loop.on_offer("c2", T0 + DAY, "discount_20", "presented")  # not an answer
    assert loop.recommender is not None
    assert loop.recommender.offers == ("free_month", "discount_20")
    assert loop.counts.offer_answers == 2
    [o] = loop.on_label("zz", T0 + 11 * DAY, True)
    assert o.accepted == "free_month" and o.stayed


def test_action_of_refuses_malformed_records_and_reads_the_policy_context() -> None:
    with pytest.raises(BadAction, match="missing_field"):
        action_of({"customer_id": "c"}, BanditParams())
    with pytest.raises(BadAction, match="bad_timestamp"):
        action_of({**_action(1), "ts": "yesterday"}, BanditParams())
    a = action_of(_action(1, policy={"context": "x|y"}, offers=["a"]), BanditParams())
    assert a.context == "x|y" and a.offers == ("a",)
    h = action_of(_action(2, holdout=True), BanditParams())
    assert h.action == "re-engagement email" and h.holdout  # the would-be action


class MemoryRetentionStore:
    """In-memory stand-in for :class:`streams.redis.retention_store.RetentionStore`."""

    lock_key = "mem:retention:lock"

    def __init__(self) -> None:
        self.saved: tuple[int, bytes] | None = None
        self.reco: bytes | None = None
        self.reco_offsets: dict[str, int] = {}
        self.saves = 0

    async def save(self, version: int, state: dict[str, Any], bandit: dict[str, Any],
                   recommender: OfferRecommender | None,
                   reco_offsets: dict[str, int] | None = None) -> None:
        self.saved = (version, orjson.dumps(state))
        if recommender is not None:
            self.reco = recommender.to_bytes()
        if reco_offsets is not None:
            self.reco_offsets = dict(reco_offsets)
        self.saves += 1

    async def load(self) -> Checkpoint | None:
        if self.saved is None:
            return None
        reco = None if self.reco is None else OfferRecommender.from_bytes(self.reco)
        return Checkpoint(self.saved[0], orjson.loads(self.saved[1]), reco,
                          dict(self.reco_offsets))

    async def acquire(self, token: str, wait_s: float) -> bool:
        return True

    async def renew(self, token: str) -> bool:
        return True


def _rec(topic: str, offset: int, value: dict[str, Any] | bytes, key: str = "") -> RawRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return RawRecord(topic, 0, offset, key.encode() or None, raw)


async def test_process_checkpoints_before_publishing_and_a_restart_publishes_nothing_twice(
        ) -> None:
    settings = load_settings(retention={"checkpoint_s": 1e-9, "horizon_days": 30})
    store = MemoryRetentionStore()
    svc = RetentionService(settings, store)  # type: ignore[arg-type]
    await svc.start()
    actions, labels, events = "retention-actions", "churn-labels", "customer-events"
    recs = [_rec(actions, i, _action(i)) for i in range(5)]
    recs.append(_rec(actions, 5, b"{not json"))
    recs.append(_rec(events, 0, {"event_id": "o1", "customer_id": "c1",
                                 "event_type": "offer_accepted", "ts": format_ts(T0 + 60),
                                 "properties": {"offer": "free_month"}}, "c1"))
    recs.append(_rec(events, 1, {"event_id": "e1", "customer_id": "c1", "event_type": "login",
                                 "ts": format_ts(T0 + 60)}, "c1"))
    recs.append(_rec(labels, 0, {"label_id": "l1", "customer_id": "c2",
                                 "ts": format_ts(T0 + DAY), "churned": True}, "c2"))
    out = await svc.process(Batch(recs))
    dead = [o for o in out if o.topic == settings.topics.dead_letter]
    published = [orjson.loads(o.value) for o in out if o.topic == "retention-outcomes"]
    assert len(dead) == 1 and [p["outcome_id"] for p in published] == ["c2:0:high:outcome"]
    assert store.saved is not None and store.reco is not None  # recommender checkpointed
    assert store.reco_offsets == {"customer-events:0": 2}
    assert orjson.loads(store.saved[1])["outbox"][0]["outcome_id"] == "c2:0:high:outcome"
    # crash after the checkpoint, before the outbox reached Kafka: the restart re-publishes it
    # (same bytes; readers keep the first of each id) and learns nothing twice
    again = RetentionService(settings, store)  # type: ignore[arg-type]
    await again.start()
    assert again.offsets == {f"{actions}:0": 6, f"{events}:0": 2, f"{labels}:0": 1}
    first = await again.process(Batch([]))
    assert [orjson.loads(o.value) for o in first] == published
    assert again.loop.bandit.stats("fading|engagement", "re-engagement email") == (0, 1)
    late = [_rec(labels, 1, {"label_id": "l2", "customer_id": "zz",
                             "ts": format_ts(T0 + 40 * DAY), "churned": True}, "zz")]
    rest = [orjson.loads(o.value) for o in await again.process(Batch(late))]
    assert sorted(r["outcome_id"] for r in rest) == [f"c{i}:0:high:outcome" for i in
                                                      (0, 1, 3, 4)]
    assert {r["outcome_id"]: r["accepted_offer"] for r in rest}["c1:0:high:outcome"] == \
        "free_month"
    assert again.loop.bandit.stats("fading|engagement", "re-engagement email") == (4, 1)
    assert await again.process(Batch([])) == []  # nothing left to publish


def test_a_churn_label_read_before_its_action_resolves_the_action_when_it_arrives() -> None:
    loop = RetentionLoop(horizon_s=30 * DAY)
    assert loop.on_label("c1", T0 + DAY, True) == []  # the labels topic read ahead
    [o] = loop.on_action(_action(1))
    assert o.churned and o.resolved_at == T0 + DAY
    assert loop.on_action(_action(2)) == []  # no churn known: waits for its horizon


def test_the_dashboards_customer_view_lists_the_alerts_offers() -> None:
    from streams.delivery.dashboard.board import Board

    d, s = _decision("c-7")
    advice = Advice("3", _recommender())
    alert, _ = enrich(d, s, None, "fading", AlertConfig(holdout_share=0.0,
                                                       advice=lambda: advice))
    board = Board()
    board.on_alert(orjson.loads(orjson.dumps(alert)))
    view = board.customer("c-7")
    assert view is not None and view["entry"] is not None
    assert [o["offer"] for o in view["entry"]["offers"]] == ["discount_20", "free_month",
                                                             "upgrade_trial"]


def test_report_uplift_from_outcomes_agrees_with_the_join_of_actions_and_labels(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import random

    from streams.cli.main import main

    rng = random.Random(4)
    loop = RetentionLoop(horizon_s=30 * DAY)
    actions, labels, outcomes = [], [], []
    for i in range(1500):
        rec = _action(i, holdout=rng.random() < 0.3, ts=T0 + i * 60)
        actions.append(rec)
        outcomes += [o.to_wire() for o in loop.on_action(rec)]
        if rng.random() < (0.3 if rec["holdout"] else 0.15):
            labels.append({"label_id": f"l{i}", "customer_id": f"c{i}", "churned": True,
                           "ts": format_ts(T0 + i * 60 + 5 * DAY)})
    labels.append({"label_id": "end", "customer_id": "zz", "churned": True,
                   "ts": format_ts(T0 + 90 * DAY)})
    for lab in labels:
        outcomes += [o.to_wire() for o in loop.on_label(
            str(lab["customer_id"]), _epoch(str(lab["ts"])), True)]
    outcomes += outcomes[:50]  # re-published after a crash: the same ids again

    def write(name: str, rows: list[dict[str, Any]]) -> str:
        path = tmp_path / name
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        return str(path)

    common = ["--horizon-days", "30", "--json", "--by", "segment", "--min-cell", "10"]
    assert main(["report", "uplift", "--actions", write("a.jsonl", actions), "--labels",
                 write("l.jsonl", labels), *common]) == 0
    joined = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["report", "uplift", "--outcomes", write("o.jsonl", outcomes), *common]) == 0
    [from_outcomes] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert from_outcomes["duplicates"] == 50
    for arm in ("actioned", "holdout"):
        assert from_outcomes[arm]["churned"] == joined[0][arm]["churned"]
        assert from_outcomes[arm]["resolved"] == joined[0][arm]["resolved"]
    assert from_outcomes["difference"] == pytest.approx(joined[0]["difference"])
    assert from_outcomes["cells"] == joined[1]["cells"]


def _epoch(ts: str) -> float:
    from streams.timefmt import parse_ts

    return parse_ts(ts)


async def test_the_recommender_checkpointed_less_often_relearns_from_its_own_offsets() -> None:
    settings = load_settings(retention={"checkpoint_s": 1e-9, "reco_checkpoint_s": 3600.0})
    store = MemoryRetentionStore()
    svc = RetentionService(settings, store)  # type: ignore[arg-type]
    await svc.start()

    def answer(offset: int, cid: str, kind: str) -> RawRecord:
        return _rec("customer-events", offset, {
            "event_id": f"o{offset}", "customer_id": cid, "event_type": kind,
            "ts": format_ts(T0 + offset), "properties": {"offer": "free_month"}}, cid)

    await svc.process(Batch([answer(0, "c1", "offer_accepted")]))
    assert store.reco is not None and store.reco_offsets == {"customer-events:0": 1}
    await svc.process(Batch([answer(1, "c2", "offer_accepted")]))  # reco not due: not saved
    assert store.reco_offsets == {"customer-events:0": 1}
    # crash; the restart seeks the offer events to 1 (the recommender's), the joiner has seen 1
    again = RetentionService(settings, store)  # type: ignore[arg-type]
    await again.start()
    assert again.reco_offsets == {"customer-events:0": 1}
    assert again.offsets["customer-events:0"] == 2
    await again.process(Batch([answer(1, "c2", "offer_accepted")]))
    assert again.loop.recommender is not None
    assert again.loop.recommender.presented == {"free_month": 2}  # each answer once
    assert again.loop.counts.offer_answers == 2
    assert again.loop.joiner is not None
    assert again.loop.joiner.accepted == {"c1": [(T0, "free_month")],
                                          "c2": [(T0 + 1, "free_month")]}


def test_an_action_due_at_its_churn_and_at_its_end_in_one_advance_resolves_once() -> None:
    loop = RetentionLoop(horizon_s=30 * DAY)
    loop.on_label("c1", T0 + DAY, True)
    loop.joiner.clock = T0  # type: ignore[union-attr]  # labels' clock behind the action's end
    assert loop.on_action(_action(1)) == []
    [o] = loop.on_label("zz", T0 + 90 * DAY, True)  # both heap entries are due now
    assert o.churned and o.outcome_id == "c1:0:high:outcome"


def test_enriched_alert_and_action_records_validate_against_the_schemas() -> None:
    from pathlib import Path

    from jsonschema import Draft202012Validator

    d, s = _decision()
    counts = BanditState()
    advice = Advice("4", _recommender(), counts, BanditParams(explore=1.0, min_pulls=0))
    alert, action = enrich(d, s, None, "fading", AlertConfig(holdout_share=0.0,
                                                             advice=lambda: advice))
    root = Path(__file__).resolve().parents[2] / "schemas"
    for name, rec in (("alert.json", alert), ("action.json", action)):
        schema = json.loads((root / name).read_text())
        errors = list(Draft202012Validator(schema).iter_errors(orjson.loads(orjson.dumps(rec))))
        assert not errors, (name, errors)
        assert {"offers", "policy"} <= set(schema["properties"])


async def test_a_checkpoint_waits_for_redis_instead_of_reprocessing_the_batch() -> None:
    from streams.errors import TransientError

    class Flaky(MemoryRetentionStore):
        fails = 2

        async def save(self, *args: Any, **kwargs: Any) -> None:
            if self.fails:
                self.fails -= 1
                raise TransientError("redis unavailable: connection refused")
            await super().save(*args, **kwargs)

    settings = load_settings(retention={"checkpoint_s": 1e-9, "horizon_days": 30})
    store = Flaky()
    svc = RetentionService(settings, store)  # type: ignore[arg-type]
    await svc.start()
    out = await svc.process(Batch([
        _rec("retention-actions", 0, _action(1)),
        _rec("churn-labels", 0, {"label_id": "l1", "customer_id": "c1",
                                 "ts": format_ts(T0 + DAY), "churned": True}, "c1")]))
    assert [orjson.loads(o.value)["outcome_id"] for o in out] == ["c1:0:high:outcome"]
    assert store.saves == 1 and store.fails == 0
    assert svc.loop.counts.actions == 1 and svc.loop.counts.rewards == 1  # applied once
