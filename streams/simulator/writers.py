"""Writing runs to files: ``events.<ext>``, ``labels.<ext>``, ``truth.<ext>``.

``truth`` is the hidden ground truth: keep it out of anything published to the pipeline.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast, get_args

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.simulator.columns import EventColumns, LabelColumns
from streams.simulator.config import SimulationConfig
from streams.simulator.engine import Engine
from streams.simulator.formats import (
    CSV_EVENT_COLUMNS,
    WireFormatter,
    truth_csv,
    truth_jsonl,
)
from streams.simulator.schema import customer_ids
from streams.simulator.simulation import Simulation

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[str, ...] = get_args(Format)
WRITE_CHUNK = 100_000
PARQUET_ROW_GROUP = 1_000_000


class ParquetUnavailableError(RuntimeError):
    """Parquet output was requested but pyarrow is not installed."""


@dataclass(frozen=True)
class RunSummary:
    """What a write produced."""

    events_path: Path
    labels_path: Path
    truth_path: Path
    n_events: int
    n_labels: int
    n_customers: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Events generated and written per wall-clock second."""
        return self.n_events / self.seconds if self.seconds > 0 else float("inf")


class _Sink:
    """Streams event chunks to ``events.<ext>``; labels and truth are written on close."""

    def __init__(self, out_dir: Path, fmt: Format, formatter: WireFormatter) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        if fmt == "parquet":
            _require_pyarrow()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.fmt, self.formatter = fmt, formatter
        self.paths = tuple(out_dir / f"{name}.{fmt}" for name in ("events", "labels", "truth"))
        self.n_events = 0
        self._parts: list[EventColumns] = []
        self._file: IO[bytes] | None = None
        if fmt != "parquet":
            self._file = self.paths[0].open("wb")
            if fmt == "csv":
                self._file.write((",".join(CSV_EVENT_COLUMNS) + "\n").encode())

    def events(self, cols: EventColumns) -> None:
        for start in range(0, len(cols), WRITE_CHUNK):
            chunk = cols.slice(start, start + WRITE_CHUNK)
            if self._file is None:
                self._parts.append(chunk)
            elif self.fmt == "jsonl":
                self._file.write(self.formatter.jsonl_events(chunk, self.n_events))
            else:
                self._file.write(self.formatter.csv_events(chunk, self.n_events))
            self.n_events += len(chunk)

    def close(self, labels: LabelColumns, truth: pd.DataFrame) -> None:
        labels_path, truth_path = self.paths[1:]
        if self._file is not None:
            self._file.close()
        if self.fmt == "jsonl":
            labels_path.write_bytes(self.formatter.jsonl_labels(labels))
            truth_path.write_bytes(truth_jsonl(truth))
        elif self.fmt == "csv":
            labels_path.write_bytes(self.formatter.csv_labels(labels))
            truth_path.write_bytes(truth_csv(truth))
        else:
            self._write_parquet(labels, truth)

    def _write_parquet(self, labels: LabelColumns, truth: pd.DataFrame) -> None:
        events = EventColumns.concat(self._parts)
        frame = self.formatter.events_frame(events, 0)
        frame.to_parquet(self.paths[0], index=False, row_group_size=PARQUET_ROW_GROUP)
        label_frame = pd.DataFrame(self.formatter.label_records(labels))
        label_frame = label_frame.drop(columns="schema_version", errors="ignore")
        if not label_frame.empty:
            label_frame["ts"] = pd.to_datetime(labels.ts_ms, unit="ms", utc=True)
        label_frame.to_parquet(self.paths[1], index=False)
        truth.to_parquet(self.paths[2], index=False)


def _require_pyarrow() -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise ParquetUnavailableError(
            "Parquet output needs pyarrow, which is not installed: `pip install pyarrow` "
            "or use fmt='jsonl' / 'csv'."
        )


def write_files(sim: Simulation, out_dir: str | Path, fmt: Format = "jsonl") -> RunSummary:
    """Write a finished simulation to ``out_dir`` as events/labels/truth files.

    Parameters
    ----------
    sim : Simulation
    out_dir : str or Path
        Created if missing; existing files of the same names are overwritten.
    fmt : {"jsonl", "csv", "parquet"}
        Parquet needs pyarrow (:class:`ParquetUnavailableError` otherwise).

    Returns
    -------
    RunSummary
    """
    began = time.perf_counter()
    sink = _Sink(Path(out_dir), fmt, sim.formatter)
    sink.events(sim.events)
    sink.close(sim.labels, sim.ground_truth())
    return _summary(sink, len(sim.labels), sim.config.n_customers, began)


def run_to_files(
    config: SimulationConfig,
    out_dir: str | Path,
    fmt: Format = "jsonl",
    progress: bool = False,
) -> RunSummary:
    """Simulate and write day by day (events are streamed, never all held in memory).

    The files are byte-identical to ``write_files(simulate(config), out_dir, fmt)``.

    Parameters
    ----------
    config : SimulationConfig
    out_dir : str or Path
    fmt : {"jsonl", "csv", "parquet"}
    progress : bool
        Show a rich progress bar (simulated days, events written) on stderr.

    Returns
    -------
    RunSummary
    """
    began = time.perf_counter()
    engine = Engine(config)
    ids = customer_ids(config.n_customers)
    sink = _Sink(Path(out_dir), fmt, WireFormatter(config.seed, ids, engine.props,
                                                        config.event_types))
    labels: list[LabelColumns] = []
    columns = (
        TextColumn("[bold]simulate[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days · {task.fields[events]:,} events · {task.fields[labels]:,} churns"),
        TimeElapsedColumn(),
    )
    bar = Progress(*columns, console=Console(stderr=True), disable=not progress)
    with bar:
        task = bar.add_task(str(config.start), total=config.days, events=0, labels=0)
        for batch in engine.run():
            sink.events(batch.events)
            labels.append(batch.labels)
            bar.update(task, advance=1, events=sink.n_events, labels=sum(len(x) for x in labels))
    sink.close(LabelColumns.concat(labels), engine.truth(ids))
    return _summary(sink, sum(len(x) for x in labels), config.n_customers, began)


def _summary(sink: _Sink, n_labels: int, n_customers: int, began: float) -> RunSummary:
    events_path, labels_path, truth_path = sink.paths
    return RunSummary(
        events_path,
        labels_path,
        truth_path,
        sink.n_events,
        n_labels,
        n_customers,
        time.perf_counter() - began,
    )


def parse_format(text: str) -> Format:
    """Validate a format name coming from a CLI."""
    if text not in FORMATS:
        raise ValueError(f"unknown format {text!r}; expected one of {', '.join(FORMATS)}")
    return cast(Format, text)
