"""Running real ``churnpulse alerter`` processes on crafted scores (integration tests, bench)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
from kafka import KafkaProducer

from alerts.contracts import decode_score
from alerts.policy import PolicyParams, ScoreInput, run
from alerts.timefmt import format_ts
from online_models.feature_vector import feature_vector
from online_models.features import apply_event
from online_models.model import ModelHandle, make_model
from streams.kafka.topic_reader import read_topic_sync
from streams.settings import load_settings
from tests.integration.worker_proc import Pipeline, wait_until

ALERTER_READY = b"alerter ready"
T0 = 1_767_225_600.0  # 2026-01-01


def alert_env(p: Pipeline) -> dict[str, str]:
    env = p.env()
    env.update({
        "CHURN_TOPICS__RETENTION_ACTIONS": f"actions-{p.tag}",
        "CHURN_TOPICS__ALERT_OUTCOMES": f"outcomes-{p.tag}",
        "CHURN_TOPICS__MODEL_EVENTS": f"models-{p.tag}",
        "CHURN_LOG_LEVEL": "INFO",
    })
    return env


def start_alerter(p: Pipeline, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
    n = len(p.procs)
    path = p.workdir / f"alerter-{n}.log"
    log = path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "alerter"], env=alert_env(p),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    p.procs.append(proc)
    wait_until(lambda: ALERTER_READY in path.read_bytes() or proc.poll() is not None,
               timeout_s, f"alerter {n} ready")
    assert proc.poll() is None, f"alerter exited early:\n{path.read_text(errors='replace')}"
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def crafted_scores(customers: int, per_customer: int, seed: int = 7,
                   ) -> list[tuple[str, bytes]]:
    """Score records that wander across the thresholds, with duplicates and sweep scores.

    Returned in publish order (customers interleaved, each customer's scores in time order).
    """
    rng = random.Random(seed)
    streams: list[list[bytes]] = []
    for c in range(customers):
        cid = f"c-{c:05d}"
        x, ts, out = rng.random() * 0.5, T0 + rng.random() * 3600, []
        for i in range(per_customer):
            x = min(1.0, max(0.0, x + rng.gauss(0.04, 0.18)))
            ts += rng.choice((600.0, 3600.0, 4 * 3600.0, 2 * 86400.0, 8 * 86400.0))
            reason = "sweep" if rng.random() < 0.15 else "event"
            record = {"schema_version": 1, "score_id": f"{cid}:e-{i}:1-logreg",
                      "customer_id": cid, "score": round(x, 4), "model_version": "1-logreg",
                      "ts": format_ts(ts), "reason": reason, "last_event_id": f"e-{i}",
                      "events_total": i + 1, "events_applied": 1,
                      "scored_at": format_ts(ts), "source_timestamp_ms": 0,
                      "drivers": [{"feature": "log_count_7d.session", "value": 2.0 - x,
                                   "contribution": x}]}
            out.append(orjson.dumps(record))
            if rng.random() < 0.05:
                out.append(out[-1])  # an at-least-once duplicate
        streams.append(out)
    ordered: list[tuple[str, bytes]] = []
    for i in range(max(len(s) for s in streams)):
        for c, s in enumerate(streams):
            if i < len(s):
                ordered.append((f"c-{c:05d}", s[i]))
    return ordered


def publish(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for key, value in records:
        producer.send(topic, value, key=key.encode())
    producer.flush()
    producer.close()


def expected_alert_ids(records: list[tuple[str, bytes]], params: PolicyParams,
                       churned: dict[str, float] | None = None) -> list[str]:
    """What an uninterrupted run decides: the pure policy over the same records."""
    scores: list[ScoreInput] = []
    for _, raw in records:
        try:
            s = decode_score(raw)
        except ValueError:
            continue
        mark = (churned or {}).get(s.customer_id)
        scores.append(replace(s, churned_at=mark) if mark is not None else s)
    _, decisions = run(scores, params)
    return [d.alert_id for d in decisions]


def committed(p: Pipeline, topic: str, timeout_s: float = 60.0) -> list[dict[str, object]]:
    settings = load_settings(kafka={"bootstrap_servers": p.bootstrap})
    return [orjson.loads(v) for _, v in read_topic_sync(settings, topic, timeout_s) if v]


def workdir_log(p: Pipeline, name: str) -> str:
    return (Path(p.workdir) / name).read_text(errors="replace")


def complaint_model() -> ModelHandle:
    """A logistic regression that learned: two or more complaints = churn."""
    model = make_model(learning_rate=0.3)
    rng = random.Random(0)
    for _ in range(600):
        state: dict[str, float] = {}
        t = 0.0
        k = rng.randint(0, 6)
        for _ in range(rng.randint(2, 6)):
            t += 3600
            state = apply_event(state, "session", t, None)
        for _ in range(k):
            t += 1800
            state = apply_event(state, "complaint", t, None)
        model.learn_one(feature_vector(state, t), k >= 2)
    return ModelHandle("1-complaints", model)
