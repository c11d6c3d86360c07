"""The configuration's types: each YAML section is a model, and the models are the schema.

Every model is strict (YAML ``yes`` is not a string, ``"5"`` is not a number),
refuses unknown keys and is frozen (the scheduler compares and hashes targets).
The docstring under each field is its documentation in the JSON Schema, which
editors show. A key set to null, or not written, keeps its default; for a
target, "default" means the ``defaults`` section (see :mod:`.rules`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetPydanticSchema,
    PrivateAttr,
    Tag,
    create_model,
    model_validator,
)
from pydantic_core import core_schema

from ..expectations import Expectations, FrozenDict, Matcher
from ..vocabulary import LANGUAGE_ALIASES, LANGUAGES, PACKAGE_KINDS, PROBES
from .errors import ALSO, problem
from .fields import (
    CaFile,
    Duration,
    ExitStatus,
    FrozenMapping,
    HeaderName,
    HeaderValue,
    Items,
    LabelName,
    NonBlank,
    Ratio,
    Regex,
    Secret,
    SecretFromEnvironment,
    SecretFromFile,
    Url,
    Username,
    Version,
    name_of,
)

SEVERITY_LEVELS = ("warning", "critical")
# Why these numbers: /usages/ takes about 2 s on the server (it samples I/O for
# 2 s) and /libraries/ starts a fresh container on every call, so usage is
# polled often but not hard, and libraries (which change with deployments,
# not minutes) once an hour. Each timeout leaves room before the next run.
_INTERVAL_SECONDS = {"specifications": 30.0, "usage": 15.0, "libraries": 3600.0, "canary": 30.0}
_TIMEOUT_SECONDS = {"specifications": 10.0, "usage": 10.0, "libraries": 60.0, "canary": 20.0}
# The server's own default bound on a whole /execute/ request (EXECUTE_TIMEOUT).
DEFAULT_CANARY_TIMEOUT = 10.0


class Section(BaseModel):
    """A mapping of the configuration file."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        arbitrary_types_allowed=True,
    )
    #: Keys people write by mistake, with the advice their error gives instead of "unknown key".
    refused_keys: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_unset(cls, data: Any) -> Any:
        # `canaries:` with nothing after it reads as null: it means "as by default".
        if isinstance(data, dict):
            sections = _sections(cls)
            return {k: v for k, v in data.items() if v is not None or k not in sections}
        return data


@functools.cache
def _sections(model: type[BaseModel]) -> frozenset[str]:
    collections = (BaseModel, tuple, Mapping, Expectations)
    return frozenset(
        name for name, field in model.model_fields.items() if isinstance(field.default, collections)
    )


class ProbeTimes(Section, Mapping):  # type: ignore[misc]
    """Seconds per probe kind; reads as a mapping (``target.intervals["usage"]``)."""

    def __getitem__(self, kind: str) -> float:
        if kind not in type(self).model_fields:
            raise KeyError(kind)
        return getattr(self, kind)

    def __iter__(self) -> Any:  # the probe kinds, as a mapping's keys
        return iter(type(self).model_fields)

    def __len__(self) -> int:
        return len(type(self).model_fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self.items()))


def _probe_times(name: str, doc: str, seconds: Mapping[str, float]) -> Any:
    fields: dict[str, Any] = {
        kind: (Duration, Field(default=seconds[kind], description=f"For the {kind} probe."))
        for kind in PROBES
    }
    return create_model(name, __base__=ProbeTimes, __doc__=doc, **fields)


Intervals = _probe_times(
    "Intervals", "How often each probe runs (a duration such as 30s or 1h).", _INTERVAL_SECONDS
)
Timeouts = _probe_times(
    "Timeouts",
    "How long each probe may take: a hard deadline, at most its interval.",
    _TIMEOUT_SECONDS,
)
DEFAULT_INTERVALS: Mapping[str, float] = Intervals()
DEFAULT_TIMEOUTS: Mapping[str, float] = Timeouts()


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


