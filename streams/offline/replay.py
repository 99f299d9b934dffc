"""``churnpulse replay``: publish a recorded history to Kafka, in event-time order, resumably.

Steps: read and validate the whole history (:mod:`streams.offline.history`: column mapping, derived
ids, rejects) before anything is published, order it by event time, then publish it with the
batch publisher (:mod:`streams.kafka.publish`) at full speed, at ``rate`` records/s or with event
time compressed ``speedup`` times, events to the events topic and labels to the labels topic.

Bad rows do not stop the replay: they are counted, reported (file, line, column, reason) and
optionally written to a rejects file. More than ``max_rejects`` of them stop it before the first
record is published (a wrong column mapping rejects every row).

Resuming: a checkpoint file (default ``<state dir>/replay/<name>-<hash of the input paths>.json``)
records how many records of the ordered history the broker has acknowledged, written at
most every half second and at the end, atomically. ``resume=True`` skips exactly that many and
publishes the rest. After a clean interruption (Ctrl-C, ``stop``, a broker error) the count is
exact, so the resumed run publishes exactly the missing records. After a hard kill up to half a
second of records is published again; they carry the same event ids, which the feature store
deduplicates. The checkpoint also holds a fingerprint of the inputs (paths, sizes, modification
times), the column mappings, the topics and the brokers: resuming with anything changed is
refused rather than silently skipping the wrong records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.kafka.pacing import make_pacer
from streams.kafka.publish import PumpStats, publish_chunks
from streams.kafka.topics import ensure_topics
from streams.offline.files import Format
from streams.offline.history import History, Rejects, load_history
from streams.offline.progress import PublishProgress
from streams.offline.rows import ColumnMap, EpochUnit, HistoryError
from streams.settings import Settings

CHECKPOINT_VERSION = 1
CHECKPOINT_EVERY_S = 0.5


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how (the ``churnpulse replay`` arguments)."""

    events: Path
    labels: Path | None = None
    event_map: ColumnMap = field(default_factory=lambda: ColumnMap("event"))
    label_map: ColumnMap = field(default_factory=lambda: ColumnMap("label"))
    events_format: Format | None = None
    labels_format: Format | None = None
    assume_utc: bool = False
    epoch_unit: EpochUnit = "s"
    rate: float | None = None
    speedup: float | None = None
    resume: bool = False
    checkpoint: Path | None = None
    max_rejects: int = 100
    rejects_path: Path | None = None
    progress: bool = True


@dataclass
class ReplayResult:
    """What a replay did."""

    total: int
    n_events: int
    n_labels: int
    resumed_from: int
    acknowledged: int
    rejects: Rejects
    interrupted: bool
    seconds: float
    read_seconds: float
    checkpoint: Path

    @property
    def published(self) -> int:
        """Records published by this run."""
        return self.acknowledged - self.resumed_from

    @property
    def complete(self) -> bool:
        return self.acknowledged >= self.total


def _file_identity(path: Path | None) -> list[Any]:
    if path is None:
        return []
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def fingerprint(options: ReplayOptions, settings: Settings) -> str:
    """Hash of everything that decides which record is number n and where it goes."""
    parts = {
        "events": _file_identity(options.events),
        "labels": _file_identity(options.labels),
        "event_map": options.event_map.describe(),
        "label_map": options.label_map.describe(),
        "formats": [options.events_format, options.labels_format],
        "time": [options.assume_utc, options.epoch_unit],
        "topics": [settings.topics.events, settings.topics.labels],
        "brokers": settings.kafka.bootstrap_servers,
    }
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def default_checkpoint(options: ReplayOptions, state_dir: Path) -> Path:
    """``<state_dir>/replay/<events stem>-<hash of the input paths>.json``."""
    inputs = [str(options.events.resolve()),
              str(options.labels.resolve()) if options.labels else ""]
    digest = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:12]
    return state_dir / "replay" / f"{options.events.stem}-{digest}.json"


