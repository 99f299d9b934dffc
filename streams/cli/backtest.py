"""``churnpulse`` subcommands over a recorded history, in-process: ``backtest`` and ``train``.

::

    churnpulse backtest EVENTS LABELS [--out DIR] [--map ...] [--label-map ...] [--threshold P]
    churnpulse train EVENTS LABELS [--replace] [--report DIR] [--map ...] [--label-map ...]

Both read the history like ``churnpulse replay`` (same column mapping options, formats and
rejects) and run it through the live code path without Kafka (:mod:`streams.offline.backtest`).
``backtest`` writes ``report.html`` and ``report.json``; ``train`` publishes the resulting
model and learner state to Redis (:mod:`streams.offline.train`). See docs/backtest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from streams.errors import ChurnpulseError
from streams.settings import Settings

BACKTEST_HELP = "run a history through the pipeline in-process and write an HTML/JSON report"
TRAIN_HELP = "warm start: learn from a history and publish the model and learner state to Redis"


class BacktestProgress:
    """Records done of the total, records/s, the event time reached, elapsed time and ETA."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        from streams.offline.progress import RateMeter

        self._meter = RateMeter()
        self._progress = Progress(
            TextColumn("[bold]backtest[/bold]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("records · {task.fields[detail]}"), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
            disable=not enabled, refresh_per_second=4)
        self._task = self._progress.add_task("backtest", total=total, detail="starting")

    def __enter__(self) -> BacktestProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def __call__(self, done: int, total: int, event_time: float) -> None:
        from streams.timefmt import format_ms

        rate = self._meter.add(time.monotonic(), done)
        self._progress.update(self._task, completed=done,
                              detail=f"{rate:,.0f}/s · at {format_ms(int(event_time * 1000))[:10]}")


def _history_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", type=Path, help="events file (.jsonl, .csv, .parquet)")
    parser.add_argument("labels", type=Path, help="churn labels file (.jsonl, .csv, .parquet)")
    parser.add_argument("--map", default=None, metavar="FIELD=COLUMN,...",
                        help="event columns, as for `churnpulse replay`")
    parser.add_argument("--label-map", default=None, metavar="FIELD=COLUMN,...",
                        help="label columns; without a churned column every row is a churn")
    parser.add_argument("--format", choices=("jsonl", "csv", "parquet"), default=None)
    parser.add_argument("--labels-format", choices=("jsonl", "csv", "parquet"), default=None)
    parser.add_argument("--assume-utc", action="store_true",
                        help="read timestamps without an offset as UTC")
    parser.add_argument("--epoch-unit", choices=("s", "ms"), default="s")
    parser.add_argument("--max-rejects", type=int, default=100,
                        help="more bad rows than this stop before anything runs")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="events per worker batch and learner step (default: 500)")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``backtest`` and ``train`` to the ``churnpulse`` parser."""
    bt = sub.add_parser("backtest", help=BACKTEST_HELP, description=BACKTEST_HELP)
    _history_args(bt)
    bt.add_argument("--out", type=Path, default=Path("backtest-report"),
                    help="directory for report.html and report.json (default: backtest-report)")
    bt.add_argument("--threshold", type=float, default=None,
                    help="alert threshold of the report (default: CHURN_MODEL__ALERT_THRESHOLD)")
    bt.add_argument("--title", default="churnpulse backtest")
    bt.add_argument("--alert-budget", type=float, default=None, metavar="SHARE",
                    help="measure the alerts of a budget of SHARE of the active customers per "
                         "week (default: the CHURN_ALERTS__BUDGET__ settings)")
    bt.add_argument("--alert-per-day", type=float, default=None, metavar="N",
                    help="measure the alerts of a budget of N alerts per day")
    bt.add_argument("--alert-thresholds", action="store_true",
                    help="measure the absolute thresholds (CHURN_ALERTS__ENTER...) instead")
    bt.add_argument("--baseline-l2", type=float, default=1.0,
                    help="L2 penalty of the monthly logistic regression baseline")
    bt.set_defaults(func=cmd_backtest)

    tr = sub.add_parser("train", help=TRAIN_HELP, description=TRAIN_HELP)
    _history_args(tr)
    tr.add_argument("--replace", action="store_true",
                    help="overwrite a learner state already in Redis")
    tr.add_argument("--report", type=Path, default=None, metavar="DIR",
                    help="also write the backtest report there")
    tr.set_defaults(func=cmd_train)


def _load(args: argparse.Namespace) -> Any:
    from streams.offline.files import parse_format
    from streams.offline.history import Rejects, load_history
    from streams.offline.rows import ColumnMap

    if args.max_rejects < 0:
        raise ChurnpulseError("--max-rejects must be >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise ChurnpulseError("--batch-size must be >= 1")
    rejects = Rejects()
    print(f"reading {args.events} and {args.labels}", file=sys.stderr)
    history = load_history(args.events, args.labels,
                           event_map=ColumnMap.parse(args.map, "event"),
                           label_map=ColumnMap.parse(args.label_map, "label"),
                           events_format=parse_format(args.format),
                           labels_format=parse_format(args.labels_format),
                           assume_utc=args.assume_utc, epoch_unit=args.epoch_unit,
                           rejects=rejects, max_rejects=args.max_rejects)
    if rejects.count:
        print(f"{rejects.count:,} rows rejected (left out):", file=sys.stderr)
        for error in rejects.first[:10]:
            print(f"  {error}", file=sys.stderr)
    if not history.n_events:
        raise ChurnpulseError(f"{args.events}: no valid event")
    if not history.n_labels:
        print("warning: no churn label: nothing resolves positive", file=sys.stderr)
    return history


def _run(settings: Settings, args: argparse.Namespace, baseline_rows: bool = True) -> Any:
    from streams.offline.backtest import BacktestOptions, run_backtest

    history = _load(args)
    logging.getLogger("streams.learner.loop").setLevel(logging.ERROR)  # drift is in the report
    options = BacktestOptions(batch_size=args.batch_size, baseline_rows=baseline_rows)
    with BacktestProgress(len(history), enabled=not args.no_progress) as bar:
        return asyncio.run(run_backtest(settings, history, options, bar))


def _summary(run: Any) -> str:
    return (f"{run.n_events:,} events and {run.n_labels:,} labels in {run.seconds:.1f} s "
            f"({run.events_per_second:,.0f} events/s): {len(run.scores):,} scores, "
            f"{len(run.resolved):,} snapshots learned, {run.version:,} model versions")


def cmd_backtest(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline.backtest_report import build_report, write_report

    threshold = args.threshold if args.threshold is not None else settings.model.alert_threshold
    if not 0 < threshold < 1:
        raise ChurnpulseError("--threshold must be between 0 and 1")
    run = _run(settings, args)
    print(_summary(run))
    config = alert_config(settings, args)
    report = build_report(run, threshold, title=args.title, l2=args.baseline_l2,
                          inputs={"events": str(args.events), "labels": str(args.labels)},
                          alert_policy=config.policy, alert_budget=config.budget)
    json_path, html_path = write_report(report, args.out)
    same = report["same_rows"]
    print(f"online AUC {_f(report['online']['roc_auc'])} (served snapshots), "
          f"{_f(same['online']['roc_auc'])} vs batch baseline "
          f"{_f(same['baseline']['roc_auc'])} at the monthly dates")
    print(alert_line(report["alerts"]))
    print(f"report: {html_path} ({html_path.stat().st_size:,} bytes), {json_path}")
    return 0


def alert_config(settings: Settings, args: argparse.Namespace) -> Any:
    """The alert policy the report measures: the settings', or the flags' budget."""
    alerts = settings.alerts
    if args.alert_thresholds:
        return replace(alerts.config, budget=None)
    if args.alert_budget is not None or args.alert_per_day is not None:
        budget = alerts.budget.model_copy(update={
            "mode": "budget", "per_day": args.alert_per_day,
            "share_per_week": args.alert_budget if args.alert_per_day is None else None})
        return replace(alerts.config, budget=budget.params(1))
    return alerts.config


def alert_line(section: dict[str, Any]) -> str:
    """One line of the alert figures (after the first month)."""
    total, later = section["online"]["total"], section["after_first_month"]
    days = total["warned_churner_days"]["median"]
    return (f"alerts ({section['mode']}): {total['alerts']:,} sent, "
            f"{_f(total['per_1000_active'])} per 1,000 active customers per week; "
            f"after the first month precision {_f(later['precision'])} "
            f"({_f(later['precision_over_base'])} x the base rate {_f(later['base_rate'])}), "
            f"weekly volume {_f(later['volume_ratio_min'])}-{_f(later['volume_ratio_max'])} "
            f"x budget; recall {_f(total['recall'])}, median warning {_f(days)} days")


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline.train import publish_warm_start
    from streams.redis.client import make_redis

    run = _run(settings, args, baseline_rows=args.report is not None)
    print(_summary(run))
    if args.report is not None:
        from streams.offline.backtest_report import build_report, write_report

        report = build_report(run, settings.model.alert_threshold, title="churnpulse train",
                              inputs={"events": str(args.events), "labels": str(args.labels)})
        print(f"report: {write_report(report, args.report)[1]}")

    async def publish() -> Any:
        client = make_redis(settings.redis)
        try:
            return await publish_warm_start(settings, client, run, replace=args.replace)
        finally:
            await client.aclose()

    done = asyncio.run(publish())
    print(f"published model {done.version} ({done.resolved:,} snapshots learned) under Redis "
          f"prefix {done.prefix!r}; {done.pending:,} pending snapshots and {done.churned:,} "
          "churned customers handed to the live learner. Workers score with it within "
          f"{settings.model.poll_s:g} s; `churnpulse learner` continues from it.")
    return 0
