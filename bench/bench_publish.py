"""Publishing throughput into the local broker from one process (run by hand).

    churnpulse services up
    python bench/bench_publish.py                       # 5k customers x 60 days (~0.7M events)
    python bench/bench_publish.py --customers 20000 --days 30 --repeat 3

Prints records/s (acknowledged by the broker, acks=all) for:

* ``simulate --live``: simulation + wire encoding + batch publishing, one process;
* the batch publisher alone on pre-encoded records (``streams.kafka.publish``);
* ``replay`` of the JSON lines files at full speed: reading + validating, then publishing;
* the producer SDK (kafka-python ``send``, ``streams.kafka.producer``) on the same records.

Each run uses fresh topics (``bench-pub-<tag>-*``, 4 partitions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from streams.kafka.chunk import Chunk
from streams.kafka.pacing import FullSpeed
from streams.kafka.producer import ChurnProducer
from streams.kafka.publish import BatchPublisher, pump
from streams.kafka.topics import ensure_topics
from streams.offline.live import run_live
from streams.offline.replay import ReplayOptions, run_replay
from streams.settings import Settings, load_settings
from streams.simulator import SimulationConfig, simulate, write_files
from streams.simulator.live import LiveSimulation


def fresh_settings(out: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    bootstrap = os.environ.get("CHURN_KAFKA__BOOTSTRAP_SERVERS") or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    names = ("events", "labels", "scores", "alerts", "dead_letter")
    settings = load_settings(kafka={"bootstrap_servers": bootstrap},
                             topics={n: f"bench-pub-{tag}-{n}" for n in names},
                             services={"state_dir": out / "state"})
    ensure_topics(settings.kafka, settings.topics)
    return settings


def bench_live(config: SimulationConfig, out: Path) -> tuple[int, float]:
    settings = fresh_settings(out)
    result = run_live(settings, config, progress=False)
    return result.acknowledged, result.seconds


def bench_batches(chunks: list[Chunk], out: Path) -> tuple[int, float]:
    settings = fresh_settings(out)

    async def main() -> tuple[int, float]:
        publisher = await BatchPublisher.open(settings.kafka,
                                              [settings.topics.events, settings.topics.labels])
        try:
            began = time.perf_counter()
            stats = await pump(chunks, publisher, FullSpeed())
            return stats.acknowledged, time.perf_counter() - began
        finally:
            await publisher.close()

    return asyncio.run(main())


def bench_replay(files: Path, out: Path) -> tuple[int, float, float]:
    settings = fresh_settings(out)
    result = run_replay(settings, ReplayOptions(events=files / "events.jsonl",
                                                labels=files / "labels.jsonl", progress=False))
    return result.acknowledged, result.seconds, result.read_seconds


def bench_sdk(chunks: list[Chunk], out: Path, limit: int) -> tuple[int, float]:
    settings = fresh_settings(out)
    topics = [settings.topics.events, settings.topics.labels]
    n = 0
    with ChurnProducer.from_settings(settings.kafka, settings.topics) as producer:
        began = time.perf_counter()
        for chunk in chunks:
            for kind, key, value in zip(chunk.kinds, chunk.keys, chunk.values, strict=True):
                producer.send_raw(topics[kind], key, value)  # pre-encoded, as above
                n += 1
                if n >= limit:
                    break
            if n >= limit:
                break
        producer.flush()
        return n, time.perf_counter() - began


def _line(name: str, runs: list[tuple[int, float]], note: str = "") -> None:
    rates = [n / s for n, s in runs]
    spread = f"{min(rates):>10,.0f} – {max(rates):>9,.0f}" if len(rates) > 1 else " " * 22
    print(f"{name:<34}{statistics.median(rates):>10,.0f} records/s  {spread}  "
          f"({runs[0][0]:,} records){note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (median, range)")
    parser.add_argument("--sdk-records", type=int, default=200_000,
                        help="records sent with the kafka-python SDK (it is slow)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/publish"))
    args = parser.parse_args()
    config = SimulationConfig(seed=args.seed, n_customers=args.customers, days=args.days)
    args.out.mkdir(parents=True, exist_ok=True)
    files = args.out / "files"
    write_files(simulate(config), files, "jsonl")
    chunks = [day.chunk for day in LiveSimulation(config).days()]
    print(f"config: {args.customers:,} customers x {args.days} days, seed {args.seed}; "
          f"median and range of {args.repeat} runs; acks=all, 4 partitions")
    measures: list[tuple[str, Callable[[], tuple[int, float]]]] = [
        ("simulate --live (sim + publish)", lambda: bench_live(config, args.out)),
        ("batch publisher, pre-encoded", lambda: bench_batches(chunks, args.out)),
    ]
    for name, run in measures:
        _line(name, [run() for _ in range(args.repeat)])
    replays = [bench_replay(files, args.out) for _ in range(args.repeat)]
    _line("replay jsonl, end to end", [(n, s) for n, s, _ in replays])
    _line("replay jsonl, publishing phase", [(n, s - r) for n, s, r in replays],
          f"  after reading at {statistics.median(n / r for n, _, r in replays):,.0f} rows/s")
    _line("producer SDK (kafka-python send)",
          [bench_sdk(chunks, args.out, args.sdk_records) for _ in range(args.repeat)])
    shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
