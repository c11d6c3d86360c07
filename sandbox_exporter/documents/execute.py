"""The answer of ``/execute/`` (either generation): what each command printed and returned."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .shape import as_array, as_object, as_string, document, frozen, int_field, member, number_field


@dataclass(frozen=True)
class CommandExecution:
    """One entry of an ``/execute/`` answer's ``execution`` list."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    time: float


@dataclass(frozen=True)
class ExecuteResponse:
    """An ``/execute/`` answer (status 200)."""

    status: int
    execution: tuple[CommandExecution, ...]
    total_time: float
    result: str | None
    environment: str | None
    expire: str | None
    raw: Mapping[str, Any]


def _optional_string(obj: Mapping[str, Any], key: str) -> str | None:
    if key not in obj:
        return None
    return as_string(obj[key], key, allow_empty=True)


def _text(step: Mapping[str, Any], key: str, path: str) -> str:
    return as_string(*member(step, key, path), allow_empty=True)


def parse_execute_response(doc: object) -> ExecuteResponse:
    """The JSON body of a successful ``/execute/`` answer (either generation)."""
    top = document(doc)
    execution_value, execution_path = member(top, "execution", "")
    steps = []
    for i, item in enumerate(as_array(execution_value, execution_path)):
        path = f"{execution_path}[{i}]"
        step = as_object(item, path)
        steps.append(
            CommandExecution(
                command=_text(step, "command", path),
                exit_code=int_field(step, "exit_code", path, minimum=None),
                stdout=_text(step, "stdout", path),
                stderr=_text(step, "stderr", path),
                time=number_field(step, "time", path),
            )
        )
    return ExecuteResponse(
        status=int_field(top, "status", "", minimum=None),
        execution=tuple(steps),
        total_time=number_field(top, "total_time", ""),
        result=_optional_string(top, "result"),
        environment=_optional_string(top, "environment"),
        expire=_optional_string(top, "expire"),
        raw=frozen(top),
    )
