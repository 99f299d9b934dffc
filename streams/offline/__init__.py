"""Offline tools over a recorded history: reading files, replay to Kafka, the in-process backtest,
warm-start training, reports.

May import the processes' pure parts (worker processor, learner loop, alerter processor), the
adapters and the base; not the CLI."""
