"""The snapshots a learner checkpoint resolved (its *tombstones*, :mod:`streams.learner.service`):
removed from the observation store after the checkpoint is written, and again on start if the
learner died in between."""

from __future__ import annotations

from typing import Any

from online_models.observations import Observation


class Tombstones(list[Observation]):
    """The snapshots a checkpoint resolved, as removal needs them (customer, time), pickled as
    two lists: not each snapshot's features and one object per snapshot (a step's 10,000
    feature dicts and dataclass states were most of the checkpoint's CPU). A state pickled
    with a plain list of observations loads as it was."""

    @classmethod
    def of(cls, resolved: list[Observation]) -> Tombstones:
        return cls(Observation(o.customer_id, o.t, {}, 0.0, "") for o in resolved)

    def __reduce__(self) -> tuple[Any, ...]:
        return _tombstones, ([o.customer_id for o in self], [o.t for o in self])


def _tombstones(customer_ids: list[str], times: list[float]) -> Tombstones:
    return Tombstones(Observation(c, t, {}, 0.0, "") for c, t in zip(customer_ids, times,
                                                                    strict=True))
