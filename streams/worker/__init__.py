"""The worker process: Faust app frame, the batching events consumer, the event batch processor,
scoring, the sweeper, watermarks.

Imports the adapters (:mod:`streams.kafka`, :mod:`streams.redis`), the base and the pure packages;
never another process."""
