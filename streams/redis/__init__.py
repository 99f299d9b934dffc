"""The Redis adapter: the client factory, the feature store, pending observations, the model
registry, the alert store, and their Lua scripts (``lua/``).

Imports the base and the pure packages only; never a process."""
