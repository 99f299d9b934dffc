"""The worker process: Faust app frame, the batching events consumer, the event batch processor,
scoring, the sweeper, watermarks, the warm-up run before the first batch.

Imports the adapters (:mod:`streams.kafka`, :mod:`streams.redis`), the base and the pure packages;
never another process."""
