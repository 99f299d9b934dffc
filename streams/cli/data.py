"""``churnpulse`` subcommands for data: ``simulate`` and ``replay``.

::

    churnpulse simulate --out DIR [--format jsonl|csv|parquet] [knobs]     files + ground truth
    churnpulse simulate --live [--rate N | --speedup X] [--out DIR] [knobs]  publish to Kafka
    churnpulse replay EVENTS [LABELS] [--map ...] [--label-map ...] [--rate N | --speedup X]
                      [--resume]

Exit status of ``replay``: 0 when every row was published, 2 when it finished but rows were
rejected (they are listed), 130 when interrupted (``--resume`` goes on), 1 on an error.
See docs/simulator.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streams.errors import ChurnpulseError
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.simulator import SimulationConfig

SIMULATE_HELP = "simulate a customer base with known churn: files, or live to Kafka"
REPLAY_HELP = "publish a recorded history (JSON lines, CSV, Parquet) in event-time order"


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _pacing_args(parser: argparse.ArgumentParser, what: str) -> None:
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--rate", type=_positive, default=None,
                        help=f"publish {what} at N records/s (events + labels)")
    pacing.add_argument("--speedup", type=_positive, default=None,
                        help="compress event time: X simulated seconds per wall-clock second "
                             "(86400 = one day per second)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``churnpulse`` parser."""
    from streams.simulator import SimulationConfig

    d = SimulationConfig()
    sim = sub.add_parser("simulate", help=SIMULATE_HELP, description=SIMULATE_HELP)
    sim.add_argument("--out", type=Path, default=None,
                     help="directory for events/labels/truth files (with --live: the truth "
                          "file only)")
    sim.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    sim.add_argument("--seed", type=int, default=d.seed)
    sim.add_argument("--customers", type=int, default=d.n_customers)
    sim.add_argument("--start", type=_date, default=d.start, help="first day (YYYY-MM-DD)")
    sim.add_argument("--days", type=int, default=d.days)
    sim.add_argument("--churn-rate", type=float, default=d.churn_base_rate,
                     help="target monthly churn rate")
    sim.add_argument("--signal-strength", type=float, default=d.signal_strength,
                     help="how strongly behaviour drives churn (0 = random churn)")
    sim.add_argument("--no-warning-share", type=float, default=d.no_warning_share,
                     help="share of churn with no behavioural warning")
    sim.add_argument("--events-per-day", type=float, default=d.events_per_active_day,
                     help="activity events per active customer-day")
    sim.add_argument("--regime-change-day", type=int, default=None,
                     help="day from which price, not support, drives churn (drift)")
    sim.add_argument("--return-share", type=float, default=d.return_share,
                     help="share of churned customers who come back")
    sim.add_argument("--initial-share", type=float, default=d.initial_share,
                     help="share of customers already subscribed at the start")
    from streams.simulator.scenarios import SCENARIOS

    sim.add_argument("--scenario", choices=list(SCENARIOS), default="default",
                     help="churn mechanisms of the simulated world (see docs/simulator.md)")
    sim.add_argument("--no-progress", action="store_true", help="no progress display")
    sim.add_argument("--live", action="store_true",
                     help="publish to the events and labels topics instead of writing files")
    _pacing_args(sim, "live records")
    sim.set_defaults(func=cmd_simulate)

    rep = sub.add_parser("replay", help=REPLAY_HELP, description=REPLAY_HELP,
                         epilog="example: churnpulse replay export.csv cancellations.csv "
                                "--map ts=timestamp,customer_id=user,event_type=action,"
                                "value=amount --label-map ts=cancelled_at,customer_id=user")
    rep.add_argument("events", type=Path, help="events file (.jsonl, .csv, .parquet)")
    rep.add_argument("labels", type=Path, nargs="?", default=None,
                     help="churn labels file (optional)")
    rep.add_argument("--map", default=None, metavar="FIELD=COLUMN,...",
                     help="event columns: ts, customer_id, event_type, value, event_id, "
                          "properties (default: the contract names)")
    rep.add_argument("--label-map", default=None, metavar="FIELD=COLUMN,...",
                     help="label columns: ts, customer_id, churned, label_id; without a "
                          "churned column every label row is a churn")
    rep.add_argument("--format", choices=("jsonl", "csv", "parquet"), default=None,
                     help="events file format (default: from the file name)")
    rep.add_argument("--labels-format", choices=("jsonl", "csv", "parquet"), default=None)
    rep.add_argument("--assume-utc", action="store_true",
                     help="read timestamps without an offset as UTC (default: reject them)")
    rep.add_argument("--epoch-unit", choices=("s", "ms"), default="s",
                     help="unit of numeric timestamps (default: seconds)")
    _pacing_args(rep, "the history")
    rep.add_argument("--resume", action="store_true",
                     help="go on after the records a previous run got acknowledged")
    rep.add_argument("--checkpoint", type=Path, default=None,
                     help="checkpoint file (default: <state dir>/replay/<name>-<hash>.json)")
    rep.add_argument("--max-rejects", type=int, default=100,
                     help="more bad rows than this stop the replay before it publishes")
    rep.add_argument("--rejects", type=Path, default=None,
                     help="write every rejected row (file, line, column, reason) here")
    rep.add_argument("--no-progress", action="store_true", help="no progress display")
    rep.set_defaults(func=cmd_replay)


