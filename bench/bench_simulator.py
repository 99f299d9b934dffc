"""Throughput of the customer simulator (run by hand).

    python bench/bench_simulator.py                 # 20k customers x 120 days (~5.5M events)
    python bench/bench_simulator.py --customers 5000 --days 60 --parquet

Prints events generated per second (in memory), events written per second for each
format, and the end-to-end rate of ``run_to_files`` (generate + write, streaming).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import time
from pathlib import Path

from streams.simulator import Format, SimulationConfig, run_to_files, simulate, write_files


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f} events/s  ({n:,} events in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("bench/out/simulator"))
    parser.add_argument("--parquet", action="store_true", help="also time Parquet (pyarrow)")
    args = parser.parse_args()
    config = SimulationConfig(seed=args.seed, n_customers=args.customers, days=args.days)
    formats: list[Format] = ["jsonl", "csv"]
    if args.parquet and importlib.util.find_spec("pyarrow") is not None:
        formats.append("parquet")

    began = time.perf_counter()
    sim = simulate(config)
    generated = time.perf_counter() - began
    n = sim.n_events
    print(f"config: {args.customers:,} customers x {args.days} days, seed {args.seed}")
    print(f"generate (in memory)        {_rate(n, generated)}")
    for fmt in formats:
        out = args.out / f"write-{fmt}"
        began = time.perf_counter()
        write_files(sim, out, fmt)
        written = time.perf_counter() - began
        size = (out / f"events.{fmt}").stat().st_size / 1e6
        print(f"write {fmt:<8}              {_rate(n, written)}  {size:,.0f} MB")
    for fmt in formats[:2]:
        summary = run_to_files(config, args.out / f"run-{fmt}", fmt)
        print(f"run_to_files {fmt:<5} (gen+write) {_rate(summary.n_events, summary.seconds)}")
    shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
