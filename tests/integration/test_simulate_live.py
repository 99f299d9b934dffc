"""``churnpulse simulate --live`` on the real broker: the files' records, keyed and in order."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import orjson
import pandas as pd
import pytest

from streams.cli import main as cli
from streams.kafka.publish import java_partition
from streams.offline.live import run_live
from streams.simulator import SimulationConfig, simulate, write_files
from tests.integration.test_replay import make_settings, read_topic

pytestmark = pytest.mark.integration
CONFIG = SimulationConfig(seed=31, n_customers=400, days=30, churn_base_rate=0.15)


def test_live_publishes_the_files_records_with_keys_order_and_no_truth(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    s = make_settings(kafka_bootstrap, tmp_path / "state")
    for name, value in {"CHURN_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
                        "CHURN_TOPICS__EVENTS": s.topics.events,
                        "CHURN_TOPICS__LABELS": s.topics.labels,
                        "CHURN_TOPICS__SCORES": s.topics.scores,
                        "CHURN_TOPICS__ALERTS": s.topics.alerts,
                        "CHURN_TOPICS__DEAD_LETTER": s.topics.dead_letter}.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["simulate", "--live", "--seed", "31", "--customers", "400", "--days", "30",
                     "--churn-rate", "0.15", "--out", str(tmp_path / "truth"), "--no-progress"])
    assert code == 0
    assert "simulated 30 of 30 days" in capsys.readouterr().out
    write_files(simulate(CONFIG), tmp_path / "files", "jsonl")
    lines = {name: (tmp_path / "files" / f"{name}.jsonl").read_bytes().splitlines()
             for name in ("events", "labels", "truth")}

    events = read_topic(kafka_bootstrap, s.topics.events, len(lines["events"]))
    labels = read_topic(kafka_bootstrap, s.topics.labels, len(lines["labels"]))
    assert sorted(v for _, _, v, _ in events) == sorted(lines["events"])
    assert sorted(v for _, _, v, _ in labels) == sorted(lines["labels"])
    assert len(labels) > 20

    partitions = s.kafka.partitions
    by_customer: dict[bytes, list[bytes]] = defaultdict(list)
    for part, key, value, _ in events:  # partition order = publishing order within a partition
        assert key == orjson.loads(value)["customer_id"].encode()
        assert part == java_partition(key, partitions)
        by_customer[key].append(value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for value in lines["events"]:
        expected[orjson.loads(value)["customer_id"].encode()].append(value)
    assert by_customer == expected  # per-customer order is the files' (time) order

    truth = pd.read_json(tmp_path / "truth" / "truth.jsonl", lines=True)
    assert (tmp_path / "truth" / "truth.jsonl").read_bytes().splitlines() == lines["truth"]
    assert int(truth["churned"].sum()) > 0
    assert not any(b"churn_cause" in v for _, _, v, _ in events + labels)


def test_speedup_compresses_simulated_time(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = make_settings(kafka_bootstrap, tmp_path)
    config = SimulationConfig(seed=3, n_customers=100, days=3)
    began = time.monotonic()
    result = run_live(s, config, speedup=2 * 86_400.0, progress=False)  # 2 days per second
    wall = time.monotonic() - began
    assert not result.interrupted and result.acknowledged == result.n_events + result.n_labels
    got = read_topic(kafka_bootstrap, s.topics.events, result.n_events)
    first = min(orjson.loads(v)["ts"] for _, _, v, _ in got)
    last = max(orjson.loads(v)["ts"] for _, _, v, _ in got)
    simulated_s = (pd.Timestamp(last) - pd.Timestamp(first)).total_seconds()
    stamps = sorted(ts for _, _, _, ts in got)
    published_s = (stamps[-1] - stamps[0]) / 1000
    assert published_s == pytest.approx(simulated_s / (2 * 86_400.0), rel=0.15, abs=0.1)
    assert wall >= published_s
