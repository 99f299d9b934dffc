"""Records between the processes and their Kafka adapter, and the retry every process uses.

A process sees Kafka only through these shapes: it reads :class:`RawRecord`\\ s, returns
:class:`OutRecord`\\ s and hands them to a :class:`RecordSink` (the Kafka producer in production,
:class:`MemorySink` in tests and backtests). :func:`retry_transient` is the one
retry-with-backoff for dependencies that are expected to heal
(:class:`~streams.errors.TransientError`). Dead-letter records are built by
:mod:`streams.dead_letter`.

This module imports no Kafka or Redis client: processes, adapters and offline tools all use it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from streams.errors import TransientError

T = TypeVar("T")
C = TypeVar("C", bound=type)

Headers = list[tuple[str, bytes]]


def slot_init(cls: C) -> C:
    """Class decorator over ``@dataclass(frozen=True, slots=True)``: an ``__init__`` that stores
    each field through its slot descriptor instead of the generated ``object.__setattr__``
    per field (2.5x faster to build: 1.78 -> 0.70 us for six fields), for the records built
    once per event. Everything else stays the dataclass's: frozen, equality, hash, repr,
    ``dataclasses.replace``. Only for classes without ``__post_init__`` or default factories.

    >>> @slot_init
    ... @dataclass(frozen=True, slots=True)
    ... class P:
    ...     x: int
    ...     y: int = 2
    >>> P(1), P(1, y=3) == P(1, 3), dataclasses.replace(P(1), y=5)
    (P(x=1, y=2), True, P(x=1, y=5))
    >>> P(1).x = 3
    Traceback (most recent call last):
    ...
    dataclasses.FrozenInstanceError: cannot assign to field 'x'
    """
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__ or any(
            f.default_factory is not dataclasses.MISSING or not f.init for f in fields):
        raise TypeError(f"slot_init does not apply to {cls.__name__}")
    scope: dict[str, Any] = {}
    params, body = [], []
    for i, f in enumerate(fields):
        scope[f"_set{i}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            scope[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        body.append(f"    _set{i}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"])
    exec(source, scope)  # noqa: S102 - built from the class's own field names
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    type.__setattr__(cls, "__init__", init)
    return cls


@slot_init
@dataclass(frozen=True, slots=True)
class RawRecord:
    """A consumed Kafka record, as a processor needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@slot_init
@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce: topic, key, value and optional headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None = None


class RecordSink(Protocol):
    """Where output records go.

    ``publish`` returns once the broker acknowledged every record, in order per key, and raises
    :class:`~streams.errors.TransientError` when it could not; publishing again is safe (outputs
    are idempotent downstream: scores carry ``score_id``).
    """

    async def publish(self, records: Sequence[OutRecord]) -> None: ...


class MemorySink:
    """An in-memory :class:`RecordSink` (tests, backtests).

    >>> sink = MemorySink()
    >>> asyncio.run(sink.publish([OutRecord("t", b"k", b"v")]))
    >>> [r.value for r in sink.on("t")], sink.on("other")
    ([b'v'], [])
    """

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.records.extend(records)

    def on(self, topic: str) -> list[OutRecord]:
        return [r for r in self.records if r.topic == topic]


async def retry_transient(
    op: Callable[[], Awaitable[T]],
    *,
    on_retry: Callable[[int, TransientError], None],
    base_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``op`` until it succeeds, backing off exponentially on :class:`TransientError`.

    There is no give-up: giving up would acknowledge an unprocessed batch. A process that must
    stop is cancelled, which leaves the batch unacknowledged for the next owner.
    """
    attempt = 0
    while True:
        try:
            return await op()
        except TransientError as exc:
            attempt += 1
            on_retry(attempt, exc)
            await sleep(min(max_delay_s, base_delay_s * 2 ** (attempt - 1)))
