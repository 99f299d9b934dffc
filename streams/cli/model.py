"""``churnpulse`` subcommands for the model: ``learner`` (run the learner) and ``model status``
(its delayed metrics). ``train`` and ``backtest`` live in :mod:`streams.cli.backtest`."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
from typing import Any

from rich.console import Console
from rich.table import Table

from online_models.calibration import reliability_text
from streams.settings import Settings

METRIC_ROWS = ("roc_auc", "log_loss", "brier", "ece", "precision", "recall", "top_decile_lift",
               "n", "positives", "drifts")
PAIRED_ROWS = ("paired_gain", "paired_z", "paired_n")


def cmd_learner(settings: Settings, args: argparse.Namespace) -> int:
    from streams.kafka.topics import ensure_topics
    from streams.learner.health import serve_learner_health
    from streams.learner.service import LearnerService
    from streams.redis.client import make_redis

    ensure_topics(settings.kafka, settings.topics)

    async def main() -> None:
        client = make_redis(settings.redis)
        service = LearnerService(settings, client)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        health = await serve_learner_health(settings, service)  # /metrics /healthz /readyz
        try:
            await service.run(stop)
        finally:
            if health is not None:
                await health.stop()
            await client.aclose()

    asyncio.run(main())
    return 0


def _fmt(value: Any) -> str:
    """A metric cell; NaN (stored as null) and missing values show as '-'.

    >>> _fmt(None), _fmt(float("nan")), _fmt(0.81234), _fmt(12)
    ('-', '-', '0.8123', '12')
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def calibration_state(cal: dict[str, Any]) -> str:
    """One line on the champion's calibration: calibrated, or still calibrating (its scores
    carry ``calibrated: false`` and are not alerted on).

    >>> calibration_state({"a": 0.9, "b": -0.1, "shift": -3.0, "churners": 25, "stayers": 900})
    'calibration: calibrated on 25 churners, 900 stayers (a 0.900, b -0.100, shift -3.000)'
    >>> calibration_state({"a": 1.0, "b": 0.0, "shift": 0.0})
    'calibration: calibrating on 0 churners, 0 stayers (needs 20 of each; scores flagged \
calibrated=false, no alerts) (a 1.000, b 0.000, shift 0.000)'
    """
    from online_models.calibration import MIN_CLASS_OUTCOMES, is_calibrated

    churners, stayers = int(cal.get("churners") or 0), int(cal.get("stayers") or 0)
    params = ", ".join(f"{k} {float(cal[k]):.3f}" for k in ("a", "b", "shift")
                       if isinstance(cal.get(k), int | float))
    state = ("calibrated" if is_calibrated(churners, stayers) else "calibrating")
    note = "" if state == "calibrated" else (f" (needs {MIN_CLASS_OUTCOMES} of each; scores "
                                             "flagged calibrated=false, no alerts)")
    return (f"calibration: {state} on {churners:,} churners, {stayers:,} stayers{note}"
            + (f" ({params})" if params else ""))


def _bins(rows: list[dict[str, Any]]) -> list[Any]:
    from online_models.calibration import ReliabilityBin

    return [ReliabilityBin(float(r["lo"]), float(r["hi"]), int(r["n"]), float(r["predicted"]),
                           float(r["observed"])) for r in rows]


def cmd_model_status(settings: Settings, args: argparse.Namespace) -> int:
    from streams.learner.service import LearnerStateStore
    from streams.redis.client import make_redis

    async def read() -> dict[str, Any] | None:
        client = make_redis(settings.redis)
        try:
            return await LearnerStateStore(client, settings.redis.key_prefix).status()
        finally:
            await client.aclose()

    status = asyncio.run(read())
    if status is None:
        print("no learner has checkpointed yet (start `churnpulse learner`, or warm-start "
              "with `churnpulse train EVENTS LABELS`)")
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    console = Console()
    console.print(f"[bold]model {status['version']}-{status['champion']}[/bold] · "
                  f"{status['resolved']:,} resolved · {status['pending']:,} pending · "
                  f"watermark {status.get('watermark') or '-'} · updated {status['updated_at']}")
    table = Table(title="delayed metrics (rolling window of resolved observations)",
                  caption="served: the scores the workers served when each snapshot was taken "
                          "(untrained start left out); each model: what it would have served "
                          "then (shadow: its copy as of the snapshot's time). paired_*: "
                          "challenger's log-loss gain over the champion on the same snapshots, "
                          "its z and pairs (promotion: z >= 3)")
    table.add_column("metric")
    table.add_column("served", justify="right")
    models = status["models"]
    for name in models:
        table.add_column(name + (" (champion)" if name == status["champion"] else ""),
                         justify="right")
    for row in METRIC_ROWS + PAIRED_ROWS:
        table.add_row(row, _fmt(status["served"].get(row)),
                      *(_fmt(models[n].get(row)) for n in models))
    console.print(table)
    champion = models.get(status["champion"], {})
    console.print(calibration_state(champion.get("calibration") or {}), markup=False)
    for title, metrics in (("served", status["served"]),
                           (f"{status['champion']} (champion, shadow)", champion)):
        bins = metrics.get("reliability") or []
        if bins:
            console.print(f"reliability, {title} · ECE {_fmt(metrics.get('ece'))}",
                          markup=False)
            console.print(reliability_text(_bins(bins)), markup=False, highlight=False)
    labels = status["labels"]
    console.print("labels: " + ", ".join(f"{k} {v:,}" for k, v in labels.items()))
    console.print(f"learn calls {status.get('learn_calls', 0):,} · promotions: "
                  f"{', '.join(status.get('promotions') or []) or 'none'}")
    if status.get("events"):
        console.print("recent events: " + ", ".join(status["events"]))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``churnpulse`` parser."""
    learner = sub.add_parser("learner", help="run the learner (the single writer of the model)")
    learner.set_defaults(func=cmd_learner)

    model = sub.add_parser("model", help="model registry and metrics")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    status = model_sub.add_parser("status", help="delayed metrics of every model")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_model_status)
