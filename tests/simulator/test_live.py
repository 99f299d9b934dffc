"""The live stream holds exactly the JSON lines files' records, in time order (pure)."""

from __future__ import annotations

from pathlib import Path

import orjson

from streams.kafka.chunk import EVENT, LABEL
from streams.simulator import SimulationConfig, simulate, write_files
from streams.simulator.live import LiveSimulation
from tests.simulator.conftest import SMALL


def test_live_days_are_the_files_lines_merged_by_time(tmp_path: Path) -> None:
    config = SimulationConfig(seed=5, n_customers=300, days=40, churn_base_rate=0.15)
    live = LiveSimulation(config)
    days = list(live.days())
    write_files(simulate(config), tmp_path, "jsonl")
    lines = {name: (tmp_path / f"{name}.jsonl").read_bytes().splitlines()
             for name in ("events", "labels")}
    events = [v for d in days for k, v in zip(d.chunk.kinds, d.chunk.values, strict=True)
              if k == EVENT]
    labels = [v for d in days for k, v in zip(d.chunk.kinds, d.chunk.values, strict=True)
              if k == LABEL]
    assert events == lines["events"]
    assert labels == lines["labels"]
    assert len(labels) > 10
    assert (live.n_events, live.n_labels) == (len(events), len(labels))
    assert [d.day for d in days] == list(range(40))
    assert sum(d.joined for d in days) > 0

    ts = [t for d in days for t in d.chunk.ts_ms]
    assert ts == sorted(ts)
    for d in days:
        for k, key, value in zip(d.chunk.kinds, d.chunk.keys, d.chunk.values, strict=True):
            record = orjson.loads(value)
            assert key == record["customer_id"].encode()
            assert ("event_id" in record) == (k == EVENT)
    truth = live.truth()
    assert int(truth["churned"].sum()) > 0
    assert all(b"churn_cause" not in v for d in days for v in d.chunk.values)


def test_nothing_of_a_churned_customer_follows_its_label_that_day() -> None:
    live = LiveSimulation(SMALL.replace(days=30))
    churned = 0
    for day in live.days():
        gone: set[bytes] = set()
        for k, key in zip(day.chunk.kinds, day.chunk.keys, strict=True):
            if k == LABEL:
                gone.add(key)
                churned += 1
            else:
                assert key not in gone
    assert churned > 20


def test_the_demo_continues_simulated_time_from_where_it_stopped(tmp_path: Path) -> None:
    import datetime as dt

    from streams.dev.demo import with_malformed
    from streams.dev.demo_clock import DEMO_DAYS, demo_config, save_position

    today = dt.date(2026, 6, 1)
    first = demo_config(100, tmp_path, today)
    assert first.start == today - dt.timedelta(days=DEMO_DAYS)
    save_position(tmp_path, first, days_done=40)
    second = demo_config(100, tmp_path, today)
    assert (second.seed, second.start) == (first.seed + 1, first.start + dt.timedelta(days=41))
    (tmp_path / "demo-simulation.json").write_text("{broken")
    assert demo_config(100, tmp_path, today) == first

    chunks = [d.chunk for d in LiveSimulation(SimulationConfig(seed=1, n_customers=60,
                                                               days=5)).days()]
    mixed = list(with_malformed(chunks, every=100))
    total = sum(len(c) for c in chunks)
    broken = sum(k == b"c-broken" for c in mixed for k in c.keys)
    assert broken == total // 100
    assert [v for c in mixed for v in c.values if v != b'{"event_id": 1'] == [
        v for c in chunks for v in c.values]


def test_the_demo_never_simulates_past_today_and_starts_a_new_generation_when_caught_up(
        tmp_path: Path) -> None:
    """Events after the wall clock are refused (ts_in_future): the demo must stop at today."""
    import datetime as dt

    from streams.dev.demo_clock import (
        DEMO_DAYS,
        MIN_DAYS,
        demo_plan,
        for_generation,
        generation_env,
        save_position,
    )
    from streams.settings import load_settings

    today = dt.date(2026, 6, 1)
    first = demo_plan(100, tmp_path, today)
    assert first.config.start + dt.timedelta(days=first.config.days) == today
    save_position(tmp_path, first.config, days_done=DEMO_DAYS - 100, generation=0)
    late = demo_plan(100, tmp_path, today)
    assert late.generation == 0
    assert late.config.start + dt.timedelta(days=late.config.days) == today  # capped, not 730
    assert late.config.days < DEMO_DAYS
    save_position(tmp_path, late.config, days_done=late.config.days - MIN_DAYS // 2, generation=0)
    again = demo_plan(100, tmp_path, today)
    assert again.generation == 1
    assert (again.config.start, again.config.days) == (today - dt.timedelta(days=DEMO_DAYS),
                                                       DEMO_DAYS)
    assert again.config.seed > late.config.seed
    base = load_settings()
    fresh = for_generation(base, again.generation)
    assert fresh.topics.events != base.topics.events
    assert fresh.redis.key_prefix != base.redis.key_prefix
    assert for_generation(base, 0) is base
    env = generation_env(fresh)
    assert env["CHURN_TOPICS__EVENTS"] == fresh.topics.events
    assert env["CHURN_REDIS__KEY_PREFIX"] == fresh.redis.key_prefix
