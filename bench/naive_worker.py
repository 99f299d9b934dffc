"""The naive per-event worker the pipeline benchmark compares against (bench only).

Same Faust worker, consumer, topics and record formats as ``churnpulse worker``, but every event
costs one Redis round trip (one EVALSHA for that event) and one model call, and yields its own
score — what a straightforward per-message agent does.
"""

from __future__ import annotations

import faust

import streams.worker.app as app_module
from online_models.feature_vector import feature_vector
from streams.contracts import encode
from streams.kafka.topics import ensure_topics
from streams.records import OutRecord
from streams.redis.feature_store import AppliedState
from streams.settings import load_settings
from streams.timefmt import format_ts
from streams.worker.processor import Batch, EventBatchProcessor


class NaiveProcessor(EventBatchProcessor):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._per_event: dict[int, list[tuple[object, AppliedState]]] = {}

    async def apply(self, batch: Batch) -> None:
        done = []
        for event in batch.events:
            states = await self._store.apply([event])
            done.append((event, states[event.customer_id]))
        self._per_event[id(batch)] = done
        batch.handle = await self.models.current()

    def score(self, batch: Batch) -> None:
        handle = batch.handle
        assert handle is not None
        for event, applied in self._per_event.pop(id(batch), []):
            cid = event.customer_id  # type: ignore[attr-defined]
            record = {
                "customer_id": cid, "model_version": handle.version,
                "score": handle.score(feature_vector(applied.state, event.ts,  # type: ignore[attr-defined]
                                                     self.spec)),
                "events_total": int(applied.state.get("n", 0)),
                "scored_at": format_ts(self._wall()),
                "source_timestamp_ms": batch.arrived.get(cid, 0),
            }
            batch.out.append(OutRecord(self.topics.scores, cid.encode(), encode(record)))
            batch.stats.applied += applied.applied
            batch.stats.scores += 1


def main() -> None:
    settings = load_settings()
    ensure_topics(settings.kafka, settings.topics)
    app_module.EventBatchProcessor = NaiveProcessor  # type: ignore[misc]
    app = app_module.create_app(settings)
    faust.Worker(app, loglevel="info").execute_from_commandline()


if __name__ == "__main__":
    main()
