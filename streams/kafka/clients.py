"""The Kafka client kit: connection and security options built once, for every client library.

Three libraries talk to the broker here: aiokafka (every consumer loop, the batch publisher),
kafka-python (the synchronous producer SDK, topic creation) and Faust (the worker's frame).
Their options come from one :class:`~streams.settings_kafka.KafkaSettings`:

==================  =====================================  ===================================
protocol            aiokafka / kafka-python                 Faust ``broker_credentials``
==================  =====================================  ===================================
``PLAINTEXT``       ``security_protocol`` only              ``None``
``SSL``             + ``ssl_context``                       ``SSLCredentials(context)``
``SASL_PLAINTEXT``  + ``sasl_mechanism``, user, password    ``SASLCredentials(...)``
``SASL_SSL``        + both                                  ``SASLCredentials(..., ssl_context)``
==================  =====================================  ===================================

The one :class:`ssl.SSLContext` (:func:`ssl_context`) trusts ``ssl_cafile`` (else the system's
CAs), presents ``ssl_certfile``/``ssl_keyfile`` when set (mutual TLS) and checks the broker's
host name unless ``ssl_check_hostname`` is false. aiokafka refuses SSL without a context, so
it is built for every TLS protocol; kafka-python and Faust get the same context.

Also here: :func:`to_raw` (an aiokafka message as a :class:`~streams.records.RawRecord`) and
:class:`AIOKafkaSink` (a :class:`~streams.records.RecordSink` on an aiokafka producer).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from streams.errors import ClientFailed, ConfigurationError, TransientError
from streams.observability import metrics
from streams.records import OutRecord, RawRecord
from streams.settings_kafka import KafkaSettings

_CONTEXTS: dict[KafkaSettings, ssl.SSLContext] = {}


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of ``kafka`` (None for PLAINTEXT and SASL_PLAINTEXT); built once."""
    if not kafka.uses_tls:
        return None
    context = _CONTEXTS.get(kafka)
    if context is None:
        cafile = str(kafka.ssl_cafile) if kafka.ssl_cafile is not None else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        context.check_hostname = kafka.ssl_check_hostname
        context.verify_mode = ssl.CERT_REQUIRED
        if kafka.ssl_certfile is not None:
            context.load_cert_chain(
                str(kafka.ssl_certfile),
                str(kafka.ssl_keyfile) if kafka.ssl_keyfile is not None else None)
        _CONTEXTS[kafka] = context
    return context


def _sasl(kafka: KafkaSettings) -> dict[str, Any]:
    if not kafka.security_protocol.startswith("SASL_"):
        return {}
    return {"sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": (kafka.sasl_password.get_secret_value()
                                    if kafka.sasl_password is not None else None)}


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options of an aiokafka consumer, producer or admin client."""
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_list,
                               "security_protocol": kafka.security_protocol}
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    options.update(_sasl(kafka))
    return options


def kafka_python_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options of a kafka-python producer, consumer or admin client."""
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_list,
                               "security_protocol": kafka.security_protocol}
    context = ssl_context(kafka)
    if context is not None:
        options.update(ssl_context=context, ssl_check_hostname=kafka.ssl_check_hostname)
    options.update(_sasl(kafka))
    return options


def faust_credentials(kafka: KafkaSettings) -> Any:
    """Faust's ``broker_credentials`` (``None`` for PLAINTEXT)."""
    import faust  # the worker's frame only; other processes need not import it

    context = ssl_context(kafka)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    if kafka.security_protocol.startswith("SASL_"):
        assert kafka.sasl_password is not None  # the settings refuse SASL without it
        return faust.SASLCredentials(username=kafka.sasl_username,
                                     password=kafka.sasl_password.get_secret_value(),
                                     mechanism=kafka.sasl_mechanism, ssl_context=context)
    return None


def new_consumer(kafka: KafkaSettings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer with the connection options of ``kafka`` (not started)."""
    return AIOKafkaConsumer(*topics, **aiokafka_options(kafka), **options)


def new_producer(kafka: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer with the connection options of ``kafka`` (not started)."""
    return AIOKafkaProducer(**aiokafka_options(kafka), **options)


def new_admin(kafka: KafkaSettings, **options: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client with the connection options of ``kafka`` (not started)."""
    return AIOKafkaAdminClient(**aiokafka_options(kafka), **options)


def to_raw(msg: Any) -> RawRecord:
    """An aiokafka ``ConsumerRecord`` as a :class:`~streams.records.RawRecord`."""
    return RawRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.timestamp)


#: Errors after which an aiokafka producer fails every later send: its sender task re-raises
#: them and stops (``aiokafka.producer.sender.Sender._sender_routine``), and the accumulator
#: hands a copy of the error to every send after it.
FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, ProducerFenced, ProducerClosed,
                         TransactionalIdAuthorizationFailed)


def producer_dead(producer: Any) -> bool:
    """Whether an aiokafka producer's sender task has ended: nothing it is given is ever sent
    again (false for anything that is not an aiokafka producer)."""
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    return isinstance(task, asyncio.Future) and task.done()


class AIOKafkaSink:
    """:class:`~streams.records.RecordSink` on an (idempotent) aiokafka producer.

    A failed send is a :class:`~streams.errors.TransientError` (retried), unless the producer
    can never send again (:data:`FATAL_PRODUCER_ERRORS`, or its sender task ended): that is a
    :class:`~streams.errors.ClientFailed`, on which the runner starts new clients instead of
    retrying the dead one forever.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish(self, records: Sequence[OutRecord]) -> None:
        send = self._producer.send
        try:
            acks = [await send(r.topic, r.value, key=r.key, headers=r.headers) for r in records]
            await asyncio.gather(*acks)
        except KafkaError as exc:
            if isinstance(exc, FATAL_PRODUCER_ERRORS) or producer_dead(self._producer):
                raise ClientFailed(f"the producer cannot send any more: {exc!r}") from exc
            raise TransientError(f"kafka publish failed: {exc!r}") from exc
        metrics.produced(records)


async def topic_partitions(consumer: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` as an aiokafka consumer's metadata gives them, refreshing it
    for up to 30 s (a topic just created); a topic that never appears is a configuration
    error."""
    for _ in range(60):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.5)
    raise ConfigurationError(f"topic {topic} does not exist (run `churnpulse worker` first or "
                             "create it)")
