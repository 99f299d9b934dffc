"""The live stream holds exactly the JSON lines files' records, in time order (pure)."""

from __future__ import annotations

from pathlib import Path

import orjson

from streams.chunk import EVENT, LABEL
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
