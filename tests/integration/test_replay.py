"""``churnpulse replay`` on the real broker: mappings, Parquet, rejects, rate, resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from kafka import KafkaConsumer

from streams.cli import main as cli
from streams.offline.replay import (
    ReplayOptions,
    ReplayResult,
    fingerprint,
    read_checkpoint,
    run_replay,
)
from streams.offline.rows import ColumnMap, HistoryError
from streams.settings import Settings, load_settings
from streams.simulator import SimulationConfig, simulate, write_files

pytestmark = pytest.mark.integration
CONFIG = SimulationConfig(seed=21, n_customers=150, days=20, churn_base_rate=0.2)
Record = tuple[int, bytes, bytes, int]  # partition, key, value, timestamp ms


def make_settings(bootstrap: str, state_dir: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"events": f"rp-ev-{tag}", "labels": f"rp-lb-{tag}", "scores": f"rp-sc-{tag}",
                "alerts": f"rp-al-{tag}", "dead_letter": f"rp-dl-{tag}"},
        services={"state_dir": state_dir})


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0,
               settle_s: float = 0.5) -> list[Record]:
    """Every record of ``topic`` in partition order; waits for ``expected`` of them and then
    ``settle_s`` more to catch any extra (duplicates)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, enable_auto_commit=False)
    out: list[tuple[int, int, bytes, bytes, int]] = []
    try:
        deadline = time.monotonic() + timeout_s
        settle_until = None
        while settle_until is None or time.monotonic() < settle_until:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(out)} of {expected}")
            for batch in consumer.poll(timeout_ms=100).values():
                out += [(m.partition, m.offset, m.key, m.value, m.timestamp) for m in batch]
            if settle_until is None and len(out) >= expected:
                settle_until = time.monotonic() + settle_s
    finally:
        consumer.close()
    out.sort()
    return [(p, k, v, ts) for p, _, k, v, ts in out]


def same_records(records: list[Record]) -> list[tuple[int, bytes, bytes]]:
    return [(p, k, v) for p, k, v, _ in records]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    write_files(simulate(CONFIG), out, "jsonl")
    return out


def replay(settings: Settings, events: Path, labels: Path | None = None,
           **kw: Any) -> ReplayResult:
    options = ReplayOptions(events=events, labels=labels, progress=False, **kw)
    return run_replay(settings, options)


def to_export_csv(history: Path, out: Path) -> tuple[Path, Path]:
    """The JSON lines history as a user's export: other column names and order, timestamps
    as epoch milliseconds, a cancellations file without a churned column."""
    events = [orjson.loads(line) for line in (history / "events.jsonl").read_bytes().splitlines()]
    with (out / "export.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["amount", "when_ms", "user", "action", "id", "extra", "props"])
        for e in events:
            ms = int(pd.Timestamp(e["ts"]).value // 1_000_000)
            props = orjson.dumps(e["properties"]).decode() if "properties" in e else ""
            w.writerow([repr(e["value"]) if "value" in e else "", ms, e["customer_id"],
                        e["event_type"], e["event_id"], "ignored", props])
    labels = [orjson.loads(line) for line in (history / "labels.jsonl").read_bytes().splitlines()]
    with (out / "cancellations.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cancel_id", "user", "cancelled_at"])
        for lb in labels:
            w.writerow([lb["label_id"], lb["customer_id"], lb["ts"].replace("+00:00", "Z")])
    return out / "export.csv", out / "cancellations.csv"


def test_csv_with_a_column_mapping_gives_the_same_kafka_records_as_json_lines(
        kafka_bootstrap: str, history: Path, tmp_path: Path) -> None:
    events_csv, labels_csv = to_export_csv(history, tmp_path)
    a = make_settings(kafka_bootstrap, tmp_path / "a")
    b = make_settings(kafka_bootstrap, tmp_path / "b")
    ra = replay(a, history / "events.jsonl", history / "labels.jsonl")
    rb = replay(b, events_csv, labels_csv, epoch_unit="ms",
                event_map=ColumnMap.parse("ts=when_ms,customer_id=user,event_type=action,"
                                          "value=amount,event_id=id,properties=props", "event"),
                label_map=ColumnMap.parse("ts=cancelled_at,customer_id=user,label_id=cancel_id",
                                          "label"))
    sim = simulate(CONFIG)
    assert ra.total == rb.total == sim.n_events + len(sim.labels)
    for kind, n in (("events", sim.n_events), ("labels", len(sim.labels))):
        got_a = read_topic(kafka_bootstrap, getattr(a.topics, kind), n)
        got_b = read_topic(kafka_bootstrap, getattr(b.topics, kind), n)
        assert len(got_a) == n
        assert same_records(got_a) == same_records(got_b)
    # and they are the simulator's own lines, on the partitions any Java client would choose
    lines = set((history / "events.jsonl").read_bytes().splitlines())
    assert {v for _, _, v, _ in got_a} <= lines | set(
        (history / "labels.jsonl").read_bytes().splitlines())


def test_an_export_without_ids_gets_the_same_derived_ids_from_csv_and_json(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    rows = [{"u": f"c{i % 7}", "t": "login" if i % 3 else "purchase",
             "at": f"2026-02-01T10:{i // 60:02d}:{i % 60:02d}+01:00",
             "v": 5.0 if i % 3 == 0 else None} for i in range(300)]
    rows.append(dict(rows[0]))  # an exact repeat keeps its own record
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps({k: v for k, v in r.items() if v is not None})
                               + b"\n" for r in rows))
    pd.DataFrame(rows).to_csv(tmp_path / "e.csv", index=False)
    mapping = ColumnMap.parse("customer_id=u,event_type=t,ts=at,value=v", "event")
    a, b = (make_settings(kafka_bootstrap, tmp_path / d) for d in "ab")
    replay(a, jsonl, event_map=mapping)
    replay(b, tmp_path / "e.csv", event_map=mapping)
    got_a = read_topic(kafka_bootstrap, a.topics.events, len(rows))
    got_b = read_topic(kafka_bootstrap, b.topics.events, len(rows))
    assert same_records(got_a) == same_records(got_b)
    ids = Counter(orjson.loads(v)["event_id"] for _, _, v, _ in got_a)
    assert len(ids) == len(rows) and set(ids.values()) == {1}


