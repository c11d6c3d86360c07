"""The configuration file as types: a :class:`Config` of :class:`Target` s, their
:class:`Defaults`, and the sections they share.

Every model is strict (YAML ``yes`` is not a string, ``"5"`` is not a number),
refuses unknown keys and is frozen (the scheduler compares and hashes targets).
The docstring under each field is its documentation in the JSON Schema, which
editors show. A section set to null, or not written, keeps its default; for a
target, "default" means the ``defaults`` section (see :mod:`.rules`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from ..expectations import FrozenDict, Matcher
from ..vocabulary import DOCUMENTS, LANGUAGE_ALIASES, LANGUAGES, PACKAGE_KINDS, PROBES
from .fields import (
    ByteCount,
    Duration,
    FrozenMapping,
    HeaderName,
    HeaderValue,
    Items,
    LabelName,
    Name,
    NonBlank,
    ReadableFile,
    Regex,
    Secret,
    SecretFromEnvironment,
    SecretFromFile,
    Url,
    Username,
    Version,
    format_duration,
)
from .problems import problem, shorten


def _refused_in_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    # A key people write by mistake is in the schema as "nothing is allowed
    # here", with the advice as its description: editors show it, and so do
    # the loader's errors (see problems.py).
    for key, advice in getattr(model, "refused_keys", {}).items():
        schema["properties"][key] = {"not": {}, "description": advice}


class Section(BaseModel):
    """A mapping of the configuration file."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        # Lets pydantic write defaults such as FrozenDict() into the JSON Schema.
        arbitrary_types_allowed=True,
        json_schema_extra=_refused_in_schema,
    )
    #: Keys people write by mistake, with the advice their error gives instead of "unknown key".
    refused_keys: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_unset(cls, data: Any) -> Any:
        # `canaries:` with nothing after it reads as null: it means "as by default".
        if isinstance(data, dict):
            sections = {
                name
                for name, field in cls.model_fields.items()
                if isinstance(field.default, Section | tuple | Mapping)
            }
            return {k: v for k, v in data.items() if v is not None or k not in sections}
        return data


def no_default(schema: dict[str, Any]) -> None:
    """For ``json_schema_extra``: a default that is not a value to write (an
    editor would offer it), but stands for "derived" or "not set"."""
    schema.pop("default", None)


