"""The alerter on the real Kafka and Redis: one alert per crossing, also across SIGKILL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from alerts.policy import PolicyParams
from tests.integration.alerter_proc import (
    T0,
    committed,
    crafted_scores,
    expected_alert_ids,
    kill,
    publish,
    start_alerter,
)
from tests.integration.worker_proc import Pipeline, wait_until

PARAMS = PolicyParams()  # the defaults the alerter runs with


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


def _alerts(p: Pipeline) -> list[dict[str, object]]:
    return committed(p, f"alerts-{p.tag}")


def test_alerts_once_per_crossing_with_actions_and_dead_letters(pipeline: Pipeline) -> None:
    records = crafted_scores(customers=60, per_customer=12)
    records.insert(5, ("c-bad", b"{not json"))
    expected = expected_alert_ids(records, PARAMS)
    assert len(expected) > 20, "the crafted input should cross thresholds often"
    start_alerter(pipeline)
    publish(pipeline.bootstrap, pipeline.scores, records)
    wait_until(lambda: len(_alerts(pipeline)) >= len(expected), 60, "all alerts")
    alerts = _alerts(pipeline)
    ids = [str(a["alert_id"]) for a in alerts]
    assert sorted(ids) == sorted(expected)
    assert len(set(ids)) == len(ids)
    first = alerts[0]
    for field in ("episode_id", "severity", "drivers", "summary", "lifecycle_stage", "segment",
                  "recommended_action", "team", "sla_hours", "holdout", "customer_value",
                  "processed_at", "model_version"):
        assert field in first
    assert first["drivers"] and "text" in first["drivers"][0]  # type: ignore[index]
    actions = committed(pipeline, f"actions-{pipeline.tag}")
    assert sorted(str(a["alert_id"]) for a in actions) == sorted(ids)
    for a in actions:
        assert (a["action"] == "none (holdout)") == a["holdout"]
    wait_until(lambda: _dead_count(pipeline) == 1, 30, "the malformed score dead-lettered")


def _dead_count(p: Pipeline) -> int:
    from streams.kafka.topic_reader import read_topic_sync
    from streams.settings import load_settings

    settings = load_settings(kafka={"bootstrap_servers": p.bootstrap})
    return len(read_topic_sync(settings, p.dead_letter, 30))


def test_sigkill_mid_stream_gives_the_ids_of_an_uninterrupted_run(pipeline: Pipeline) -> None:
    """Three kills, each while alerts of the stream are still to come: the scores arrive in
    four parts, one per kill, so the alerter cannot finish before a kill."""
    records = crafted_scores(customers=6000, per_customer=10, seed=11)
    expected = expected_alert_ids(records, PARAMS)
    part = len(records) // 4
    kills = in_flight = 0
    for k in range(3):  # kill it three times at different points of the stream
        publish(pipeline.bootstrap, pipeline.scores, records[k * part:(k + 1) * part])
        due = len(expected_alert_ids(records[:(k + 1) * part], PARAMS))
        # counted before the start and killed at the first progress: since the alerter keeps
        # its records (d324969) it drains a part of 6,250 scores before 50 more alerts show
        before = len(_alerts(pipeline))
        proc = start_alerter(pipeline)
        wait_until(lambda b=before, d=due: len(_alerts(pipeline)) > b  # type: ignore[misc]
                   or len(_alerts(pipeline)) >= d, 90, "progress")
        kill(proc)
        kills += 1
        in_flight += len(_alerts(pipeline)) < due
    assert kills == 3
    assert in_flight > 0, "every kill came after its part was done"
    publish(pipeline.bootstrap, pipeline.scores, records[3 * part:])
    start_alerter(pipeline)
    wait_until(lambda: len(_alerts(pipeline)) >= len(expected), 120, "all alerts after restart")
    ids = [str(a["alert_id"]) for a in _alerts(pipeline)]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicates == []
    assert sorted(ids) == sorted(expected)


def test_churned_customers_are_suppressed(pipeline: Pipeline, redis_url: str) -> None:
    records = [(cid, raw) for cid, raw in crafted_scores(customers=30, per_customer=12, seed=3)]
    churned = {f"c-{c:05d}": T0 for c in range(0, 30, 2)}  # half churned before any score
    client = redis.Redis.from_url(redis_url)
    client.hset(f"{pipeline.prefix}:churned", mapping={k: repr(v) for k, v in churned.items()})
    client.close()
    expected = expected_alert_ids(records, PARAMS, churned)
    start_alerter(pipeline)
    publish(pipeline.bootstrap, pipeline.scores, records)
    wait_until(lambda: len(_alerts(pipeline)) >= len(expected), 60, "alerts")
    alerts = _alerts(pipeline)
    assert sorted(str(a["alert_id"]) for a in alerts) == sorted(expected)
    sweep_only_churned = {cid for cid in churned
                          if not any(orjson.loads(raw)["reason"] == "event"
                                     for c, raw in records if c == cid)}
    assert not {a["customer_id"] for a in alerts} & sweep_only_churned
    # churned customers alert only after an event score (they came back)
    for a in alerts:
        if a["customer_id"] in churned:
            assert a["lifecycle_stage"] in ("returned", "new")


def test_two_alerters_share_partitions_and_survive_losing_one(pipeline: Pipeline) -> None:
    records = crafted_scores(customers=1200, per_customer=10, seed=21)
    expected = expected_alert_ids(records, PARAMS)
    first = start_alerter(pipeline)
    start_alerter(pipeline)  # same group: the partitions are split between the two
    publish(pipeline.bootstrap, pipeline.scores, records)
    wait_until(lambda: len(_alerts(pipeline)) > 100, 90, "progress")
    kill(first)  # its partitions move to the survivor after the session timeout
    log1 = pipeline.workdir / "alerter-1.log"
    wait_until(lambda: log1.read_text(errors="replace").count(
        "scores partitions assigned: [0, 1, 2, 3]") >= 1, 60, "the survivor takes over")
    wait_until(lambda: len(_alerts(pipeline)) >= len(expected), 120, "all alerts")
    ids = [str(a["alert_id"]) for a in _alerts(pipeline)]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert sorted(ids) == sorted(expected)


def test_report_uplift_reads_the_topics(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from alerts.enrich import AlertConfig
    from streams.cli.main import main
    from streams.simulator import SimulationConfig
    from streams.simulator.treatment import TreatmentConfig, run_treated

    run = run_treated(SimulationConfig(n_customers=3000, days=120, seed=2),
                      TreatmentConfig(effect=0.6, alerts=AlertConfig(holdout_share=0.3)))
    actions_topic, labels_topic = f"actions-{pipeline.tag}", f"labels-{pipeline.tag}"
    publish(pipeline.bootstrap, actions_topic,
            [(str(a["customer_id"]), orjson.dumps(a)) for a in run.actions])
    publish(pipeline.bootstrap, labels_topic,
            [(str(x["customer_id"]), orjson.dumps(x)) for x in run.labels])
    monkeypatch.setenv("CHURN_KAFKA__BOOTSTRAP_SERVERS", pipeline.bootstrap)
    monkeypatch.setenv("CHURN_TOPICS__RETENTION_ACTIONS", actions_topic)
    monkeypatch.setenv("CHURN_TOPICS__LABELS", labels_topic)
    assert main(["report", "uplift", "--horizon-days", "30", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["decisions"] == len(run.actions) and out["labels"] == len(run.labels)
    assert out["significant"] is True and out["ci_high"] < 0
