"""Crafted inputs with known answers, for integration tests and benchmarks of the alert side.

:func:`crafted_scores` makes score records that wander across the alert thresholds (with
at-least-once duplicates and sweep scores); :func:`expected_alert_ids` is what an uninterrupted
alerter decides on them (the pure policy); :func:`complaint_model` is a model whose drivers are
known (two or more complaints = churn).
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import replace
from typing import Any, cast

import orjson
from kafka import KafkaProducer

from alerts.contracts import decode_score
from alerts.policy import PolicyParams, ScoreInput, run
from alerts.timefmt import format_ts
from online_models.feature_vector import feature_vector
from online_models.features import apply_event
from online_models.model import ModelHandle, make_model

T0 = 1_767_225_600.0  # 2026-01-01


def crafted_scores(customers: int, per_customer: int, seed: int = 7,
                   ) -> list[tuple[str, bytes]]:
    """Score records that wander across the thresholds, with duplicates and sweep scores.

    Returned in publish order (customers interleaved, each customer's scores in time order).
    """
    rng = random.Random(seed)
    streams: list[list[bytes]] = []
    for c in range(customers):
        cid = f"c-{c:05d}"
        x, ts = rng.random() * 0.5, T0 + rng.random() * 3600
        out: list[bytes] = []
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
    """Produce ``(key, value)`` records and wait for the broker (acks=all)."""
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
        model.learn_one(cast(dict[Hashable, Any], feature_vector(state, t)), k >= 2)
    return ModelHandle("1-complaints", model)
