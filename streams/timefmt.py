"""Timestamps on the streams side: :func:`format_ts` and a :func:`parse_ts` whose bad input is
poison (:class:`~streams.errors.InvalidMessage`, code ``bad_timestamp``).

Both come from the one implementation in :mod:`alerts.timefmt` (the pure layer, so the score
contract in :mod:`alerts.contracts` shares it).

>>> format_ts(0.25)
'1970-01-01T00:00:00.250+00:00'
"""

from __future__ import annotations

import datetime as dt

from alerts.timefmt import format_ts
from alerts.timefmt import parse_ts as _parse_ts
from streams.errors import InvalidMessage

__all__ = ["format_ms", "format_ts", "parse_ts"]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_ts(raw: object, field: str = "ts") -> float:
    """Parse an RFC 3339 timestamp that carries an offset into epoch seconds.

    >>> parse_ts("1970-01-01T01:00:00+01:00")
    0.0
    >>> parse_ts("2026-01-01T00:00:00")
    Traceback (most recent call last):
    ...
    streams.errors.InvalidMessage: bad_timestamp: ts '2026-01-01T00:00:00' has no UTC offset
    >>> parse_ts(5, "--at")
    Traceback (most recent call last):
    ...
    streams.errors.InvalidMessage: bad_timestamp: --at must be an RFC 3339 string
    """
    return _parse_ts(raw, field, error=InvalidMessage)


def format_ms(ts_ms: int) -> str:
    """:func:`format_ts` of epoch milliseconds, exact (no float on the way; the replay path).

    >>> format_ms(1767225600250)
    '2026-01-01T00:00:00.250+00:00'
    """
    return (EPOCH + dt.timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")
