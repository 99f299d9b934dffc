"""Local services owned by the project: a single-node Kafka (KRaft) and a redis-server.

No Docker needed: Kafka runs from Maven Central jars with the machine's ``java``/``mvn``,
Redis is Debian's ``redis-server``. Both bind 127.0.0.1, keep pid files, logs and data in
``settings.services.state_dir``, and are reused when something already answers on their port.

Usage: ``up(load_settings())`` returns ``[ServiceStatus("kafka", ...),
ServiceStatus("redis", ...)]``; ``status``, ``down`` and ``reset`` (down, then the brokers'
data deleted) take the same argument.
Errors are :class:`ServiceError`.
"""

from __future__ import annotations

from streams.services.common import ServiceError, ServiceStatus, State
from streams.services.manager import down, reset, status, up

__all__ = ["ServiceError", "ServiceStatus", "State", "down", "reset", "status", "up"]
