"""``churnpulse``: the command line.

Commands::

    churnpulse demo                   services up, worker, live simulated traffic, live summary
    churnpulse worker                 run the stream processor (one member of the consumer group)
    churnpulse services up|down|status  the local Kafka broker and redis-server
    churnpulse services reset         stop them and delete the brokers' topics and offsets
    churnpulse produce FILE           publish events (or --labels) from JSON lines or CSV
    churnpulse config                 print the effective configuration (secrets masked)
    churnpulse alerter                scores -> alerts and retention actions (exactly once)
    churnpulse report uplift          churn of actioned customers vs the holdout, with a CI

Every command reads the one settings object (``CHURN_*`` environment variables, see README).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from streams.errors import ChurnpulseError
from streams.observability.logs import configure_logging
from streams.services.common import ServiceError
from streams.settings import Settings, load_settings, masked_dump


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    dump = masked_dump(settings)
    if args.get:
        value: object = dump
        for part in args.get.split("."):
            if not isinstance(value, dict) or part not in value:
                print(f"churnpulse: no setting {args.get!r}", file=sys.stderr)
                return 2
            value = value[part]
        print(value if not isinstance(value, dict | list) else json.dumps(value))
        return 0
    print(json.dumps(dump, indent=2, sort_keys=False))
    return 0


def cmd_services(settings: Settings, args: argparse.Namespace) -> int:
    from streams.services import down, kafka, redis_server, reset, status, up
    from streams.services.common import format_table
    from streams.services.manager import OPTIONAL, optional

    if args.action == "reset" and (args.names or args.secure or args.brokers != 1):
        print("churnpulse: services reset takes no names or options: it stops every service "
              "we started and deletes the data of both brokers (kafka, kafka3)", file=sys.stderr)
        return 2

    if args.brokers not in (1, 3):
        print("churnpulse: --brokers is 1 (the single broker) or 3 (kafka3)", file=sys.stderr)
        return 2
    if args.brokers == 3:  # the three-broker cluster (kafka3) instead of the single broker
        args.names = [n for n in args.names if n not in ("kafka", "kafka3")] + ["kafka3"]
    unknown = set(args.names) - {"kafka", "redis", *OPTIONAL}
    if unknown:
        print(f"churnpulse: unknown service {', '.join(sorted(unknown))}; "
              "known: kafka, redis, prometheus, cluster, kafka3", file=sys.stderr)
        return 2
    extra = [name for name in OPTIONAL if name in args.names]  # started only when named
    core = [name for name in args.names if name not in OPTIONAL]
    if args.action == "reset":
        rows = reset(settings)
    elif args.secure:
        from streams.services import secure

        rows = {"up": secure.up, "down": secure.down, "status": secure.status}[args.action](
            settings)
    elif args.action == "down" and args.names:
        stoppers = {"kafka": kafka.down, "redis": redis_server.down}
        rows = [stoppers[name](settings) for name in ("kafka", "redis") if name in core]
    elif args.brokers == 3:  # Redis with it; the single broker is left alone
        rows = [{"up": redis_server.up, "down": redis_server.down,
                 "status": redis_server.status}[args.action](settings)]
    elif extra and not core:
        rows = []
    else:
        rows = {"up": up, "down": down, "status": status}[args.action](settings)
    rows += [optional(args.action, name, settings) for name in extra]
    if args.json:
        print(json.dumps([{"name": r.name, "address": r.address, "state": r.state,
                           "pid": r.pid, "log": str(r.log) if r.log else None,
                           "detail": r.detail} for r in rows]))
    else:
        print(format_table(rows))
        if args.secure and args.action == "up":
            from streams.services.secure import paths

            print(f"environment of each process (user): {paths(settings).root / 'env'}/"
                  "<worker|learner|alerter|dispatch|dashboard|admin>.env")
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.worker.run import run_worker

    return run_worker(settings)


def cmd_produce(settings: Settings, args: argparse.Namespace) -> int:
    from streams.kafka.producer import ChurnProducer
    from streams.offline.files import read_records

    kind: Literal["event", "label"] = "label" if args.labels else "event"
    with ChurnProducer.from_settings(settings.kafka, settings.topics) as producer:
        sent = producer.send_many(read_records(Path(args.file), args.format, kind), kind)
    topic = settings.topics.labels if args.labels else settings.topics.events
    print(f"published {sent} {kind}s to {topic}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.dev.demo import run_demo

    return run_demo(settings, duration_s=args.duration, rate=args.rate,
                    customers=args.customers, workers=args.workers,
                    dashboard=not args.no_dashboard)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="churnpulse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="print the effective configuration")
    config.add_argument("--get", metavar="SECTION.KEY",
                        help="print one value, e.g. kafka.bootstrap_servers")
    config.set_defaults(func=cmd_config)

    services = sub.add_parser("services", help="local Kafka and Redis (no Docker needed)")
    services.add_argument("action", choices=("up", "down", "status", "reset"),
                          help="reset: down, then delete the brokers' topics, offsets and "
                               "cluster ids (the next up starts empty)")
    services.add_argument("names", nargs="*", metavar="kafka|redis|prometheus|cluster|kafka3",
                          help="with down: only these (default: every service we started);"
                               " prometheus and cluster start only when named")
    services.add_argument("--json", action="store_true", help="machine-readable output")
    services.add_argument("--brokers", type=int, default=1, metavar="1|3",
                          help="3: the three-broker KRaft cluster (kafka3: 127.0.0.1:29092-29094,"
                               " RF 3, min ISR 2) instead of the single broker")
    services.add_argument("--secure", action="store_true",
                          help="the SASL_SSL Kafka and ACL Redis on their own ports "
                               "(docs/security.md); the plain services are left alone")
    services.set_defaults(func=cmd_services)

    sub.add_parser("worker", help="run the stream processor").set_defaults(func=cmd_worker)

    produce = sub.add_parser("produce", help="publish events or labels from a file")
    produce.add_argument("file", help="JSON lines (.jsonl) or CSV (.csv)")
    produce.add_argument("--labels", action="store_true", help="the file holds churn labels")
    produce.add_argument("--format", choices=("jsonl", "csv"), default=None,
                         help="file format (default: from the file name)")
    produce.set_defaults(func=cmd_produce)

    demo = sub.add_parser("demo", help="the whole pipeline live on local services")
    demo.add_argument("--duration", type=float, default=None,
                      help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=2000.0, help="events per second")
    demo.add_argument("--customers", type=int, default=2000, help="simulated customers")
    demo.add_argument("--workers", type=int, default=1, help="worker processes")
    demo.add_argument("--no-dashboard", action="store_true",
                      help="do not start the support dashboard (port dashboard.port)")
    demo.set_defaults(func=cmd_demo)

    from streams.cli import data as cli_data
    from streams.cli import features as cli_features
    from streams.cli import model as cli_model

    cli_features.register(sub)
    cli_data.register(sub)
    cli_model.register(sub)
    from streams.cli import backtest as cli_backtest

    cli_backtest.register(sub)
    from streams.cli import alerts as cli_alerts

    cli_alerts.register(sub)
    from streams.cli import delivery as cli_dashboard

    cli_dashboard.register(sub)
    from streams.cli import security as cli_security

    cli_security.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log.format)  # CHURN_LOG__FORMAT=json
    for noisy in ("kafka", "aiokafka"):  # client chatter about connections and metadata
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    try:
        code: int = args.func(settings, args)
    except (ChurnpulseError, ServiceError) as exc:
        print(f"churnpulse: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
