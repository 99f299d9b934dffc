"""The alerter process: churn-scores into churn-alerts and retention-actions, exactly once.

Imports the adapters, the base and the pure packages; never another process."""
