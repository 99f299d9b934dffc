"""The peer the pipeline benchmark measures us against: our job as a Quix Streams application.

What a team would build instead of adopting churnpulse: a Quix Streams (``pip install
'churnpulse[bench]'``) dataframe over the events topic, the feature state of each customer in
Quix's RocksDB state store, and our own pure code from ``online_models/`` for the work: the
feature update (:func:`~online_models.features.apply_event`), the feature vector, the model's
score and the drivers, one score per event to the scores topic, in the same record format.

It has fewer guarantees than our worker (no event deduplication, no due-index for re-scoring
quiet customers, no snapshots for the learner, state only inside this process), which makes it a
lower bound on what the same job costs in Quix. Run by ``bench/bench_pipeline.py``, configured
with the same ``CHURN_*`` environment as the worker; prints ``quix peer ready`` when it starts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from quixstreams import Application

from online_models.explain import LinearExplainer
from online_models.feature_vector import feature_vector
from online_models.features import apply_event
from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from streams.contracts import decode_event, encode
from streams.errors import InvalidMessage
from streams.settings import load_settings
from streams.timefmt import format_ts
from streams.worker.scoring import TOP_DRIVERS

READY = "quix peer ready"


def main() -> None:
    settings = load_settings()
    spec = settings.features.spec
    handle = ModelHandle(UNTRAINED_VERSION, make_model())
    explainer = LinearExplainer.of(handle.model)
    state_dir = Path(os.environ.get("QUIX_PEER_STATE_DIR", "bench/out/quix-state"))
    app = Application(broker_address=settings.kafka.bootstrap_servers,
                      consumer_group=f"{settings.worker.app_id}.quix-peer",
                      auto_offset_reset="earliest", state_dir=str(state_dir),
                      loglevel="WARNING")
    events = app.topic(settings.topics.events, key_deserializer="bytes",
                       value_deserializer="bytes")
    scores = app.topic(settings.topics.scores, key_serializer="bytes", value_serializer="bytes")

    def step(value: bytes, key: Any, timestamp: int, headers: Any, state: Any) -> bytes | None:
        try:
            event = decode_event(value, key)
        except InvalidMessage:
            return None
        features = apply_event(state.get("s", {}), event.event_type, event.ts, event.value, spec)
        state.set("s", features)
        x = feature_vector(features, event.ts, spec)
        score = handle.score(x)
        return encode({
            "schema_version": 1, "score_id": f"{event.customer_id}:{event.event_id}:"
                                             f"{handle.version}",
            "customer_id": event.customer_id, "score": score, "model_version": handle.version,
            "ts": format_ts(max(event.ts, features["t_last"])), "reason": "event",
            "last_event_id": event.event_id, "events_total": int(features["n"]),
            "events_applied": 1, "scored_at": format_ts(time.time()),
            "source_timestamp_ms": timestamp,
            "drivers": explainer.drivers(x, TOP_DRIVERS) if explainer is not None else [],
        })

    sdf = app.dataframe(events)
    sdf = sdf.apply(step, stateful=True, metadata=True)
    sdf = sdf.filter(lambda v: v is not None)
    sdf.to_topic(scores)
    print(READY, flush=True)
    app.run()


if __name__ == "__main__":
    main()
