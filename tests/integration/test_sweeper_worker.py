"""Quiet customers are re-scored by the sweeper inside a real worker, driven by event time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from streams.contracts import CustomerEvent
from streams.kafka.producer import ChurnProducer
from streams.settings import KafkaSettings, TopicSettings
from tests.integration.worker_proc import Pipeline, collect, wait_until

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0
DAY = 86400.0


@dataclass
class SweepPipeline(Pipeline):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"CHURN_SWEEP__CLOCK": "event", "CHURN_SWEEP__INTERVAL_S": "0.3",
                    "CHURN_SWEEP__ALLOWED_LATENESS_S": "0",
                    "CHURN_SWEEP__RESCORE_AFTER_S": str(DAY)})
        return env


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[SweepPipeline]:
    from streams.kafka.topics import ensure_topics

    p = SweepPipeline(kafka_bootstrap, redis_url, tmp_path)
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=1),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
    yield p
    p.close()


def test_worker_rescores_quiet_customers_by_event_time(pipeline: SweepPipeline) -> None:
    events = [CustomerEvent("q-0", "quiet", "session", T0)]
    events += [CustomerEvent(f"b-{h}", "busy", "session", T0 + h * 3600.0) for h in range(73)]
    pipeline.start_worker()
    with ChurnProducer(pipeline.bootstrap, TopicSettings(events=pipeline.events)) as producer:
        for e in events:
            producer.send_event(e)

    def sweeps(records: list[dict[str, object]]) -> list[dict[str, object]]:
        return [r["value"] for r in records  # type: ignore[misc]
                if isinstance(r["value"], dict) and r["value"].get("reason") == "sweep"]

    records = collect(pipeline.bootstrap, pipeline.scores,
                      lambda rs: len(sweeps(rs)) >= 2, timeout_s=60)
    quiet = sweeps(records)
    assert {s["customer_id"] for s in quiet} == {"quiet"}
    assert [s["ts"] for s in quiet[:2]] == ["2026-01-02T00:00:00.000+00:00",
                                            "2026-01-03T00:00:00.000+00:00"]
    assert all(s["events_total"] == 1 and s["model_version"] for s in quiet)
    event_scores = [r["value"] for r in records
                    if isinstance(r["value"], dict) and r["value"].get("reason") == "event"]
    assert {s["customer_id"] for s in event_scores} == {"quiet", "busy"}  # type: ignore[index]
    client = redis.Redis.from_url(pipeline.redis_url)
    due_key = f"{pipeline.prefix}:due:{{p0}}"
    # the sweeper publishes a re-score, then moves the customer's due time: wait for the move
    wait_until(lambda: client.zscore(due_key, "quiet") == T0 + 3 * DAY, timeout_s=15,
               what="the quiet customer's next due time after its second sweep")
    assert client.zscore(f"{pipeline.prefix}:due:{{p0}}", "busy") == T0 + 72 * 3600.0 + DAY
