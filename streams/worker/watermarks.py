"""Per-partition event-time clocks: the watermark, and when the sweeper may move past it.

The watermark of a partition is the newest event time applied from it minus the allowed
lateness: events older than that are not expected any more, so a customer whose re-score time
is before it has really been quiet until then. Replays drive it (event time); a live partition
that falls idle would stop it, so in live operation the wall clock may carry it on::

    event  sweep clock = watermark                      (replays: deterministic)
    wall   sweep clock = max(watermark, wall - lateness) (live, also before any event)
    auto   "wall" for a partition that is idle (no events for idle_after_s) and whose last
           events were live (event time within live_lag_s of the wall clock on arrival),
           "event" otherwise
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import SweepSettings


@dataclass(slots=True)
class PartitionClock:
    newest_event: float
    last_arrival: float
    live: bool


class Watermarks:
    """Event-time clocks of the partitions a worker processes.

    >>> from streams.settings import SweepSettings
    >>> w = Watermarks(SweepSettings(allowed_lateness_s=60, clock="auto", idle_after_s=10))
    >>> w.observe(0, newest_event=1000.0, wall=1005.0)
    >>> w.watermark(0), w.sweep_time(0, wall=1006.0), w.sweep_time(0, wall=2000.0)
    (940.0, 940.0, 1940.0)
    >>> w.sweep_time(1, wall=2000.0) is None
    True
    """

    def __init__(self, settings: SweepSettings) -> None:
        self._settings = settings
        self._clocks: dict[int, PartitionClock] = {}

    def observe(self, partition: int, newest_event: float, wall: float) -> None:
        """Events up to ``newest_event`` from ``partition`` were applied at ``wall`` time."""
        clock = self._clocks.get(partition)
        if clock is None:
            clock = self._clocks[partition] = PartitionClock(newest_event, wall, False)
        clock.newest_event = max(clock.newest_event, newest_event)
        clock.last_arrival = wall
        clock.live = wall - clock.newest_event <= self._settings.live_lag_s

    def watermark(self, partition: int) -> float | None:
        clock = self._clocks.get(partition)
        if clock is None:
            return None
        return clock.newest_event - self._settings.allowed_lateness_s

    def sweep_time(self, partition: int, wall: float) -> float | None:
        """Up to which event time customers of ``partition`` may be re-scored now."""
        cfg = self._settings
        mark = self.watermark(partition)
        by_wall = wall - cfg.allowed_lateness_s
        if cfg.clock == "wall":
            return by_wall if mark is None else max(mark, by_wall)
        clock = self._clocks.get(partition)
        if cfg.clock == "event" or clock is None or mark is None:
            return mark
        if clock.live and wall - clock.last_arrival >= cfg.idle_after_s:
            return max(mark, by_wall)
        return mark

    def forget(self, partitions: list[int]) -> None:
        """Partitions revoked: their next owner rebuilds the clocks."""
        for p in partitions:
            self._clocks.pop(p, None)
