"""`churnpulse produce FILE` publishes validated records keyed by customer id."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from streams.cli.main import main
from streams.errors import InvalidMessage
from tests.integration.worker_proc import collect

pytestmark = pytest.mark.integration


def test_produce_events_and_labels_from_files(kafka_bootstrap: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tag = uuid.uuid4().hex[:8]
    monkeypatch.setenv("CHURN_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CHURN_TOPICS__EVENTS", f"pe-{tag}")
    monkeypatch.setenv("CHURN_TOPICS__LABELS", f"pl-{tag}")
    events = tmp_path / "events.csv"
    events.write_text("event_id,customer_id,event_type,ts,value\n"
                      "e1,alice,purchase,2026-01-01T00:00:00Z,12.5\n"
                      "e2,bob,login,2026-01-01T00:00:01+02:00,\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"label_id":"l1","customer_id":"bob","ts":"2026-02-01T00:00:00Z",'
                      '"churned":true}\n')
    assert main(["produce", str(events)]) == 0
    assert main(["produce", "--labels", str(labels)]) == 0

    got = collect(kafka_bootstrap, f"pe-{tag}", lambda rs: len(rs) >= 2, timeout_s=30)
    by_key = {r["key"]: r["value"] for r in got}
    assert set(by_key) == {b"alice", b"bob"}
    alice = by_key[b"alice"]
    assert isinstance(alice, dict)
    assert alice["value"] == 12.5
    assert alice["schema_version"] == 1
    label = collect(kafka_bootstrap, f"pl-{tag}", lambda rs: len(rs) >= 1, timeout_s=30)[0]
    assert label["key"] == b"bob"
    assert orjson.loads(label["raw"])["churned"] is True  # type: ignore[arg-type]


def test_produce_refuses_an_invalid_record_before_sending(kafka_bootstrap: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id":"e1","customer_id":"c","event_type":"x","ts":"yesterday"}\n')
    from streams.kafka.producer import ChurnProducer
    from streams.offline.files import read_records

    with ChurnProducer(kafka_bootstrap) as producer, \
            pytest.raises(InvalidMessage, match="bad_timestamp"):
        producer.send_many(read_records(bad), "event")
    assert main(["produce", str(bad)]) == 1
