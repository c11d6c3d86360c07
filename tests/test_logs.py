"""The log formats: every record one line, read back to the same fields in logfmt and JSON."""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from sandbox_exporter.logs import JsonFormatter, LogfmtFormatter, logfmt_value, setup_logging

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
# A message a misbehaving server could put in a log line through its answer.
HOSTILE = 'a b=c "q" back\\slash\r\n\tx\x00\x1b[31m\x7f\u2028end'


def parse_logfmt(line: str) -> dict[str, str]:
    """A logfmt reader written from the format, not from our writer."""
    escapes = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
    fields: dict[str, str] = {}
    i = 0
    while i < len(line):
        equals = line.index("=", i)
        key = line[i:equals]
        i = equals + 1
        if line[i : i + 1] == '"':
            i += 1
            value = []
            while line[i] != '"':
                if line[i] == "\\":
                    if line[i + 1] == "u":
                        value.append(chr(int(line[i + 2 : i + 6], 16)))
                        i += 6
                    else:
                        value.append(escapes[line[i + 1]])
                        i += 2
                else:
                    value.append(line[i])
                    i += 1
            fields[key] = "".join(value)
            i += 1
        else:
            end = line.find(" ", i)
            end = len(line) if end < 0 else end
            fields[key] = line[i:end]
            i = end
        assert line[i : i + 1] in ("", " "), line
        i += 1
    return fields


def record(msg: str, *, exc: bool = False, created: float = 1_790_000_000.5) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\tvalue\r\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("sandbox_exporter.x", logging.WARNING, "f.py", 1, msg, (), exc_info)
    made.created = created
    made.msecs = 0.0  # the formatters read `created` alone
    return made


@pytest.mark.parametrize("value", ["", " ", "a=b", 'say "hi"', "C:\\dir", "\r", "\t", "\x00"])
def test_logfmt_quotes_what_would_break_a_pair(value: str) -> None:
    written = logfmt_value(value)
    assert written.startswith('"') and written.endswith('"')
    assert parse_logfmt(f"k={written}") == {"k": value}


@pytest.mark.parametrize("value", ["plain", "0.25", "sandbox_exporter.probes", "über"])
def test_logfmt_leaves_plain_values_bare(value: str) -> None:
    assert logfmt_value(value) == value


@pytest.mark.parametrize("exc", [False, True])
def test_a_hostile_message_stays_one_line_and_reads_back(exc: bool) -> None:
    line = LogfmtFormatter().format(record(HOSTILE, exc=exc))
    assert len(line.splitlines()) == 1
    assert all(c.isprintable() for c in line)
    fields = parse_logfmt(line)
    assert fields["msg"] == HOSTILE
    assert ("exc" in fields) is exc
    if exc:
        assert fields["exc"].endswith("ValueError: bad\tvalue\r\nsecond line")


@pytest.mark.parametrize("exc", [False, True])
def test_both_formats_carry_the_same_fields(exc: bool) -> None:
    made = record(HOSTILE, exc=exc)
    from_logfmt = parse_logfmt(LogfmtFormatter().format(made))
    from_json = json.loads(JsonFormatter().format(made))
    assert from_logfmt == from_json
    assert list(from_json) == ["ts", "level", "logger", "msg", *(["exc"] if exc else [])]
    assert from_json["level"] == "warning" and from_json["logger"] == "sandbox_exporter.x"


@pytest.mark.parametrize(
    ("created", "ts"),
    [
        (1_790_000_000.5, "2026-09-21T14:13:20.500Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_790_000_000.9999, "2026-09-21T14:13:20.999Z"),  # never rounded up to the next second
    ],
)
def test_ts_is_rfc3339_utc_with_milliseconds_in_both_formats(created: float, ts: str) -> None:
    made = record("hi", created=created)
    assert parse_logfmt(LogfmtFormatter().format(made))["ts"] == ts
    assert json.loads(JsonFormatter().format(made))["ts"] == ts
    assert TS.match(ts)
    parsed = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - created) < 0.001


@pytest.fixture
def root_logging() -> Iterator[None]:
    root, scheduler = logging.getLogger(), logging.getLogger("apscheduler")
    saved = (root.handlers[:], root.level, scheduler.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    scheduler.setLevel(saved[2])


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_setup_logging_writes_the_level_and_format_asked(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("warn", fmt)
    log = logging.getLogger("sandbox_exporter.test")
    log.info("not shown")
    log.warning("shown %s", "once")
    logging.getLogger("apscheduler.scheduler").info("job ran")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    fields = json.loads(lines[0]) if fmt == "json" else parse_logfmt(lines[0])
    assert fields["msg"] == "shown once" and fields["level"] == "warning"


@pytest.mark.usefixtures("root_logging")
def test_apscheduler_skips_are_not_logged_but_its_errors_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("info", "logfmt")
    scheduler = logging.getLogger("apscheduler.scheduler")
    # What APScheduler says for every run skipped behind a slow one.
    scheduler.warning('Execution of job "x" skipped: maximum number of running instances')
    scheduler.error("job crashed")
    lines = capsys.readouterr().err.splitlines()
    assert [parse_logfmt(line)["msg"] for line in lines] == ["job crashed"]
