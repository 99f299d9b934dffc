"""How many records may be published now: full speed, N records/s, or compressed event time.

A pacer is pure arithmetic over an injected clock reading; :func:`streams.kafka.publish.pump` asks
it
how many of the next records are due and how long to wait otherwise.

>>> pacer = RatePacer(100.0)
>>> pacer.due(now=10.0, sent=0, ts_ms=[0, 0, 0], start=0)   # the first record goes at once
1
>>> pacer.due(now=10.5, sent=1, ts_ms=[0, 0, 0], start=1)   # 51 due by then, 2 left here
2
>>> SpeedupPacer(3600.0).due(now=0.0, sent=0, ts_ms=[0, 1_000_000, 7_200_000], start=0)
1
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Protocol

#: Longest single wait, so that a stop request is noticed quickly.
MAX_WAIT_S = 0.1


class Pacer(Protocol):
    """Decides how many records are due; ``now`` is a monotonic clock reading in seconds."""

    def due(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> int:
        """How many of ``ts_ms[start:]`` may be published now (``sent`` so far in total)."""
        ...

    def wait_s(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> float:
        """Seconds until the next record is due (only asked when :meth:`due` said 0)."""
        ...


class FullSpeed:
    """No pacing: everything is due at once."""

    def due(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> int:
        return len(ts_ms) - start

    def wait_s(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> float:
        return 0.0


class RatePacer:
    """``rate`` records per second, counted from the first call.

    Parameters
    ----------
    rate : float
        Target records per second (events and labels together), > 0.
    """

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self._t0: float | None = None
        self._sent0 = 0

    def _budget(self, now: float, sent: int) -> int:
        if self._t0 is None:
            self._t0, self._sent0 = now, sent
        return self._sent0 + math.floor((now - self._t0) * self.rate) + 1 - sent

    def due(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> int:
        return max(0, min(len(ts_ms) - start, self._budget(now, sent)))

    def wait_s(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> float:
        if self._t0 is None:
            return 0.0
        next_due = self._t0 + (sent - self._sent0) / self.rate
        return min(MAX_WAIT_S, max(0.0, next_due - now))


class SpeedupPacer:
    """Event time compressed ``speedup`` times: a record stamped ``t`` goes out at
    ``wall0 + (t - t0) / speedup``, ``t0`` being the first record's event time.

    Parameters
    ----------
    speedup : float
        Simulated (event-time) seconds per wall-clock second, > 0 (86400 = a day per second).
    """

    def __init__(self, speedup: float) -> None:
        if not speedup > 0:
            raise ValueError("speedup must be > 0")
        self.speedup = speedup
        self._wall0: float | None = None
        self._ts0 = 0

    def _horizon_ms(self, now: float, ts_ms: Sequence[int], start: int) -> float:
        if self._wall0 is None:
            self._wall0, self._ts0 = now, ts_ms[start]
        return self._ts0 + (now - self._wall0) * self.speedup * 1000.0

    def due(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> int:
        if start >= len(ts_ms):
            return 0
        horizon = self._horizon_ms(now, ts_ms, start)
        return bisect.bisect_right(ts_ms, horizon, lo=start) - start

    def wait_s(self, now: float, sent: int, ts_ms: Sequence[int], start: int) -> float:
        if start >= len(ts_ms):
            return 0.0
        horizon = self._horizon_ms(now, ts_ms, start)
        wait = (ts_ms[start] - horizon) / 1000.0 / self.speedup
        return min(MAX_WAIT_S, max(0.0, wait))


def make_pacer(rate: float | None = None, speedup: float | None = None) -> Pacer:
    """The pacer for CLI flags: ``rate`` or ``speedup`` (not both), else full speed."""
    if rate is not None and speedup is not None:
        raise ValueError("give --rate or --speedup, not both")
    if rate is not None:
        return RatePacer(rate)
    if speedup is not None:
        return SpeedupPacer(speedup)
    return FullSpeed()
