"""Configuration problems: the error raised, and pydantic's errors reworded for
someone editing a YAML file, as ``"<key path>: <what is wrong> (line L, column C)"``.

What a message needs to know about its place (the keys allowed there, what a
missing key is for, the advice for a refused key) is read from the model's JSON
Schema: the models stay the one place where keys are declared.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

#: A location inside the document: mapping keys and list indexes, outermost first.
Location = tuple[str | int, ...]
#: A problem found: where, and what is wrong.
Problem = tuple[Location, str]
#: Where each key or list item of a document was written: ``(line, column)``, from 1.
Positions = dict[Location, tuple[int, int]]


class ConfigError(Exception):
    """The configuration is not valid: ``errors`` lists every problem, ``str()``
    gives one line per problem, prefixed with the source."""

    def __init__(self, errors: Sequence[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(self.errors, source)

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(prefix + error for error in self.errors)


def problem(message: str, *at: str | int) -> PydanticCustomError:
    """An error about the key ``at`` below the value validated (a model checks
    its fields together; the user is pointed at the one to change)."""
    # The message travels in the context, not the template, so that braces in
    # it (regular expressions, "{command, timeout}") are never formatted.
    return PydanticCustomError("config", "{message}", {"message": message, "at": at})


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_+:-]+")


def key_path(location: Location) -> str:
    """``("targets", 2, "auth", "X-A")`` -> ``targets[2].auth.X-A``; odd keys are quoted."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]" if path else json.dumps(part)
    return path or "(top level)"


