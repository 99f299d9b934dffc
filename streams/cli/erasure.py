"""``churnpulse forget``: erase one customer from everything churnpulse keeps (docs/security.md).

* Redis: :func:`streams.redis.erasure.erase_customer` (features, snapshots, alert state,
  churned mark, due indexes, delivered-alert marks), matched exactly;
* the learner state: :func:`streams.learner.erasure.erase_from_learner`;
* the dispatcher's alert log file (``webhook.log_file``): lines whose ``customer_id`` is the
  customer are removed (the file is rewritten and swapped in; see :func:`erase_from_jsonl`);
* running dashboards: asked through a digest of the id, never the id itself
  (:mod:`streams.delivery.dashboard.erasure`); they erase it within 2 s.

Not reachable from here, and said so in docs/security.md: Kafka topics (events, scores,
alerts until retention), process logs (the ``log`` sink), receivers of webhooks.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from streams.delivery.dashboard.erasure import request_forget
from streams.learner.erasure import erase_from_learner
from streams.learner.service import LearnerStateStore
from streams.redis.erasure import RedisErasure, erase_customer
from streams.settings import Settings
from streams.signing import StateSigner


def _mentions(line: bytes, customer_id: str) -> bool:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("customer_id") == customer_id


def erase_from_jsonl(path: Path, customer_id: str, attempts: int = 5) -> int:
    """Drop the JSON lines of ``customer_id`` from ``path``; returns how many.

    The rest is written to a temporary file that replaces ``path``; if the file grew while
    we filtered (the dispatcher appends), we start again, so no appended line is lost.
    """
    for _ in range(attempts):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        lines = data.splitlines(keepends=True)
        keep = [ln for ln in lines if not _mentions(ln, customer_id)]
        if len(keep) == len(lines):
            return 0
        tmp = path.with_name(f".{path.name}.forget-{os.getpid()}")
        tmp.write_bytes(b"".join(keep))
        os.chmod(tmp, path.stat().st_mode & 0o777)
        if path.stat().st_size != len(data):
            tmp.unlink()
            continue
        os.replace(tmp, path)
        return len(lines) - len(keep)
    raise RuntimeError(f"{path} kept growing while the customer's lines were removed; "
                       "run forget again")


@dataclass
class Erasure:
    redis: RedisErasure
    learner: str
    log_lines: int

    def summary(self, customer_id: str) -> str:
        r = self.redis
        return (f"forgot customer {customer_id!r}: {len(r.keys)} keys, {r.churned} churned "
                f"mark, {r.due_members} due-index and {r.obs_members} snapshot-index entries "
                f"removed; {self.learner}; {self.log_lines} alert log lines removed; "
                "dashboards asked to erase it (within 2 s)")


async def forget_customer(settings: Settings, client: aioredis.Redis, signer: StateSigner,
                          customer_id: str, wait_s: float = 30.0) -> Erasure:
    """Erase ``customer_id`` everywhere this process can reach (module docstring)."""
    prefix = settings.redis.key_prefix
    removed = await erase_customer(client, prefix, customer_id)
    learner = await erase_from_learner(client, LearnerStateStore(client, prefix, signer),
                                       customer_id, wait_s)
    removed_again = await erase_customer(client, prefix, customer_id)  # written meanwhile
    removed.keys += removed_again.keys
    removed.churned += removed_again.churned
    removed.due_members += removed_again.due_members
    removed.obs_members += removed_again.obs_members
    log_file = settings.webhook.log_file
    lines = erase_from_jsonl(log_file, customer_id) if log_file is not None else 0
    await request_forget(client, prefix, customer_id, time.time() * 1000)  # running dashboards
    return Erasure(removed, learner, lines)