def unique(name: Callable[[Any], str], *key: str) -> AfterValidator:
    """For a list whose items (their ``key``) must differ, as ``name`` gives them."""

    def check(items: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
        for index, item in enumerate(items):
            earlier = [i for i, other in enumerate(items[:index]) if name(other) == name(item)]
            if earlier:
                also = f"{info.field_name}[{earlier[0]}]"
                raise problem(f"{name(item)!r} is listed twice (also {also})", index, *key)
        return items

    return AfterValidator(check)


# The server's own default bound on a whole /execute/ request (EXECUTE_TIMEOUT).
DEFAULT_CANARY_TIMEOUT = 10.0


class Command(Section):
    """A command with a time limit of its own, enforced by the server."""

    command: NonBlank
    """The bash command to run."""
    timeout: Duration | None = None
    """How long the server lets it run."""

    def as_sent(self) -> str | dict[str, Any]:
        if self.timeout is None:
            return self.command
        # The server takes int or float: whole seconds go as written, integers.
        whole = self.timeout.is_integer()
        return {"command": self.command, "timeout": int(self.timeout) if whole else self.timeout}


def _command(value: object) -> object:
    # Most commands are written as their text alone.
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("empty command")
        return {"command": value}
    return value


def _at_least_one(commands: tuple[Command, ...]) -> tuple[Command, ...]:
    # Not Field(min_length=1): pydantic would also say so when every command is wrong.
    if not commands:
        raise ValueError("must list at least one command")
    return commands


CommandItem = Annotated[Command, BeforeValidator(_command, json_schema_input_type=str | Command)]


class Canary(Section):
    """A small program run through ``POST /execute/`` to prove the sandbox works:
    commands sent as written (never with ``save``), status and stdout checked.
    A target's canaries run one after another within its canary timeout."""

    refused_keys: ClassVar[Mapping[str, str]] = {
        "save": "a canary must never save its environment: the server would keep it on "
        "disk for a day after every run; remove 'save'",
        "environment": "a canary runs in a fresh container and cannot upload an environment",
    }

    name: Name
    """Canaries are told apart by name in metrics."""
    commands: Annotated[Items[CommandItem], AfterValidator(_at_least_one)]
    """A list of bash commands (each a string, or {command, timeout}) run in one directory."""
    expect_stdout: Annotated[str, AfterValidator(str.strip)] | None = None
    """The stdout of the last command, surrounding whitespace ignored."""
    expect_stdout_regex: Regex | None = None
    """A regular expression searched in the stdout of the last command."""
    expect_status: Annotated[int, Field(ge=-4, le=255)] = 0
    """The expected status: an exit code 0..255, or a sandbox error -1..-4."""
    timeout: Duration = DEFAULT_CANARY_TIMEOUT
    """The exporter's deadline for the whole request (default: 10s, or less to fit)."""

    @model_validator(mode="after")
    def _commands_fit_the_timeout(self) -> Canary:
        written = "timeout" in self.model_fields_set
        for index, command in enumerate(self.commands):
            if written and command.timeout is not None and command.timeout > self.timeout:
                longer, own = format_duration(command.timeout), format_duration(self.timeout)
                why = f"{longer} is longer than the canary's own timeout ({own}): "
                raise problem(
                    why + "the exporter would give up first", "commands", index, "timeout"
                )
        return self

    def stdout_matches(self, stdout: str) -> bool:
        """Whether ``stdout`` (of the LAST command) is as expected: both of
        ``expect_stdout`` (whitespace around ignored, as the server strips it)
        and ``expect_stdout_regex`` (searched, unless anchored) when set."""
        if self.expect_stdout is not None and stdout.strip() != self.expect_stdout:
            return False
        regex = self.expect_stdout_regex
        return regex is None or regex.search(stdout) is not None

    def request_config(self) -> dict[str, Any]:
        """The JSON ``config`` field of the ``/execute/`` request for this canary."""
        return {"commands": [command.as_sent() for command in self.commands]}


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
    """Credentials for one target: HTTP basic (username + password) or a bearer
    token, each from a file (``*_file``) or an environment variable (``*_env``)."""

    refused_keys: ClassVar[Mapping[str, str]] = {
        "password": _INLINE_SECRET.format(stem="password"),
        "bearer_token": _INLINE_SECRET.format(stem="bearer_token"),
        "token": _INLINE_SECRET.format(stem="bearer_token"),
    }

    username: Username | None = None
    """The HTTP basic authentication user name."""
    password_file: SecretFromFile = Field(None, json_schema_extra=no_default)
    """A file holding the password (one line)."""
    password_env: SecretFromEnvironment = Field(None, json_schema_extra=no_default)
    """An environment variable holding the password."""
    bearer_token_file: SecretFromFile = Field(None, json_schema_extra=no_default)
    """A file holding the bearer token (one line)."""
    bearer_token_env: SecretFromEnvironment = Field(None, json_schema_extra=no_default)
    """An environment variable holding the bearer token."""
    # Header values may be keys of some sort: kept out of reprs too.
    headers: Annotated[
        Mapping[HeaderName, HeaderValue], FrozenMapping, AfterValidator(_unique_headers)
    ] = Field(FrozenDict(), repr=False)
    """Extra HTTP headers sent with every request (never Authorization)."""

    @model_validator(mode="before")
    @classmethod
    def _one_source_per_secret(cls, data: Any) -> Any:
        # Checked before the secrets are read: reading both would be pointless.
        for stem in ("password", "bearer_token"):
            if isinstance(data, dict) and f"{stem}_file" in data and f"{stem}_env" in data:
                raise problem(f"set either {stem}_file or {stem}_env, not both", f"{stem}_file")
        return data

    @model_validator(mode="after")
    def _secrets_pair_up(self) -> Auth:
        if self.password and self.bearer_token:
            raise ValueError(
                "set either a password (basic authentication) or a bearer token, not both"
            )
        if self.password and self.username is None:
            raise problem("missing: a password needs a username", "username")
        if self.username is not None and not self.password:
            raise problem(
                "missing: a username needs a password (password_file or password_env)",
                "password_file",
            )
        return self

    @property
    def password(self) -> Secret | None:
        return self.password_file or self.password_env

    @property
    def bearer_token(self) -> Secret | None:
        return self.bearer_token_file or self.bearer_token_env


class TLS(Section):
    """How the server's certificate is checked."""

    ca_file: ReadableFile | None = None
    """A PEM bundle to verify the server with (null: the system store)."""
    insecure_skip_verify: bool = False
    """Do not verify the certificate at all (wins over ca_file)."""


Ratio = Annotated[float, Field(ge=0, le=1)]


class Thresholds(Section):
    """Load (busy containers / pool size) above which ``--once`` reports a problem."""

    load_warning: Ratio = 0.8
    """WARNING above this ratio, 0..1."""
    load_critical: Ratio | None = None
    """CRITICAL above this ratio, 0..1 (null: never critical for load)."""


Level = Literal["warning", "critical"]


class Severities(Section):
    """How ``--once`` rates each kind of problem."""

    expectation_missed: Level = "warning"
    """A language, package or executable is not as expected."""
    overloaded: Level = "critical"
    """The load is above thresholds.load_warning."""
    canary_failed: Level = "critical"
    """A canary did not give the expected output."""


def _canonical_languages(languages: Mapping[str, Matcher]) -> Mapping[str, Matcher]:
    canonical: dict[str, Matcher] = {}
    for name, matcher in languages.items():
        if LANGUAGE_ALIASES.get(name, name) in canonical:
            raise problem(f"{LANGUAGE_ALIASES.get(name, name)!r} is expected twice", name)
        canonical[LANGUAGE_ALIASES.get(name, name)] = matcher
    return FrozenDict(canonical)


LanguageName = Literal[(*LANGUAGES, *LANGUAGE_ALIASES)]  # type: ignore[valid-type]
PackageKind = Literal[PACKAGE_KINDS]  # type: ignore[valid-type]


class Expectations(Section):
    """What a target is expected to provide; reported by sandbox_expectation_met
    (see :func:`..expectations.check_expectations`)."""

    languages: Annotated[Mapping[LanguageName, Version], AfterValidator(_canonical_languages)] = (
        FrozenDict()
    )
    """Language -> version spec ('>=3.8,<4', '3.8.*', 'present')."""
    packages: Annotated[
        Mapping[PackageKind, Annotated[Mapping[NonBlank, Version], FrozenMapping]], FrozenMapping
    ] = FrozenDict()
    """Package kind -> package name -> version spec."""
    bin: Annotated[Items[NonBlank], unique(str)] = ()
    """Executables expected on the PATH of a container."""


# Why these numbers: /usages/ takes about 2 s on the server (it samples I/O for
# 2 s) and /libraries/ starts a fresh container on every call, so usage is
# polled often but not hard, and libraries (which change with deployments,
# not minutes) once an hour. Each timeout leaves room before the next run.
DEFAULT_INTERVALS = FrozenDict(specifications=30.0, usage=15.0, libraries=3600.0, canary=30.0)
DEFAULT_TIMEOUTS = FrozenDict(specifications=10.0, usage=10.0, libraries=60.0, canary=20.0)
# Prometheus scrapes a /probe job every 15 s or more: each scrape still gets a
# fresh canary, while a client that asks faster (a flood, a prefetching
# browser) gets the last result instead of a container of the sandbox's.
DEFAULT_CANARY_MIN_INTERVAL = 10.0
PerProbe = Annotated[Mapping[Literal[PROBES], Duration], FrozenMapping]  # type: ignore[valid-type]

# Why these numbers: the real servers' documents are about 1 KB
# (specifications, usages), 0.3-1 KB (a canary's execute answer) and 2 KB to a
# few hundred KB (libraries: dpkg, pip, cpan and ldconfig lists). Each cap
# leaves at least ten times that, and the caps of the documents parsed on the
# event loop keep their parsing to a few milliseconds whatever a server puts
# in them (docs/reliability.md has the measurements; libraries answers past
# a few hundred KB are parsed in a separate process).
DEFAULT_MAX_RESPONSE_BYTES = FrozenDict(
    specifications=64 * 2**10, usages=64 * 2**10, libraries=4 * 2**20, execute=256 * 2**10
)
PerDocument = Annotated[Mapping[Literal[DOCUMENTS], ByteCount], FrozenMapping]  # type: ignore[valid-type]


class Probing(Section):
    """How a target is probed: what ``defaults`` sets for every target."""

    intervals: PerProbe = DEFAULT_INTERVALS
    """How often each probe runs (e.g. 30s, 1h); merged key by key with defaults."""
    timeouts: PerProbe = DEFAULT_TIMEOUTS
    """How long each probe may take, at most its interval; merged key by key with defaults."""
    canaries: Annotated[Items[Canary], unique(lambda canary: canary.name, "name")] = (
        DEFAULT_CANARY,
    )
    """Programs run through /execute/; a target's list replaces the defaults' ([] for none)."""
    expect: Expectations = Expectations()
    """Expected versions; a target's block replaces the defaults' ({} for none)."""
    thresholds: Thresholds = Thresholds()
    """Load thresholds for --once; merged key by key with defaults."""
    severities: Severities = Severities()
    """Severities for --once; merged key by key with defaults."""
    tls: TLS = TLS()
    """Certificate checking; merged key by key with defaults."""
    canary_min_interval: Duration = DEFAULT_CANARY_MIN_INTERVAL
    """Least time between two canary runs that /probe starts (each takes a container);
    inside it /probe answers with the last result."""
    max_response_bytes: PerDocument = DEFAULT_MAX_RESPONSE_BYTES
    """Largest answer accepted per document (specifications, usages, libraries, execute), in
    bytes or e.g. 64KiB, 4MiB, counted decompressed; merged key by key with defaults."""


class Defaults(Probing):
    """What a target gets for every key it does not set itself. Deliberately no
    ``auth``: credentials only go to targets listed with them, never to /probe URLs."""


def _not_a_url(name: str) -> str:
    if "://" in name:
        raise ValueError(
            f"{shorten(name)} must not look like a URL (/probe?target= takes a name or a URL)"
        )
    return name


class Target(Probing):
    """One sandbox server to watch (resolved: ``url`` ends with ``/``,
    ``intervals`` and ``timeouts`` name every probe kind)."""

    name: Annotated[Name, AfterValidator(_not_a_url)] = Field("", json_schema_extra=no_default)
    """Names the target in metrics and /probe?target= (default: the URL's host[:port])."""
    url: Url
    """The sandbox's base URL, e.g. https://sandbox.example.org/."""
    labels: Annotated[Mapping[LabelName, str], FrozenMapping] = FrozenDict()
    """Extra labels of sandbox_target_info."""
    auth: Auth = Auth()
    """Credentials; never inherited from defaults."""

    def same_server(self, other: Target | None) -> bool:
        """Whether ``other`` talks to the server this target talks to, the way it does:
        the one meaning of "this target changed" for the state, the scheduler and the
        transports. A changed URL, credentials or TLS setting is another server, whose
        results must never show under the old one's; labels, intervals, timeouts,
        canaries and expectations only change how the same server is watched."""
        return other is not None and (self.url, self.auth, self.tls) == (
            other.url,
            other.auth,
            other.tls,
        )

    @model_validator(mode="after")
    def _named_after_the_host(self) -> Target:
        if "name" not in self.model_fields_set:
            # Still being built, so not yet frozen in spirit: the way frozen
            # dataclasses set derived fields in __post_init__.
            object.__setattr__(self, "name", urlsplit(self.url).netloc.lower())
        return self


class ProbeEndpoint(Section):
    """Who may be probed through ``/probe?target=URL`` without being listed: no
    one by default, since an open ``/probe`` sends requests anywhere anyone asks."""

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
        return self.allow_unlisted_targets and any(p.fullmatch(url) for p in self.allowed_urls)


class Config(Section):
    """The configuration file of sandbox-exporter."""

    model_config = ConfigDict(title="sandbox-exporter configuration")

    defaults: Defaults = Defaults()
    """What every target gets unless it says otherwise."""
    probe_endpoint: ProbeEndpoint = ProbeEndpoint()
    """Who may be probed through /probe?target=URL without being listed."""
    targets: Items[Target] = ()
    """The sandbox servers to watch."""

    def target(self, name: str) -> Target | None:
        # Every probe result and /probe request looks its target up: a scan
        # would make each cost grow with the number of targets.
        entry = _TARGET_INDEXES.get(id(self.targets))
        if entry is None or entry[0] is not self.targets:
            if len(_TARGET_INDEXES) >= _INDEXES_KEPT:
                del _TARGET_INDEXES[next(iter(_TARGET_INDEXES))]
            index = {target.name: target for target in self.targets}
            entry = _TARGET_INDEXES[id(self.targets)] = (self.targets, index)
        return entry[1].get(name)


# The name index of the targets of the last few configurations, beside the
# models: a pydantic private attribute takes part in the model's equality (an
# indexed configuration would differ from an equal one not yet indexed), and
# a frozen model has no other place for it. Keyed by the id of the targets'
# tuple and checked by identity, since model_copy shares or replaces it.
_TARGET_INDEXES: dict[int, tuple[tuple[Target, ...], dict[str, Target]]] = {}
_INDEXES_KEPT = 4
