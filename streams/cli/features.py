"""``churnpulse`` subcommands for per-customer features (features, forget).

::

    churnpulse features CUSTOMER_ID [--at TIME] [--json]   current features (table or JSON)
    churnpulse forget CUSTOMER_ID [--wait S]                erase the customer everywhere
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.redis.client import make_redis
from streams.redis.feature_store import RedisFeatureStore
from streams.settings import Settings
from streams.timefmt import format_ts, parse_ts

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``churnpulse`` parser."""
    features = sub.add_parser("features", help="print a customer's current features")
    features.add_argument("customer_id")
    features.add_argument("--at", default=None,
                          help="event time to read at, RFC 3339 (default: now)")
    features.add_argument("--json", action="store_true", help="machine-readable output")
    features.set_defaults(func=cmd_features)

    forget = sub.add_parser("forget", help="erase a customer everywhere (right to erasure; "
                                           "see docs/security.md for what is out of reach)")
    forget.add_argument("customer_id")
    forget.add_argument("--wait", type=float, default=30.0,
                        help="seconds to wait for a running learner to erase it (default 30)")
    forget.set_defaults(func=cmd_forget)


def _with_store(settings: Settings, use: Callable[[RedisFeatureStore], Awaitable[T]]) -> T:
    async def run() -> T:
        cfg = settings.redis
        client = make_redis(cfg)
        try:
            return await use(RedisFeatureStore(client, settings.features, cfg.key_prefix))
        finally:
            await client.aclose()

    return asyncio.run(run())


def cmd_features(settings: Settings, args: argparse.Namespace) -> int:
    now = parse_ts(args.at, "--at") if args.at else time.time()
    features = _with_store(settings, lambda store: store.features(args.customer_id, now))
    if not features:
        print(f"no features for customer {args.customer_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"customer_id": args.customer_id, "at": format_ts(now),
                          "features": features}, indent=2))
        return 0
    print(format_features(args.customer_id, now, features))
    return 0


def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.erasure import forget_customer
    from streams.signing import signer_from_settings

    async def run() -> str:
        client = make_redis(settings.redis)
        try:
            done = await forget_customer(settings, client, signer_from_settings(settings),
                                         args.customer_id, args.wait)
            return done.summary(args.customer_id)
        finally:
            await client.aclose()

    try:
        print(asyncio.run(run()))
    except TimeoutError as exc:
        print(f"churnpulse: {exc}", file=sys.stderr)
        return 1
    return 0


def _num(x: float) -> str:
    if x == int(x) and abs(x) < 1e12:
        return str(int(x))
    return f"{x:.4g}" if abs(x) < 1e-3 or abs(x) >= 1e6 else f"{x:.3f}"


def format_features(customer_id: str, now: float, features: dict[str, float]) -> str:
    """A customer's features as text: overall figures, then one row per event type.

    >>> print(format_features("c1", 0.0, {"events_total": 3.0, "count_7d.login": 1.5,
    ...                                   "trend.login": -0.25}))
    customer c1 at 1970-01-01T00:00:00.000+00:00
    <BLANKLINE>
    events_total  3
    <BLANKLINE>
    type   count_7d   trend
    login     1.500  -0.250
    """
    overall = {k: v for k, v in features.items() if "." not in k}
    ratios = {k: v for k, v in features.items() if k.startswith("ratio.")}
    per_type: dict[str, dict[str, float]] = {}
    for name, value in features.items():
        if "." in name and not name.startswith("ratio."):
            metric, kind = name.split(".", 1)
            per_type.setdefault(kind, {})[metric] = value
    lines = [f"customer {customer_id} at {format_ts(now)}", ""]
    rows = {**overall, **ratios}
    width = max(len(k) for k in rows)
    lines += [f"{k:<{width}}  {_num(v)}" for k, v in rows.items()]
    if per_type:
        columns = list(dict.fromkeys(m for metrics in per_type.values() for m in metrics))
        table = [["type", *columns]]
        for kind in sorted(per_type):
            table.append([kind, *(_num(per_type[kind][c]) if c in per_type[kind] else "-"
                                  for c in columns)])
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines.append("")
        for row in table:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(widths[i + 1]) for i, cell in enumerate(row[1:])]
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
