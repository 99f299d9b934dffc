"""RFC 3339 timestamps of every wire record (events, labels, scores, alerts, actions).

The one place that formats and parses them. It lives in the pure layer because both wire
contracts use it: :mod:`alerts.contracts` (scores in, alerts out) and, through
:mod:`streams.timefmt`, :mod:`streams.contracts` (events, labels). Each contract names the
exception a bad timestamp raises (its own poison error, so it reaches the dead-letter topic with
the code ``bad_timestamp``).

>>> format_ts(0.25)
'1970-01-01T00:00:00.250+00:00'
>>> parse_ts("1970-01-01T01:00:00+01:00", error=ValueError)
0.0
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def format_ts(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds (epoch seconds in)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def parse_ts(raw: object, field: str = "ts", *,
             error: Callable[[str, str], Exception]) -> float:
    """Epoch seconds of an RFC 3339 string that carries an offset (``Z`` or ``+hh:mm``).

    Anything else raises ``error("bad_timestamp", detail)``; ``field`` names the value in the
    detail.

    >>> parse_ts("2026-01-01T00:00:00", "at", error=ValueError)
    Traceback (most recent call last):
    ...
    ValueError: ('bad_timestamp', "at '2026-01-01T00:00:00' has no UTC offset")
    """
    if not isinstance(raw, str):
        raise error("bad_timestamp", f"{field} must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise error("bad_timestamp", f"{field} {raw!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise error("bad_timestamp", f"{field} {raw!r} has no UTC offset")
    return parsed.timestamp()
