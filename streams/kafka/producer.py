"""Producer SDK: publish customer events and churn labels, validated, keyed by customer id.

>>> from streams.kafka.producer import ChurnProducer                      # doctest: +SKIP
>>> with ChurnProducer("127.0.0.1:9092") as producer:              # doctest: +SKIP
...     producer.send_event({"event_id": "e-1", "customer_id": "c-1", "event_type": "login",
...                          "ts": "2026-03-01T09:30:00Z"})
...     producer.send_label({"label_id": "l-1", "customer_id": "c-1",
...                          "ts": "2026-03-20T00:00:00Z", "churned": True})

Records are validated against the wire contract before they leave the process, so a producer
bug surfaces as :class:`~streams.errors.InvalidMessage` at the call site rather than in the
dead-letter topic. Uses kafka-python (synchronous, thread-safe, no event loop needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

from kafka import KafkaProducer

from streams.contracts import ChurnLabel, CustomerEvent, decode_event, decode_label, encode
from streams.kafka.clients import kafka_python_options
from streams.settings import KafkaSettings, TopicSettings

Kind = Literal["event", "label"]


def to_wire(record: CustomerEvent | ChurnLabel | Mapping[str, Any], kind: Kind) -> bytes:
    """Validated wire bytes of one event or label (raises InvalidMessage)."""
    if isinstance(record, CustomerEvent | ChurnLabel):
        return encode(record.to_wire())
    data = encode({"schema_version": 1, **record})
    # validating the exact bytes that will be sent
    (decode_event if kind == "event" else decode_label)(data)
    return data


class ChurnProducer:
    """A small synchronous producer for events and labels."""

    def __init__(self, bootstrap_servers: str | list[str], topics: TopicSettings | None = None,
                 kafka: KafkaSettings | None = None, **producer_config: Any) -> None:
        self.topics = topics or TopicSettings()
        config: dict[str, Any] = kafka_python_options(kafka) if kafka is not None else {}
        config.update({
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "max_in_flight_requests_per_connection": 1,  # keeps per-key order on retries
            "retries": 5,
        })
        config.update(producer_config)
        self._producer = KafkaProducer(**config)
        self.sent = 0

    @classmethod
    def from_settings(cls, kafka: KafkaSettings, topics: TopicSettings,
                      **producer_config: Any) -> ChurnProducer:
        return cls(kafka.bootstrap_list, topics, kafka, **producer_config)

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Publish bytes as they are (no validation): for tests of the dead-letter path."""
        self._producer.send(topic, key=key, value=value)
        self.sent += 1

    def send_event(self, event: CustomerEvent | Mapping[str, Any]) -> None:
        data = to_wire(event, "event")
        cid = event.customer_id if isinstance(event, CustomerEvent) else str(event["customer_id"])
        self.send_raw(self.topics.events, cid.encode(), data)

    def send_label(self, label: ChurnLabel | Mapping[str, Any]) -> None:
        data = to_wire(label, "label")
        cid = label.customer_id if isinstance(label, ChurnLabel) else str(label["customer_id"])
        self.send_raw(self.topics.labels, cid.encode(), data)

    def send_many(self, records: Iterable[Mapping[str, Any]], kind: Kind) -> int:
        send = self.send_event if kind == "event" else self.send_label
        n = 0
        for record in records:
            send(record)
            n += 1
        return n

    def flush(self, timeout_s: float | None = 60.0) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> ChurnProducer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
