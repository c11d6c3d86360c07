"""The answer of ``/execute/`` (either generation): what each command printed and returned."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from .base import Amount, Document, Items, String, validated


def _not_null(value: str | None) -> str:
    # Absent means "not asked for" (None); a null sent by the server is refused.
    if value is None:
        raise ValueError("expected a string")
    return value


#: A string the server sends only when asked to (result, save).
OptionalString = Annotated[String | None, AfterValidator(_not_null)]


class CommandExecution(Document):
    """One entry of an ``/execute/`` answer's ``execution`` list."""

    command: String
    exit_code: Annotated[int, Field(strict=True)]
    stdout: String
    stderr: String
    time: Amount


class ExecuteResponse(Document):
    """An ``/execute/`` answer (status 200)."""

    execution: Items[CommandExecution]
    status: Annotated[int, Field(strict=True)]
    total_time: Amount
    result: OptionalString = None
    environment: OptionalString = None
    expire: OptionalString = None


def parse_execute_response(doc: object) -> ExecuteResponse:
    """The JSON body of a successful ``/execute/`` answer (either generation)."""
    return validated(ExecuteResponse, doc)
