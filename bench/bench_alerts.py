"""Alerter benchmark on the local services: alerts/s, and event-to-alert latency p50/p99.

Run by hand with the local services up (``churnpulse services up``)::

    python bench/bench_alerts.py                      # both parts
    python bench/bench_alerts.py --part throughput --customers 20000
    python bench/bench_alerts.py --part process --profile 25   # in process, no Kafka
    python bench/bench_alerts.py --part digest   # hash of outputs and stored records

Not part of the pass/fail suite; prints figures and writes ``bench/out/alerts.json``.

* throughput: a backlog of crafted scores (random walks across the thresholds, 5% duplicates,
  15% sweep scores) is published first, then one ``churnpulse alerter`` drains it. Scores/s and
  alerts/s are counted from the alerter's ready line to the last alert committed (read back with
  ``isolation_level=read_committed``), so they include the Kafka transactions, the Redis reads
  and the all-or-nothing Lua write of every batch. The alerter process's CPU time per score
  (``/proc/<pid>/stat``, from its ready line to the last alert) and the load average are
  printed beside the rate.
* process: the same crafted scores through the alerter's batch processor in this process
  (``build_alerter``: the real Redis store, feature reader and policy; no Kafka), in batches
  of ``--batch`` scores per partition of 4: CPU µs per score and scores/s of the processing
  alone; ``--profile N`` prints the N largest cProfile entries (the profiler itself roughly
  doubles the time).
* latency: a real worker (with a published model that reads complaints as churn risk) and a
  real alerter; events are published at ``--rate`` events/s in rounds (one event per customer
  per round: sessions, then complaints). Each alert is timed from the broker timestamp of the
  event that triggered its score (``source_timestamp_ms``) to the moment a ``read_committed``
  consumer receives it: event produced → alert committed and visible.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from datetime import datetime
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer

from alerts.policy import PolicyParams
from streams.contracts import CustomerEvent
from streams.dev.crafted import (
    complaint_model,
    crafted_scores,
    expected_alert_ids,
    publish,
)
from streams.dev.pipeline import Pipeline, forget_prefix, wait_until
from streams.records import RawRecord
from streams.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
T_CHURN = 1_767_225_600.0  # digest part: churn marks from 2026-01-01


class AlertWatcher(threading.Thread):
    """Reads the alerts topic (read_committed) and stamps each alert with its arrival time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      isolation_level="read_committed", fetch_max_wait_ms=20)
        self.seen: list[tuple[float, dict[str, object]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for batch in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                self.seen.extend((now, orjson.loads(m.value)) for m in batch)
        self.consumer.close()


def throughput(bootstrap: str, redis_url: str, customers: int,
               per_customer: int, py_spy: str = "") -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        p = Pipeline(bootstrap, redis_url, Path(tmp))
        records = crafted_scores(customers, per_customer, seed=1)
        expected = len(expected_alert_ids(records, PolicyParams()))
        print(f"throughput: {len(records):,} scores, {expected:,} alerts expected")
        publish(bootstrap, p.scores, records)
        watcher = AlertWatcher(bootstrap, f"alerts-{p.tag}")
        watcher.start()
        try:
            proc = p.start_alerter()
            started, cpu0, faults0 = time.time(), cpu_seconds(proc.pid), minor_faults(proc.pid)
            spy = (subprocess.Popen([py_spy_command(), "record", "--idle", "--pid",
                                     str(proc.pid), "--output", py_spy, "--rate", "250",
                                     *py_spy_args(py_spy)])
                   if py_spy else None)
            wait_until(lambda: len(watcher.seen) >= expected, 600, "all alerts", 0.05)
            cpu = cpu_seconds(proc.pid) - cpu0
            faults = minor_faults(proc.pid) - faults0
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                spy.wait(timeout=60)
            elapsed = watcher.seen[-1][0] - started
            load = os.getloadavg()[0]
        finally:
            watcher.stop.set()
            p.stop_all()
            _cleanup(redis_url, p.prefix)
            print("  " + _totals(Path(tmp)))
    result = {"scores": len(records), "alerts": expected, "seconds": elapsed,
              "scores_per_s": len(records) / elapsed, "alerts_per_s": expected / elapsed,
              "cpu_us_per_score": cpu * 1e6 / len(records),
              "page_faults_per_score": faults / len(records), "load_average": load}
    print(f"  {result['scores_per_s']:,.0f} scores/s, {result['alerts_per_s']:,.0f} alerts/s "
          f"({elapsed:.1f} s); alerter CPU {result['cpu_us_per_score']:.1f} µs and "
          f"{result['page_faults_per_score']:.2f} minor page faults per score; "
          f"load average {load:.1f}")
    return result


def py_spy_command() -> str:
    """py-spy beside this Python (a virtualenv's bin), else on the PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else "py-spy"


def py_spy_args(output: str) -> list[str]:
    """py-spy's format by the output's suffix: .txt = collapsed stacks, else a flame graph."""
    return ["--format", "raw"] if output.endswith(".txt") else []


def minor_faults(pid: int | str = "self") -> int:
    """Minor page faults of a process so far (memory touched for the first time, or again
    after it went back to the kernel: costly in a virtual machine)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(redis_url: str, customers: int, per_customer: int, batch: int,
               profile: int = 0) -> dict[str, float]:
    """The alerter's batch processing alone (see the module docstring)."""
    from streams.alerter.service import build_alerter, settle_memory
    from streams.redis.client import make_redis

    records = crafted_scores(customers, per_customer, seed=1)
    parts: dict[int, list[RawRecord]] = {p: [] for p in range(4)}
    for key, value in records:
        p = zlib.crc32(key.encode()) % 4
        parts[p].append(RawRecord("scores", p, len(parts[p]), key.encode(), value))
    steps = [[rs[lo:lo + batch] for rs in parts.values() if rs[lo:lo + batch]]
             for lo in range(0, max(len(rs) for rs in parts.values()), batch)]
    prefix = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    settings = load_settings()
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(
        update={"url": redis_url, "key_prefix": prefix})})
    profiler = cProfile.Profile() if profile else None

    async def run() -> tuple[float, float, int, int]:
        client = make_redis(settings.redis)
        try:
            processor = build_alerter(settings, client).processor
            await processor.start()
            settle_memory()  # as the alerter does once it runs
            cpu, wall, faults = time.process_time(), time.perf_counter(), minor_faults()
            if profiler is not None:
                profiler.enable()
            for step in steps:  # the partitions of a poll concurrently, as the runner does
                await asyncio.gather(*(processor.process(b) for b in step))
            if profiler is not None:
                profiler.disable()
            return (time.process_time() - cpu, time.perf_counter() - wall,
                    processor.totals.alerts, minor_faults() - faults)
        finally:
            await client.aclose()

    try:
        cpu, wall, alerts, faults = asyncio.run(run())
    finally:
        forget_prefix(redis_url, prefix)
    result = {"scores": len(records), "alerts": alerts, "batch": batch,
              "cpu_us_per_score": cpu * 1e6 / len(records), "scores_per_s": len(records) / wall,
              "page_faults_per_score": faults / len(records), "load_average": os.getloadavg()[0]}
    print(f"in process: {len(records):,} scores, {alerts:,} alerts, batches of {batch} per "
          f"partition: {result['cpu_us_per_score']:.1f} µs CPU per score, "
          f"{result['scores_per_s']:,.0f} scores/s, {result['page_faults_per_score']:.2f} minor "
          f"page faults per score; load average {result['load_average']:.1f}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return result


def digest(redis_url: str, mode: str = "thresholds") -> str:
    """SHA-256 of what the batch processor emits and stores for a fixed run (fixed wall clock,
    3,000 customers, churn marks, bad records, one batch per partition processed twice as after
    a crash before the commit): equal before and after a change = byte-identical behaviour."""
    import hashlib

    from streams.alerter.service import build_alerter
    from streams.redis.client import make_redis

    records: list[tuple[str, bytes | None]] = [*crafted_scores(3000, 10, seed=3)]
    records[500:500] = [("c-00001", b"not json"), ("c-00002", b'{"customer_id":"c"}'),
                        ("c-00003", None)]
    parts: dict[int, list[RawRecord]] = {p: [] for p in range(4)}
    for key, value in records:
        p = zlib.crc32(key.encode()) % 4
        parts[p].append(RawRecord("scores", p, len(parts[p]), key.encode(), value))
    prefix, h = f"bench-digest-{uuid.uuid4().hex[:8]}", hashlib.sha256()
    s = load_settings()
    alerts = s.alerts.model_copy(update={"budget": s.alerts.budget.model_copy(
        update={"mode": mode})})
    s = s.model_copy(update={"alerts": alerts, "redis": s.redis.model_copy(
        update={"url": redis_url, "key_prefix": prefix})})

    async def run() -> None:
        client = make_redis(s.redis)
        try:
            for c in range(0, 3000, 37):
                await client.hset(f"{prefix}:churned", f"c-{c:05d}", T_CHURN + 86400 * (c % 20))
            processor = build_alerter(s, client).processor
            processor._wall = lambda: 1_800_000_000.0
            await processor.start()
            for rs in parts.values():
                for lo in range(0, len(rs), 400):
                    for again in range(2 if lo == 1200 else 1):
                        if again:  # a crash before the commit: a new owner, the same batch
                            processor.forget()
                        for o in (await processor.process(rs[lo:lo + 400])).out:
                            h.update(repr((o.topic, o.key, o.value, o.headers)).encode())
            keys = sorted([k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)
                           if k.endswith(b":alert") or b":budget:" in k])
            for k in keys:
                h.update(k[len(prefix):] + repr(sorted((await client.hgetall(k)).items())).encode())
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        forget_prefix(redis_url, prefix)
    print(f"digest ({mode}): {h.hexdigest()}")
    return h.hexdigest()


