"""Re-scoring customers who went quiet: inactivity is the strongest churn signal.

A customer's features decay with time even when nothing happens, and only a score tells the
rest of the pipeline. The event path keeps, per events partition, a due-index of customer →
next re-score time (newest event time + ``rescore_after_s``, see
:mod:`streams.redis.feature_store`). The sweeper, running in the worker beside the event consumer,
takes the customers of its own partitions whose re-score time is before the partition's sweep
clock (:class:`~streams.worker.watermarks.Watermarks`), scores each at exactly its re-score time
(the
features are exact at any instant), publishes the score to the scores topic in the event path's
record format with ``reason: "sweep"``, and only then moves the customer's re-score time on by
``rescore_after_s`` (``ZADD XX GT``: an event that arrived meanwhile keeps its later time).

Sweep scores go through the same observation step as event scores (:mod:`streams.worker.scoring`):
a customer marked churned is not re-scored (but still moved on), and the score's snapshot is
recorded before the score is published. A crash between publishing and moving on re-publishes
the same record (same ``score_id``, downstream deduplicates). A customer whose newest event is
later than its re-score time minus ``rescore_after_s`` had an event the due-index has not seen
yet (the script ran, the due update of the same round trip is on its way): it is left alone.
Customers whose state expired (retention) or was erased leave the index when they come due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streams.redis.feature_store import DueIndex
from streams.settings import SweepSettings
from streams.timefmt import format_ts
from streams.worker.processor import EventBatchProcessor
from streams.worker.scoring import PendingScore, build_score
from streams.worker.watermarks import Watermarks

log = logging.getLogger(__name__)
MAX_ROUNDS_PER_PASS = 20


@dataclass
class SweepStats:
    passes: int = 0
    rescored: int = 0
    skipped: int = 0
    observed: int = 0
    skipped_churned: int = 0


class Sweeper:
    """Re-scores the quiet customers of a worker's partitions (see the module docstring)."""

    def __init__(self, index: DueIndex, processor: EventBatchProcessor, watermarks: Watermarks,
                 settings: SweepSettings, wall_clock: Callable[[], float] = time.time) -> None:
        self._index = index
        self._processor = processor
        self._watermarks = watermarks
        self._settings = settings
        self._wall = wall_clock
        self.stats = SweepStats()

    async def run_pass(self, partitions: Iterable[int]) -> int:
        """One pass over ``partitions`` at their current sweep clocks; returns scores sent."""
        wall = self._wall()
        sent = 0
        for partition in partitions:
            until = self._watermarks.sweep_time(partition, wall)
            if until is not None:
                sent += await self.sweep(partition, until)
        self.stats.passes += 1
        return sent

    async def sweep(self, partition: int, until: float) -> int:
        """Re-score every customer of ``partition`` due at or before ``until`` (event time)."""
        cfg, proc = self._settings, self._processor
        after = cfg.rescore_after_s
        sent = 0
        for _ in range(MAX_ROUNDS_PER_PASS):
            due = await self._index.due(partition, until, cfg.max_per_pass)
            if not due:
                break
            handle = await proc.models.current()
            explainer = proc.explainers.of(handle)
            scored_at = format_ts(self._wall())
            scored: list[PendingScore] = []
            moved: list[tuple[str, float]] = []
            for item in due:
                t_last = item.state.get("t_last", item.due)
                if t_last + after > item.due + 1e-6:
                    self.stats.skipped += 1  # a newer event; its due update is on its way
                    continue
                record, x = build_score(item.customer_id, item.state, item.due, handle,
                                        proc.spec, reason="sweep", scored_at=scored_at,
                                        explainer=explainer)
                scored.append(PendingScore(item.customer_id, record, x, item.due, t_last))
                moved.append((item.customer_id, item.due + after))
            kept, recorded = await proc.observer.finish(scored)
            self.stats.observed += recorded
            self.stats.skipped_churned += len(scored) - len(kept)
            out = proc.score_records(kept)
            if out:
                await proc.sink.publish(out)
            await self._index.reschedule(partition, moved)
            sent += len(out)
            self.stats.rescored += len(out)
            if len(due) < cfg.max_per_pass or not moved:
                break
        return sent
