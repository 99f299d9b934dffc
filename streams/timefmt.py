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

__all__ = ["CanonicalTimes", "format_ms", "format_ts", "parse_ts"]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
HOURS_MAX = 4096
_MINUTE_SECOND = {f":{m:02d}:{s:02d}": (m * 60 + s) * 1_000_000
                  for m in range(60) for s in range(60)}
"""``:MM:SS`` -> microseconds into the hour (3,600 entries)."""
_FRACTION = {**{f".{ms:03d}+00:00": ms * 1000 for ms in range(1000)},
             **{f".{ms:03d}Z": ms * 1000 for ms in range(1000)}}
"""``.mmm+00:00`` and ``.mmmZ`` -> microseconds (2,000 entries)."""


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


class CanonicalTimes:
    """:func:`parse_ts` of the timestamps producers emit (:func:`format_ts`'s shape,
    ``YYYY-MM-DDTHH:MM:SS.mmm+00:00`` or ``...mmmZ``) without a regex nor a ``datetime``:
    three slices and three dict look-ups, about a tenth of the full check and parse.

    :meth:`parse` answers only for a string whose date and hour (its first 13 characters) an
    earlier string in that shape passed the full check with (:meth:`learn`), and whose minutes,
    seconds, milliseconds and offset are one of the tables' exact spellings; for anything else
    it answers None and the caller runs the full check, which raises what it always raised. Such a
    string is valid, and its value is :func:`parse_ts`'s to the last bit: ``datetime.timestamp``
    of an aware time divides its whole microseconds since the epoch by 10⁶ (one correctly
    rounded integer division), as :meth:`parse` does (``tests/unit/test_canonical_times.py``).

    >>> times = CanonicalTimes()
    >>> times.parse("2026-01-01T05:06:07.250+00:00") is None  # hour not seen yet
    True
    >>> times.learn("2026-01-01T05:00:00.000+00:00")
    >>> times.parse("2026-01-01T05:06:07.250+00:00") == parse_ts("2026-01-01T05:06:07.250Z")
    True
    >>> times.parse("2026-01-01T05:06:60.250+00:00") is None  # not a spelling of the tables
    True
    """

    def __init__(self) -> None:
        self._hours: dict[str, int] = {}

    def parse(self, raw: str) -> float | None:
        """Epoch seconds of ``raw``, or None when it is not in the known shape."""
        hour = self._hours.get(raw[:13])
        if hour is None:
            return None
        within = _MINUTE_SECOND.get(raw[13:19])
        fraction = _FRACTION.get(raw[19:])
        if within is None or fraction is None:
            return None
        return (hour + within + fraction) / 1_000_000

    def learn(self, raw: str) -> None:
        """Remember the date and hour of ``raw``, a string that passed the full check (the
        regex and :func:`parse_ts`), when it is in the known shape; bounded."""
        if raw[13:19] not in _MINUTE_SECOND or raw[19:] not in _FRACTION:
            return
        if len(self._hours) >= HOURS_MAX:
            self._hours.clear()
        hour = _parse_ts(raw[:13] + ":00:00+00:00", error=InvalidMessage)
        self._hours[raw[:13]] = int(hour) * 1_000_000


def format_ms(ts_ms: int) -> str:
    """:func:`format_ts` of epoch milliseconds, exact (no float on the way; the replay path).

    >>> format_ms(1767225600250)
    '2026-01-01T00:00:00.250+00:00'
    """
    return (EPOCH + dt.timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")
