"""The value types of the configuration: what one key may hold, and what it becomes.

Each is an ``Annotated`` type that the models in :mod:`.models` declare: pydantic
checks the YAML type strictly (no ``"5"`` for 5, no ``yes`` for a string), these
validators check the rest and word their own messages. Values that could be
secrets are never repeated in a message.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, BeforeValidator, PlainValidator, ValidationInfo
from pydantic.json_schema import WithJsonSchema

from ..expectations import FrozenDict, Matcher
from .durations import parse_duration
from .errors import describe, problem, quote_hint, shorten

T = TypeVar("T")
_MAX_SECRET_FILE_BYTES = 64 * 1024
_MAX_NAME_LENGTH = 128


class Secret:
    """A password or token read from a file or an environment variable.

    ``str()`` and ``repr()`` give ``<secret>``, so a secret cannot leak through
    logs, tracebacks or the landing page; ``value()`` returns it for the one
    place that needs it (the HTTP request). ``origin`` says where it came from
    (``"file /etc/x"``, ``"environment variable X"``), never what it is.
    """

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "") -> None:
        self._value = value
        self.origin = origin

    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def _has_control_characters(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def _as_tuple(value: object) -> tuple[Any, ...]:
    if isinstance(value, list | tuple):
        return tuple(value)
    raise problem(f"expected a list, got {describe(value)}")


#: A YAML list, held as a tuple so that the objects stay hashable.
Items = Annotated[tuple[T, ...], BeforeValidator(_as_tuple)]


def _not_blank(text: str) -> str:
    if not text.strip():
        raise problem("must not be empty")
    return text


NonBlank = Annotated[str, AfterValidator(_not_blank)]


def name_of(what: str, *, url_like: bool = True) -> Any:
    """A human-chosen identifier that ends up as a label value."""

    def check(text: str) -> str:
        _not_blank(text)
        if text != text.strip():
            raise problem(f"{what} {shorten(text)} must not start or end with spaces")
        if _has_control_characters(text):
            raise problem(f"{what} {shorten(text)} must not contain control characters")
        if len(text) > _MAX_NAME_LENGTH:
            raise problem(f"{what} is longer than {_MAX_NAME_LENGTH} characters")
        if not url_like and "://" in text:
            raise problem(
                f"{what} {shorten(text)} must not look like a URL "
                "(/probe?target= takes either a name or a URL)"
            )
        return text

    return Annotated[str, AfterValidator(check)]


def _duration(value: object) -> float:
    if value is None:
        raise problem("missing value (a duration such as 10s or 1m)")
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]
    except ValueError as error:
        raise problem(str(error)) from None
    if seconds <= 0:
        raise problem("must be longer than 0s")
    return seconds


#: Seconds, > 0, written as a Prometheus duration (``30s``, ``1m30s``) or a number.
Duration = Annotated[
    float,
    PlainValidator(_duration),
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


def _url(text: str) -> str:
    """The base URL, ending with ``/``; never echoed if it holds credentials."""
    text = _not_blank(text).strip()
    if any(char.isspace() for char in text) or _has_control_characters(text):
        raise problem("must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
        netloc_has_credentials = "@" in parts.netloc
    except ValueError as error:
        raise problem(f"not a valid URL ({error})") from None
    if netloc_has_credentials:
        raise problem(
            "must not contain credentials (user:password@): they would show in labels "
            "and logs; use auth.username with auth.password_file or auth.password_env"
        )
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        suggestion = "" if parts.scheme else f" (did you mean 'https://{text}'?)"
        raise problem(f"{shorten(text)} must start with http:// or https://{suggestion}")
    try:
        port = parts.port
    except ValueError:
        raise problem(f"{shorten(text)} has an invalid port") from None
    if not parts.hostname:
        raise problem(f"{shorten(text)} has no host name")
    if port == 0:
        raise problem(f"{shorten(text)} has an invalid port")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise problem(f"{shorten(text)} must not have a query string or fragment")
    base_path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((scheme, parts.netloc, base_path, "", ""))


Url = Annotated[
    str,
    AfterValidator(_url),
    WithJsonSchema({"type": "string", "pattern": "^\\s*[Hh][Tt][Tt][Pp][Ss]?://"}),
]

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# `target` and `url` are labels of sandbox_target_info already; Prometheus
# renames scraped `job`/`instance` to `exported_*`, which nobody wants to query.
RESERVED_LABEL_NAMES = ("target", "url", "job", "instance")


def _label_name(label: str) -> str:
    if not _LABEL_NAME.fullmatch(label):
        raise problem(
            "invalid label name: use letters, digits and underscores, not starting with a digit"
        )
    if label.startswith("__"):
        raise problem("label names starting with '__' are reserved by Prometheus")
    if label in RESERVED_LABEL_NAMES:
        raise problem(f"{label!r} is reserved (reserved: {', '.join(RESERVED_LABEL_NAMES)})")
    return label


LabelName = Annotated[
    str,
    AfterValidator(_label_name),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}),
]


def _username(text: str) -> str:
    if ":" in _not_blank(text) or _has_control_characters(text):
        raise problem("must not contain ':' or control characters (HTTP basic authentication)")
    return text


Username = Annotated[str, AfterValidator(_username)]

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise problem("invalid HTTP header name")
    if name.lower() in ("authorization", "proxy-authorization"):
        raise problem(
            "credentials cannot be set as a header: use auth.bearer_token_file "
            "(or auth.username with auth.password_file)"
        )
    return name


HeaderName = Annotated[
    str, AfterValidator(_header_name), WithJsonSchema({"type": "string", "pattern": "^[!-~]+$"})
]


def _header_value(value: object) -> str:
    # Header values may be keys of some sort: never echo them.
    if not isinstance(value, str):
        raise problem(f"expected a string, got {describe(value, show=False)}")
    if _has_control_characters(value):
        raise problem("must not contain line breaks or control characters")
    return value


HeaderValue = Annotated[str, PlainValidator(_header_value, json_schema_input_type=str)]


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir") or Path.cwd())


def _file_name(value: object, info: ValidationInfo) -> str:
    """A file name from the config, resolved against the config's directory."""
    if not isinstance(value, str):
        raise problem(f"expected a file name, got {describe(value, show=False)}")
    if not value.strip():
        raise problem("must not be empty")
    if _has_control_characters(value):
        raise problem("a file name must not contain control characters")
    return os.path.normpath(os.path.join(_base_dir(info), os.path.expanduser(value)))


