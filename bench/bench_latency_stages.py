"""Where an event's latency goes: the real worker at a fixed offered rate, per second and per stage.

    python bench/bench_latency_stages.py --rate 5000 --seconds 20

Brings nothing up: run it with the local services up (``churnpulse services up``) or through
``scripts/with-services.sh``. Not part of the pass/fail suite.

It starts ``churnpulse worker`` with its :class:`~streams.worker.processor.EventBatchProcessor`
wrapped (``--stage-worker``: the same process, the stages timed with ``time.time()`` and one
line per batch written to a file), publishes events at ``--rate`` for ``--seconds`` like
``bench_pipeline.py``'s latency part, and prints:

* per second of the run: scores, p50/p99/max of event sent → score appended in Kafka (the run's
  scores topic is ``LogAppendTime``) and p99 of event sent → score read by this process;
* per batch, p50/p90/p99 of each stage: waiting to be fetched (from the oldest and the newest
  event's send to the batch's decode), decode, waiting for the previous batch's apply, apply
  (feature script), score, observe (snapshots), waiting for the previous batch's publish, and
  publish (until the broker acknowledged).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
STAGES = ("prepare", "apply", "score", "observe", "publish")


def stage_worker(trace: str) -> int:
    """Run the worker with its batch stages timed into ``trace`` (one line per batch)."""
    from streams.cli.main import main
    from streams.worker import processor

    out = open(trace, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    cls = processor.EventBatchProcessor

    def timed(name: str) -> None:
        orig = getattr(cls, name)

        def note(batch: Any, began: float) -> None:
            marks = batch.__dict__.setdefault("_stages", [])
            marks.append((name, began, time.time()))
            if name == "publish":
                sent = [s.timestamp_ms for s in batch.sources if s.timestamp_ms]
                if sent:
                    out.write(f"{len(batch.records)} {min(sent)} {max(sent)} " + " ".join(
                        f"{n}:{a:.5f}:{b:.5f}" for n, a, b in marks) + "\n")

        if name in ("prepare", "score"):
            @functools.wraps(orig)
            def sync(self: Any, arg: Any) -> Any:
                began = time.time()
                result = orig(self, arg)
                note(result if name == "prepare" else arg, began)
                return result
            setattr(cls, name, sync)
        else:
            @functools.wraps(orig)
            async def run(self: Any, batch: Any) -> Any:
                began = time.time()
                result = await orig(self, batch)
                note(batch, began)
                return result
            setattr(cls, name, run)

    for stage in STAGES:
        timed(stage)
    return int(main(["worker"]))


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def per_stage(trace: Path) -> dict[str, list[float]]:
    """Milliseconds per batch of each stage and of the waits between them."""
    rows: dict[str, list[float]] = {k: [] for k in (
        "events per batch", "fetched (oldest)", "fetched (newest)", "decode", "wait to apply",
        "apply", "score", "observe", "wait to publish", "publish")}
    for line in trace.read_text().splitlines():
        n, oldest, newest, *marks = line.split()
        at = {m.split(":")[0]: (float(m.split(":")[1]), float(m.split(":")[2])) for m in marks}
        if set(at) != set(STAGES):
            continue
        rows["events per batch"].append(float(n))
        rows["fetched (oldest)"].append(at["prepare"][0] * 1000 - int(oldest))
        rows["fetched (newest)"].append(at["prepare"][0] * 1000 - int(newest))
        rows["decode"].append((at["prepare"][1] - at["prepare"][0]) * 1000)
        rows["wait to apply"].append((at["apply"][0] - at["prepare"][1]) * 1000)
        for stage in ("apply", "score", "observe", "publish"):
            rows[stage].append((at[stage][1] - at[stage][0]) * 1000)
        rows["wait to publish"].append((at["publish"][0] - at["observe"][1]) * 1000)
    return rows


def run(rate: float, seconds: float, customers: int) -> None:
    sys.path.insert(0, str(HERE))
    from bench_pipeline import OUT, append_time, prepare, read_latencies, wind_down
    from common import PacedPublisher, new_tag, start_worker
    from kafka import KafkaConsumer

    from streams.settings import load_settings

    bootstrap = load_settings().kafka.bootstrap_servers
    tag = new_tag()
    env = prepare(tag, {})
    append_time(bootstrap, env["CHURN_TOPICS__SCORES"])
    OUT.mkdir(exist_ok=True)
    trace = OUT / f"stages-{tag}.txt"
    trace.write_text("")
    log = OUT / f"stages-{tag}.log"
    worker = start_worker(env, log, cmd=[sys.executable, __file__, "--stage-worker", str(trace)])
    consumer = KafkaConsumer(env["CHURN_TOPICS__SCORES"], bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", group_id=None)
    began = time.time()
    points: list[tuple[float, float, float]] = []  # (sent at, in Kafka ms, read ms)
    thread = PacedPublisher(bootstrap, env["CHURN_TOPICS__EVENTS"], rate, seconds, customers)
    thread.start()
    try:
        points = [(source / 1000 - began, appended, read)
                  for source, appended, read in read_latencies(consumer, thread, seconds)]
    finally:
        wind_down(thread, worker, consumer, env)
    by_second: dict[int, list[tuple[float, float]]] = {}
    for at, in_kafka, read in points:
        by_second.setdefault(int(at), []).append((in_kafka, read))
    print(f"offered {rate:,.0f} events/s for {seconds:.0f} s; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'second':>6}{'scores':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'read p99':>10}")
    for second in sorted(by_second):
        kafka = sorted(p[0] for p in by_second[second])
        read = sorted(p[1] for p in by_second[second])
        print(f"{second:>6}{len(kafka):>8,}{quantile(kafka, .5):>8.0f}{quantile(kafka, .99):>8.0f}"
              f"{kafka[-1]:>8.0f}{quantile(read, .99):>10.0f}")
    kafka = sorted(p[1] for p in points)
    if len(kafka) > 100:
        q = statistics.quantiles(kafka, n=100)
        print(f"whole run: {len(kafka):,} scores, in Kafka p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms")
    print(f"\n{'per batch':<20}{'p50':>8}{'p90':>8}{'p99':>8}   (ms, events for the first row)")
    for name, values in per_stage(trace).items():
        values.sort()
        print(f"{name:<20}{quantile(values, .5):>8.1f}{quantile(values, .9):>8.1f}"
              f"{quantile(values, .99):>8.1f}")
    print(f"\nbatches traced in {trace}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5_000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--stage-worker", metavar="TRACE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_worker:
        raise SystemExit(stage_worker(args.stage_worker))
    run(args.rate, args.seconds, args.customers)


if __name__ == "__main__":
    main()
