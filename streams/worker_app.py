"""Module-level Faust app for ``faust -A streams.worker_app worker`` (reads the environment)."""

from __future__ import annotations

from streams.app import create_app
from streams.settings import load_settings

app = create_app(load_settings())