def test_parquet_history_replays_like_json_lines(kafka_bootstrap: str, history: Path,
                                                 tmp_path: Path) -> None:
    write_files(simulate(CONFIG), tmp_path / "pq", "parquet")
    a, b = (make_settings(kafka_bootstrap, tmp_path / d) for d in "ab")
    replay(a, history / "events.jsonl", history / "labels.jsonl")
    result = replay(b, tmp_path / "pq" / "events.parquet", tmp_path / "pq" / "labels.parquet")
    assert result.rejects.count == 0
    n = simulate(CONFIG).n_events
    assert same_records(read_topic(kafka_bootstrap, b.topics.events, n)) == same_records(
        read_topic(kafka_bootstrap, a.topics.events, n))


def test_bad_rows_are_reported_and_the_rest_published(kafka_bootstrap: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user,action,at\n"
                    "c1,login,2026-01-01T00:00:00Z\n"
                    "c2,login,31/12/2025\n"
                    ",login,2026-01-01T00:00:01Z\n"
                    "c3,login,2026-01-01T00:00:02Z\n")
    s = make_settings(kafka_bootstrap, tmp_path / "state")
    for name, value in {"CHURN_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
                        "CHURN_TOPICS__EVENTS": s.topics.events,
                        "CHURN_TOPICS__LABELS": s.topics.labels,
                        "CHURN_SERVICES__STATE_DIR": str(tmp_path / "state")}.items():
        monkeypatch.setenv(name, value)
    argv = ["replay", str(path), "--map", "customer_id=user,event_type=action,ts=at",
            "--no-progress", "--rejects", str(tmp_path / "rejects.jsonl")]
    assert cli.main([*argv, "--max-rejects", "1"]) == 1
    err = capsys.readouterr().err
    assert "more than 1 bad rows" in err and f"{path}:3: column 'at'" in err
    assert cli.main(argv) == 2  # finished, with rejects
    captured = capsys.readouterr()
    assert "2 rows rejected" in captured.err
    assert f"{path}:3: column 'at': '31/12/2025' is not an ISO 8601 timestamp" in captured.err
    assert f"{path}:4: column 'user': is missing" in captured.err
    assert "published 2 records" in captured.out
    rejects = [orjson.loads(x) for x in (tmp_path / "rejects.jsonl").read_bytes().splitlines()]
    assert [(r["line"], r["column"]) for r in rejects] == [(3, "at"), (4, "user")]
    got = read_topic(kafka_bootstrap, s.topics.events, 2)
    assert sorted(k for _, k, _, _ in got) == [b"c1", b"c3"]


