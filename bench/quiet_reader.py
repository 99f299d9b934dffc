"""Reading a run's scores without taking CPU from the system under test.

On a 2-core machine the benchmark's own kafka-python consumer, reading and parsing every score
while a worker drains its backlog, used 8.5 CPU-seconds of a 12.9 s drain of 200,000 events
(66 % of a core, 2026-12-02): a third of the machine that Kafka, Redis and the worker share. So
the benchmark reads *after the fact*. The run's scores topic is ``LogAppendTime``: every score
carries the moment the broker appended it, which is all the timing needs. While the worker
works, the benchmark only asks the broker for the topic's end offsets and samples the worker's
CPU time and the Redis server's command time, every ``TICK_S``; it reads the scores when the
topic has been quiet for ``QUIET_S`` (the backlog is drained, or the worker paused), and then
only up to the end offsets it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition

TICK_S = 0.1
QUIET_S = 0.5


class ScoresTopic:
    """One run's scores topic, read from its start, on demand."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                      auto_offset_reset="earliest")
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} has no partitions")
        self.parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)
        self.read = 0

    def end(self) -> int:
        """Scores appended so far (the sum of the partitions' end offsets)."""
        return sum(self.consumer.end_offsets(self.parts).values())

    def read_to(self, end: int, timeout_s: float = 60.0) -> Iterator[Any]:
        """The scores not read yet, up to ``end`` in all; each must be ``LogAppendTime``."""
        deadline = time.monotonic() + timeout_s
        while self.read < end:
            if time.monotonic() > deadline:
                raise RuntimeError(f"read {self.read} of {end} scores in {timeout_s:.0f} s")
            for batch in self.consumer.poll(timeout_ms=200).values():
                for record in batch:
                    if record.timestamp_type != 1:
                        raise RuntimeError("the scores topic is not LogAppendTime")
                    self.read += 1
                    yield record

    def close(self) -> None:
        self.consumer.close()


class Sampler:
    """(wall time, worker CPU seconds, Redis command µs) every tick, to cut at the first and
    last score's append time afterwards."""

    def __init__(self, probe: Callable[[], tuple[float, float]]) -> None:
        self.probe = probe
        self.samples: list[tuple[float, float, float]] = []

    def tick(self) -> None:
        cpu, usec = self.probe()
        self.samples.append((time.time(), cpu, usec))

    def between(self, t0: float, t1: float) -> tuple[float, float]:
        """Worker CPU seconds and Redis µs from the last sample at or before ``t0`` to the
        first at or after ``t1`` (a tick's width wider than the window at most)."""
        before = [s for s in self.samples if s[0] <= t0] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= t1] or self.samples[-1:]
        return after[0][1] - before[-1][1], after[0][2] - before[-1][2]


def drain(scores: ScoresTopic, sampler: Sampler, take: Callable[[Any], None],
          complete: Callable[[], bool], deadline_s: float) -> None:
    """Watch a drain until ``complete()``: sample every tick, and pass the scores to ``take``
    only when the topic has been quiet for ``QUIET_S``."""
    deadline = time.monotonic() + deadline_s
    seen, quiet_since = -1, time.monotonic()
    while not complete():
        if time.monotonic() > deadline:
            raise SystemExit(f"not complete within {deadline_s:.0f} s ({scores.read} scores read)")
        time.sleep(TICK_S)  # the sampling period, not a synchronisation
        sampler.tick()
        end = scores.end()
        if end != seen:
            seen, quiet_since = end, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S and scores.read < end:
            for record in scores.read_to(end):
                take(record)


def settled_end(scores: ScoresTopic, quiet_s: float = 1.0, timeout_s: float = 30.0) -> int:
    """The topic's end offset once it has not moved for ``quiet_s`` (the worker caught up)."""
    deadline = time.monotonic() + timeout_s
    seen, since = scores.end(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if time.monotonic() > deadline:
            raise RuntimeError(f"scores still arriving after {timeout_s:.0f} s")
        time.sleep(TICK_S)  # the polling period, not a synchronisation
        end = scores.end()
        if end != seen:
            seen, since = end, time.monotonic()
    return seen
