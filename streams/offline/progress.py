"""The progress display of publishing commands (``replay``, ``simulate --live``).

One rich progress bar on stderr: what is done of the total, records published and
acknowledged, the publishing rate over the last seconds, the event time reached, elapsed time
and ETA. Disabled, it prints nothing at all.
"""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from streams.kafka.publish import PumpStats
from streams.timefmt import format_ms

RATE_WINDOW_S = 5.0


class RateMeter:
    """Records per second over a sliding window of samples.

    >>> meter = RateMeter()
    >>> _ = meter.add(0.0, 0)
    >>> meter.add(2.0, 1000)
    500.0
    """

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, count: int) -> float:
        """Add a sample; return the rate over the window."""
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window_s:
            samples.popleft()
        t0, c0 = samples[0]
        return (count - c0) / (now - t0) if now > t0 else 0.0


class PublishProgress:
    """A progress bar for a publishing run.

    Parameters
    ----------
    title : str
        Shown in front of the bar.
    total : int or None
        Units of work (records, or simulated days); None when unknown.
    unit : str
        Name of the unit of ``total``.
    enabled : bool
        False prints nothing.
    """

    def __init__(self, title: str, total: int | None, unit: str = "records",
                 enabled: bool = True) -> None:
        self.unit = unit
        self._meter = RateMeter()
        self._last = 0.0
        self._progress = Progress(
            TextColumn(f"[bold]{title}[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("· {task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(title, total=total, detail="starting")

    def __enter__(self) -> PublishProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def update(self, stats: PumpStats, completed: int, extra: str = "",
               force: bool = False) -> None:
        """Show ``completed`` units and the publishing stats (throttled to 10 updates/s)."""
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        rate = self._meter.add(now, stats.sent)
        when = "" if stats.last_ts_ms is None else f" · at {format_ms(stats.last_ts_ms)[:19]}"
        detail = (f"{stats.sent:,} sent · {stats.acknowledged:,} acked · {rate:,.0f}/s"
                  f"{when}{extra}")
        self._progress.update(self._task, completed=completed, detail=detail)
