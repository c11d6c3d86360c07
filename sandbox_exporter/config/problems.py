"""Pydantic's validation errors, reworded for someone editing a YAML file.

Each error becomes ``(location, message)``. What a message needs to know about
the place it is about (the keys allowed there, the values of an enumeration,
what a missing key is for) is read from the JSON Schema, so that the models
stay the one place where keys are declared.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .canary import COMMAND_FORMS
from .errors import ALSO, Location, describe, key_path, quote_hint, unknown
from .models import Config
from .section import Section
from .yamlfile import Positions

#: A problem found: where, and what is wrong.
Problem = tuple[Location, str]


@functools.cache
def json_schema(
    model: type[BaseModel] = Config, title: str = "sandbox-exporter configuration"
) -> dict[str, Any]:
    """The JSON Schema of a file whose types are ``model``: the configuration file unless told."""
    schema = model.model_json_schema()
    # Draft 7, the newest that every editor's YAML language server reads.
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema, "title": title}


def problems_of(
    error: ValidationError, at: Location = (), model: type[BaseModel] = Config
) -> Iterator[Problem]:
    """The problems in ``error``, raised validating as ``model`` the value found at ``at``."""
    # Titled by class name at the root too, as in $defs: see _refused_keys.
    schema = json_schema(model, model.__name__)
    for details in error.errors(include_url=False):
        location = at + _without_union_branches(details["loc"])
        context = details.get("ctx") or {}
        yield _reworded(details["type"], location, details["input"], context, schema)


def _without_union_branches(location: Location) -> Location:
    # Pydantic names the form of a command it tried ("commands", 0, "mapping",
    # "command"); the user wrote no such key. Only there can a branch name
    # follow a list index: after an index comes a key only inside the item.
    return tuple(
        part
        for index, part in enumerate(location)
        if not (
            part in COMMAND_FORMS
            and index >= 2
            and isinstance(location[index - 1], int)
            and location[index - 2] == "commands"
        )
    )


def _reworded(
    kind: str, location: Location, value: Any, context: dict[str, Any], schema: dict[str, Any]
) -> Problem:
    is_key = location[-1:] == ("[key]",)
    if is_key:
        location = location[:-1]
    if kind == "config":
        message = context["message"]
        if context.get("also") is not None:
            message = message.replace(ALSO, key_path(location + tuple(context["also"])))
        return location + tuple(context.get("at") or ()), message
    if kind == "invalid_key" or (is_key and kind == "string_type"):
        return location[:-1], f"keys must be strings, got {describe(location[-1])}"
    if kind == "extra_forbidden":
        return location, _unknown_key(location, schema)
    if is_key and kind == "literal_error":
        allowed = _schema_at(location[:-1], schema).get("propertyNames", {}).get("enum", [])
        return location, unknown(str(location[-1]), allowed)
    if kind == "literal_error":
        allowed = _schema_at(location, schema).get("enum", [])
        return location, f"expected one of: {', '.join(allowed)}; got {describe(value)}"
    if kind == "missing":
        purpose = _schema_at(location, schema).get("description", "")
        return location, f"missing ({purpose[:1].lower()}{purpose[1:].rstrip('.')})"
    return location, _wrong_type(kind, value)


# What pydantic's type errors expected, in YAML's words.
_EXPECTED = {
    **dict.fromkeys(("model_type", "dict_type", "model_attributes_type"), "a mapping"),
    **dict.fromkeys(("list_type", "tuple_type"), "a list"),
    **dict.fromkeys(("int_type", "int_from_float"), "an integer"),
    "string_type": "a string",
    "bool_type": "true or false",
    "float_type": "a number",
    "finite_number": "a finite number",
}


def _wrong_type(kind: str, value: Any) -> str:
    hint = quote_hint(value) if kind == "string_type" else ""
    return f"expected {_EXPECTED.get(kind, 'another value')}, got {describe(value)}{hint}"


def _unknown_key(location: Location, schema: dict[str, Any]) -> str:
    key = str(location[-1])
    parent = _schema_at(location[:-1], schema)
    # An optional section is "anyOf": the section, or null.
    options = [_resolved(option, schema) for option in (parent, *parent.get("anyOf", ()))]
    parent = next((option for option in options if "properties" in option), parent)
    refused = _refused_keys(parent.get("title", ""))
    if key in refused:
        return refused[key]
    return unknown(key, list(parent.get("properties", {})))


def _refused_keys(title: str) -> Mapping[str, str]:
    # A model's schema is titled with its class name; any Section may refuse keys.
    models: list[type[Section]] = [Section]
    while models:
        model = models.pop()
        if model.__name__ == title and model.refused_keys:
            return model.refused_keys
        models.extend(model.__subclasses__())
    return {}


def _schema_at(location: Location, schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of the value at ``location`` ({} if the schema does not say)."""
    node = _resolved(schema, schema)
    for part in location:
        node = _step(node, part, schema)
    return node


def _step(node: dict[str, Any], part: str | int, schema: dict[str, Any]) -> dict[str, Any]:
    for option in (node, *node.get("anyOf", ()), *node.get("oneOf", ())):
        option = _resolved(option, schema)
        if isinstance(part, int) and "items" in option:
            return _resolved(option["items"], schema)
        if isinstance(part, str) and part in option.get("properties", {}):
            return _resolved(option["properties"][part], schema)
        if isinstance(part, str) and isinstance(option.get("additionalProperties"), dict):
            return _resolved(option["additionalProperties"], schema)
    return {}


def _resolved(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        definition = node["$ref"].rsplit("/", 1)[-1]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**schema["$defs"][definition], **extra}
    return node


def render(problems: list[Problem], positions: Positions | None = None) -> list[str]:
    """One line per problem, in the order of the document when positions are known."""

    def where(location: Location) -> tuple[int, int] | None:
        for end in range(len(location), 0, -1):
            if location[:end] in (positions or {}):
                return (positions or {})[location[:end]]
        return None

    lines = []
    for index, (location, message) in enumerate(problems):
        position = where(location)
        suffix = f" (line {position[0]}, column {position[1]})" if position else ""
        order = position or (0, 0)
        lines.append((order, index, f"{key_path(location)}: {message}{suffix}"))
    return [line for *_, line in sorted(lines)]
