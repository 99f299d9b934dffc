"""The alerter in budget mode on the real Kafka and Redis: the per-partition budget state is
stored with the customers' records, so SIGKILLs still give each alert once and the ids of the
pure budget run over each partition; ``report alerts`` reads the topics."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from alerts.budget import Budget, BudgetParams, BudgetState
from alerts.contracts import BadScore, decode_score
from alerts.policy import PolicyParams, RiskState
from tests.integration.alerter_proc import committed, crafted_scores, kill, publish, start_alerter
from tests.integration.worker_proc import Pipeline, wait_until

BUDGET_ENV = {"CHURN_ALERTS__BUDGET__MODE": "budget",
              "CHURN_ALERTS__BUDGET__SHARE_PER_WEEK": "1.0",
              "CHURN_ALERTS__BUDGET__WINDOW": "400",
              "CHURN_ALERTS__BUDGET__MIN_WINDOW": "50"}
PARAMS = BudgetParams(budgets=(Budget(share_per_week=1.0),), window=400, min_window=50)


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    for k, v in BUDGET_ENV.items():
        monkeypatch.setenv(k, v)
    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


def _alerts(p: Pipeline) -> list[dict[str, object]]:
    return committed(p, f"alerts-{p.tag}")


def by_partition(bootstrap: str, topic: str, n: int) -> dict[int, list[bytes]]:
    """The topic's records per partition, in offset order (what each batch path reads)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out: dict[int, list[bytes]] = defaultdict(list)
    while sum(len(v) for v in out.values()) < n:
        for tp, msgs in consumer.poll(timeout_ms=1000).items():
            out[tp.partition] += [m.value for m in msgs]
    consumer.close()
    return out


def expected_ids(parts: dict[int, list[bytes]]) -> list[str]:
    """The pure budget run over each partition (state per partition, as the alerter keeps)."""
    ids: list[str] = []
    for values in parts.values():
        budget = BudgetState.initial(PARAMS)
        risk: dict[str, RiskState] = {}
        for offset, raw in enumerate(values):
            try:
                s = decode_score(raw)
            except BadScore:
                continue
            risk[s.customer_id], out = budget.step(offset, risk.get(s.customer_id, RiskState()),
                                                   s, PolicyParams(), 0.0)
            ids += [d.alert_id for d in out]
    return ids


def test_budget_mode_survives_sigkill_with_the_ids_of_the_pure_run(pipeline: Pipeline) -> None:
    records = crafted_scores(customers=6000, per_customer=10, seed=5)
    publish(pipeline.bootstrap, pipeline.scores, records)
    expected = expected_ids(by_partition(pipeline.bootstrap, pipeline.scores, len(records)))
    assert len(expected) > 100
    kills = 0
    for _ in range(2):
        before = len(_alerts(pipeline))  # counted before the start: the alerter got fast
        proc = start_alerter(pipeline)    # enough (d324969) to drain 20,000 scores in ~6 s,
        # about the time one read of the topic takes: 60,000, killed at the first progress
        wait_until(lambda b=before: len(_alerts(pipeline)) > b  # type: ignore[misc]
                   or len(_alerts(pipeline)) >= len(expected), 90, "progress")
        if len(_alerts(pipeline)) >= len(expected):
            break
        kill(proc)
        kills += 1
    assert kills >= 1, "the alerter finished before it could be killed; use a larger input"
    start_alerter(pipeline)
    wait_until(lambda: len(_alerts(pipeline)) >= len(expected), 120, "all alerts after restart")
    ids = [str(a["alert_id"]) for a in _alerts(pipeline)]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert sorted(ids) == sorted(expected)


def test_report_alerts_reads_the_topics(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main

    day = 86400.0
    t0 = 1_780_000_000.0
    alerts = [{"alert_id": f"c{i}:1:medium", "customer_id": f"c{i}",
               "ts": _ts(t0 + i * day)} for i in range(10)]
    alerts.append(alerts[0])  # a duplicate in the topic counts once
    labels = ([{"schema_version": 1, "label_id": f"l{i}", "customer_id": f"c{i}",
                "ts": _ts(t0 + (i + 12) * day), "churned": True} for i in range(3)]
              + [{"schema_version": 1, "label_id": "end", "customer_id": "z",
                  "ts": _ts(t0 + 120 * day), "churned": False}])
    alerts_topic, labels_topic = f"alerts-{pipeline.tag}", f"labels-{pipeline.tag}"
    publish(pipeline.bootstrap, alerts_topic,
            [(str(a["customer_id"]), orjson.dumps(a)) for a in alerts])
    publish(pipeline.bootstrap, labels_topic,
            [(str(x["customer_id"]), orjson.dumps(x)) for x in labels])
    monkeypatch.setenv("CHURN_KAFKA__BOOTSTRAP_SERVERS", pipeline.bootstrap)
    monkeypatch.setenv("CHURN_TOPICS__ALERTS", alerts_topic)
    monkeypatch.setenv("CHURN_TOPICS__LABELS", labels_topic)
    assert main(["report", "alerts", "--horizon-days", "30", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    total = out["total"]
    assert (out["alerts"], out["churns"]) == (10, 3)
    assert (total["right"], total["resolved"], total["precision"]) == (3, 10, 0.3)
    assert total["warning_days"]["median"] == pytest.approx(12.0)


def _ts(t: float) -> str:
    from alerts.timefmt import format_ts

    return format_ts(t)
