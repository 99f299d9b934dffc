"""The processes ``churnpulse demo`` runs: workers, the learner, the alerter, the retention
process, the dispatcher and the support dashboard, each a real ``churnpulse`` subprocess with
its log in the state dir.

A process counts as started when its log shows its readiness line; one that exits or stays
silent past the deadline stops the whole set (with the tail of its log in the error), so the demo
never shows a summary of a pipeline that is not running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ProcSpec:
    """One ``churnpulse`` subcommand the demo runs."""

    name: str
    argv: tuple[str, ...]
    ready: bytes
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Running:
    spec: ProcSpec
    proc: subprocess.Popen[bytes]
    log: Path


# The demo alerts within a budget (docs/alerts.md, "Budgets"): 2% of the active customers per
# week; the sketch holds about two days of a partition's customers (four partitions, ~1,200
# active customers). The user's own CHURN_ALERTS__BUDGET__* variables win.
DEMO_BUDGET = {"CHURN_ALERTS__BUDGET__MODE": "budget",
               "CHURN_ALERTS__BUDGET__SHARE_PER_WEEK": "0.02",
               "CHURN_ALERTS__BUDGET__WINDOW": "600",
               "CHURN_ALERTS__BUDGET__MIN_WINDOW": "100"}
# The learning policy chooses the action in the demo (docs/retention.md, "What runs live"): it
# keeps the table's action until an alternative has evidence, within a bounded exploration.
DEMO_RETENTION = {"CHURN_RETENTION__BANDIT": "true"}


def demo_specs(workers: int, state_dir: Path, dashboard_token: str | None,
               dashboard_port: int, worker_metrics_port: int = 9410) -> list[ProcSpec]:
    """Workers, learner, alerter, retention process, dispatcher (JSON-lines log sink) and,
    with a token, the dashboard. Worker ``n`` serves /metrics on ``worker_metrics_port + 10 *
    n``.

    >>> [s.name for s in demo_specs(2, Path("/tmp/x"), "t", 8765)]
    ['worker-0', 'worker-1', 'learner', 'alerter', 'retention', 'dispatch', 'dashboard']
    >>> [s.name for s in demo_specs(1, Path("/tmp/x"), None, 8765)][-1]
    'dispatch'
    """
    specs = [ProcSpec(f"worker-{n}", ("worker",), b"[^Worker]: Ready",
                      {"CHURN_WORKER__DATA_DIR": str(state_dir / f"demo-worker-{n}"),
                       "CHURN_METRICS__WORKER_PORT": str(worker_metrics_port + 10 * n)})
             for n in range(workers)]
    specs += [
        ProcSpec("learner", ("learner",), b"learner ready"),
        ProcSpec("alerter", ("alerter",), b"alerter ready",
                 {k: v for k, v in {**DEMO_BUDGET, **DEMO_RETENTION}.items()
                  if k not in os.environ}),
        ProcSpec("retention", ("retention",), b"retention ready",
                 {k: v for k, v in DEMO_RETENTION.items() if k not in os.environ}),
        ProcSpec("dispatch", ("dispatch",), b"dispatching",
                 {"CHURN_WEBHOOK__LOG_FILE": str(state_dir / "demo-alerts.jsonl")}),
    ]
    if dashboard_token is not None:
        specs.append(ProcSpec("dashboard", ("dashboard", "--port", str(dashboard_port)),
                              b"listening on",
                              {"CHURN_DASHBOARD__TOKENS": f'{{"support": "{dashboard_token}"}}'}))
    return specs


def start_all(specs: Sequence[ProcSpec], log_dir: Path, timeout_s: float = 90.0,
              on_start: Callable[[str], None] | None = None) -> list[Running]:
    """Start every process, then wait until each is ready (or stop them all and raise)."""
    running: list[Running] = []
    for spec in specs:
        log = log_dir / f"demo-{spec.name}.log"
        env = dict(os.environ, CHURN_LOG_LEVEL="INFO", **spec.env)  # readiness is in INFO logs
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *spec.argv], env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        running.append(Running(spec, proc, log))
    deadline = time.monotonic() + timeout_s
    for r in running:
        while r.spec.ready not in r.log.read_bytes():
            if r.proc.poll() is not None or time.monotonic() > deadline:
                stop_all(running)
                tail = r.log.read_text(errors="replace")[-2000:]
                state = ("exited with code " + str(r.proc.returncode) if r.proc.poll() is not None
                         else f"not ready after {timeout_s:.0f} s")
                raise RuntimeError(f"{r.spec.name} {state}; log {r.log}:\n{tail}")
            time.sleep(0.2)
        if on_start is not None:
            on_start(r.spec.name)
    return running


def stop_all(running: Sequence[Running], timeout_s: float = 30.0) -> None:
    """SIGTERM every process group, then SIGKILL what is left at the deadline."""
    for r in running:
        if r.proc.poll() is None:
            os.killpg(r.proc.pid, signal.SIGTERM)
    for r in running:
        try:
            r.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(r.proc.pid, signal.SIGKILL)
            r.proc.wait()


def dead(running: Sequence[Running]) -> list[str]:
    """Names of the processes that stopped by themselves."""
    return [r.spec.name for r in running if r.proc.poll() is not None]

