"""``churnpulse`` subcommands for alert delivery (dispatch) and the support page (dashboard).

::

    churnpulse dispatch                       alerts -> signed webhooks and the log sink
    churnpulse dashboard [--host H] [--port N]  the live support dashboard
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from streams.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the ``churnpulse`` parser."""
    dispatch = sub.add_parser("dispatch", help="deliver alerts to signed webhooks and the log")
    dispatch.set_defaults(func=cmd_dispatch)

    dashboard = sub.add_parser("dashboard", help="the live support dashboard (web page)")
    dashboard.add_argument("--host", default=None, help="interface (default: dashboard.host)")
    dashboard.add_argument("--port", type=int, default=None,
                           help="port (default: dashboard.port; 0 = any free port)")
    dashboard.set_defaults(func=cmd_dashboard)


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from streams.delivery.dispatch import run_dispatch

    return run_dispatch(settings)


def cmd_dashboard(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from streams.delivery.dashboard.app import create_app
    from streams.delivery.dashboard.auth import tokens_of
    from streams.delivery.health import dashboard_stats, serve_dashboard_health
    from streams.kafka.topics import ensure_topics

    ensure_topics(settings.kafka, settings.topics)
    host = args.host or settings.dashboard.host
    port = settings.dashboard.port if args.port is None else args.port
    by_token, generated = tokens_of(settings.dashboard)

    async def main() -> None:
        app = create_app(settings, by_token)
        health = await serve_dashboard_health(settings, dashboard_stats(app))  # /metrics
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        url = f"http://{host}:{bound}/"
        print(f"churnpulse dashboard listening on {url}", flush=True)
        if generated:
            print(f"open {url}?token={generated}  (generated token for user 'support'; set "
                  "CHURN_DASHBOARD__TOKENS to choose users and tokens)", flush=True)
        else:
            print(f"users: {', '.join(sorted(set(by_token.values())))}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            if health is not None:
                await health.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
