"""``churnpulse security``: state signing chores (see docs/security.md).

::

    churnpulse security sign-state [--dry-run]   sign the model checkpoints and learner state
                                                 that an earlier churnpulse left unsigned
    churnpulse security new-key                  print a fresh random signing key
"""

from __future__ import annotations

import argparse
import asyncio
import secrets

import redis.asyncio as aioredis

from streams.pickle_audit import suspicious_globals
from streams.redis.client import make_redis
from streams.settings import Settings
from streams.signing import SignatureError, StateSigner, is_signed, signer_from_settings

# Replace the value only if nobody changed it since we read it (a learner still running).
COMPARE_AND_SET = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                   "redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') return 1 end return 0")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sec = sub.add_parser("security", help="state signing chores (docs/security.md)")
    actions = sec.add_subparsers(dest="security_action", required=True)
    sign = actions.add_parser(
        "sign-state", help="sign unsigned model checkpoints and learner state left by an "
                           "earlier churnpulse (stop the learner first)")
    sign.add_argument("--dry-run", action="store_true", help="only report what would be signed")
    sign.set_defaults(func=cmd_sign_state)
    key = actions.add_parser("new-key", help="print a fresh random signing key")
    key.set_defaults(func=cmd_new_key)


def cmd_new_key(settings: Settings, args: argparse.Namespace) -> int:
    print(secrets.token_hex(32))
    return 0


async def sign_state(client: aioredis.Redis, prefix: str, signer: StateSigner,
                     dry_run: bool = False) -> list[tuple[str, str]]:
    """(key, outcome) for every state key: ``signed``, ``ok`` (already signed with our key),
    ``REFUSED ...`` (names suspicious globals, or signed with another key), ``changed``."""
    # lazy: the learner and the registry pull in river (seconds), and every command builds
    # this parser
    from streams.learner.service import STATE_PURPOSE
    from streams.redis.model_registry import PURPOSE as MODEL_PURPOSE

    keys = [f"{prefix}:learner:state"]
    keys += sorted([k.decode() if isinstance(k, bytes) else str(k)
                    async for k in client.scan_iter(match=f"{prefix}:model:v:*", count=500)])
    out: list[tuple[str, str]] = []
    for key in keys:
        purpose = STATE_PURPOSE if key.endswith(":learner:state") else MODEL_PURPOSE
        raw = await client.get(key)
        if raw is None:
            continue
        blob = raw if isinstance(raw, bytes) else str(raw).encode()
        if is_signed(blob):
            try:
                signer.verify(purpose, blob, key)
                out.append((key, "ok"))
            except SignatureError as exc:
                out.append((key, f"REFUSED: {exc}"))
            continue
        if bad := suspicious_globals(blob):
            out.append((key, f"REFUSED: imports {', '.join(bad)} (not churnpulse state); "
                             "delete it"))
            continue
        if dry_run:
            out.append((key, "would sign"))
            continue
        done = await client.eval(COMPARE_AND_SET, 1, key, blob, signer.sign(purpose, blob))
        out.append((key, "signed" if done else "changed while signing: run again"))
    return out


def cmd_sign_state(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> list[tuple[str, str]]:
        cfg = settings.redis
        client = make_redis(cfg)
        try:
            return await sign_state(client, cfg.key_prefix, signer_from_settings(settings),
                                    args.dry_run)
        finally:
            await client.aclose()

    rows = asyncio.run(run())
    for key, outcome in rows:
        print(f"{key}: {outcome}")
    if not rows:
        print("no model checkpoint or learner state in Redis")
    return 1 if any(o.startswith(("REFUSED", "changed")) for _, o in rows) else 0