def _config(args: argparse.Namespace) -> SimulationConfig:
    from streams.simulator import SimulationConfig
    from streams.simulator.scenarios import scenario

    try:
        return scenario(getattr(args, "scenario", "default")).apply(SimulationConfig(
            seed=args.seed, n_customers=args.customers, start=args.start, days=args.days,
            initial_share=args.initial_share, churn_base_rate=args.churn_rate,
            signal_strength=args.signal_strength, no_warning_share=args.no_warning_share,
            events_per_active_day=args.events_per_day, regime_change_day=args.regime_change_day,
            return_share=args.return_share))
    except ValueError as exc:
        raise ChurnpulseError(f"bad simulation knob: {exc}") from None


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from streams.simulator.writers import ParquetUnavailableError, parse_format

    config = _config(args)
    fmt = parse_format(args.format)
    if not args.live:
        if args.out is None:
            raise ChurnpulseError("simulate needs --out DIR (or --live)")
        if args.rate is not None or args.speedup is not None:
            raise ChurnpulseError("--rate and --speedup only apply with --live")
        from streams.simulator import run_to_files

        try:
            summary = run_to_files(config, args.out, fmt, progress=not args.no_progress)
        except ParquetUnavailableError as exc:
            raise ChurnpulseError(str(exc)) from None
        print(f"{summary.n_events:,} events, {summary.n_labels:,} churn labels, "
              f"{summary.n_customers:,} customers in {summary.seconds:.1f} s "
              f"({summary.events_per_second:,.0f} events/s)")
        for path in (summary.events_path, summary.labels_path, summary.truth_path):
            print(f"  {path}")
        print("the truth file is for evaluation only: never publish it")
        return 0

    from streams.offline.live import run_live

    result = run_live(settings, config, rate=args.rate, speedup=args.speedup,
                      progress=not args.no_progress, truth_dir=args.out, truth_format=fmt)
    status = "interrupted after" if result.interrupted else "simulated"
    print(f"{status} {result.days} of {config.days} days: published {result.acknowledged:,} "
          f"records ({result.n_events:,} events, {result.n_labels:,} churn labels generated) "
          f"to {settings.topics.events} / {settings.topics.labels} in {result.seconds:.1f} s "
          f"({result.records_per_second:,.0f} records/s)")
    if result.truth_path is not None:
        print(f"ground truth (not published): {result.truth_path}")
    return 130 if result.interrupted else 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline.files import parse_format
    from streams.offline.replay import ReplayOptions, run_replay
    from streams.offline.rows import ColumnMap

    if args.max_rejects < 0:
        raise ChurnpulseError("--max-rejects must be >= 0")
    options = ReplayOptions(
        events=args.events, labels=args.labels,
        event_map=ColumnMap.parse(args.map, "event"),
        label_map=ColumnMap.parse(args.label_map, "label"),
        events_format=parse_format(args.format), labels_format=parse_format(args.labels_format),
        assume_utc=args.assume_utc, epoch_unit=args.epoch_unit, rate=args.rate,
        speedup=args.speedup, resume=args.resume, checkpoint=args.checkpoint,
        max_rejects=args.max_rejects, rejects_path=args.rejects, progress=not args.no_progress)
    result = run_replay(settings, options, notify=_err)
    rejects = result.rejects
    if rejects.count:
        _err(f"{rejects.count:,} rows rejected (not published):")
        for error in rejects.first[:10]:
            _err(f"  {error}")
        if rejects.count > 10:
            more = f"see {args.rejects}" if args.rejects else "use --rejects FILE for all"
            _err(f"  ... and {rejects.count - 10:,} more ({more})")
    rate = result.published / max(result.seconds - result.read_seconds, 1e-9)
    print(f"published {result.published:,} records ({result.acknowledged:,} of "
          f"{result.total:,} done) to {settings.topics.events} / {settings.topics.labels} "
          f"in {result.seconds:.1f} s ({rate:,.0f} records/s after reading)")
    if result.interrupted or not result.complete:
        print(f"interrupted: `churnpulse replay ... --resume` publishes the remaining "
              f"{result.total - result.acknowledged:,} (checkpoint {result.checkpoint})")
        return 130
    return 2 if rejects.count else 0
