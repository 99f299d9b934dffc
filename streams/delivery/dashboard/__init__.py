"""The support dashboard: a live web page over the alert topics (see docs/dashboard.md)."""
