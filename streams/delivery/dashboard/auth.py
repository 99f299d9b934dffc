"""Token authentication of the dashboard.

A request is let in with a token from ``dashboard.tokens`` (user -> token) in one of:

* ``Authorization: Bearer <token>`` (scripts, API clients);
* the ``churnpulse_token`` cookie (HttpOnly, SameSite=Strict; Secure when the page is served
  over TLS, directly or behind a proxy that sends ``X-Forwarded-Proto: https``, or when
  ``dashboard.cookie_secure`` is set), which the page sets when it is opened once as
  ``/?token=<token>`` (the token is then dropped from the address bar).

Configured tokens must be at least 16 characters (a settings error otherwise).

Anything else gets 401. State-changing requests must be ``application/json``: a cross-site
form cannot send that without a CORS preflight, which this server never grants, so a cookie
alone cannot be abused from another site (and SameSite=Strict keeps it off cross-site requests
anyway). When no token is configured, one is generated at start for the user ``support``
and printed once.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from streams.settings import DashboardSettings

COOKIE = "churnpulse_token"
OPEN_PATHS = ("/healthz", "/static/")
USER_KEY = web.AppKey("user_by_token", dict)
SECURE_COOKIE_KEY = web.AppKey("cookie_secure", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tokens_of(settings: DashboardSettings) -> tuple[dict[str, str], str | None]:
    """``token -> user`` from the settings, and the generated token when none was set."""
    by_token = {secret.get_secret_value(): user for user, secret in settings.tokens.items()}
    if by_token:
        return by_token, None
    token = secrets.token_urlsafe(24)
    return {token: "support"}, token


def user_for(token: str | None, by_token: Mapping[str, str]) -> str | None:
    """The user a token belongs to, compared in constant time.

    >>> user_for("b", {"a": "alice", "b": "bob"}), user_for("c", {"a": "alice"})
    ('bob', None)
    """
    if not token:
        return None
    found = None
    for known, user in by_token.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = user
    return found


def over_tls(request: web.Request) -> bool:
    """True when the browser talks TLS: to us, or to a proxy in front of us (its
    ``X-Forwarded-Proto``/``Forwarded: proto=``), or ``dashboard.cookie_secure`` says so.
    A forged header can only make the cookie Secure, which costs the forger alone."""
    if request.secure or request.app.get(SECURE_COOKIE_KEY, False):
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    proto = request.headers.get("Forwarded", "").lower()
    return forwarded == "https" or "proto=https" in proto


def _offered_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def _unauthorized(request: web.Request, why: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": why}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="churnpulse"'})
    page = ("<!doctype html><meta charset=utf-8><title>churnpulse - sign in</title>"
            "<body style='font-family:sans-serif;margin:4em'><h1>churnpulse support</h1>"
            f"<p>{why}</p><p>Open the link printed by <code>churnpulse dashboard</code> "
            "(<code>/?token=...</code>) or send <code>Authorization: Bearer ...</code>.</p>")
    return web.Response(status=401, text=page, content_type="text/html")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(OPEN_PATHS):
        return await handler(request)
    by_token: dict[str, str] = request.app[USER_KEY]
    query_token = request.query.get("token")
    if query_token is not None and request.method == "GET" and not request.path.startswith("/api/"):
        if user_for(query_token, by_token) is None:
            return _unauthorized(request, "That token is not valid.")
        kept = {k: v for k, v in request.query.items() if k != "token"}
        redirect = web.HTTPFound(request.rel_url.with_query(kept))
        redirect.set_cookie(COOKIE, query_token, httponly=True, samesite="Strict",
                            secure=over_tls(request), max_age=12 * 3600, path="/")
        raise redirect
    user = user_for(_offered_token(request), by_token)
    if user is None:
        return _unauthorized(request, "A valid access token is required.")
    if request.method not in ("GET", "HEAD") and request.content_type != "application/json":
        return web.json_response({"error": "requests that change something must be JSON"},
                                 status=415)
    request["user"] = user
    return await handler(request)
