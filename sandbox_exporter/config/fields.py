"""The value types of the configuration: what one key may hold, and what it becomes.

pydantic checks YAML types strictly and the constraints declared here; the
validators check what a constraint cannot say. A value that could be a secret
is never repeated in a message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, Field, PlainValidator, Strict, ValidationInfo
from pydantic.json_schema import WithJsonSchema

from ..expectations import FrozenDict, Matcher
from .problems import describe, quote_hint, shorten

T = TypeVar("T")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Secret:
    """A password or token read from a file or an environment variable.

    ``str()`` and ``repr()`` give ``<secret>``, so a secret cannot leak through
    logs, tracebacks or pages; ``value()`` returns it for the HTTP request.
    """

    _value: str

    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


#: A YAML list, held as a tuple so that the objects stay hashable (a list is
#: not a tuple to strict pydantic; the items stay strict).
Items = Annotated[tuple[T, ...], Strict(False)]
#: Makes a validated mapping immutable, so that the objects holding it stay hashable.
FrozenMapping = AfterValidator(FrozenDict)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


NonBlank = Annotated[str, AfterValidator(_not_blank)]


def _name(text: str) -> str:
    if text != _not_blank(text).strip():
        raise ValueError(f"{shorten(text)} must not start or end with spaces")
    if _CONTROL.search(text):
        raise ValueError(f"{shorten(text)} must not contain control characters")
    return text


#: A human-chosen identifier that ends up as a label value.
Name = Annotated[str, Field(max_length=128), AfterValidator(_name)]

# Prometheus' units, largest first; each may appear once, in this order.
_UNITS = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0}
_UNITS |= {"m": 60.0, "s": 1.0, "ms": 0.001}
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile("".join(f"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in _UNITS))
# No probe needs to wait longer, and the scheduler's datetime arithmetic
# overflows on absurd values long before infinity.
_MAX_DURATION = 366 * 86400.0


def parse_duration(value: str | float) -> float:
    """Seconds in a Prometheus-style duration (``"15s"``, ``"1h30m"``, ``"500ms"``,
    ``"1.5d"``) or a number of seconds, at most 366 days; else :class:`ValueError`."""
    seconds = None
    if isinstance(value, str):
        text = value.strip()
        written = _DURATION.fullmatch(text)
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif text and written:
            seconds = sum(float(n) * _UNITS[unit] for unit, n in written.groupdict().items() if n)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) if abs(value) < 10**30 else float("inf")
    if seconds is None or not 0 <= seconds <= _MAX_DURATION:  # NaN fails the test too
        raise ValueError(
            f"invalid duration: {describe(value)} (use e.g. 10s, 1m30s or 500ms: units "
            "y w d h m s ms, largest first, each once; at most 366d)"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest duration string for ``seconds``: 90 -> ``"1m30s"``, 0.5 -> ``"500ms"``."""
    milliseconds = round(seconds * 1000)
    if milliseconds <= 0:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


#: Seconds, > 0, written as a Prometheus duration (``30s``, ``1m30s``) or a number.
Duration = Annotated[
    float,
    PlainValidator(parse_duration),
    Field(gt=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|y|w|d|h|m|s)?)+\s*$"},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "examples": ["15s", "1m", "1h30m", "500ms"],
        }
    ),
]


_BYTE_UNITS = {"": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_BYTES = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?")
# More than any document a probe reads, and still a size to hold in memory.
_MAX_BYTES = 2**30


def parse_bytes(value: str | int) -> int:
    """A size in bytes: a whole number, or one with a binary unit (``64KiB``,
    ``4MiB``, ``1GiB``), from 1 byte to 1 GiB; else :class:`ValueError`."""
    count = None
    if isinstance(value, str) and (written := _BYTES.fullmatch(value.strip())):
        count = int(written[1]) * _BYTE_UNITS[written[2] or ""]
    elif isinstance(value, int) and not isinstance(value, bool):
        count = value
    if count is None or not 0 < count <= _MAX_BYTES:
        raise ValueError(
            f"invalid size: {describe(value)} (use a number of bytes, or e.g. 64KiB, 4MiB: "
            "units B KiB MiB GiB; from 1 byte to 1GiB)"
        )
    return count


def format_bytes(count: int) -> str:
    """The shortest exact way to write ``count`` bytes: 65536 -> ``"64KiB"``."""
    for unit in ("GiB", "MiB", "KiB"):
        if count % _BYTE_UNITS[unit] == 0:
            return f"{count // _BYTE_UNITS[unit]}{unit}"
    return f"{count}B"


#: A number of bytes, > 0, written as a number or with a binary unit (``64KiB``).
ByteCount = Annotated[
    int,
    PlainValidator(parse_bytes),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+\s*(B|KiB|MiB|GiB)?\s*$"},
                {"type": "integer", "exclusiveMinimum": 0},
            ],
            "examples": ["64KiB", "4MiB", 1048576],
        }
    ),
]


