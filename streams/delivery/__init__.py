"""Alert delivery: the webhook dispatcher and the support dashboard.

Imports the adapters, the base and the pure packages; never another process."""
