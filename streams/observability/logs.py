"""Process logging: one text line, or one JSON object per line (``CHURN_LOG__FORMAT=json``).

Both formats carry the same fields: ``time`` (RFC 3339, UTC, ms), ``level``, ``logger``,
``message``, and ``exc`` (the traceback) when there is one; the text line is
``<time> <level> <logger>: <message>``.

>>> import logging
>>> record = logging.LogRecord("streams.worker", logging.INFO, "", 0, "ready %d", (3,), None)
>>> record.created = 0.0
>>> JsonFormatter().format(record)
'{"time":"1970-01-01T00:00:00.000Z","level":"INFO","logger":"streams.worker","message":"ready 3"}'
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _rfc3339(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + \
        f".{int(created * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the text format's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": _rfc3339(record.created), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return orjson.dumps(entry).decode()


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to ``sys.stderr`` as it is at each record, not as it was
    when the handler was made: a command run in-process (tests, notebooks) whose stderr was
    swapped and closed afterwards does not leave a handler writing to a closed file."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def configure_logging(level: str, fmt: str) -> None:
    """Root logging to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = StderrHandler()
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def dict_config(level: str, fmt: str) -> dict[str, Any]:
    """The same as a ``logging.config.dictConfig`` (what Faust's worker takes)."""
    factory = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": factory},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "level": level}},
        "root": {"level": level, "handlers": ["default"]},
    }
