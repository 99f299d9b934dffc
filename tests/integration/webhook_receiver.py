"""A webhook receiver for tests: verifies signatures, deduplicates, counts, fails on request."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from alerts.webhooks import IDEMPOTENCY_HEADER, SignatureError, verify


@dataclass
class Receiver:
    """``fail_first[alert_id] = K``: answer 503 to the first K attempts of that alert;
    ``always_fail``: ids answered 503 forever."""

    secret: bytes
    fail_first: dict[str, int] = field(default_factory=dict)
    always_fail: set[str] = field(default_factory=set)
    attempts: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)   # 2xx answers per key
    processed: dict[str, bytes] = field(default_factory=dict)  # dedup on Idempotency-Key
    bad_signatures: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify([self.secret], body, request.headers, now=time.time())
        except SignatureError as exc:
            self.bad_signatures.append(str(exc))
            return web.Response(status=401, text=str(exc))
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        self.attempts[key] += 1
        if key in self.always_fail or self.attempts[key] <= self.fail_first.get(key, 0):
            return web.Response(status=503, text="try again")
        self.accepted[key] += 1
        if key in self.processed:  # the receiver's own dedup (documented in docs/webhooks.md)
            return web.Response(status=200, text="duplicate")
        self.processed[key] = body
        return web.Response(status=202, text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