CommandItem = Annotated[
    Annotated[str, AfterValidator(_command_text), Tag("~text")]
    | Annotated[Command, Tag("~mapping")],
    Discriminator(lambda item: "~mapping" if isinstance(item, dict | Command) else "~text"),
    AfterValidator(_as_sent),
]


def _at_least_one(commands: tuple[Any, ...]) -> tuple[Any, ...]:
    if not commands:
        raise problem("must list at least one command")
    return commands


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

    name: name_of("canary name")  # type: ignore[valid-type]
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
                raise problem(
                    f"{_seconds(command['timeout'])} is longer than the canary's own timeout "
                    f"({_seconds(self.timeout)}): the exporter would give up first",
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


def _seconds(value: float) -> str:
    from .durations import format_duration

    return format_duration(value)


DEFAULT_CANARY = Canary(name="shell", commands=("echo $((2+2))",), expect_stdout="4")

_INLINE_SECRET = (
    "inline secrets are not allowed (they would sit in a file anyone reading the "
    "configuration sees): put it in a file and use {stem}_file, or name an "
    "environment variable with {stem}_env"
)


def _unique_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    seen: set[str] = set()
    for name in headers:
        if name.lower() in seen:
            raise problem("set twice (header names are case-insensitive)", name)
        seen.add(name.lower())
    return headers


class Auth(Section):
    """Credentials for one target: HTTP basic (username + password) or a bearer token.

    Secrets come from a file (``*_file``, relative to the configuration file)
    or an environment variable (``*_env``), never from the configuration itself.
    """

    refused_keys: ClassVar[Mapping[str, str]] = {
        "password": _INLINE_SECRET.format(stem="password"),
        "bearer_token": _INLINE_SECRET.format(stem="bearer_token"),
        "token": _INLINE_SECRET.format(stem="bearer_token"),
    }

    username: Username | None = None
    """The HTTP basic authentication user name."""
    password_file: SecretFromFile | None = None
    """A file holding the password (one line)."""
    password_env: SecretFromEnvironment | None = None
    """An environment variable holding the password."""
    bearer_token_file: SecretFromFile | None = None
    """A file holding the bearer token (one line)."""
    bearer_token_env: SecretFromEnvironment | None = None
    """An environment variable holding the bearer token."""
    headers: Annotated[
        Mapping[HeaderName, HeaderValue], FrozenMapping, AfterValidator(_unique_headers)
    ] = FrozenDict()
    """Extra HTTP headers sent with every request (never Authorization)."""

    @model_validator(mode="before")
    @classmethod
    def _secrets_pair_up(cls, data: Any) -> Any:
        if not isinstance(data, dict) or any(key in data for key in cls.refused_keys):
            return data  # a refused key is reported alone: pairing advice would only add noise
        for key in ("password_file", "password_env", "bearer_token_file", "bearer_token_env"):
            if key in data and data[key] is None:
                raise problem("missing value", key)
        for stem in ("password", "bearer_token"):
            if f"{stem}_file" in data and f"{stem}_env" in data:
                raise problem(f"set either {stem}_file or {stem}_env, not both", f"{stem}_file")
        has_password = "password_file" in data or "password_env" in data
        has_username = data.get("username") is not None
        if has_password and ("bearer_token_file" in data or "bearer_token_env" in data):
            raise problem(
                "set either a password (basic authentication) or a bearer token, not both"
            )
        if has_password and not has_username:
            raise problem("missing: a password needs a username", "username")
        if has_username and not has_password:
            raise problem(
                "missing: a username needs a password (password_file or password_env)",
                "password_file",
            )
        return data

    @property
    def password(self) -> Secret | None:
        return self.password_file or self.password_env

    @property
    def bearer_token(self) -> Secret | None:
        return self.bearer_token_file or self.bearer_token_env


class TLS(Section):
    """How the server's certificate is checked."""

    ca_file: CaFile = None
    """A PEM bundle to verify the server with (null: the system store)."""
    insecure_skip_verify: bool = False
    """Do not verify the certificate at all (wins over ca_file)."""


class Thresholds(Section):
    """Load (busy containers / pool size) above which ``--once`` reports a problem."""

    load_warning: Ratio = 0.8
    """WARNING above this ratio, 0..1."""
    load_critical: Ratio | None = None
    """CRITICAL above this ratio, 0..1 (null: never critical for load)."""


Level = Literal[SEVERITY_LEVELS]  # type: ignore[valid-type]


class Severities(Section):
    """How ``--once`` rates each kind of problem."""

    expectation_missed: Level = "warning"
    """A language, package or executable is not as expected."""
    overloaded: Level = "critical"
    """The load is above thresholds.load_warning."""
    canary_failed: Level = "critical"
    """A canary did not give the expected output."""


class ProbeEndpoint(Section):
    """Who may be probed through ``/probe?target=URL`` without being listed.

    Off by default: an open ``/probe`` would let anyone make the exporter send
    requests anywhere. When on, the URL must match one of ``allowed_urls``
    entirely, see :meth:`allows`.
    """

    allow_unlisted_targets: bool = False
    """Allow /probe?target=URL for URLs that are not targets."""
    allowed_urls: Items[Regex] = ()
    """Regular expressions, one of which a whole URL must match."""

    @model_validator(mode="after")
    def _open_only_to_listed_urls(self) -> ProbeEndpoint:
        if self.allow_unlisted_targets and not self.allowed_urls:
            raise problem(
                "required when allow_unlisted_targets is true: list regular expressions "
                "that a whole URL must match, e.g. 'https://sandbox-[0-9]+\\.example\\.org/'",
                "allowed_urls",
            )
        return self

    def allows(self, url: str) -> bool:
        """Whether an unlisted ``url`` may be probed."""
        return self.allow_unlisted_targets and any(
            pattern.fullmatch(url) for pattern in self.allowed_urls
        )


LanguageName = Literal[(*LANGUAGES, *LANGUAGE_ALIASES)]  # type: ignore[valid-type]
PackageKind = Literal[PACKAGE_KINDS]  # type: ignore[valid-type]


class Expect(Section):
    """What a target is expected to provide; reported by sandbox_expectation_met."""

    languages: Annotated[Mapping[LanguageName, Version], FrozenMapping] = FrozenDict()
    """Language -> version spec ('>=3.8,<4', '3.8.*', 'present')."""
    packages: Annotated[
        Mapping[PackageKind, Annotated[Mapping[NonBlank, Version], FrozenMapping]], FrozenMapping
    ] = FrozenDict()
    """Package kind -> package name -> version spec."""
    bin: Items[NonBlank] = ()
    """Executables expected on the PATH of a container."""

    @model_validator(mode="after")
    def _each_once(self) -> Expect:
        seen: set[str] = set()
        for name in self.languages:
            canonical = LANGUAGE_ALIASES.get(name, name)
            if canonical in seen:
                raise problem(f"{canonical!r} is expected twice", "languages", name)
            seen.add(canonical)
        for index, name in enumerate(self.bin):
            if name in self.bin[:index]:
                raise problem(f"{name!r} is listed twice", "bin", index)
        return self

    def expectations(self) -> Expectations:
        return Expectations(
            languages=FrozenDict(
                (LANGUAGE_ALIASES.get(name, name), spec) for name, spec in self.languages.items()
            ),
            packages=self.packages,
            bin=self.bin,
        )


def _expect_as_written(expect: Expectations) -> dict[str, Any]:
    return {
        "languages": {name: str(m) for name, m in expect.languages.items()},
        "packages": {k: {n: str(m) for n, m in p.items()} for k, p in expect.packages.items()},
        "bin": list(expect.bin),
    }


#: Held as :class:`Expectations` (what probes check), written as :class:`Expect`.
ExpectField = Annotated[
    Expectations,
    GetPydanticSchema(
        lambda _type, handler: core_schema.no_info_after_validator_function(
            Expect.expectations,
            handler.generate_schema(Expect),
            serialization=core_schema.plain_serializer_function_ser_schema(_expect_as_written),
        )
    ),
]


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


class Probing(Section):
    """How a target is probed: what ``defaults`` sets for every target."""

    intervals: Intervals = DEFAULT_INTERVALS  # type: ignore[valid-type]
    """How often each probe runs; merged key by key with defaults."""
    timeouts: Timeouts = DEFAULT_TIMEOUTS  # type: ignore[valid-type]
    """How long each probe may take; merged key by key with defaults."""
    canaries: Canaries = (DEFAULT_CANARY,)
    """Programs run through /execute/; a target's list replaces the defaults' ([] for none)."""
    expect: ExpectField = Expectations()
    """Expected versions; a target's block replaces the defaults' ({} for none)."""
    thresholds: Thresholds = Thresholds()
    """Load thresholds for --once; merged key by key with defaults."""
    severities: Severities = Severities()
    """Severities for --once; merged key by key with defaults."""
    tls: TLS = TLS()
    """Certificate checking; merged key by key with defaults."""


class Defaults(Probing):
    """What a target gets for every key it does not set itself.

    ``Defaults()`` is the built-in defaults. There is deliberately no ``auth``
    here: credentials are only ever sent to targets listed with them, never to
    a URL someone passes to ``/probe``.
    """


class Target(Probing):
    """One sandbox server to watch.

    ``url`` always ends with ``/`` and never holds credentials. ``intervals``
    and ``timeouts`` map every probe kind to seconds. An empty ``canaries``
    means the target runs no canary probe.
    """

    name: name_of("target name", url_like=False) = ""  # type: ignore[valid-type]
    """Names the target in metrics and /probe?target= (default: the URL's host[:port])."""
    url: Url
    """The sandbox's base URL, e.g. https://sandbox.example.org/."""
    labels: Annotated[Mapping[LabelName, str], FrozenMapping] = FrozenDict()
    """Extra labels of sandbox_target_info."""
    auth: Auth = Auth()
    """Credentials; never inherited from defaults."""

    @model_validator(mode="after")
    def _named_after_the_host(self) -> Target:
        if "name" not in self.model_fields_set:
            # Still being built, so not yet frozen in spirit: the way frozen
            # dataclasses set derived fields in __post_init__.
            object.__setattr__(self, "name", urlsplit(self.url).netloc.lower())
        return self


class Config(Section):
    """The configuration file of sandbox-exporter."""

    defaults: Defaults = Defaults()
    """What every target gets unless it says otherwise."""
    probe_endpoint: ProbeEndpoint = ProbeEndpoint()
    """Who may be probed through /probe?target=URL without being listed."""
    targets: Items[Target] = ()
    """The sandbox servers to watch."""

    _source: str = PrivateAttr(default="<string>")

    @property
    def source(self) -> str:
        """Where this configuration came from (a file name, ``<string>``, ``<url>``)."""
        return self._source

    def target(self, name: str) -> Target | None:
        for target in self.targets:
            if target.name == name:
                return target
        return None


__all__ = [
    "DEFAULT_CANARY",
    "DEFAULT_CANARY_TIMEOUT",
    "DEFAULT_INTERVALS",
    "DEFAULT_TIMEOUTS",
    "SEVERITY_LEVELS",
    "TLS",
    "Auth",
    "Canary",
    "Config",
    "Defaults",
    "Expect",
    "Intervals",
    "Matcher",
    "ProbeEndpoint",
    "Severities",
    "Target",
    "Thresholds",
    "Timeouts",
]
