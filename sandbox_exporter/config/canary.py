"""Canaries: small programs run through ``POST /execute/`` to prove a sandbox works."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Discriminator, Tag, model_validator

from ..expectations import FrozenDict
from .durations import format_duration
from .errors import ALSO, problem
from .fields import Duration, ExitStatus, Items, NonBlank, Regex, name_of
from .section import Section

# The server's own default bound on a whole /execute/ request (EXECUTE_TIMEOUT).
DEFAULT_CANARY_TIMEOUT = 10.0


class Command(Section):
    """A command with a time limit of its own, enforced by the server."""

    command: NonBlank
    """The bash command to run."""
    timeout: Duration | None = None
    """How long the server lets it run."""


def _command_text(text: str) -> str:
    if not text.strip():
        raise problem("empty command")
    return text


def _as_sent(command: str | Command) -> str | Mapping[str, Any]:
    if isinstance(command, str):
        return command
    if command.timeout is None:
        return command.command
    # The server accepts int or float; send whole seconds as integers.
    seconds = command.timeout
    number = int(seconds) if seconds.is_integer() else seconds
    return FrozenDict(command=command.command, timeout=number)


#: How pydantic names the two forms of a command in error locations.
COMMAND_FORMS = ("text", "mapping")
CommandItem = Annotated[
    Annotated[str, AfterValidator(_command_text), Tag("text")] | Annotated[Command, Tag("mapping")],
    Discriminator(lambda item: "mapping" if isinstance(item, dict | Command) else "text"),
    AfterValidator(_as_sent),
]


def _at_least_one(commands: tuple[Any, ...]) -> tuple[Any, ...]:
    if not commands:
        raise problem("must list at least one command")
    return commands


CanaryName = name_of("canary name")


class Canary(Section):
    """A small program run through ``POST /execute/`` to prove the sandbox works.

    Commands are sent exactly as written, never with ``save``. The run succeeds
    when the response's ``status`` equals ``expect_status`` and
    :meth:`stdout_matches`. A target's canaries run one after another within
    its canary timeout.
    """

    refused_keys: ClassVar[Mapping[str, str]] = {
        "save": "a canary must never save its environment: the server would keep it on "
        "disk for a day after every run; remove 'save'",
        "environment": "a canary runs in a fresh container and cannot upload an environment",
    }

    name: CanaryName  # type: ignore[valid-type]
    """Canaries are told apart by name in metrics."""
    commands: Annotated[Items[CommandItem], AfterValidator(_at_least_one)]
    """A list of bash commands (each a string, or {command, timeout}) run in one directory."""
    expect_stdout: Annotated[str, AfterValidator(str.strip)] | None = None
    """The stdout of the last command, surrounding whitespace ignored."""
    expect_stdout_regex: Regex | None = None
    """A regular expression searched in the stdout of the last command."""
    expect_status: ExitStatus = 0
    """The expected status: an exit code 0..255, or a sandbox error -1..-4."""
    timeout: Duration = DEFAULT_CANARY_TIMEOUT
    """The exporter's deadline for the whole request (default: 10s, or less to fit)."""

    @model_validator(mode="after")
    def _commands_fit_the_timeout(self) -> Canary:
        if "timeout" not in self.model_fields_set:
            return self
        for index, command in enumerate(self.commands):
            if isinstance(command, Mapping) and command["timeout"] > self.timeout:
                longer, own = format_duration(command["timeout"]), format_duration(self.timeout)
                raise problem(
                    f"{longer} is longer than the canary's own timeout ({own}): "
                    "the exporter would give up first",
                    "commands",
                    index,
                    "timeout",
                )
        return self

    def stdout_matches(self, stdout: str) -> bool:
        """Whether ``stdout`` (of the LAST command of the execution) is what this canary expects.

        ``expect_stdout`` is compared with surrounding whitespace ignored (the
        server strips stdout anyway); ``expect_stdout_regex`` is searched
        anywhere in it (anchor with ``^``/``$`` or ``\\A``/``\\Z`` to match it
        all). With both set both must hold; with neither any stdout will do.
        """
        if self.expect_stdout is not None and stdout.strip() != self.expect_stdout:
            return False
        return self.expect_stdout_regex is None or (
            self.expect_stdout_regex.search(stdout) is not None
        )

    def request_config(self) -> dict[str, Any]:
        """The JSON ``config`` field of the ``/execute/`` request for this canary."""
        return {"commands": [c if isinstance(c, str) else dict(c) for c in self.commands]}


DEFAULT_CANARY = Canary(name="shell", commands=("echo $((2+2))",), expect_stdout="4")


def _unique_canary_names(canaries: tuple[Canary, ...]) -> tuple[Canary, ...]:
    for index, canary in enumerate(canaries):
        for earlier, other in enumerate(canaries[:index]):
            if other.name == canary.name:
                raise problem(
                    f"duplicate canary name {canary.name!r} (also {ALSO})",
                    index,
                    "name",
                    also=(earlier,),
                )
    return canaries


Canaries = Annotated[Items[Canary], AfterValidator(_unique_canary_names)]
