"""Running real ``churnpulse worker`` processes for integration tests: the pipeline itself is
:mod:`streams.dev.pipeline` (shared with ``bench/``); reading a topic back is here."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from kafka import KafkaConsumer

from streams.dev.pipeline import WORKER_READY, Pipeline, stop_procs, wait_until

READY = WORKER_READY
__all__ = ["READY", "Pipeline", "collect", "stop_procs", "wait_until"]


def collect(bootstrap: str, topic: str, done: Callable[[list[dict[str, object]]], bool],
            timeout_s: float) -> list[dict[str, object]]:
    """Read ``topic`` from the start until ``done(records)`` holds, or fail at the deadline."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, enable_auto_commit=False)
    records: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not done(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} records")
            for batch in consumer.poll(timeout_ms=200).values():
                for msg in batch:
                    records.append({"value": _json_or_none(msg.value),
                                    "raw": msg.value, "key": msg.key,
                                    "headers": dict(msg.headers or [])})
    finally:
        consumer.close()
    return records


def _json_or_none(raw: bytes | None) -> object:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
