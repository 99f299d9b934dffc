"""The alerter holds the records it wrote: not read again while current, dropped when another
writer moved them, and the output is the same as reading every record every batch."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from alerts.batch import Stored
from streams.redis.alert_store import InMemoryAlertStore, Versioned
from tests.integration.alerter_proc import crafted_scores
from tests.unit.test_alert_processor import processor, raw, run_batches


class CountingStore(InMemoryAlertStore):
    def __init__(self) -> None:
        super().__init__()
        self.records_read = 0

    async def read(self, customers: Iterable[str], known: Collection[str] = ()
                   ) -> tuple[dict[str, Versioned], dict[str, float]]:
        got = await super().read(customers, known)
        self.records_read += len(got[0])
        return got


async def test_held_records_are_not_read_again_and_the_output_is_unchanged() -> None:
    values = [v for _, v in crafted_scores(customers=20, per_customer=15, seed=3)]
    cuts = list(range(0, len(values), 40))
    cold = processor(CountingStore())
    cold.cache_size = 0  # every record read every batch, as before
    store = CountingStore()
    warm = processor(store)
    out_cold = await run_batches(cold, raw(values), cuts)
    out_warm = await run_batches(warm, raw(values), cuts)
    assert [(r.topic, r.value) for r in out_warm] == [(r.topic, r.value) for r in out_cold]
    assert store.records_read == 20  # each customer's record read once
    assert store.records_read < cold.store.records_read  # type: ignore[attr-defined]


async def test_a_record_another_writer_moved_is_read_again() -> None:
    values = [v for _, v in crafted_scores(customers=3, per_customer=10, seed=5)]
    store = CountingStore()
    p = processor(store)
    records = raw(values)
    await p.process(records[:15])
    cid = next(iter(store.records))
    record, version = store.records[cid]
    # another alerter (a rebalance this one has not seen) wrote it meanwhile
    store.records[cid] = (Stored(record.state, record.applied + 1000, {}), version + 1)
    await p.process(records[15:])
    assert p.totals.conflicts == 1
    assert store.records[cid][0].applied >= record.applied + 1000  # its state was re-read
    p.forget()
    assert not p._cache
