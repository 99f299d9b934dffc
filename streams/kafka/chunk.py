"""Records ready to publish, in order: the unit handed from sources to the publisher.

Pure (no Kafka): the simulator's live stream and the replay reader produce chunks, and
:mod:`streams.kafka.publish` sends them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Index of a record's topic: customer events, churn labels.
EVENT, LABEL = 0, 1


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records in publishing order, as parallel lists.

    Attributes
    ----------
    ts_ms : list of int
        Event time (epoch ms) of each record, non-decreasing (used by the pacers).
    kinds : list of int
        Topic of each record: :data:`EVENT` or :data:`LABEL`.
    keys, values : list of bytes
        Kafka key (customer id) and value (wire JSON) of each record.

    >>> Chunk([1, 2], [EVENT, LABEL], [b"c1", b"c1"], [b"{}", b"{}"]).slice(1).kinds
    [1]
    """

    ts_ms: list[int]
    kinds: list[int]
    keys: list[bytes]
    values: list[bytes]

    def __len__(self) -> int:
        return len(self.values)

    def slice(self, start: int, stop: int | None = None) -> Chunk:
        """Records ``start:stop``."""
        return Chunk(self.ts_ms[start:stop], self.kinds[start:stop], self.keys[start:stop],
                     self.values[start:stop])
