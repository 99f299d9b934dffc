"""Honest comparison of models: predictions as they would have been served, compared paired.

A snapshot resolves a horizon (30 days) after it was scored. Predicting it *then* uses a model
that has meanwhile learned the same customer's neighbouring snapshots, which flatters every
model (memorising ones most: trees, forests) and is not what was served. So the learner keeps,
per model, a ring of frozen copies taken as event time passes (:class:`StateRing`, one copy per
observation interval, a horizon and a little more of them) and scores each resolved snapshot
with the copy that was current at the snapshot's time: the *shadow* prediction, what that model
would have served. It lags what the worker served by less than one interval (the worker loads
a new version within seconds), the same for champion and challengers.

:class:`PairedLoss` compares a challenger with the champion on the same snapshots: the
difference of their log losses, summed per bucket of customers (a customer's daily snapshots
are strongly correlated, so the buckets, not the snapshots, are the independent units), with
exponential forgetting. Its ``z`` is the summed difference over its cluster-robust standard
error; O(1) per resolution, O(buckets) per check.
"""

from __future__ import annotations

import copy
import math
import zlib
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

DAY_S = 86400.0


@dataclass
class StateRing:
    """Frozen copies of a model by event time (module docstring).

    >>> ring = StateRing(period_s=10.0, keep_s=25.0)
    >>> for now in (0.0, 5.0, 10.0, 20.0, 30.0, 40.0):
    ...     _ = ring.take(now, {"as_of": now})
    >>> [t for t, _ in ring.states]
    [10.0, 20.0, 30.0, 40.0]
    >>> ring.at(29.0), ring.at(40.0), ring.at(3.0)
    ({'as_of': 20.0}, {'as_of': 40.0}, None)
    """

    period_s: float = DAY_S
    keep_s: float = 32 * DAY_S
    states: deque[tuple[float, Any]] = field(default_factory=deque)

    def take(self, now: float, model: Any) -> bool:
        """Copy ``model`` as of ``now`` if a period passed since the last copy."""
        if self.states and now < self.states[-1][0] + self.period_s:
            return False
        self.states.append((now, copy.deepcopy(model)))
        floor = now - self.keep_s
        while len(self.states) > 1 and self.states[1][0] <= floor:
            self.states.popleft()
        return True

    def at(self, t: float) -> Any | None:
        """The newest copy taken at or before ``t`` (None: the model was not trained yet)."""
        states = self.states
        if not states or states[0][0] > t:
            return None
        if states[-1][0] <= t:
            return states[-1][1]
        i = bisect_right([s for s, _ in states], t)
        return states[i - 1][1]


@dataclass
class PairedLoss:
    """Champion's minus challenger's log loss on the same snapshots (module docstring).

    >>> import random
    >>> rnd = random.Random(1)
    >>> better = PairedLoss()
    >>> for i in range(4000):
    ...     better.update(f"c{i % 400}", 0.30 + rnd.random() * 0.1, 0.28 + rnd.random() * 0.1)
    >>> better.z() > 3, round(better.mean(), 2)
    (True, 0.02)
    >>> same = PairedLoss()
    >>> for i in range(4000):
    ...     same.update(f"c{i % 400}", rnd.random(), rnd.random())
    >>> abs(same.z()) < 3
    True
    """

    buckets: int = 256
    half_life: float = 20_000.0
    d: list[float] = field(default_factory=list)
    m: list[float] = field(default_factory=list)
    total: float = 0.0
    n: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.d:
            self.d = [0.0] * self.buckets
            self.m = [0.0] * self.buckets

    def update(self, customer_id: str, champion_loss: float, challenger_loss: float) -> None:
        b = zlib.crc32(customer_id.encode()) % self.buckets
        diff = champion_loss - challenger_loss
        self.d[b] += diff
        self.m[b] += 1.0
        self.total += diff
        self.n += 1.0
        self.count += 1

    def forget(self, count: int) -> None:
        """Age the evidence by ``count`` resolutions (once per batch)."""
        if count <= 0 or not self.n:
            return
        f = 0.5 ** (count / self.half_life)
        self.d = [v * f for v in self.d]
        self.m = [v * f for v in self.m]
        self.total *= f
        self.n *= f

    def mean(self) -> float:
        """Mean log-loss gain of the challenger per snapshot (positive: challenger better)."""
        return self.total / self.n if self.n else 0.0

    def z(self) -> float:
        """Mean gain over its cluster-robust standard error (0 without evidence)."""
        mean = self.mean()
        var = sum((d - m * mean) ** 2 for d, m in zip(self.d, self.m, strict=True))
        if var <= 0.0:
            return 0.0
        return self.total / math.sqrt(var)
