"""Smaller findings of issue 12: `churnpulse config` masks secrets inside URLs, dashboard tokens
have a minimum length, the session cookie is Secure behind a TLS proxy."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from streams.cli.main import main
from streams.delivery.dashboard.auth import COOKIE, SECURE_COOKIE_KEY, USER_KEY, auth_middleware
from streams.settings import load_settings

TOKEN = "a-token-of-24-characters"


def test_config_masks_the_redis_password_and_webhook_api_keys(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHURN_REDIS__URL", "redis://worker:hunter2-pw@redis.internal:6379/0")
    monkeypatch.setenv("CHURN_WEBHOOK__TARGETS", json.dumps([
        {"name": "crm", "url": "https://crm.example/hook?api_key=AKIA-secret&team=x",
         "secret": "whsec-0123456789abcdef"}]))
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert "hunter2-pw" not in printed and "AKIA-secret" not in printed
    dump = json.loads(printed)
    assert dump["redis"]["url"] == "redis://worker:**********@redis.internal:6379/0"
    assert dump["webhook"]["targets"][0]["url"] == (
        "https://crm.example/hook?api_key=**********&team=x")
    assert main(["config", "--get", "redis.url"]) == 0
    assert "hunter2-pw" not in capsys.readouterr().out
    monkeypatch.setenv("CHURN_SECURITY__SIGNING_KEY", "signing-key-0123456789")
    monkeypatch.setenv("CHURN_SECURITY__PREVIOUS_SIGNING_KEYS", '["old-key-0123456789abc"]')
    assert main(["config", "--get", "security"]) == 0
    printed = capsys.readouterr().out
    assert "signing-key-0123456789" not in printed and "old-key-0123456789abc" not in printed
    assert json.loads(printed)["previous_signing_keys"] == ["**********"]


def test_a_short_dashboard_token_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_DASHBOARD__TOKENS", json.dumps({"alice": "letmein"}))
    with pytest.raises(ValidationError, match="alice is shorter than 16"):
        load_settings()
    monkeypatch.setenv("CHURN_DASHBOARD__TOKENS", json.dumps({"alice": TOKEN}))
    assert load_settings().dashboard.tokens["alice"].get_secret_value() == TOKEN


async def _cookie_of(headers: dict[str, str], always_secure: bool = False) -> str:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[auth_middleware])
    app[USER_KEY] = {TOKEN: "alice"}
    app[SECURE_COOKIE_KEY] = always_secure
    app.router.add_get("/", page)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(f"/?token={TOKEN}", headers=headers, allow_redirects=False)
        assert resp.status == 302
        return resp.headers["Set-Cookie"]


async def test_the_session_cookie_is_secure_behind_a_tls_proxy() -> None:
    plain = await _cookie_of({})
    assert plain.startswith(f"{COOKIE}=") and "HttpOnly" in plain
    assert "Secure" not in plain  # plain HTTP on loopback: a Secure cookie would never come back
    assert "Secure" in await _cookie_of({"X-Forwarded-Proto": "https"})
    assert "Secure" in await _cookie_of({"Forwarded": "for=1.2.3.4;proto=https"})
    assert "Secure" in await _cookie_of({}, always_secure=True)