def shorten(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def describe(value: object, *, show: bool = True) -> str:
    """The YAML type of ``value`` for messages; its content only if ``show``."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})" if show else "a boolean"
    if isinstance(value, int):
        return f"the integer {value}" if show and abs(value) < 10**30 else "an integer"
    if isinstance(value, float):
        return f"the number {value}" if show else "a number"
    if isinstance(value, str):
        return f"the string {shorten(value)}" if show else "a string"
    if isinstance(value, datetime.date):
        return "a date (YAML reads unquoted dates as dates)"
    kinds = {list: "a list", tuple: "a list", dict: "a mapping", bytes: "binary data"}
    return kinds.get(type(value), type(value).__name__)


def quote_hint(value: object) -> str:
    """Advice for a scalar YAML read as something other than the string meant."""
    if isinstance(value, bool):
        return " (YAML reads true/false/yes/no/on/off as booleans: put the value in quotes)"
    if isinstance(value, int | float):
        return " (YAML reads it as a number: put the value in quotes)"
    if isinstance(value, datetime.date):
        return " (put the value in quotes)"
    return ""


def unknown(key: str, allowed: Sequence[str]) -> str:
    lowered = {name.lower(): name for name in allowed}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    hint = f" (did you mean {lowered[close[0]]!r}?)" if close else ""
    return f"unknown key{hint}; expected one of: {', '.join(allowed)}"


def problems_of(
    error: ValidationError, model: type[BaseModel], at: Location = ()
) -> Iterator[Problem]:
    """The problems in ``error``, raised validating ``model`` from the value at ``at``."""
    for details in error.errors(include_url=False):
        yield _reworded(model, at + tuple(details["loc"]), details)


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


def _reworded(model: type[BaseModel], at: Location, details: ErrorDetails) -> Problem:
    kind, value, context = details["type"], details["input"], details.get("ctx") or {}
    is_key = at[-1:] == ("[key]",)
    location = at[:-1] if is_key else at
    if kind == "config":
        return location + tuple(context["at"]), context["message"]
    if kind == "value_error":
        return location, str(context["error"])
    if kind == "invalid_key" or (is_key and kind == "string_type"):
        return location[:-1], f"keys must be strings, got {describe(location[-1])}"
    if kind == "extra_forbidden":
        properties = _schema_at(model, location[:-1]).get("properties", {})
        # A key refused on purpose is in the schema as "not anything", with advice.
        if "not" in properties.get(location[-1], {}):
            return location, properties[location[-1]]["description"]
        allowed = [key for key, schema in properties.items() if "not" not in schema]
        return location, unknown(str(location[-1]), allowed)
    if kind == "literal_error":
        allowed = re.findall(r"'((?:[^'\\]|\\.)*)'", context["expected"])
        if is_key:
            return location, unknown(str(location[-1]), allowed)
        return location, f"expected one of: {', '.join(allowed)}; got {describe(value)}"
    if kind == "missing":
        purpose = _schema_at(model, location).get("description", "")
        return location, f"missing ({purpose[:1].lower()}{purpose[1:].rstrip('.')})"
    if kind in _EXPECTED:
        hint = quote_hint(value) if kind == "string_type" else ""
        return location, f"expected {_EXPECTED[kind]}, got {describe(value)}{hint}"
    # A declared constraint (a bound, a length, a pattern): pydantic's words will do.
    return location, f"{_SHOULD.sub('must', details['msg'])}, got {describe(value)}"


_SHOULD = re.compile(r"^\w+ should")  # "Input should be ...", "String should match ..."


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _schema_at(model: type[BaseModel], location: Location) -> dict[str, Any]:
    """The schema of the value at ``location`` ({} if the schema does not say); of
    its mapping form if it has one (an optional section is "anyOf": it, or null)."""
    schema = _schema(model)

    def resolved(node: dict[str, Any]) -> dict[str, Any]:
        return schema["$defs"][node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node

    node = schema
    for part in location:
        for option in map(resolved, (node, *node.get("anyOf", ()))):
            properties = option.get("properties", {})
            inner = option.get("items") if isinstance(part, int) else properties.get(part)
            inner = inner or option.get("additionalProperties")  # a mapping's values
            if isinstance(inner, dict):
                node = inner
                break
        else:
            return {}
    forms = [resolved(form) for form in (node, *node.get("anyOf", ()))]
    return next((form for form in forms if "properties" in form), forms[0])


# Files people hand to --config.check by mistake: the top-level keys that give
# each kind away and the tool that checks it. Alertmanager first, since its
# `global` would also pass for Prometheus'.
_OTHER_KINDS = (
    (
        "an Alertmanager configuration",
        ("route", "receivers", "inhibit_rules", "templates", "time_intervals"),
        "amtool check-config",
    ),
    ("a Prometheus rules file", ("groups",), "promtool check rules"),
    (
        "a Prometheus configuration",
        ("global", "scrape_configs", "rule_files", "alerting", "remote_write", "remote_read"),
        "promtool check config",
    ),
)


def other_kind(document: Any, own_keys: Sequence[str], source: str) -> str | None:
    """What ``document`` is if it is another program's file (no top-level key
    of ours, some of that program's), worded with the command that checks it."""
    if not isinstance(document, dict) or any(key in document for key in own_keys):
        return None
    for kind, keys, checker in _OTHER_KINDS:
        found = [key for key in keys if key in document]
        if found:
            path = source if not source.startswith("<") else "FILE"
            return (
                f"this looks like {kind} (top-level {', '.join(found)}), not a sandbox-exporter "
                f"configuration; check it with: {checker} {path}"
            )
    return None


def watches_nothing(allows_unlisted: bool) -> str:
    """The note for a valid configuration without targets."""
    if allows_unlisted:
        return "it lists no targets: only /probe?target=URL will probe, for the allowed URLs"
    return "it lists no targets: the exporter would watch nothing"


def render(problems: list[Problem], positions: Positions | None = None) -> list[str]:
    """One line per problem, in the order of the document when positions are known."""
    positions = positions or {}
    lines = []
    for index, (location, message) in enumerate(problems):
        known = [location[:end] for end in range(len(location), 0, -1)]
        position = next((positions[at] for at in known if at in positions), None)
        suffix = f" (line {position[0]}, column {position[1]})" if position else ""
        lines.append((position or (0, 0), index, f"{key_path(location)}: {message}{suffix}"))
    return [line for *_, line in sorted(lines)]
