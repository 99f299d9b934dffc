"""The naive per-event worker the pipeline benchmark compares against (bench only).

Same Faust worker, consumer, topics, record formats and job as ``churnpulse worker`` (features
in Redis by the same Lua script, the due-index, a score with its drivers, the learner's snapshot,
the churned check), but every event is handled on its own, as a straightforward per-message
agent would: for each event one feature call (one Redis round trip), one model call, one
snapshot/churned call (one Redis round trip, as the batched worker makes one per batch) and one
publish of its score that waits for the broker's acknowledgement. Only the poll and the offset
commit stay batched (a per-message consumer commits in the background too).
"""

from __future__ import annotations

import faust

import streams.worker.app as app_module
from streams.kafka.topics import ensure_topics
from streams.settings import load_settings
from streams.timefmt import format_ts
from streams.worker.processor import Batch, BatchStats, EventBatchProcessor
from streams.worker.run import use_uvloop
from streams.worker.scoring import PendingScore, build_score


class NaiveProcessor(EventBatchProcessor):
    async def apply(self, batch: Batch) -> None:
        states = []
        after = self._rescore_after_s
        for event in batch.events:
            due = (None if after is None else
                   {event.customer_id: (batch.partition_of[event.customer_id], event.ts + after)})
            applied = await self._store.apply([event], due)  # one round trip per event
            states.append(applied[event.customer_id])
        self._naive_states = states
        batch.handle = await self.models.current()

    def score(self, batch: Batch) -> None:
        handle = batch.handle
        assert handle is not None
        explainer = self.explainers.of(handle)
        for event, applied in zip(batch.events, self._naive_states, strict=True):
            state = applied.state
            t_last = state.get("t_last", event.ts)
            now = max(event.ts, t_last)
            record, x = build_score(event.customer_id, state, now, handle, self.spec,
                                    reason="event", scored_at=format_ts(self._wall()),
                                    last_event_id=event.event_id, events_applied=applied.applied,
                                    source_timestamp_ms=batch.arrived.get(event.customer_id, 0),
                                    explainer=explainer)
            batch.stats.applied += applied.applied
            batch.scored.append(PendingScore(event.customer_id, record, x, now, t_last))
        self._naive_states = []

    async def observe(self, batch: Batch) -> None:
        for pending in batch.scored:  # one snapshot/churned round trip per event
            kept, recorded = await self.observer.finish([pending])
            batch.stats.observed += recorded
            batch.stats.scores += len(kept)
            batch.out.extend(self.score_records(kept))
        batch.scored = []

    async def publish(self, batch: Batch) -> BatchStats:
        for record in batch.out:  # one acknowledged publish per event
            await self.sink.publish([record])
        self.totals.add(batch.stats)
        return batch.stats


def main() -> None:
    settings = load_settings()
    ensure_topics(settings.kafka, settings.topics)
    app_module.EventBatchProcessor = NaiveProcessor  # type: ignore[attr-defined]
    use_uvloop()  # the same event loop as churnpulse worker
    app = app_module.create_app(settings)
    faust.Worker(app, loglevel="info").execute_from_commandline()


if __name__ == "__main__":
    main()
