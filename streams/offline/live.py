"""``churnpulse simulate --live``: the simulator publishing straight to Kafka.

The simulation runs day by day (:class:`~streams.simulator.live.LiveSimulation`) and each day's
events and churn labels are published in event-time order, events to the events topic and
labels to the labels topic, at full speed, at ``rate`` records/s, or with simulated time
compressed ``speedup`` times. The records are byte-for-byte the lines of the JSON lines files
the same config writes. The ground truth is never published; with ``truth_dir`` it is written
there at the end (``truth.<format>``), for evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.kafka.chunk import Chunk
from streams.kafka.pacing import make_pacer
from streams.kafka.publish import PumpStats, publish_chunks
from streams.kafka.topics import ensure_topics
from streams.offline.progress import PublishProgress
from streams.settings import Settings
from streams.simulator.config import SimulationConfig
from streams.simulator.formats import truth_csv, truth_jsonl
from streams.simulator.live import LiveSimulation
from streams.simulator.writers import Format


@dataclass(frozen=True)
class LiveResult:
    """What a live run published."""

    days: int
    n_events: int
    n_labels: int
    acknowledged: int
    interrupted: bool
    seconds: float
    truth_path: Path | None

    @property
    def records_per_second(self) -> float:
        return self.acknowledged / self.seconds if self.seconds > 0 else 0.0


def write_truth(sim: LiveSimulation, out_dir: Path, fmt: Format) -> Path:
    """Write the ground truth of the days simulated so far to ``out_dir/truth.<fmt>``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"truth.{fmt}"
    truth = sim.truth()
    if fmt == "parquet":
        truth.to_parquet(path, index=False)
    else:
        path.write_bytes(truth_jsonl(truth) if fmt == "jsonl" else truth_csv(truth))
    return path


def run_live(settings: Settings, config: SimulationConfig, *, rate: float | None = None,
             speedup: float | None = None, progress: bool = True,
             truth_dir: Path | None = None, truth_format: Format = "jsonl",
             stop: Callable[[], bool] | None = None) -> LiveResult:
    """Simulate and publish live; Ctrl-C (main thread) or ``stop()`` ends it cleanly."""
    began = time.monotonic()
    pacer = make_pacer(rate, speedup)  # fails before anything starts on bad flags
    ensure_topics(settings.kafka, settings.topics)
    sim = LiveSimulation(config)
    days_done = [0]

    def chunks() -> Iterator[Chunk]:
        for day in sim.days():
            yield day.chunk
            days_done[0] = day.day + 1

    with PublishProgress("simulate → kafka", config.days, unit="days",
                         enabled=progress) as bar:

        def on_progress(stats: PumpStats) -> None:
            bar.update(stats, days_done[0],
                       extra=f" · {sim.n_events:,} events · {sim.n_labels:,} churns")

        stats = publish_chunks(settings.kafka, [settings.topics.events, settings.topics.labels],
                               chunks(), pacer, stop=stop, on_progress=on_progress)
        if not stats.interrupted:
            days_done[0] = config.days
        on_progress(stats)
        bar.update(stats, days_done[0], force=True)
    truth_path = write_truth(sim, truth_dir, truth_format) if truth_dir is not None else None
    return LiveResult(days_done[0], sim.n_events, sim.n_labels, stats.acknowledged,
                      stats.interrupted, time.monotonic() - began, truth_path)
