"""The Kafka adapter: client options, producers, topic creation, topic reading, fast publishing,
pacing.

Imports the base and the pure packages only; never a process."""
