"""The Kafka client kit builds the same connection options for every protocol and library."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import ValidationError

from streams.kafka import clients
from streams.settings import load_settings
from streams.settings_kafka import KafkaSettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate signed by it (openssl CLI)."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=client")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2")
    return {"ca": d / "ca.pem", "cert": d / "client.pem", "key": d / "client.key"}


def sasl(protocol: str, mechanism: str = "SCRAM-SHA-512", **extra: Any) -> KafkaSettings:
    return KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism,
                         sasl_username="churn", sasl_password="s3cret", **extra)


def test_plaintext_has_no_tls_and_no_sasl() -> None:
    kafka = KafkaSettings(bootstrap_servers="h1:9092, h2:9092")
    for options in (clients.aiokafka_options(kafka), clients.kafka_python_options(kafka)):
        assert options == {"bootstrap_servers": ["h1:9092", "h2:9092"],
                           "security_protocol": "PLAINTEXT"}
    assert clients.ssl_context(kafka) is None
    assert clients.faust_credentials(kafka) is None


def test_ssl_builds_one_context_with_the_ca_and_client_certificate(pki: dict[str, Path]) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=pki["ca"],
                          ssl_certfile=pki["cert"], ssl_keyfile=pki["key"])
    context = clients.ssl_context(kafka)
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]
    aio, sync = clients.aiokafka_options(kafka), clients.kafka_python_options(kafka)
    assert aio["ssl_context"] is context and sync["ssl_context"] is context  # built once
    assert aio["security_protocol"] == sync["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in aio and "sasl_mechanism" not in sync
    assert sync["ssl_check_hostname"] is True
    creds = clients.faust_credentials(kafka)
    assert isinstance(creds, faust.SSLCredentials) and creds.context is context


def test_ssl_without_hostname_check_keeps_verifying_the_chain(pki: dict[str, Path]) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=pki["ca"],
                          ssl_check_hostname=False)
    context = clients.ssl_context(kafka)
    assert context is not None and not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert clients.kafka_python_options(kafka)["ssl_check_hostname"] is False


def test_sasl_plaintext_passes_mechanism_and_credentials_without_tls() -> None:
    kafka = sasl("SASL_PLAINTEXT", "PLAIN")
    expected = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "churn", "sasl_plain_password": "s3cret"}
    for options in (clients.aiokafka_options(kafka), clients.kafka_python_options(kafka)):
        assert {k: options[k] for k in expected} == expected
        assert "ssl_context" not in options
    creds = clients.faust_credentials(kafka)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("churn", "s3cret",
                                                                        "PLAIN")
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.ssl_context is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_passes_credentials_and_the_context(pki: dict[str, Path],
                                                     mechanism: str) -> None:
    kafka = sasl("SASL_SSL", mechanism, ssl_cafile=pki["ca"])
    context = clients.ssl_context(kafka)
    assert context is not None
    for options in (clients.aiokafka_options(kafka), clients.kafka_python_options(kafka)):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == mechanism
        assert options["ssl_context"] is context
    creds = clients.faust_credentials(kafka)
    assert creds.protocol.value == "SASL_SSL" and creds.ssl_context is context
    assert creds.mechanism.value == mechanism


async def test_the_aiokafka_clients_accept_the_options(pki: dict[str, Path]) -> None:
    kafka = sasl("SASL_SSL", ssl_cafile=pki["ca"])
    producer = clients.new_producer(kafka, acks="all")
    assert producer.client._security_protocol == "SASL_SSL"
    assert producer.client._ssl_context is clients.ssl_context(kafka)
    consumer = clients.new_consumer(kafka, "t", group_id=None)
    assert consumer._client._sasl_mechanism == "SCRAM-SHA-512"


@pytest.mark.parametrize(("fields", "message"), [
    ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
      "sasl_username": "u"}, "needs sasl_mechanism"),
    ({"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN"}, "sasl_mechanism is set"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
      "sasl_password": "p"}, "sasl_mechanism"),
    ({"ssl_cafile": "ca.pem"}, r"ssl_\* files are set"),
    ({"security_protocol": "SSL", "ssl_keyfile": "k.pem"}, "without ssl_certfile"),
])
def test_inconsistent_security_settings_are_refused(fields: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSettings(**fields)


def test_security_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                     pki: dict[str, Path]) -> None:
    env = {"CHURN_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
           "CHURN_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
           "CHURN_KAFKA__SASL_USERNAME": "churn", "CHURN_KAFKA__SASL_PASSWORD": "s3cret",
           "CHURN_KAFKA__SSL_CAFILE": str(pki["ca"]),
           "CHURN_KAFKA__SSL_CERTFILE": str(pki["cert"]),
           "CHURN_KAFKA__SSL_KEYFILE": str(pki["key"]),
           "CHURN_KAFKA__SSL_CHECK_HOSTNAME": "false"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kafka = load_settings().kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == (
        "SASL_SSL", "SCRAM-SHA-256", "churn")
    assert "s3cret" not in repr(kafka)  # masked when printed
    assert kafka.ssl_cafile == pki["ca"] and kafka.ssl_keyfile == pki["key"]
    assert kafka.ssl_check_hostname is False
    context = clients.ssl_context(kafka)
    assert context is not None and not context.check_hostname


class _Sender:
    def __init__(self, task: Any) -> None:
        self.sender_task = task


class _Producer:
    """Sends fail with ``error``; ``_sender`` as aiokafka's producer has it."""

    def __init__(self, error: Exception, sender_done: bool) -> None:
        import asyncio

        self.error = error
        task: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if sender_done:
            task.set_result(None)
        self._sender = _Sender(task)

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(("error", "sender_done", "expected"), [
    ("KafkaConnectionError", False, "TransientError"),  # the broker is away: retry
    ("OutOfOrderSequenceNumber", False, "ClientFailed"),  # the sender stopped for good
    ("ProducerFenced", False, "ClientFailed"),
    ("KafkaConnectionError", True, "ClientFailed"),  # any error once the sender has ended
])
async def test_a_producer_that_can_never_send_again_is_a_failed_client(
        error: str, sender_done: bool, expected: str) -> None:
    import aiokafka.errors

    from streams import errors
    from streams.records import OutRecord

    sink = clients.AIOKafkaSink(_Producer(getattr(aiokafka.errors, error)(), sender_done))  # type: ignore[arg-type]
    with pytest.raises(getattr(errors, expected)):
        await sink.publish([OutRecord("scores", b"k", b"v")])
