"""Checks shared by the engine-fault tests (broker restart, broker killed in a cluster): a replay
produced in parts, and its result compared with an uninterrupted run's.

The uninterrupted run is computed, not run: every customer's feature state is the pure
``apply_event`` fold of its events in order (what the worker must end with, however often a
batch was redelivered), and each customer's event count must be exact (a count above it is an
event applied twice, below it one lost).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import redis

from online_models.features import FeatureSpec, apply_event
from streams.contracts import CustomerEvent
from streams.kafka.producer import ChurnProducer
from streams.redis.packed_state import unpack_state
from streams.settings import TopicSettings
from tests.integration.worker_proc import collect

T0 = 1_767_225_600.0


def make_events(count: int, customers: int) -> list[CustomerEvent]:
    kinds = ["session", "purchase", "support_ticket"]
    return [CustomerEvent(f"b{i}", f"c{(i * 7919) % customers}", kinds[i % 3], T0 + i * 20.0,
                          float(i % 50) if i % 3 == 1 else None) for i in range(count)]


def produce(bootstrap: str, topic: str, events: list[CustomerEvent],
            per_second: float | None = None, **config: Any) -> None:
    """Publish ``events`` (acks=all) with a producer of its own, flushed before returning;
    ``per_second`` paces it (so a fault can land while the part is still arriving)."""
    with ChurnProducer(bootstrap, TopicSettings(events=topic), **config) as producer:
        started = time.monotonic()
        for i, e in enumerate(events):
            producer.send_event(e)
            if per_second and i % 50 == 49:
                ahead = started + (i + 1) / per_second - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the load, not waiting for a result
        producer.flush()


class Applied:
    """Per-customer event counts the worker wrote (``n`` of each feature hash)."""

    def __init__(self, client: redis.Redis, prefix: str, customers: list[str]) -> None:
        self.client, self.prefix, self.customers = client, prefix, customers

    def counts(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for cid in self.customers:
            pipe.hget(f"{self.prefix}:{{c:{cid}}}:f", "n")
        return {cid: int(n or 0)
                for cid, n in zip(self.customers, pipe.execute(), strict=True)}

    def total(self) -> int:
        return sum(self.counts().values())

    def above(self, target: int) -> Callable[[], bool]:
        return lambda: self.total() > target


def feature_mismatches(client: redis.Redis, prefix: str,
                       events: list[CustomerEvent]) -> list[str]:
    """Customers whose stored feature state differs from the in-order fold of their events."""
    reference: dict[str, dict[str, float]] = defaultdict(dict)
    spec = FeatureSpec()
    for e in events:
        reference[e.customer_id] = apply_event(reference[e.customer_id], e.event_type, e.ts,
                                               e.value, spec)
    bad = []
    for cid, state in reference.items():
        stored = unpack_state(client.hget(f"{prefix}:{{c:{cid}}}:f", "s"))
        if stored.keys() != state.keys() or not all(
                abs(stored[f] - state[f]) <= 1e-9 * max(1.0, abs(state[f])) for f in state):
            bad.append(cid)
    return bad


def checked_scores(bootstrap: str, topic: str, expected: Counter[str],
                   timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Read the scores until every customer's latest covers all its events; assert that a
    score id always carries the same score and event count (a redelivered batch re-publishes
    the same score, never a different one). Returns the score records' values."""

    def complete(records: list[dict[str, object]]) -> bool:
        latest = {}
        for r in records:
            value = r["value"]
            assert isinstance(value, dict)
            latest[str(value["customer_id"])] = value["events_total"]
        return latest == dict(expected)

    values: list[dict[str, Any]] = []
    for r in collect(bootstrap, topic, complete, timeout_s=timeout_s):
        value = r["value"]
        assert isinstance(value, dict)
        values.append(value)
    by_id: dict[str, set[tuple[object, object]]] = defaultdict(set)
    for value in values:
        by_id[str(value["score_id"])].add((value["score"], value["events_total"]))
    differing = {k: v for k, v in by_id.items() if len(v) > 1}
    assert not differing, f"score ids with different content: {list(differing.items())[:3]}"
    return values


def score_check(bootstrap: str, topic: str, expected: Counter[str],
                timeout_s: float = 120.0) -> tuple[int, int]:
    """:func:`checked_scores`; returns (records, distinct score ids)."""
    values = checked_scores(bootstrap, topic, expected, timeout_s)
    return len(values), len({str(v["score_id"]) for v in values})
