"""How configuration problems are worded: the error type, key paths, value descriptions."""

from __future__ import annotations

import datetime
import difflib
import json
import re
from collections.abc import Sequence

from pydantic_core import PydanticCustomError

#: A location inside the document: mapping keys and list indexes, outermost first.
Location = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration is not valid.

    ``errors`` lists every problem found, each ``"<key path>: <message>"``;
    ``str(error)`` gives one line per problem, prefixed with the source.
    """

    def __init__(self, errors: Sequence[str] | str, source: str | None = None) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        self.source = source
        super().__init__(self.errors, source)

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(prefix + error for error in self.errors)


#: Stands, in a message, for the key path of ``also`` (see :func:`problem`); a
#: NUL, which no name accepted in the configuration can contain.
ALSO = "\x00"


def problem(message: str, *at: str | int, also: Location | None = None) -> PydanticCustomError:
    """A validation error worded by us.

    ``at`` names the key below the value being validated that the problem is
    about (a model checks its fields together, but the user should be pointed
    at the one to change); ``also`` names another place, relative to the same
    value, whose full key path replaces :data:`ALSO` in the message.
    """
    # The message travels in the context, not the template, so that braces in
    # it (regular expressions, "{command, timeout}") are never formatted.
    return PydanticCustomError("config", "{message}", {"message": message, "at": at, "also": also})


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
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return "a date (YAML reads unquoted dates as dates)"
    if isinstance(value, bytes):
        return "binary data"
    return type(value).__name__


def quote_hint(value: object) -> str:
    """Advice for a scalar YAML read as something other than the string meant."""
    if isinstance(value, bool):
        return " (YAML reads true/false/yes/no/on/off as booleans: put the value in quotes)"
    if isinstance(value, int | float):
        return " (YAML reads it as a number: put the value in quotes)"
    if isinstance(value, datetime.date):
        return " (put the value in quotes)"
    return ""


def unknown(key: str, allowed: Sequence[str], what: str = "key") -> str:
    lowered = {name.lower(): name for name in allowed}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    hint = f" (did you mean {lowered[close[0]]!r}?)" if close else ""
    return f"unknown {what}{hint}; expected one of: {', '.join(allowed)}"
