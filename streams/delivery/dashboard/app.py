"""The support dashboard's web app (aiohttp): pages, JSON API, live events, outcome buttons.

Routes (all but ``/healthz`` and ``/static/`` need a token, see
:mod:`streams.delivery.dashboard.auth`)::

    GET  /                              the page (static/index.html)
    GET  /api/me                        {"user": ...}
    GET  /api/board?severity=&team=&segment=&status=&q=   at-risk customers, riskiest first
    GET  /api/feed                      the latest alerts, newest first
    GET  /api/customers/{id}            score history, drivers, alerts, outcomes, activity
    GET  /api/calibration               the served model's reliability diagram (data and SVG),
                                        ECE and calibration state (dashboard/calibration.py)
    POST /api/alerts/{alert_id}/outcome {"action": "acknowledge"|"assign"|"resolve",
                                         "assignee": "...", "note": "..."} -> churn-alert-outcomes
    GET  /api/stream                    Server-Sent Events: alert, outcome, score
    GET  /healthz                       {"ok": true, "caught_up": ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from online_models.features import event_types
from streams.delivery.dashboard.auth import SECURE_COOKIE_KEY, USER_KEY, auth_middleware
from streams.delivery.dashboard.board import ACTIONS, Board
from streams.delivery.dashboard.calibration import calibration_view, reliability_svg
from streams.delivery.dashboard.erasure import serve_forget_requests
from streams.delivery.dashboard.feeds import BoardFeed, Hub
from streams.errors import TransientError
from streams.kafka.clients import new_producer
from streams.redis.client import make_redis
from streams.redis.cluster import group_prefix
from streams.redis.feature_store import RedisFeatureStore
from streams.settings import Settings
from streams.timefmt import format_ts

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
MAX_TEXT = 500


class Dashboard:
    """The parts the handlers share: board, feed, hub, outcome producer, feature store."""

    def __init__(self, settings: Settings) -> None:
        cfg = settings.dashboard
        self.settings = settings
        self.board = Board(board_size=cfg.board_size, history_points=cfg.history_points,
                           history_customers=cfg.history_customers)
        self.hub = Hub()
        self.feed = BoardFeed(settings, self.board, self.hub, self._partitions_for)
        self.producer: AIOKafkaProducer | None = None
        self.store: RedisFeatureStore | None = None
        self.redis: aioredis.Redis | None = None
        self._calibration: tuple[float, dict[str, Any]] | None = None  # (read at, view)

    async def _partitions_for(self, topic: str) -> set[int]:
        assert self.producer is not None
        partitions: set[int] = await self.producer.partitions_for(topic)
        return partitions

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        settings = self.settings
        redis_cfg = settings.redis
        client = make_redis(redis_cfg)
        self.redis = client
        self.store = RedisFeatureStore(client, settings.features, redis_cfg.key_prefix)
        self.producer = new_producer(settings.kafka, acks="all", enable_idempotence=True,
                                     client_id="churnpulse-dashboard")
        await self.producer.start()
        task = asyncio.create_task(self.feed.run_forever())
        task.add_done_callback(_log_crash)
        forgets = asyncio.create_task(self._serve_forgets(client, redis_cfg.key_prefix))
        forgets.add_done_callback(_log_crash)
        try:
            yield
        finally:
            self.hub.close_all()
            for t in (task, forgets):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await self.producer.stop()
            await client.aclose()

    async def _serve_forgets(self, client: aioredis.Redis, prefix: str) -> None:
        """Erase customers ``churnpulse forget`` asked for (dashboard/erasure.py), every 2 s."""
        while True:
            try:
                erased = await serve_forget_requests(client, prefix, self.board)
                if erased:
                    log.info("erased %d customer(s) from the board on request", len(erased))
            except (RedisError, OSError) as exc:
                log.warning("cannot read erasure requests: %s", exc)
            await asyncio.sleep(2.0)

    # -- handlers -----------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response({"user": request["user"]})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "caught_up": self.feed.caught_up.is_set(),
                                  "board": len(self.board), "clients": len(self.hub),
                                  "read": dict(self.feed.counts)})

    async def board_rows(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = max(1, min(int(q.get("limit", "200")), 1000))
        except ValueError:
            return web.json_response({"error": "limit must be a whole number"}, status=400)
        rows = self.board.at_risk(severity=q.get("severity") or None,
                                  team=q.get("team") or None, segment=q.get("segment") or None,
                                  status=q.get("status") or None, query=q.get("q") or None,
                                  holdout=q.get("holdout") in ("1", "true"),
                                  limit=limit)
        return _json({"rows": rows, "facets": self.board.facets(),
                      "counts": self.board.counts(), "caught_up": self.feed.caught_up.is_set()})

    async def recent_feed(self, request: web.Request) -> web.Response:
        return _json({"alerts": list(self.feed.recent)})

    async def customer(self, request: web.Request) -> web.Response:
        cid = request.match_info["customer_id"]
        view = self.board.customer(cid)
        activity = await self._activity(cid)
        if view is None and activity.get("features") is None:
            return web.json_response({"error": f"no customer {cid!r}"}, status=404)
        return _json({**(view or {"customer_id": cid, "entry": None, "alerts": [],
                                  "outcomes": [], "drivers": [], "history": []}), **activity})

    async def calibration(self, request: web.Request) -> web.Response:
        """The learner's status (what ``model status`` reads), as the calibration panel,
        read at most every 2 s."""
        now = time.monotonic()
        if self._calibration is not None and now - self._calibration[0] < 2.0:
            return _json(self._calibration[1])
        if self.redis is None:
            return web.json_response({"error": "not started"}, status=503)
        key = f"{group_prefix(self.redis, self.settings.redis.key_prefix, 'learner')}:status"
        try:
            raw = await self.redis.get(key)
            status = orjson.loads(raw) if raw is not None else None
        except (RedisError, OSError, ValueError) as exc:
            return web.json_response({"error": f"learner status unavailable: {exc}"},
                                     status=503)
        view = calibration_view(status if isinstance(status, dict) else None)
        view["svg"] = reliability_svg(view["bins"], view["ece"])
        view["uncalibrated_scores"] = self.board.uncalibrated_scores
        self._calibration = (now, view)
        return _json(view)

    async def _activity(self, cid: str) -> dict[str, Any]:
        if self.store is None:
            return {"features": None}
        now = time.time()
        try:
            state = await self.store.get(cid)
            features = await self.store.features(cid, now) if state else {}
        except (TransientError, RedisError, OSError, ValueError) as exc:
            log.warning("features of %s unavailable: %s", cid, exc)
            return {"features": None, "features_error": str(exc)}
        if not state:
            return {"features": None}
        per_type = []
        for kind in event_types(state):
            metrics = {name.split(".", 1)[0]: value for name, value in features.items()
                       if name.endswith(f".{kind}") and not name.startswith("ratio.")}
            last = state.get(f"t.{kind}")
            per_type.append({"event_type": kind, "last_seen": format_ts(last) if last else None,
                             **metrics})
        per_type.sort(key=lambda row: row.get("last_seen") or "", reverse=True)
        overall = {k: v for k, v in features.items() if "." not in k}
        return {"features": overall, "activity": per_type,
                "last_event": format_ts(state["t_last"]) if "t_last" in state else None}

    async def outcome(self, request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict) or body.get("action") not in ACTIONS:
            return web.json_response(
                {"error": f"action must be one of {', '.join(ACTIONS)}"}, status=400)
        action = body["action"]
        assignee, note = body.get("assignee"), body.get("note")
        for name, value in (("assignee", assignee), ("note", note)):
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
                return web.json_response({"error": f"{name} must be text (≤ {MAX_TEXT})"},
                                         status=400)
        if action == "assign" and not (assignee or "").strip():
            return web.json_response({"error": "assign needs an assignee"}, status=400)
        cid = self.board.customer_of(alert_id)
        if cid is None:
            return web.json_response({"error": f"no alert {alert_id!r} on the board"},
                                     status=404)
        view = self.board.customer(cid)
        if action != "acknowledge" and view and view["entry"] and view["entry"]["holdout"]:
            return web.json_response({"error": "this customer is in the holdout: record it,"
                                               " do not act (only acknowledge)"}, status=409)
        now = time.time()
        record = {"schema_version": 1, "outcome_id": f"{alert_id}:{action}:{int(now * 1000)}",
                  "alert_id": alert_id, "customer_id": cid, "action": action,
                  "assignee": (assignee or "").strip() or None, "by": request["user"],
                  "note": note or None, "at": format_ts(now)}
        assert self.producer is not None
        try:
            await self.producer.send_and_wait(self.settings.topics.alert_outcomes,
                                              orjson.dumps(record), key=cid.encode())
        except KafkaError as exc:
            return web.json_response({"error": f"could not publish the outcome: {exc}"},
                                     status=503)
        entry = self.board.on_outcome(record)
        if entry is not None:
            self.hub.publish("outcome", {"outcome": record, "entry": entry.summary()})
        current = self.board.customer(cid)
        return _json({"outcome": record, "entry": current["entry"] if current else None})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue = self.hub.subscribe()
        try:
            await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                event, payload = item
                await response.write(b"event: " + event.encode() + b"\ndata: " + payload
                                     + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(queue)
        return response


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the dashboard's Kafka feed stopped: %r", task.exception())


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set on every response just before its headers go out (streams included)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")


def create_app(settings: Settings, by_token: dict[str, str]) -> web.Application:
    """The aiohttp application; ``by_token`` maps access tokens to user names."""
    app = web.Application(middlewares=[auth_middleware])
    app.on_response_prepare.append(_security_headers)
    app[USER_KEY] = by_token
    app[SECURE_COOKIE_KEY] = settings.dashboard.cookie_secure
    dash = Dashboard(settings)
    app.cleanup_ctx.append(dash.lifecycle)

    async def close_streams(app: web.Application) -> None:
        dash.hub.close_all()

    app.on_shutdown.append(close_streams)
    app.router.add_get("/", dash.index)
    app.router.add_get("/healthz", dash.healthz)
    app.router.add_get("/api/me", dash.me)
    app.router.add_get("/api/board", dash.board_rows)
    app.router.add_get("/api/feed", dash.recent_feed)
    app.router.add_get("/api/customers/{customer_id}", dash.customer)
    app.router.add_get("/api/calibration", dash.calibration)
    app.router.add_post("/api/alerts/{alert_id}/outcome", dash.outcome)
    app.router.add_get("/api/stream", dash.stream)
    app.router.add_static("/static/", STATIC, show_index=False)
    return app
