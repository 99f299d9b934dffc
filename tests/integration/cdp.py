"""A small Chrome DevTools Protocol driver for tests: Debian's ``chromium``, headless.

No browser download and no extra package: chromium is started with
``--remote-debugging-port=0``, the port is read from ``DevToolsActivePort`` in its profile
directory, and the page is driven over a websocket with aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest


def find_chromium() -> str:
    """Path of the system chromium; fails under CI, skips elsewhere, when there is none."""
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    msg = "chromium is not installed (run scripts/ensure_chromium.sh)"
    if os.environ.get("CI"):
        pytest.fail(msg + " — CI requires the browser test", pytrace=False)
    pytest.skip(msg)


class Page:
    """One browser tab: evaluate JavaScript, wait for DOM conditions, take screenshots."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(str(data["params"]["exceptionDetails"]))
            elif data.get("method") == "Log.entryAdded":  # CSP violations, failed loads
                entry = data["params"]["entry"]
                if entry.get("level") == "error":
                    self.console.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description")))
                                             for a in args))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout=30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def js(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                awaitPromise=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout_s: float = 20) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f}s in the browser waiting"
                                     f" for {what}; console: {self.console[-5:]}")
            await asyncio.sleep(0.05)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", f"{url} to load")

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png")
        return _save(path, base64.b64decode(shot["data"]))


def _save(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _launch(binary: str, profile: Path, width: int, height: int) -> tuple[
        subprocess.Popen[bytes], IO[bytes]]:
    profile.mkdir(parents=True, exist_ok=True)
    log = (profile / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


@contextlib.asynccontextmanager
async def chromium_page(profile: Path, width: int = 1600, height: int = 1000):  # type: ignore[no-untyped-def]
    """Start headless chromium with a fresh profile and yield a :class:`Page`."""
    proc, log = _launch(find_chromium(), profile, width, height)
    session = aiohttp.ClientSession()
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("chromium did not start:\n"
                                     + (profile / "chromium.log").read_text(errors="replace"))
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets: list[dict[str, Any]] = []
        while not targets:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = [t for t in await response.json() if t.get("type") == "page"]
            if not targets:
                await asyncio.sleep(0.05)
        ws = await session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Log.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=False)
        try:
            yield page
        finally:
            await ws.close()
    finally:
        await session.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
