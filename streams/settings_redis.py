"""Settings of write durability on Redis Cluster (``CHURN_REDIS__WAIT_REPLICAS``,
``CHURN_REDIS__WAIT_TIMEOUT_MS``; docs/scaling.md, "Durability on Redis Cluster").

A cluster primary acknowledges a write before its replica has it: if the primary dies in that
moment, the replica it promotes lacks the write while the worker's Kafka offsets already cover
it. With ``wait_replicas`` = n > 0 every pipeline the worker sends to a cluster primary ends
with ``WAIT n timeout`` on the same connection, and a batch counts as written (and its offsets
may be committed) only when every primary it wrote to reports n replicas holding the writes;
fewer is a transient error and the batch is retried. 0 turns it off. A standalone Redis is not
affected (no ``WAIT`` is sent).

>>> RedisDurabilitySettings().wait_replicas, RedisDurabilitySettings().wait_timeout_ms
(1, 2000)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RedisDurabilitySettings(BaseModel):
    """The replica barrier on Redis Cluster (module docstring); mixed into ``RedisSettings``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wait_replicas: int = Field(
        1, ge=0, le=16,
        description="Redis Cluster: replicas each primary must confirm a batch's writes on "
                    "(WAIT) before its offsets are committed; 0 = off. Standalone: unused.")
    wait_timeout_ms: int = Field(
        2000, ge=1, le=60_000,
        description="How long one WAIT may block; fewer replicas by then = retry the batch.")
