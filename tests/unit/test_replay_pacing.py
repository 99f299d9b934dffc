"""Pacers on a fake clock, the Java-compatible partitioner, replay checkpoints (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from streams.kafka.pacing import MAX_WAIT_S, FullSpeed, RatePacer, SpeedupPacer, make_pacer
from streams.kafka.publish import KeyPartitioner, java_partition
from streams.offline.replay import ReplayOptions, fingerprint, read_checkpoint, write_checkpoint
from streams.offline.rows import HistoryError
from streams.settings import load_settings


def drive(pacer: RatePacer | SpeedupPacer, ts_ms: list[int], step_s: float) -> list[float]:
    """Publish everything under ``pacer`` on a fake clock; return each record's send time."""
    now, sent, times = 100.0, 0, []
    while sent < len(ts_ms):
        n = pacer.due(now, sent, ts_ms, sent)
        times += [now] * n
        sent += n
        if n == 0:
            wait = pacer.wait_s(now, sent, ts_ms, sent)
            assert 0 <= wait <= MAX_WAIT_S
        now += step_s
    return times


def test_rate_pacer_spreads_records_evenly() -> None:
    times = drive(RatePacer(1000.0), [0] * 5000, step_s=0.001)
    assert times[0] == 100.0
    elapsed = times[-1] - times[0]
    assert elapsed == pytest.approx(4.999, abs=0.002)
    per_second = [sum(1 for t in times if 100 + s <= t < 101 + s) for s in range(4)]
    assert all(990 <= n <= 1010 for n in per_second), per_second


def test_rate_pacer_waits_until_the_next_record_is_due() -> None:
    pacer = RatePacer(10.0)
    assert pacer.due(0.0, 0, [0, 0], 0) == 1
    assert pacer.due(0.05, 1, [0, 0], 1) == 0
    assert pacer.wait_s(0.05, 1, [0, 0], 1) == pytest.approx(0.05)


def test_speedup_pacer_compresses_event_time() -> None:
    day = 86_400_000
    ts = [0, day // 2, day, 3 * day, 3 * day]
    times = drive(SpeedupPacer(86_400.0), ts, step_s=0.01)  # one simulated day per second
    offsets = [round(t - times[0], 2) for t in times]
    assert offsets == [0.0, 0.5, 1.0, 3.0, 3.0]


def test_full_speed_and_flag_checks() -> None:
    assert FullSpeed().due(0.0, 0, [1, 2, 3], 1) == 2
    assert isinstance(make_pacer(), FullSpeed)
    with pytest.raises(ValueError, match="not both"):
        make_pacer(rate=1.0, speedup=2.0)
    with pytest.raises(ValueError, match="> 0"):
        RatePacer(0.0)


def test_partitions_match_the_java_client_and_kafka_python() -> None:
    # vectors of org.apache.kafka.common.utils.UtilsTest#testMurmur2
    assert java_partition(b"21", 1 << 31) == -973932308 & 0x7FFFFFFF
    assert java_partition(b"foobar", 1 << 31) == -790332482 & 0x7FFFFFFF
    cached = KeyPartitioner(6, max_cached=50)
    for i in range(300):
        key = f"c-{i:06d}".encode()
        expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % 6
        assert cached(key) == java_partition(key, 6) == expected
    assert len(cached._hash._hashes) <= 50


def test_checkpoint_round_trip_and_refusal_of_other_inputs(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text("{}\n")
    settings = load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"})
    options = ReplayOptions(events=events)
    digest = fingerprint(options, settings)
    path = tmp_path / "cp" / "replay.json"
    assert read_checkpoint(path, digest) is None
    write_checkpoint(path, digest, 7, 10, options)
    assert read_checkpoint(path, digest) == 7
    assert not list(path.parent.glob("*.tmp"))
    events.write_text("{}\n{}\n")  # the file changed: its fingerprint too
    with pytest.raises(HistoryError, match="written for other inputs"):
        read_checkpoint(path, fingerprint(options, settings))
    other_topic = load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"},
                                topics={"events": "elsewhere"})
    assert fingerprint(options, other_topic) != fingerprint(options, settings)
    path.write_text("{")
    with pytest.raises(HistoryError, match="unreadable"):
        read_checkpoint(path, digest)
