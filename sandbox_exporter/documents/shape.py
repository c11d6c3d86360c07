"""Strict shape checks of JSON values, each failure naming the JSON path it is at.

Every document parser is written with these: they return the value when it
has the expected shape and raise :class:`InvalidDocument` otherwise, with
the path (``containers.total``, ``host.memory.storage['/dev/vda']``) and the
offending value rendered the way it appeared in the JSON.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")

#: Servers report frequencies in megahertz; documents carry hertz.
MHZ = 1_000_000.0


class InvalidDocument(ValueError):
    """A server document does not have the expected shape.

    ``path`` is the JSON path of the offending value (``""`` for the document
    itself); the message starts with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or 'document'}: {problem}")


def describe(value: object) -> str:
    """Render a JSON value the way it appeared, short enough for a log line."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def key_path(path: str, key: str) -> str:
    """The path of ``key`` inside the object at ``path``."""
    # Device names such as "/dev/vda" would make a dotted path unreadable.
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def as_object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidDocument(path, f"expected an object, got {describe(value)}")
    return value


def as_array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidDocument(path, f"expected an array, got {describe(value)}")
    return value


def member(obj: Mapping[str, Any], key: str, path: str) -> tuple[Any, str]:
    """The value at ``obj[key]`` and its path; a missing key is an error."""
    child = key_path(path, key)
    if key not in obj:
        raise InvalidDocument(child, "required key is missing")
    return obj[key], child


def as_string(value: object, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidDocument(path, f"expected a string, got {describe(value)}")
    if not allow_empty and not value.strip():
        raise InvalidDocument(path, "expected a non-empty string, got ''")
    return value


def as_integer(value: object, path: str, minimum: int | None = 0) -> int:
    # bool is an int in Python but never a count in a server document.
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or (minimum is not None and value < minimum)
    ):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise InvalidDocument(path, f"expected an integer{bound}, got {describe(value)}")
    return value


def as_number(
    value: object, path: str, minimum: float | None = 0, maximum: float | None = None
) -> float:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        if minimum is not None and maximum is not None:
            bound = f" between {minimum} and {maximum}"
        elif minimum is not None:
            bound = f" >= {minimum}"
        else:
            bound = ""
        raise InvalidDocument(path, f"expected a finite number{bound}, got {describe(value)}")
    return float(value)  # type: ignore[arg-type]


def int_field(obj: Mapping[str, Any], key: str, path: str, minimum: int | None = 0) -> int:
    value, child = member(obj, key, path)
    return as_integer(value, child, minimum)


def number_field(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    minimum: float | None = 0,
    maximum: float | None = None,
) -> float:
    value, child = member(obj, key, path)
    return as_number(value, child, minimum, maximum)


def object_field(obj: Mapping[str, Any], key: str, path: str) -> tuple[Mapping[str, Any], str]:
    value, child = member(obj, key, path)
    return as_object(value, child), child


def string_field(obj: Mapping[str, Any], key: str, path: str) -> str:
    value, child = member(obj, key, path)
    return as_string(value, child)


def per_device(value: object, path: str, check: Callable[[object, str], T]) -> Mapping[str, T]:
    """An object of device name -> amount, each amount checked by ``check``."""
    devices = as_object(value, path)
    return MappingProxyType(
        {device: check(amount, key_path(path, device)) for device, amount in devices.items()}
    )


def document(doc: object) -> Mapping[str, Any]:
    """A whole document: it must be a JSON object."""
    return as_object(doc, "")


def frozen(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of a document's top level, kept as the typed value's ``raw``."""
    return MappingProxyType(dict(doc))
