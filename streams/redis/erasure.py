"""Right to erasure in Redis: every key, field and member of ONE customer, matched exactly.

What a customer leaves in Redis (key layout of the stores)::

    <prefix>:{c:<id>}:<part>        its own keys (features ``f``, snapshots ``obs``, alert state
                                    ``alert``, ...): deleted
    <prefix>:churned                hash field <id>: removed
    <prefix>:due:{p<n>}             sorted-set member <id> (re-score index): removed
    <prefix>:obs:due                the customer's member (observation_store.due_member) and
                                    older members "<id>|<slot>" (snapshots to resolve): removed
    <prefix>:delivered:<dispatcher>:<id>:<start ms>:<severity>   delivered-alert marks: deleted
    <prefix>:learner:state          churn times, held labels, tombstones: see
                                    :mod:`streams.learner.erasure` (signed state, learner's lock)

Matching is exact: a SCAN pattern only narrows the candidates, and each candidate is parsed
back; ``c1`` never takes ``c10``'s keys (nor those of an id like ``c1}:f``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from streams.redis.observation_base import due_member

PART = re.compile(r"[A-Za-z0-9_]+")
DISPATCHER = re.compile(r"[A-Za-z0-9_.-]+")
EPISODE_TAIL = re.compile(r":-?\d+:[a-z]+")  # alert id = <id>:<start ms>:<severity>


def glob_escape(text: str) -> str:
    r"""Escape Redis glob specials.

    >>> glob_escape("a*b?[c]\\")
    'a\\*b\\?\\[c\\]\\\\'
    """
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def is_customer_key(key: str, prefix: str, customer_id: str) -> bool:
    """``<prefix>:{c:<id>}:<part>`` of exactly this customer.

    >>> is_customer_key("cp:{c:c1}:f", "cp", "c1"), is_customer_key("cp:{c:c10}:f", "cp", "c1")
    (True, False)
    >>> is_customer_key("cp:{c:c1}:f}:f", "cp", "c1")  # the key of customer 'c1}:f'
    False
    """
    head = f"{prefix}:{{c:{customer_id}}}:"
    return key.startswith(head) and PART.fullmatch(key[len(head):]) is not None


def is_delivered_key(key: str, prefix: str, customer_id: str) -> bool:
    """``<prefix>:delivered:<dispatcher>:<id>:<start ms>:<severity>`` of this customer.

    >>> is_delivered_key("cp:delivered:crm:c1:1500:high", "cp", "c1")
    True
    >>> is_delivered_key("cp:delivered:crm:c10:1500:high", "cp", "c1")
    False
    """
    head = f"{prefix}:delivered:"
    if not key.startswith(head):
        return False
    dispatcher, sep, alert_id = key[len(head):].partition(":")
    return (bool(sep) and DISPATCHER.fullmatch(dispatcher) is not None
            and alert_id.startswith(customer_id)
            and EPISODE_TAIL.fullmatch(alert_id[len(customer_id):]) is not None)


def is_obs_member(member: str, customer_id: str) -> bool:
    """``<id>|<slot>`` of this customer (ids may contain ``|``: the slot is the last part).

    >>> is_obs_member("c1|20", "c1"), is_obs_member("c10|20", "c1"), is_obs_member("c1|x|2", "c1")
    (True, False, False)
    """
    cid, sep, slot = member.rpartition("|")
    return bool(sep) and cid == customer_id and slot.lstrip("-").isdigit()


@dataclass
class RedisErasure:
    """What :func:`erase_customer` removed."""

    keys: list[str] = field(default_factory=list)
    churned: int = 0
    due_members: int = 0
    obs_members: int = 0

    @property
    def total(self) -> int:
        return len(self.keys) + self.churned + self.due_members + self.obs_members


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw


async def erase_customer(client: aioredis.Redis, prefix: str, customer_id: str,
                         scan_count: int = 1000) -> RedisErasure:
    """Remove everything of ``customer_id`` under ``prefix`` (idempotent)."""
    out = RedisErasure()
    pfx, cid = glob_escape(prefix), glob_escape(customer_id)
    candidates = [_text(k) async for k in client.scan_iter(
        match=f"{pfx}:{{c:{cid}}}:*", count=scan_count)]
    candidates += [_text(k) async for k in client.scan_iter(
        match=f"{pfx}:delivered:*:{cid}:*", count=scan_count)]
    out.keys = sorted({k for k in candidates if is_customer_key(k, prefix, customer_id)
                       or is_delivered_key(k, prefix, customer_id)})
    if out.keys:
        obs_key = f"{prefix}:{{c:{customer_id}}}:obs"
        snapshots = int(await client.hlen(obs_key)) if obs_key in out.keys else 0
        await client.delete(*out.keys)
        if snapshots and await client.exists(f"{prefix}:obs:due:n"):  # the pending count
            await client.decrby(f"{prefix}:obs:due:n", snapshots)
    out.churned = int(await client.hdel(f"{prefix}:churned", customer_id))
    async for key in client.scan_iter(match=f"{pfx}:due:*", count=scan_count, _type="zset"):
        out.due_members += int(await client.zrem(key, customer_id))
    obs_due = f"{prefix}:obs:due"
    members = [m async for m, _score in client.zscan_iter(
        obs_due, match=f"{cid}|*", count=scan_count)]
    mine = [m for m in members if is_obs_member(_text(m), customer_id)]
    mine.append(due_member(customer_id))
    if mine:
        out.obs_members = int(await client.zrem(obs_due, *mine))
    return out
