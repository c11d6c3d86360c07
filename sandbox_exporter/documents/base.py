"""What every document type is built from, and the one translation of pydantic's errors.

A document type is a frozen pydantic model whose fields say where in the JSON
they come from (:func:`at`) and what they must be (the types below, strict:
a count is an integer, never ``true``, ``5.0`` or ``"5"``). Keys a server adds
are accepted and dropped: a parsed document keeps only its fields, since the
exporter holds one per target. :func:`validated` turns the first of pydantic's
errors into an :class:`InvalidDocument` that starts with the JSON path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, AliasPath, BaseModel, ConfigDict, Field, ValidationError

D = TypeVar("D", bound=BaseModel)
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

    def __reduce__(self) -> tuple[type[InvalidDocument], tuple[str, str]]:
        # Raised in the parsing worker process too (offload.py), and pickled back.
        return type(self), (self.path, self.problem)


class Document(BaseModel):
    """A frozen, strictly typed value read from a server document."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


def at(*path: str, **options: Any) -> Any:
    """Where in the JSON a field's value is: ``at("container", "count")``."""
    return Field(validation_alias=AliasPath(*path), **options)


def read_only(value: Mapping[str, T]) -> Mapping[str, T]:
    return MappingProxyType(value)


Count = Annotated[int, Field(strict=True, ge=0)]
#: A number of bytes, seconds or events per second: finite, never negative.
Amount = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Hertz = Annotated[Amount, AfterValidator(lambda mhz: mhz * MHZ)]
#: A name or version: a string with something in it.
Text = Annotated[str, Field(strict=True, pattern=r"\S")]
#: Command output and the like: any string, empty included.
String = Annotated[str, Field(strict=True)]
ReadOnlyMap = Annotated[dict[str, T], AfterValidator(read_only)]
#: A JSON array as a tuple (strict mode would take only a tuple); its items
#: are as strict as their own type.
Items = Annotated[tuple[T, ...], Field(strict=False)]


def describe(value: object) -> str:
    """Render a JSON value the way it appeared (null, true, NaN), short enough for a log line."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    try:
        return json.dumps(value)
    except TypeError:  # not from JSON at all
        return type(value).__name__


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def json_path(loc: tuple[str | int, ...]) -> str:
    """``("host", "memory", "storage", "/dev/vda")`` -> ``host.memory.storage['/dev/vda']``."""
    path = ""
    for key in loc:
        if isinstance(key, int):
            path += f"[{key}]"
        elif _IDENTIFIER.match(key):  # device names would make a dotted path unreadable
            path += f".{key}" if path else key
        else:
            path += f"[{key!r}]"
    return path


# What a value of each kind of pydantic error should have been.
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "string_pattern_mismatch": "a non-empty string",
    "dict_type": "an object",
    "model_type": "an object",
    "tuple_type": "an array",
}


def _missing(loc: tuple[str | int, ...], doc: object) -> InvalidDocument:
    """A required value is missing: say where the path through ``doc`` stops."""
    # A field read from deep inside the document (at("cpu", "usage")) is
    # merely "missing" to pydantic when "cpu" is an array: find what is wrong.
    value: Any = doc
    for depth, key in enumerate(loc):
        if isinstance(key, int):  # an item of an array that pydantic has read
            value = value[key]
        elif not isinstance(value, Mapping):
            return InvalidDocument(
                json_path(loc[:depth]), f"expected an object, got {describe(value)}"
            )
        elif key not in value:
            return InvalidDocument(json_path(loc[: depth + 1]), "required key is missing")
        else:
            value = value[key]
    return InvalidDocument(json_path(loc), "required key is missing")


def _invalid(error: Any, doc: object) -> InvalidDocument:
    """The first of pydantic's errors, said the way an operator reads it."""
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx", {})
    if kind == "missing":
        return _missing(loc, doc)
    cause = ctx.get("error")
    if isinstance(cause, InvalidDocument):  # a validator that knows the path itself
        return cause
    got = describe(error["input"])
    if kind == "value_error":  # a validator of ours says what it expected
        problem = str(cause)
    elif kind in ("greater_than_equal", "less_than_equal"):
        # pydantic gives the bound in the field's own type: 0 for an integer, 0.0 for a number.
        bound = ctx.get("ge", ctx.get("le"))
        noun = "an integer" if isinstance(bound, int) else "a number"
        problem = f"expected {noun} {'>=' if kind == 'greater_than_equal' else '<='} {bound:g}"
    elif kind in ("too_short", "too_long"):
        least = kind == "too_short"
        count = ctx["min_length" if least else "max_length"]
        problem = f"expected {'at least' if least else 'at most'} {count} items"
        got = str(ctx["actual_length"])
    else:
        problem = f"expected {_EXPECTED.get(kind, error['msg'])}"
    return InvalidDocument(json_path(loc), f"{problem}, got {got}")


def validated(model: type[D], doc: object) -> D:
    """``doc`` as a ``model``, or :class:`InvalidDocument` naming its first problem."""
    try:
        return model.model_validate(doc)
    except ValidationError as error:
        raise _invalid(error.errors(include_url=False)[0], doc) from None