def latency(bootstrap: str, redis_url: str, customers: int, rate: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        p = Pipeline(bootstrap, redis_url, Path(tmp))
        asyncio.run(_publish_model(redis_url, p.prefix, complaint_model()))
        watcher = AlertWatcher(bootstrap, f"alerts-{p.tag}")
        watcher.start()
        try:
            p.start_worker()
            p.start_alerter()
            producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=1)
            t0 = time.time() - 3 * 86400
            gap = 1.0 / rate
            nxt = time.perf_counter()
            sent = 0
            for r, kind in enumerate(("session", "session", "complaint", "complaint",
                                      "complaint")):
                for c in range(customers):
                    cid = f"c-{c:06d}"
                    event = CustomerEvent(f"{cid}-{r}", cid, kind, t0 + r * 3600 + c * 1e-3)
                    producer.send(p.events, orjson.dumps(event.to_wire()), key=cid.encode())
                    sent += 1
                    nxt += gap
                    delay = nxt - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)  # pacing the offered rate, not synchronisation
            producer.flush()
            producer.close()
            wait_until(lambda: len(watcher.seen) >= customers * 0.9, 120, "alerts", 0.05)
            time.sleep(2.0)  # let the last transactions land before the figures are taken
            scored = _score_times(bootstrap, p.scores)
        finally:
            watcher.stop.set()
            p.stop_all()
            _cleanup(redis_url, p.prefix)
            print("  " + _totals(Path(tmp)))
    total, to_score, to_alert, to_process = [], [], [], []
    for seen, a in watcher.seen:
        source = float(a.get("source_timestamp_ms") or 0) / 1000.0  # type: ignore[arg-type]
        if not source:
            continue
        total.append((seen - source) * 1000.0)
        at = scored.get(str(a["score_id"]))
        if at is not None:
            to_score.append((at - source) * 1000.0)
            to_alert.append((seen - at) * 1000.0)
            processed = datetime.fromisoformat(str(a["processed_at"])).timestamp()
            to_process.append((processed - at) * 1000.0)
    result = {"events": sent, "rate": rate, "alerts": len(total), **_pcts("", total),
              **_pcts("event_to_score_", to_score), **_pcts("score_to_alert_", to_alert),
              **_pcts("score_to_alerter_", to_process)}
    print(f"latency at {rate:,.0f} events/s: {len(total)} alerts; event -> alert committed "
          f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms "
          f"(event -> score p50 {result['event_to_score_p50_ms']:.0f} / p99 "
          f"{result['event_to_score_p99_ms']:.0f} ms; score -> alert p50 "
          f"{result['score_to_alert_p50_ms']:.0f} / p99 {result['score_to_alert_p99_ms']:.0f} ms, "
          f"of which score -> alerter batch start p50 {result['score_to_alerter_p50_ms']:.0f} / "
          f"p99 {result['score_to_alerter_p99_ms']:.0f} ms)")
    return result