def read_checkpoint(path: Path, expected: str) -> int | None:
    """Acknowledged count stored at ``path`` (None when there is no checkpoint)."""
    if not path.exists():
        return None
    try:
        data = orjson.loads(path.read_bytes())
        acknowledged = int(data["acknowledged"])
        stored = str(data["fingerprint"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise HistoryError(f"checkpoint {path} is unreadable ({exc}); delete it to start "
                           "over") from None
    if stored != expected:
        raise HistoryError(
            f"checkpoint {path} was written for other inputs (files changed since, or another "
            "column mapping, topic or broker): delete it, or replay without --resume")
    return acknowledged


def write_checkpoint(path: Path, digest: str, acknowledged: int, total: int,
                     options: ReplayOptions) -> None:
    """Write the checkpoint atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "version": CHECKPOINT_VERSION,
        "fingerprint": digest,
        "acknowledged": acknowledged,
        "total": total,
        "events": str(options.events),
        "labels": str(options.labels) if options.labels else None,
        "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def write_rejects(path: Path, rejects: Rejects) -> None:
    """Every rejected row as JSON lines: path, line, column, reason."""
    lines = [orjson.dumps({"path": r.path, "line": r.line, "column": r.column,
                           "reason": r.reason}) for r in rejects.sink or rejects.first]
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def run_replay(settings: Settings, options: ReplayOptions,
               stop: Callable[[], bool] | None = None,
               notify: Callable[[str], None] = lambda _: None) -> ReplayResult:
    """Replay a history; Ctrl-C (in the main thread) or ``stop()`` interrupts it cleanly."""
    began = time.monotonic()
    checkpoint = options.checkpoint or default_checkpoint(options, settings.services.state_dir)
    digest = fingerprint(options, settings)
    start = 0
    if options.resume:
        stored = read_checkpoint(checkpoint, digest)
        if stored is None:
            notify(f"no checkpoint at {checkpoint}: starting from the beginning")
        start = stored or 0
    rejects = Rejects(sink=[] if options.rejects_path else None)
    notify(f"reading {options.events}" + (f" and {options.labels}" if options.labels else ""))
    history = load_history(options.events, options.labels, event_map=options.event_map,
                           label_map=options.label_map, events_format=options.events_format,
                           labels_format=options.labels_format, assume_utc=options.assume_utc,
                           epoch_unit=options.epoch_unit, rejects=rejects,
                           max_rejects=options.max_rejects)
    read_seconds = time.monotonic() - began
    if options.rejects_path is not None:
        write_rejects(options.rejects_path, rejects)
    if start > len(history):
        raise HistoryError(f"checkpoint {checkpoint} says {start:,} records were published but "
                           f"the history has {len(history):,}")
    notify(f"{history.n_events:,} events and {history.n_labels:,} labels in time order, "
           f"{rejects.count:,} rows rejected, read in {read_seconds:.1f} s"
           + (f"; resuming after record {start:,}" if start else ""))
    stats = PumpStats(acknowledged=start)
    if start < len(history):
        ensure_topics(settings.kafka, settings.topics)
        stats = _publish(settings, options, history, start, checkpoint, digest, stop)
    else:
        write_checkpoint(checkpoint, digest, start, len(history), options)
    return ReplayResult(len(history), history.n_events, history.n_labels, start,
                        stats.acknowledged, rejects, stats.interrupted,
                        time.monotonic() - began, read_seconds, checkpoint)


def _publish(settings: Settings, options: ReplayOptions, history: History, start: int,
             checkpoint: Path, digest: str, stop: Callable[[], bool] | None) -> PumpStats:
    saved = [time.monotonic()]
    total = len(history)

    def save(acknowledged: int) -> None:
        write_checkpoint(checkpoint, digest, acknowledged, total, options)

    with PublishProgress("replay", total, enabled=options.progress) as bar:

        def on_progress(stats: PumpStats) -> None:
            bar.update(stats, stats.acknowledged)
            now = time.monotonic()
            if now - saved[0] >= CHECKPOINT_EVERY_S:
                saved[0] = now
                save(stats.acknowledged)

        bar.update(PumpStats(acknowledged=start), start, force=True)
        stats = publish_chunks(settings.kafka, [settings.topics.events, settings.topics.labels],
                               history.chunks(start), make_pacer(options.rate, options.speedup),
                               start=start, stop=stop, on_progress=on_progress, on_exit=save)
        bar.update(stats, stats.acknowledged, force=True)
    return stats