def _readable_file(value: object, info: ValidationInfo) -> str:
    path = _file_name(value, info)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise problem(f"{path!r} is not a readable file")
    return path


def _ca_file(value: object, info: ValidationInfo) -> str | None:
    return None if value is None else _readable_file(value, info)


#: A file that must be there to be read, resolved against the config's directory.
ReadableFile = Annotated[str, PlainValidator(_readable_file, json_schema_input_type=str)]
CaFile = Annotated[str | None, PlainValidator(_ca_file, json_schema_input_type=str | None)]


def _checked_secret(text: str, origin: str, shown: str) -> Secret:
    # Messages name where the secret came from, never what it is.
    if not text:
        raise problem(f"{shown} is empty")
    if _has_control_characters(text):
        raise problem(f"{shown} holds line breaks or control characters (one line expected)")
    return Secret(text, origin)


def _secret_from_file(value: object, info: ValidationInfo) -> Secret:
    if value is None:
        raise problem("missing value")
    path = _file_name(value, info)
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        raise problem(f"cannot read {path!r}: {error.strerror or type(error).__name__}") from None
    if len(data) > _MAX_SECRET_FILE_BYTES:
        raise problem(f"{path!r} is larger than 64 KiB: not a password or token file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise problem(f"{path!r} is not UTF-8 text") from None
    return _checked_secret(text.rstrip("\r\n"), f"file {path}", repr(path))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _secret_from_environment(value: object, info: ValidationInfo) -> Secret:
    if value is None:
        raise problem("missing value")
    if not isinstance(value, str):
        raise problem(f"expected an environment variable name, got {describe(value)}")
    if not _ENV_NAME.fullmatch(value):
        raise problem(f"{shorten(value)} is not an environment variable name")
    environ = (info.context or {}).get("environ", os.environ)
    text = environ.get(value)
    if text is None:
        raise problem(f"environment variable {value!r} is not set")
    return _checked_secret(text, f"environment variable {value}", f"environment variable {value!r}")


SecretFromFile = Annotated[Secret, PlainValidator(_secret_from_file, json_schema_input_type=str)]
SecretFromEnvironment = Annotated[
    Secret,
    PlainValidator(_secret_from_environment, json_schema_input_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}),
]


def _regex(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise problem(f"expected a regular expression, got {describe(value)}{quote_hint(value)}")
    if not value.strip():
        raise problem("must not be empty")
    try:
        return re.compile(value)
    except re.error as error:
        position = f" at position {error.pos}" if error.pos is not None else ""
        why = f"{error.msg}{position}"
    except (OverflowError, RecursionError):
        why = "too large or too deep"
    raise problem(f"invalid regular expression {shorten(value)}: {why}")


Regex = Annotated[
    re.Pattern[str],
    PlainValidator(_regex),
    WithJsonSchema({"type": "string", "format": "regex"}),
]


def _version(value: object) -> Matcher:
    if value is not None and not isinstance(value, str):
        raise problem(
            "expected a version spec such as '>=3.8', '3.8.*' or 'present', "
            f"got {describe(value)}{quote_hint(value)}"
        )
    try:
        return Matcher(value)
    except ValueError as error:
        raise problem(str(error)) from None


#: A version spec (see :mod:`..expectations`); empty means "present, any version".
Version = Annotated[
    Matcher,
    PlainValidator(_version),
    WithJsonSchema(
        {"type": ["string", "null"], "examples": ["present", ">=3.8,<4", "3.8.*", "1.18.1"]}
    ),
]

# The valid range of an /execute/ "status": exit codes 0..255, and the
# sandbox's own error codes -1 (unknown) .. -4 (result not UTF-8).
_STATUS_RANGE = range(-4, 256)


def _exit_status(status: int) -> int:
    if status not in _STATUS_RANGE:
        raise problem(
            f"{describe(status)} is not a possible status "
            "(exit codes 0..255, sandbox errors -1..-4)"
        )
    return status


ExitStatus = Annotated[
    int,
    AfterValidator(_exit_status),
    WithJsonSchema({"type": "integer", "minimum": -4, "maximum": 255}),
]


def _ratio(number: float) -> float:
    if not 0 <= number <= 1:
        hint = f" ({number:g}% is {number / 100:g})" if 1 < number <= 100 else ""
        raise problem(f"must be a ratio between 0 and 1{hint}")
    return number


Ratio = Annotated[
    float,
    AfterValidator(_ratio),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
]

#: Makes a validated mapping immutable, so that the objects holding it stay hashable.
FrozenMapping = AfterValidator(FrozenDict)
