"""``/metrics``, ``/healthz`` and ``/readyz`` of one process, on a small aiohttp server.

=============  ===============================================================================
``/metrics``   Prometheus text exposition of the process's registry
``/healthz``   200 ``{"ok": true, "process": ...}`` while the event loop answers (liveness)
``/readyz``    200 when every readiness check passes, else 503 with the failing checks
               (``{"ok": false, "checks": {"redis": "ok", "partitions": "none assigned"}}``)
=============  ===============================================================================

A readiness check is an async callable returning ``None`` (ready) or why not; each gets
``timeout_s``, and an exception counts as not ready. The server runs in the process's own event
loop: a loop blocked for long fails the health checks as it should.

A port that cannot be bound is logged and the process runs on without the server (two
processes of one kind on one host need one port each, see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from streams.settings import Settings

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[str | None]]


class HealthServer:
    """The endpoints of one process; ``checks`` may be added to before or after :meth:`start`."""

    def __init__(self, process: str, checks: Mapping[str, Check] | None = None,
                 registry: CollectorRegistry = REGISTRY, timeout_s: float = 2.0) -> None:
        self.process = process
        self.checks: dict[str, Check] = dict(checks or {})
        self._registry = registry
        self._timeout_s = timeout_s
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True, "process": self.process})

    async def readiness(self) -> dict[str, str]:
        """Each check's answer: ``"ok"`` or why it is not ready."""
        names = list(self.checks)
        answers = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        return dict(zip(names, answers, strict=True))

    async def _run(self, check: Check) -> str:
        try:
            why = await asyncio.wait_for(check(), self._timeout_s)
        except TimeoutError:
            return f"no answer within {self._timeout_s:g} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        return "ok" if why is None else why

    async def readyz(self, _: web.Request) -> web.Response:
        checks = await self.readiness()
        ok = all(v == "ok" for v in checks.values())
        return web.json_response({"ok": ok, "process": self.process, "checks": checks},
                                 status=200 if ok else 503)

    async def start(self, host: str, port: int) -> bool:
        """Serve on ``host:port`` (0: any free port, see :attr:`port`); False when the port
        cannot be bound (logged; the process goes on without the endpoints)."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            log.error("%s: cannot serve /metrics on %s:%d (%s); running without it (set "
                      "CHURN_METRICS__%s_PORT)", self.process, host, port, exc,
                      self.process.upper())
            await runner.cleanup()
            return False
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("%s: /metrics, /healthz and /readyz on http://%s:%d/", self.process, host,
                 self.port)
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(settings: Settings, process: str,
                checks: Mapping[str, Check] | None = None) -> HealthServer | None:
    """Configure metrics from ``settings.metrics`` and start ``process``'s server on its port;
    None when metrics are disabled or its port is 0 (or cannot be bound)."""
    from streams.observability import metrics

    cfg = settings.metrics
    metrics.configure(cfg.enabled)
    port = cfg.port(process)
    if not port:
        return None
    metrics.start_series()
    server = HealthServer(process, checks, timeout_s=cfg.ready_timeout_s)
    return server if await server.start(cfg.host, port) else None
