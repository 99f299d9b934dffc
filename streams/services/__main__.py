"""``python -m streams.services up|down|status|reset``: the local services without the main CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streams.services.common import ServiceError, format_table
from streams.services.manager import down, reset, status, up
from streams.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.services", description="Local Kafka and Redis for churnpulse."
    )
    parser.add_argument("action", choices=("up", "down", "status", "reset"))
    args = parser.parse_args(argv)
    settings = load_settings()
    action = {"up": up, "down": down, "status": status, "reset": reset}[args.action]
    try:
        rows = action(settings)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
