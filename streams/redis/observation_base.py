"""The observation store's interface, its in-memory implementation and the due-index member
shapes (see :mod:`streams.redis.observation_store` for the Redis store and its layout)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from online_models.observations import LabelPolicy, Observation
from streams.redis.churned import ChurnedCustomers
from streams.redis.packed_state import quantized

__all__ = ["InMemoryObservationStore", "ObservationStore", "ObserveOutcome", "ScoredSnapshot",
           "due_member", "member", "parse_member", "pending_of", "record_scored_generic"]


@dataclass(frozen=True, slots=True)
class ScoredSnapshot:
    """A customer the worker has just scored.

    ``observation`` is the snapshot to keep (``None`` when the worker knows the customer's
    slot is taken already: then only the churn check is done); ``newest_event`` is the
    customer's newest event time, which the churn check compares with the churn time.
    """

    customer_id: str
    newest_event: float
    observation: Observation | None


@dataclass
class ObserveOutcome:
    """What :meth:`ObservationStore.record_scored` did with a batch."""

    churned: set[str] = field(default_factory=set)  # not to be scored (nothing recorded)
    recorded: int = 0
    returned: int = 0


async def pending_of(store: ObservationStore, customer_ids: Sequence[str]
                     ) -> dict[str, list[Observation]]:
    """Pending snapshots of several customers: one round trip when the store has
    ``pending_many`` (both stores here), else one call per customer."""
    many = getattr(store, "pending_many", None)
    if many is not None:
        found: dict[str, list[Observation]] = await many(customer_ids)
        return found
    return {cid: await store.pending(cid) for cid in customer_ids}


async def record_scored_generic(store: ObservationStore, items: Sequence[ScoredSnapshot],
                                churned: ChurnedCustomers | None) -> ObserveOutcome:
    """:meth:`ObservationStore.record_scored` from the store's other methods (two calls)."""
    outcome = ObserveOutcome()
    if not items:
        return outcome
    times = (await churned.churned_since([i.customer_id for i in items])
             if churned is not None else {})
    back: list[str] = []
    keep: list[Observation] = []
    for item in items:
        churn = times.get(item.customer_id)
        if churn is not None and churn >= item.newest_event:
            outcome.churned.add(item.customer_id)
            continue
        if churn is not None:
            back.append(item.customer_id)
        if item.observation is not None:
            keep.append(item.observation)
    if back and churned is not None:
        await churned.returned(back)
    outcome.returned = len(set(back))
    outcome.recorded = await store.record(keep)
    return outcome


def member(obs: Observation, policy: LabelPolicy) -> str:
    """The older layout's due-index member of a snapshot (one per snapshot)."""
    return f"{obs.customer_id}|{policy.slot(obs.t)}"


def _old_shaped(text: str) -> bool:
    _, sep, slot = text.rpartition("|")
    return bool(sep) and slot.lstrip("-").isdigit()


def due_member(customer_id: str) -> str:
    """A customer's due-index member: its id, with ``|`` appended when the id ends with
    ``|`` or looks like an older "<id>|<slot>" member (so every member reads back one way).

    >>> due_member("c1"), due_member("c1|20"), due_member("c1|"), due_member("a|b")
    ('c1', 'c1|20|', 'c1||', 'a|b')
    """
    if customer_id.endswith("|") or _old_shaped(customer_id):
        return customer_id + "|"
    return customer_id


def parse_member(text: str) -> tuple[str, str | None]:
    """(customer id, slot) of a due-index member: slot ``None`` for a customer's member,
    the slot for an older per-snapshot member.

    >>> parse_member("c1"), parse_member("c1|20"), parse_member("c1|20|"), parse_member("x||")
    (('c1', None), ('c1', '20'), ('c1|20', None), ('x|', None))
    """
    if text.endswith("|"):
        return text[:-1], None
    if _old_shaped(text):
        cid, _, slot = text.rpartition("|")
        return cid, slot
    return text, None


class ObservationStore(Protocol):
    async def record(self, observations: Sequence[Observation]) -> int:
        """Keep the snapshots whose (customer, slot) has none yet; returns how many were new."""
        ...

    async def pending(self, customer_id: str) -> list[Observation]: ...

    async def due(self, until: float, limit: int) -> list[Observation]:
        """Pending snapshots that resolve negative at or before event time ``until``."""
        ...

    async def remove(self, observations: Iterable[Observation]) -> None: ...

    async def count(self) -> int: ...

    async def record_scored(self, items: Sequence[ScoredSnapshot],
                            churned: ChurnedCustomers | None) -> ObserveOutcome:
        """The worker's step: skip churned customers, clear returned ones, record the rest.

        Redis does it in one round trip (one script) when ``churned`` is in the same Redis.
        """
        ...


class InMemoryObservationStore:
    def __init__(self, policy: LabelPolicy) -> None:
        self._policy = policy
        self._by_customer: dict[str, dict[int, Observation]] = {}

    async def record(self, observations: Sequence[Observation]) -> int:
        new = 0
        for obs in observations:
            slots = self._by_customer.setdefault(obs.customer_id, {})
            slot = self._policy.slot(obs.t)
            if slot not in slots:
                slots[slot] = quantized(obs)  # what the Redis store reads back
                new += 1
        return new

    async def pending(self, customer_id: str) -> list[Observation]:
        return sorted(self._by_customer.get(customer_id, {}).values(), key=lambda o: o.t)

    async def pending_many(self, customer_ids: Sequence[str]) -> dict[str, list[Observation]]:
        return {cid: await self.pending(cid) for cid in customer_ids}

    async def due(self, until: float, limit: int) -> list[Observation]:
        found = [o for slots in self._by_customer.values() for o in slots.values()
                 if self._policy.due(o) <= until]
        found.sort(key=lambda o: (self._policy.due(o), o.customer_id))
        return found[:limit]

    async def remove(self, observations: Iterable[Observation]) -> None:
        for obs in observations:
            slots = self._by_customer.get(obs.customer_id, {})
            slots.pop(self._policy.slot(obs.t), None)
            if not slots:
                self._by_customer.pop(obs.customer_id, None)

    async def count(self) -> int:
        return sum(len(s) for s in self._by_customer.values())

    async def record_scored(self, items: Sequence[ScoredSnapshot],
                            churned: ChurnedCustomers | None) -> ObserveOutcome:
        return await record_scored_generic(self, items, churned)
