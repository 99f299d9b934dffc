"""Same config => byte-identical files; different seed => different files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from streams.simulator import (
    Format,
    ParquetUnavailableError,
    SimulationConfig,
    run_to_files,
    simulate,
    write_files,
)

CFG = SimulationConfig(seed=3, n_customers=400, days=45, return_share=0.3)
NAMES = ("events", "labels", "truth")


def _read(out: Path, ext: str) -> dict[str, bytes]:
    return {name: (out / f"{name}.{ext}").read_bytes() for name in NAMES}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_same_seed_gives_byte_identical_files(
    tmp_path: Path, fmt: Format, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_to_files(CFG, tmp_path / "a", fmt)
    run_to_files(CFG, tmp_path / "b", fmt, progress=True)  # progress goes to stderr only
    write_files(simulate(CFG), tmp_path / "c", fmt)
    a, b, c = (_read(tmp_path / d, fmt) for d in "abc")
    assert first.n_events > 10_000
    assert first.n_labels > 0
    assert a == b == c
    assert capsys.readouterr().out == ""


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    run_to_files(CFG, tmp_path / "a")
    run_to_files(CFG.replace(seed=4), tmp_path / "b")
    a, b = _read(tmp_path / "a", "jsonl"), _read(tmp_path / "b", "jsonl")
    for name in NAMES:
        assert a[name] != b[name]


def test_csv_and_jsonl_describe_the_same_events(tmp_path: Path) -> None:
    run_to_files(CFG, tmp_path, "csv")
    frame = pd.read_csv(tmp_path / "events.csv", keep_default_na=False, dtype=str)
    assert list(frame.columns) == [
        "event_id", "customer_id", "event_type", "ts", "value", "properties"
    ]  # fmt: skip
    records = list(simulate(CFG).iter_events())
    assert len(frame) == len(records)
    for row, rec in zip(frame.itertuples(index=False), records, strict=True):
        assert (row.event_id, row.customer_id, row.event_type, row.ts) == (
            rec["event_id"], rec["customer_id"], rec["event_type"], rec["ts"]
        )  # fmt: skip
        assert row.value == (repr(rec["value"]) if "value" in rec else "")
        assert (json.loads(str(row.properties)) if row.properties else None) == rec.get(
            "properties"
        )


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow missing")
def test_parquet_round_trip(tmp_path: Path) -> None:
    sim = simulate(CFG)
    write_files(sim, tmp_path, "parquet")
    events = pd.read_parquet(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(events, sim.events_frame())
    truth = pd.read_parquet(tmp_path / "truth.parquet")
    assert len(truth) == CFG.n_customers
    assert len(pd.read_parquet(tmp_path / "labels.parquet")) == len(sim.labels)


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    with pytest.raises(ParquetUnavailableError, match="pip install pyarrow"):
        run_to_files(CFG, tmp_path, "parquet")
    assert not (tmp_path / "events.parquet").exists()


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        run_to_files(CFG, tmp_path, "xml")  # type: ignore[arg-type]