def _totals(workdir: Path) -> str:
    """The alerter's last totals line (its batch timings)."""
    lines = [line for path in sorted(workdir.glob("alerter-*.log"))
             for line in path.read_text(errors="replace").splitlines() if "alerter totals" in line]
    return lines[-1].split(": ", 2)[-1] if lines else "(no totals logged)"


def _pcts(name: str, values: list[float]) -> dict[str, float]:
    v = sorted(values) or [float("nan")]
    return {f"{name}p50_ms": statistics.median(v), f"{name}p99_ms": v[int(0.99 * (len(v) - 1))],
            f"{name}max_ms": v[-1]}


def _score_times(bootstrap: str, topic: str) -> dict[str, float]:
    """score_id -> when the worker produced it (the record's create time)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    out = {str(orjson.loads(m.value)["score_id"]): m.timestamp / 1000.0 for m in consumer}
    consumer.close()
    return out


async def _publish_model(redis_url: str, prefix: str, handle: object) -> None:
    import redis.asyncio as aioredis

    from streams.redis.model_registry import RedisModelRegistry

    client = aioredis.Redis.from_url(redis_url)
    await RedisModelRegistry(client, prefix).publish(handle)  # type: ignore[arg-type]
    await client.aclose()


def _cleanup(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("throughput", "latency", "both", "process", "digest"),
                        default="both")
    parser.add_argument("--customers", type=int, default=10000,
                        help="throughput and process parts")
    parser.add_argument("--per-customer", type=int, default=10)
    parser.add_argument("--latency-customers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="latency part, events/s")
    parser.add_argument("--batch", type=int, default=500,
                        help="process part: scores per partition batch")
    parser.add_argument("--profile", type=int, default=0,
                        help="process part: print this many cProfile entries")
    parser.add_argument("--py-spy", default="",
                        help="throughput part: record the alerter with py-spy (pip install "
                             "py-spy; idle time included) into this file (.svg flame graph, "
                             ".txt collapsed stacks)")
    args = parser.parse_args()
    settings = load_settings()
    bootstrap, redis_url = settings.kafka.bootstrap_servers, settings.redis.url
    out: dict[str, object] = {}
    if args.part == "digest":
        out["digest"] = {m: digest(redis_url, m) for m in ("thresholds", "budget")}
    if args.part == "process":
        out["process"] = in_process(redis_url, args.customers, args.per_customer, args.batch,
                                    args.profile)
    if args.part in ("throughput", "both"):
        out["throughput"] = throughput(bootstrap, redis_url, args.customers, args.per_customer,
                                       args.py_spy)
    if args.part in ("latency", "both"):
        out["latency"] = latency(bootstrap, redis_url, args.latency_customers, args.rate)
    OUT.mkdir(exist_ok=True)
    (OUT / "alerts.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
