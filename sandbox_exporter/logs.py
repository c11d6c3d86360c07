"""The exporter's log lines on stderr: logfmt (the default) or JSON, one line per record.

Both formats carry the same fields with the same values: ``ts`` (RFC 3339,
UTC, milliseconds: ``2026-12-01T05:21:49.123Z``), ``level``, ``logger``,
``msg`` and, for a record with an exception, ``exc``. Whatever a message
holds (a server's answer, a newline, a quote), a record stays one line that
a log parser reads back to the same values.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import unicodedata

LEVELS = ("debug", "info", "warn", "error")

# Escapes a reader of logfmt (and of Go string literals) knows by name.
_NAMED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def timestamp(created: float) -> str:
    """``created`` (seconds since the epoch) as RFC 3339 in UTC, to the millisecond."""
    millis = int(created % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def record_fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    """The fields of one log line, in their order."""
    fields = {
        "ts": timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return fields


def _unsafe(char: str) -> bool:
    """A character that would split the line or be invisible in it."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def logfmt_value(value: str) -> str:
    """``value`` as logfmt writes it: bare when it can be, else quoted and escaped."""
    if value and not any(c in ' ="\\' or _unsafe(c) for c in value):
        return value
    escaped = "".join(
        _NAMED_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if _unsafe(c) else c) for c in value
    )
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record, self)
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record, self))


def setup_logging(level: str, fmt: str) -> None:
    """Every record of the process to stderr at ``level`` (one of LEVELS), in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": logging.WARNING}.get(level, level.upper()))
    # APScheduler logs every job run at INFO, and a run skipped because the
    # previous one is still going (a slow sandbox) at WARNING, once per
    # skip: noise that would flood the log. The scheduler logs skips itself,
    # at debug; only APScheduler's errors are worth showing.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.ERROR))
