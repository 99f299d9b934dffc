"""Errors of churnpulse, and which of them a stream processor may recover from.

::

    ChurnpulseError
    ├── InvalidMessage        poison: the message can never be processed; it goes to the
    │                         dead-letter topic with its original bytes and the reason
    ├── TransientError        recoverable: retry with backoff (Redis down, broker unreachable);
    │                         the batch is not acknowledged until it succeeds
    ├── ClientFailed          a client that no retry can heal (a producer whose sender died):
    │                         the consumer runner drops its clients, nothing is acknowledged,
    │                         and it starts new ones
    └── ConfigurationError    the process cannot start (bad settings, missing service)

An agent never lets any exception escape: Faust acknowledges a message whose handler raised,
which would silently lose it. Poison goes to the dead letter topic, transient errors are retried.
"""

from __future__ import annotations


class ChurnpulseError(Exception):
    """Base class of every error raised on purpose by churnpulse."""


class InvalidMessage(ChurnpulseError):
    """A message that breaks the wire contract.

    ``code`` is a short machine-readable reason (``bad_json``, ``missing_field``, ...), the
    message text explains it to a person.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class TransientError(ChurnpulseError):
    """A failure of a dependency that is expected to heal; the operation may be retried."""


class ClientFailed(ChurnpulseError):
    """A Kafka client that can no longer work, however often it is retried: an idempotent
    producer whose sender stopped (out-of-order sequence, fenced, closed) fails every later
    send the same way. Only a new client helps."""


class ConfigurationError(ChurnpulseError):
    """Settings or environment that make it impossible to start."""