def test_too_many_bad_rows_publish_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"user": "c1", "ts": "2026-01-01T00:00:00Z"}\n' * 5)
    s = make_settings(kafka_bootstrap, tmp_path)
    with pytest.raises(HistoryError, match="more than 3 bad rows"):
        replay(s, path, max_rejects=3)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert s.topics.events not in consumer.topics()
    finally:
        consumer.close()


def test_rate_limit_holds_within_tolerance(kafka_bootstrap: str, history: Path,
                                           tmp_path: Path) -> None:
    s = make_settings(kafka_bootstrap, tmp_path)
    lines = (history / "events.jsonl").read_bytes().splitlines()[:3000]
    (tmp_path / "e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    began = time.monotonic()
    replay(s, tmp_path / "e.jsonl", rate=1500.0)
    wall = time.monotonic() - began
    got = read_topic(kafka_bootstrap, s.topics.events, 3000)
    stamps = sorted(ts for _, _, _, ts in got)  # producer create time of each record
    rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
    assert len(got) == 3000
    assert 1500 * 0.85 <= rate <= 1500 * 1.15, rate
    assert wall >= 2999 / 1500 * 0.9


def test_resume_after_stop_publishes_exactly_the_rest(kafka_bootstrap: str, history: Path,
                                                      tmp_path: Path) -> None:
    s = make_settings(kafka_bootstrap, tmp_path)
    events, labels = history / "events.jsonl", history / "labels.jsonl"
    calls = Counter[str]()

    def stop() -> bool:  # asked once per slice sent (a few records each at this rate)
        calls["stop"] += 1
        return calls["stop"] > 300

    options = ReplayOptions(events=events, labels=labels, progress=False, rate=10_000.0)
    first = run_replay(s, options, stop=stop)
    assert first.interrupted and 0 < first.acknowledged < first.total
    assert read_checkpoint(first.checkpoint, fingerprint(options, s)) == first.acknowledged
    second = run_replay(s, ReplayOptions(events=events, labels=labels, progress=False,
                                         resume=True))
    assert (second.resumed_from, second.published) == (
        first.acknowledged, first.total - first.acknowledged)
    assert read_checkpoint(first.checkpoint, fingerprint(options, s)) == first.total
    sim = simulate(CONFIG)
    got = read_topic(kafka_bootstrap, s.topics.events, sim.n_events)
    ids = Counter(orjson.loads(v)["event_id"] for _, _, v, _ in got)
    assert len(ids) == sim.n_events and set(ids.values()) == {1}
    assert len(read_topic(kafka_bootstrap, s.topics.labels, len(sim.labels))) == len(sim.labels)
    third = run_replay(s, ReplayOptions(events=events, labels=labels, progress=False,
                                        resume=True))
    assert third.published == 0


def test_ctrl_c_then_resume_from_the_command_line(kafka_bootstrap: str, history: Path,
                                                  tmp_path: Path) -> None:
    s = make_settings(kafka_bootstrap, tmp_path)
    env = dict(os.environ, CHURN_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
               CHURN_TOPICS__EVENTS=s.topics.events, CHURN_TOPICS__LABELS=s.topics.labels,
               CHURN_SERVICES__STATE_DIR=str(tmp_path), CHURN_LOG_LEVEL="WARNING")
    argv = [sys.executable, "-m", "streams.cli", "replay", str(history / "events.jsonl"),
            str(history / "labels.jsonl"), "--no-progress"]
    # 700/s: the history (~7,000 records) takes ~10 s, so a consumer slow to start on a loaded
    # machine still sees 2,000 records before the replay ends (at 4,000/s it took 1.7 s, and a
    # CI run at load ~4 missed it)
    proc = subprocess.Popen([*argv, "--rate", "700"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             group_id=None)
    try:
        seen, deadline = 0, time.monotonic() + 60
        while seen < 2000:  # interrupt mid-way, once records are flowing
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            if not consumer.assignment() and s.topics.events in consumer.topics():
                consumer.subscribe([s.topics.events])
            seen += sum(len(b) for b in consumer.poll(timeout_ms=100).values())
    finally:
        consumer.close()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"--resume" in out
    resumed = subprocess.run([*argv, "--resume"], env=env, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert b"resuming after record" in resumed.stderr
    sim = simulate(CONFIG)
    got = read_topic(kafka_bootstrap, s.topics.events, sim.n_events)
    ids = Counter(orjson.loads(v)["event_id"] for _, _, v, _ in got)
    assert len(got) == sim.n_events and set(ids.values()) == {1}