def _url(text: str) -> str:
    """The base URL, ending with ``/``; never echoed if it holds credentials."""
    text = _not_blank(text).strip()
    if any(char.isspace() for char in text) or _CONTROL.search(text):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as error:
        raise ValueError(f"not a valid URL ({error})") from None
    if "@" in parts.netloc:
        raise ValueError(
            "must not contain credentials (user:password@): they would show in labels "
            "and logs; use auth.username with auth.password_file or auth.password_env"
        )
    if parts.scheme.lower() not in ("http", "https"):
        suggestion = "" if parts.scheme else f" (did you mean 'https://{text}'?)"
        raise ValueError(f"{shorten(text)} must start with http:// or https://{suggestion}")
    if not parts.hostname:
        raise ValueError(f"{shorten(text)} has no host name")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{shorten(text)} has an invalid port")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(f"{shorten(text)} must not have a query string or fragment")
    base_path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc, base_path, "", ""))


Url = Annotated[
    str,
    AfterValidator(_url),
    WithJsonSchema({"type": "string", "pattern": "^\\s*[Hh][Tt][Tt][Pp][Ss]?://"}),
]

# `target` and `url` are labels of sandbox_target_info already; Prometheus
# renames scraped `job`/`instance` to `exported_*`, which nobody wants to query.
RESERVED_LABEL_NAMES = ("target", "url", "job", "instance")


def _label_name(label: str) -> str:
    if label.startswith("__") or label in RESERVED_LABEL_NAMES:
        raise ValueError(
            f"{label!r} is reserved (by Prometheus: __*; here: {', '.join(RESERVED_LABEL_NAMES)})"
        )
    return label


_IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_]*$"
LabelName = Annotated[str, Field(pattern=_IDENTIFIER), AfterValidator(_label_name)]


def _username(text: str) -> str:
    if ":" in _not_blank(text) or _CONTROL.search(text):
        raise ValueError("must not contain ':' or control characters (HTTP basic authentication)")
    return text


Username = Annotated[str, AfterValidator(_username)]


def _header_name(name: str) -> str:
    if name.lower() in ("authorization", "proxy-authorization"):
        raise ValueError(
            "credentials cannot be set as a header: use auth.bearer_token_file "
            "(or auth.username with auth.password_file)"
        )
    return name


HeaderName = Annotated[
    str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"), AfterValidator(_header_name)
]


def _header_value(value: object) -> str:
    # Header values may be keys of some sort: never echo them.
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value, show=False)}")
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


HeaderValue = Annotated[str, PlainValidator(_header_value, json_schema_input_type=str)]


def _file_name(value: object, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a file name, got {describe(value, show=False)}")
    if _CONTROL.search(_not_blank(value)):
        raise ValueError("a file name must not contain control characters")
    base_dir = (info.context or {}).get("base_dir") or Path.cwd()
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))


def _readable_file(value: object, info: ValidationInfo) -> str:
    path = _file_name(value, info)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"{path!r} is not a readable file")
    return path


#: A file that must be there to be read, resolved against the config's directory.
ReadableFile = Annotated[str, PlainValidator(_readable_file, json_schema_input_type=str)]


def _checked_secret(text: str, shown: str) -> Secret:
    # Messages name where the secret came from, never what it is.
    if not text:
        raise ValueError(f"{shown} is empty")
    if _CONTROL.search(text):
        raise ValueError(f"{shown} holds line breaks or control characters (one line expected)")
    return Secret(text)


_MAX_SECRET_FILE_BYTES = 64 * 1024


def _secret_from_file(value: object, info: ValidationInfo) -> Secret:
    path = _file_name(value, info)
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        raise ValueError(
            f"cannot read {path!r}: {error.strerror or type(error).__name__}"
        ) from None
    if len(data) > _MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{path!r} is larger than 64 KiB: not a password or token file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path!r} is not UTF-8 text") from None
    return _checked_secret(text.rstrip("\r\n"), repr(path))


def _secret_from_environment(value: object) -> Secret:
    if not isinstance(value, str) or not re.fullmatch(_IDENTIFIER, value):
        raise ValueError(f"expected an environment variable name, got {describe(value)}")
    text = os.environ.get(value)
    if text is None:
        raise ValueError(f"environment variable {value!r} is not set")
    return _checked_secret(text, f"environment variable {value!r}")


SecretFromFile = Annotated[Secret, PlainValidator(_secret_from_file, json_schema_input_type=str)]
EnvironmentName = Annotated[str, Field(pattern=_IDENTIFIER)]
SecretFromEnvironment = Annotated[
    Secret, PlainValidator(_secret_from_environment, json_schema_input_type=EnvironmentName)
]


def _regex(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression, got {describe(value)}{quote_hint(value)}")
    try:
        return re.compile(_not_blank(value))
    except (re.error, OverflowError, RecursionError) as error:
        raise ValueError(f"invalid regular expression {shorten(value)}: {error}") from None


Regex = Annotated[re.Pattern[str], PlainValidator(_regex, json_schema_input_type=re.Pattern[str])]


def _version(value: object) -> Matcher:
    if value is not None and not isinstance(value, str | Matcher):
        raise ValueError(
            "expected a version spec such as '>=3.8', '3.8.*' or 'present', "
            f"got {describe(value)}{quote_hint(value)}"
        )
    return value if isinstance(value, Matcher) else Matcher(value)


#: A version spec (see :mod:`..expectations`); empty means "present, any version".
Version = Annotated[Matcher, PlainValidator(_version, json_schema_input_type=str | None)]
