"""Module-level Faust app for ``faust -A streams.worker.faust_app worker`` (reads the
environment)."""

from __future__ import annotations

from streams.settings import load_settings
from streams.worker.app import create_app

app = create_app(load_settings())
