"""The backtest and the live pipeline give the same scores on the same data.

A model is learned by the backtest from the first 45 days of a simulated history and published
to the Redis model registry. A real ``churnpulse worker`` process (real broker, real Redis, Lua
feature store) then consumes the last 30 days of events; the backtest runs the same events
in-process with the same model version (no learner on either side, so versions match). Every
score the worker published must be one the backtest produced — same ``score_id`` (customer,
triggering event, model version) — with the same value.

The backtest scores after every event (``batch_size=1``), so it has a score for every event
id; the worker scores once per customer per batch, on the state after the batch, which is the
state after the batch's newest event of that customer: the very score the backtest made for
that event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from streams.contracts import decode_event
from streams.kafka.chunk import EVENT
from streams.kafka.producer import ChurnProducer
from streams.offline.backtest import BacktestOptions, run_backtest
from streams.redis.model_registry import RedisModelRegistry
from streams.settings import KafkaSettings, TopicSettings, load_settings
from tests.integration.backtest_data import DAY, simulated, subset
from tests.integration.worker_proc import Pipeline, collect

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    from streams.kafka.topics import ensure_topics

    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=2),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
    yield p
    p.close()


async def publish_model(redis_url: str, prefix: str, handle: object) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await RedisModelRegistry(client, prefix).publish(handle)  # type: ignore[arg-type]
    finally:
        await client.aclose()


def test_backtest_and_live_worker_give_the_same_scores(pipeline: Pipeline,
                                                       tmp_path: Path) -> None:
    history = simulated(tmp_path / "sim")
    split = history.ts_ms[0] + int(45 * DAY * 1000)
    settings = load_settings()
    learned = asyncio.run(run_backtest(settings, subset(history, lambda ts, _: ts < split)))
    model = learned.handle()
    assert model.version != "0-untrained"
    later = subset(history, lambda ts, kind: ts >= split and kind == EVENT)
    assert later.n_events > 3000

    expected = asyncio.run(run_backtest(settings, later, BacktestOptions(
        batch_size=1, learn=False, sweep=False, keep_score_ids=True, initial=model,
        baseline_rows=False)))
    assert len(expected.scores.by_id) == later.n_events

    asyncio.run(publish_model(pipeline.redis_url, pipeline.prefix, model))
    pipeline.start_worker()
    last_event: dict[str, str] = {}
    with ChurnProducer(pipeline.bootstrap, TopicSettings(events=pipeline.events)) as producer:
        for key, value in zip(later.keys, later.values, strict=True):
            producer.send_raw(pipeline.events, key, value)
            event = decode_event(value)
            last_event[event.customer_id] = event.event_id

    def live_scores(records: list[dict[str, object]]) -> list[dict[str, object]]:
        return [r["value"] for r in records  # type: ignore[misc]
                if isinstance(r["value"], dict) and r["value"].get("reason") == "event"]

    def complete(records: list[dict[str, object]]) -> bool:
        seen = {(s["customer_id"], s["last_event_id"]) for s in live_scores(records)}
        return all((cid, eid) in seen for cid, eid in last_event.items())

    records = collect(pipeline.bootstrap, pipeline.scores, complete, timeout_s=180)
    live = live_scores(records)
    assert len(live) > 300  # one per customer per worker batch: fewer than the events
    assert {s["model_version"] for s in live} == {model.version}
    mismatched = []
    worst = 0.0
    for s in live:
        score_id = str(s["score_id"])
        assert score_id in expected.scores.by_id, f"backtest has no score {score_id}"
        want, version = expected.scores.by_id[score_id]
        assert version == s["model_version"]
        diff = abs(want - float(s["score"]))  # type: ignore[arg-type]
        worst = max(worst, diff)
        if diff > 1e-9:
            mismatched.append((score_id, want, s["score"]))
    assert mismatched == []
    print(f"{len(live)} live scores, all in the backtest's {len(expected.scores.by_id)}; "
          f"largest difference {worst:.1e}")
    assert len({s["score"] for s in live}) > 100  # a real model, not a constant
