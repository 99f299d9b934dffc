"""Dead-letter records: the original bytes of a record that could not be processed, and why.

Every process that gives up on a record (the event worker, the alerter, the webhook
dispatcher, the learner) builds its dead letter here, so the headers are the same everywhere:

=========================  =====================================================
``churn.dlq.reason``       what was wrong, for a person
``churn.dlq.code``         a short machine-readable reason (``bad_json``, ...)
``churn.dlq.topic``        where the record was read
``churn.dlq.partition``    its partition
``churn.dlq.offset``       its offset
``churn.dlq.failed_at``    when it was given up on (RFC 3339, wall clock)
=========================  =====================================================

A writer may append its own headers after these (the dispatcher adds ``churn.dlq.target`` and
``churn.dlq.attempts``). The value is the record's original value (empty when it had none), the
key its original key.

>>> from streams.errors import InvalidMessage
>>> raw = RawRecord("customer-events", 3, 42, b"c-1", b"{oops")
>>> out = dead_letter_record("dlq", raw, InvalidMessage("bad_json", "not valid JSON"), 0.0)
>>> out.topic, out.key, out.value
('dlq', b'c-1', b'{oops')
>>> dict(out.headers or [])["churn.dlq.failed_at"]
b'1970-01-01T00:00:00.000+00:00'
"""

from __future__ import annotations

from typing import Protocol

from streams.records import Headers, OutRecord, RawRecord
from streams.timefmt import format_ts


class Reason(Protocol):
    """Why a record is dead-lettered (:class:`~streams.errors.InvalidMessage` and the pure
    packages' poison errors have both fields)."""

    @property
    def code(self) -> str: ...

    @property
    def detail(self) -> str: ...


def dead_letter_headers(record: RawRecord, error: Reason, now: float) -> Headers:
    """The ``churn.dlq.*`` headers of ``record`` given up on at wall time ``now``."""
    return [
        ("churn.dlq.reason", error.detail.encode()),
        ("churn.dlq.code", error.code.encode()),
        ("churn.dlq.topic", record.topic.encode()),
        ("churn.dlq.partition", str(record.partition).encode()),
        ("churn.dlq.offset", str(record.offset).encode()),
        ("churn.dlq.failed_at", format_ts(now).encode()),
    ]


def dead_letter_record(topic: str, record: RawRecord, error: Reason, now: float,
                       extra: Headers | None = None) -> OutRecord:
    """The dead letter of ``record`` on ``topic``; ``extra`` headers follow the standard ones."""
    headers = dead_letter_headers(record, error, now) + (extra or [])
    return OutRecord(topic, record.key, record.value or b"", headers)
