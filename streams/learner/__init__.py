"""The learner process, the single writer of the model: labels and the passing of event time into
learning, exactly once.

Imports the adapters, the base and the pure packages; never another process."""
