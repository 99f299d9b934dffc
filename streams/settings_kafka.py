"""The ``kafka`` section of the settings: where the broker is and how to talk to it.

Environment variables (prefix ``CHURN_``, ``__`` between section and field)::

    CHURN_KAFKA__BOOTSTRAP_SERVERS=broker1:9093,broker2:9093
    CHURN_KAFKA__SECURITY_PROTOCOL=SASL_SSL        # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    CHURN_KAFKA__SASL_MECHANISM=SCRAM-SHA-512      # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    CHURN_KAFKA__SASL_USERNAME=churnpulse
    CHURN_KAFKA__SASL_PASSWORD=...                 # a secret: printed masked
    CHURN_KAFKA__SSL_CAFILE=/etc/churnpulse/ca.pem # CA that signed the brokers' certificates
    CHURN_KAFKA__SSL_CERTFILE=/etc/churnpulse/client.pem   # client certificate (mutual TLS)
    CHURN_KAFKA__SSL_KEYFILE=/etc/churnpulse/client.key    # its private key
    CHURN_KAFKA__SSL_CHECK_HOSTNAME=true           # the broker's name must match its certificate

Every client (aiokafka, kafka-python, Faust) gets its options from these through
:mod:`streams.kafka.clients`, which builds one :class:`ssl.SSLContext` for the TLS protocols
(without ``ssl_cafile`` the system's trusted CAs are used). Inconsistent combinations (a SASL
protocol without mechanism or credentials, a certificate without its key, TLS files with a
plaintext protocol) are refused when the settings are read, not at the first connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseModel):
    """Where the broker is and how to talk to it (see the module docstring for the env names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: SaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols only).")
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="PEM file of the CA(s) to trust "
                                                      "(default: the system's).")
    ssl_certfile: Path | None = Field(None, description="PEM client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of ssl_certfile.")
    ssl_check_hostname: bool = Field(True, description="Check the broker's host name against "
                                                       "its certificate.")
    partitions: int = Field(4, ge=1, description="Partitions for topics the project creates.")
    replication_factor: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username
                     or self.sasl_password is None):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                             "sasl_username and sasl_password")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism is set but security_protocol is "
                             f"{self.security_protocol} (use SASL_PLAINTEXT or SASL_SSL)")
        if not self.uses_tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(f"ssl_* files are set but security_protocol is "
                             f"{self.security_protocol} (use SSL or SASL_SSL)")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set without ssl_certfile")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    @property
    def faust_broker_urls(self) -> list[str]:
        return [f"kafka://{s}" for s in self.bootstrap_list]
