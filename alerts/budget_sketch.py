"""The score sketch of an alert budget: a rolling window of rank values and quantiles on it.

River's ``stats.RollingQuantile`` at a ladder of levels (the share of scores above a value:
1/2 .. 1/4096) answers "which value has this share of the window above it"; the window is kept
as float32 so the state stored with the alert records stays small and restores exactly.
"""

from __future__ import annotations

import base64
import math
from array import array
from collections import deque

from river import stats

LEVELS: tuple[float, ...] = tuple(2.0 ** -j for j in range(1, 13))  # share above: 1/2..1/4096


def _f32(x: float) -> float:
    return array("f", [x])[0]


class ScoreSketch:
    """A rolling window of rank values and River rolling quantiles at the :data:`LEVELS`.

    >>> sk = ScoreSketch(1000)
    >>> for i in range(1000):
    ...     sk.update(i / 1000)
    >>> round(sk.value_at(0.5), 2), round(sk.value_at(0.01), 2), round(sk.value_at(0.75), 2)
    (0.5, 0.99, 0.5)
    >>> ScoreSketch.from_json(sk.to_json(), 1000).value_at(0.1) == sk.value_at(0.1)
    True
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.values: deque[float] = deque(maxlen=window)
        self._sketches = [stats.RollingQuantile(1.0 - lv, window) for lv in LEVELS]

    def update(self, x: float) -> None:
        x = _f32(x)
        self.values.append(x)
        for s in self._sketches:
            s.update(x)

    def __len__(self) -> int:
        return len(self.values)

    def value_at(self, share: float) -> float:
        """The value with ``share`` of the window above it (clamped to the ladder's ends)."""
        if not self.values:
            return math.inf
        j = min(max(-math.log2(share), 1.0), float(len(LEVELS)))
        lo = math.floor(j)
        a = self._sketches[lo - 1].get()
        if lo >= len(LEVELS) or j == lo:
            return float(a or 0.0)
        b = self._sketches[lo].get()
        frac = j - lo
        return float((a or 0.0) * (1 - frac) + (b or 0.0) * frac)

    def to_json(self) -> str:
        return base64.b64encode(array("f", self.values).tobytes()).decode()

    @staticmethod
    def from_json(data: str, window: int) -> ScoreSketch:
        sk = ScoreSketch(window)
        values = array("f")
        values.frombytes(base64.b64decode(data))
        for x in values[-window:]:
            sk.update(x)
        return sk
