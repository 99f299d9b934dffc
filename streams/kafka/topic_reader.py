"""Reading a whole topic once, committed records only (reports, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.errors import TransientError
from streams.settings import Settings
from streams.worker.consumer import kafka_client_options


async def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0,
                     ) -> list[tuple[bytes | None, bytes | None]]:
    """``(key, value)`` of every committed record of ``topic``, up to its end now.

    Reads with ``isolation_level="read_committed"`` up to the last stable offset of each
    partition, so records of aborted transactions are never returned. Raises
    :class:`TransientError` when the end is not reached within ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=None,
                                enable_auto_commit=False, isolation_level="read_committed",
                                auto_offset_reset="earliest", client_id="churnpulse-report")
    await consumer.start()
    try:
        # consumer.topics() fetches metadata without keeping it; this keeps the partitions
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            if time.monotonic() > deadline:
                raise TransientError(f"timed out reading {topic} to its end ({len(out)} read)")
            fetched = await consumer.getmany(timeout_ms=200, max_records=10000)
            for msgs in fetched.values():
                out.extend((m.key, m.value) for m in msgs)
        return out
    finally:
        await consumer.stop()


def read_topic_sync(settings: Settings, topic: str,
                    timeout_s: float = 60.0) -> list[tuple[bytes | None, bytes | None]]:
    return asyncio.run(read_topic(settings, topic, timeout_s))
