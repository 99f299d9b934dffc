"""``churnpulse`` subcommands for data (simulate, replay)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``churnpulse`` parser."""
