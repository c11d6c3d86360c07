"""The configuration file: YAML -> typed, validated, frozen dataclasses.

Everything the exporter does comes from a :class:`Config`: which sandboxes to
watch (``targets``), how often and how patiently to probe them, which canary
programs to run, which library versions to expect, and who may ask ``/probe``
for a URL that is not listed. ``config/example.yml`` documents every key.

Validation is strict and complete: every problem found is reported at once, as
``"<key path>: <what is wrong>"`` (``targets[2].canaries[0].timeout: invalid
duration '5 seconds' (use e.g. 10s, 1m)``), and a file that loads is a file the
exporter can run with. Secrets are read from files or environment variables
while loading and held in :class:`Secret`, whose ``str``/``repr`` never show
them; no error message ever contains a secret value.

Merging, one rule for everything: a target's mappings of scalars (``intervals``,
``timeouts``, ``thresholds``, ``severities``, ``tls``) override ``defaults`` key
by key; a target's ``canaries`` list and ``expect`` block replace the defaults'
as a whole (so a target can drop expectations it does not share: ``expect: {}``;
YAML anchors ``&name``/``*name`` reuse blocks).

Timeouts, one rule too: a value written that cannot be honoured is an error (a
timeout longer than the interval beside it, canary timeouts adding up to more
than the canary probe's deadline); a value nobody wrote shrinks to fit (an
inherited timeout is cut to a shorter interval, as Prometheus does with
``scrape_timeout``; a canary without ``timeout`` gets 10 s or the probe
deadline, whichever is shorter, but at least its longest command timeout).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hmac
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from .expectations import Expectations, FrozenDict, Matcher
from .vocabulary import LANGUAGE_ALIASES, LANGUAGES, PACKAGE_KINDS, PROBES

__all__ = [
    "DEFAULT_CANARY",
    "DEFAULT_INTERVALS",
    "DEFAULT_TIMEOUTS",
    "RESERVED_LABEL_NAMES",
    "SEVERITY_LEVELS",
    "TLS",
    "Auth",
    "Canary",
    "Config",
    "ConfigError",
    "Defaults",
    "Expectations",
    "ProbeEndpoint",
    "Secret",
    "Severities",
    "Target",
    "Thresholds",
    "config_for_url",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]

SEVERITY_LEVELS = ("warning", "critical")

# `target` and `url` are labels of sandbox_target_info already; Prometheus
# renames scraped `job`/`instance` to `exported_*`, which nobody wants to query.
RESERVED_LABEL_NAMES = ("target", "url", "job", "instance")

# Why these numbers: /usages/ takes about 2 s on the server (it samples I/O for
# 2 s) and /libraries/ starts a fresh container on every call, so usage is
# polled often but not hard, and libraries (which change with deployments,
# not minutes) once an hour. Each timeout leaves room before the next run.
DEFAULT_INTERVALS: Mapping[str, float] = FrozenDict(
    specifications=30.0, usage=15.0, libraries=3600.0, canary=30.0
)
DEFAULT_TIMEOUTS: Mapping[str, float] = FrozenDict(
    specifications=10.0, usage=10.0, libraries=60.0, canary=20.0
)
# The server's own default bound on a whole /execute/ request (EXECUTE_TIMEOUT).
DEFAULT_CANARY_TIMEOUT = 10.0

# The valid range of an /execute/ "status": exit codes 0..255, and the
# sandbox's own error codes -1 (unknown) .. -4 (result not UTF-8).
_EXPECT_STATUS_RANGE = range(-4, 256)
_MAX_SECRET_FILE_BYTES = 64 * 1024
_MAX_NAME_LENGTH = 128


# --------------------------------------------------------------------------
# Errors and secrets


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


class Secret:
    """A password or token read from a file or an environment variable.

    ``str()`` and ``repr()`` give ``<secret>``, so a secret cannot leak through
    logs, tracebacks or the landing page; ``value()`` returns it for the one
    place that needs it (the HTTP request). ``origin`` says where it came from
    (``"file /etc/x"``, ``"environment variable X"``), never what it is.
    """

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "") -> None:
        self._value = value
        self.origin = origin

    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


# --------------------------------------------------------------------------
# Durations


_DURATION_UNITS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_UNIT_ORDER = tuple(_DURATION_UNITS)
# "ms" first so that "500ms" is not read as 500 minutes followed by garbage.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|y|w|d|h|m|s))+")
_BARE_SECONDS = re.compile(r"\d+(?:\.\d+)?")
# No probe needs to wait longer than this, and the scheduler's datetime
# arithmetic overflows on absurd values long before infinity.
MAX_DURATION_SECONDS = 366 * 86_400.0


def _invalid_duration(value: object, why: str = "") -> ValueError:
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, int) and abs(value) >= 10**30:
        shown = "(a huge integer)"  # str() of a huge int can itself fail
    else:
        shown = str(value)
    return ValueError(f"invalid duration {shown}{why} (use e.g. 10s, 1m)")


def parse_duration(value: str | int | float) -> float:
    """Seconds in a Prometheus-style duration.

    ``"15s"``, ``"1m"``, ``"1h30m"``, ``"500ms"``, ``"1d"`` (units ``ms s m h d w
    y``, largest first, each at most once; decimals such as ``"1.5s"`` are
    accepted); bare numbers, or strings of one, are seconds. Negative, infinite
    and boolean values raise :class:`ValueError`.
    """
    if isinstance(value, bool):
        raise _invalid_duration(value, ": a boolean is not a duration")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise _invalid_duration(value, ": too large") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise _invalid_duration(value, ": must be a finite number of seconds >= 0")
        return _bounded(value, seconds)
    if not isinstance(value, str):
        raise _invalid_duration(value)
    text = value.strip()
    if _BARE_SECONDS.fullmatch(text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = 0.0
        last_rank = -1
        for number, unit in _DURATION_PART.findall(text):
            rank = _UNIT_ORDER.index(unit)
            if rank <= last_rank:
                raise _invalid_duration(value, ": units go from largest to smallest, each once")
            last_rank = rank
            seconds += float(number) * _DURATION_UNITS[unit]
    else:
        raise _invalid_duration(value)
    if not math.isfinite(seconds):
        raise _invalid_duration(value, ": too large")
    return _bounded(value, seconds)


def _bounded(value: object, seconds: float) -> float:
    if seconds > MAX_DURATION_SECONDS:
        raise _invalid_duration(value, ": longer than the 366d this exporter accepts")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest duration string for ``seconds``: 90 -> ``"1m30s"``, 0.5 -> ``"500ms"``."""
    milliseconds = round(seconds * 1000)
    if milliseconds <= 0:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if milliseconds:
        parts.append(f"{milliseconds}ms")
    return "".join(parts)


# --------------------------------------------------------------------------
# The configuration objects


@dataclass(frozen=True)
class Canary:
    """A small program run through ``POST /execute/`` to prove the sandbox works.

    ``commands`` are bash commands, each a string or a mapping ``{"command": str,
    "timeout": seconds}`` (the per-command limit enforced by the server); they
    are sent exactly as stored, never with ``save``. ``timeout`` is the
    exporter's deadline for the whole request; a target's canaries run one
    after another within ``Target.timeouts["canary"]``. The run succeeds when the
    response's ``status`` equals ``expect_status`` and :meth:`stdout_matches`.
    """

    name: str
    commands: tuple[str | Mapping[str, Any], ...]
    expect_stdout: str | None = None
    expect_stdout_regex: re.Pattern[str] | None = None
    expect_status: int = 0
    timeout: float = DEFAULT_CANARY_TIMEOUT

    def stdout_matches(self, stdout: str) -> bool:
        """Whether ``stdout`` is what this canary expects.

        Pass the stdout of the LAST command of the execution (the one that
        prints the result; earlier ones typically write and compile sources).
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


DEFAULT_CANARY = Canary(
    name="shell",
    commands=("echo $((2+2))",),
    expect_stdout="4",
    expect_status=0,
    timeout=DEFAULT_CANARY_TIMEOUT,
)


@dataclass(frozen=True)
class Auth:
    """Credentials for one target: HTTP basic (username + password) or a bearer token.

    ``headers`` are extra HTTP headers sent with every request (never
    ``Authorization``: credentials come from files or the environment only).
    """

    username: str | None = None
    password: Secret | None = None
    bearer_token: Secret | None = None
    headers: Mapping[str, str] = field(default_factory=FrozenDict)


@dataclass(frozen=True)
class TLS:
    """``ca_file``: absolute path of a PEM bundle to verify the server with
    (``None``: the system store). ``insecure_skip_verify`` turns verification
    off altogether and wins over ``ca_file``."""

    ca_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Thresholds:
    """Load ratio (busy containers / pool size, 0..1) above which ``--once``
    reports WARNING or CRITICAL (``None``: never critical for load)."""

    load_warning: float = 0.8
    load_critical: float | None = None


@dataclass(frozen=True)
class Severities:
    """How ``--once`` rates each kind of problem: ``"warning"`` or ``"critical"``."""

    expectation_missed: str = "warning"
    overloaded: str = "critical"
    canary_failed: str = "critical"


@dataclass(frozen=True)
class ProbeEndpoint:
    """Who may be probed through ``/probe?target=URL`` without being listed.

    Off by default: an open ``/probe`` would let anyone make the exporter send
    requests anywhere. When on, the URL must match one of ``allowed_urls``
    entirely (``fullmatch``), see :meth:`allows`.
    """

    allow_unlisted_targets: bool = False
    allowed_urls: tuple[re.Pattern[str], ...] = ()

    def allows(self, url: str) -> bool:
        """Whether an unlisted ``url`` may be probed."""
        return self.allow_unlisted_targets and any(
            pattern.fullmatch(url) for pattern in self.allowed_urls
        )


@dataclass(frozen=True)
class Defaults:
    """What a target gets for every key it does not set itself.

    ``Defaults()`` is the built-in defaults. There is deliberately no ``auth``
    here: credentials are only ever sent to targets listed with them, never to
    a URL someone passes to ``/probe``.
    """

    intervals: Mapping[str, float] = field(default_factory=lambda: DEFAULT_INTERVALS)
    timeouts: Mapping[str, float] = field(default_factory=lambda: DEFAULT_TIMEOUTS)
    canaries: tuple[Canary, ...] = (DEFAULT_CANARY,)
    expect: Expectations = field(default_factory=Expectations)
    thresholds: Thresholds = field(default_factory=Thresholds)
    severities: Severities = field(default_factory=Severities)
    tls: TLS = field(default_factory=TLS)


@dataclass(frozen=True)
class Target:
    """One sandbox server to watch.

    ``url`` is the base URL, always ending with ``/`` and never holding
    credentials. ``intervals`` and ``timeouts`` map every probe kind of
    :data:`PROBES` to seconds; ``timeouts`` are hard deadlines. An empty
    ``canaries`` means the target runs no canary probe.
    """

    name: str
    url: str
    labels: Mapping[str, str] = field(default_factory=FrozenDict)
    auth: Auth = field(default_factory=Auth)
    tls: TLS = field(default_factory=TLS)
    intervals: Mapping[str, float] = field(default_factory=lambda: DEFAULT_INTERVALS)
    timeouts: Mapping[str, float] = field(default_factory=lambda: DEFAULT_TIMEOUTS)
    canaries: tuple[Canary, ...] = (DEFAULT_CANARY,)
    expect: Expectations = field(default_factory=Expectations)
    thresholds: Thresholds = field(default_factory=Thresholds)
    severities: Severities = field(default_factory=Severities)


@dataclass(frozen=True)
class Config:
    """A whole, valid configuration. ``source`` names where it came from."""

    targets: tuple[Target, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    probe_endpoint: ProbeEndpoint = field(default_factory=ProbeEndpoint)
    source: str = "<string>"

    def target(self, name: str) -> Target | None:
        for target in self.targets:
            if target.name == name:
                return target
        return None


# --------------------------------------------------------------------------
# Loading


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at ``path``.

    Relative paths inside it (secret files, CA bundles) are resolved against
    the file's own directory. Raises :class:`ConfigError`.
    """
    file_path = Path(path)
    source = str(file_path)
    try:
        data = file_path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError([f"cannot read the configuration file: {reason}"], source) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            [f"not UTF-8 text (invalid byte at offset {error.start})"], source
        ) from None
    return parse_config(text, source=source, base_dir=file_path.absolute().parent)


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate configuration ``text``; relative paths resolve against ``base_dir``
    (default: the current directory). Raises :class:`ConfigError` listing every problem."""
    document = _load_yaml(text, source)
    parser = _Parser(Path(base_dir) if base_dir is not None else Path.cwd(), os.environ)
    config = parser.config(document, source)
    if parser.errors:
        raise ConfigError(parser.errors, source)
    return config


def config_for_url(url: str, defaults: Defaults | None = None) -> Config:
    """A configuration with a single target at ``url`` (for ``--url`` and
    ``/probe?target=URL``): named after the URL's host (``host:port`` when a
    port is given), everything else from ``defaults`` (built-in defaults if
    ``None``), no credentials."""
    defaults = defaults if defaults is not None else Defaults()
    parser = _Parser(Path.cwd(), os.environ)
    normalised = parser.url(url, "url")
    if normalised is None or parser.errors:
        raise ConfigError(parser.errors or ["url: invalid"], "<url>")
    target = Target(
        name=_name_from_url(normalised),
        url=normalised,
        tls=defaults.tls,
        intervals=defaults.intervals,
        timeouts=defaults.timeouts,
        canaries=defaults.canaries,
        expect=defaults.expect,
        thresholds=defaults.thresholds,
        severities=defaults.severities,
    )
    return Config(targets=(target,), defaults=defaults, source="<url>")


def _name_from_url(url: str) -> str:
    return urlsplit(url).netloc.lower()


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the
    last one, and a config where `url` is written twice is a mistake."""


def _construct_mapping_without_duplicates(
    loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue  # merge keys ("<<") may be overridden; SafeLoader rejects other odd keys
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_without_duplicates
)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_describe_yaml_error(error)], source) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"invalid YAML: {' '.join(str(error).split())}"], source) from None
    except RecursionError:
        raise ConfigError(["invalid YAML: the document is nested too deeply"], source) from None


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "invalid YAML"
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
    message = f"{where}: {problem}"
    if error.context and error.problem and error.context_mark is not None:
        context_mark = error.context_mark
        message += (
            f" ({error.context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
        )
    return message


# --------------------------------------------------------------------------
# Validation


_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_+:-]+")
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")

_TOP_KEYS = ("defaults", "probe_endpoint", "targets")
_DEFAULTS_KEYS = ("intervals", "timeouts", "canaries", "expect", "thresholds", "severities", "tls")
_TARGET_KEYS = ("name", "url", "labels", "auth", "tls", *_DEFAULTS_KEYS[:-1])
_AUTH_KEYS = (
    "username",
    "password_file",
    "password_env",
    "bearer_token_file",
    "bearer_token_env",
    "headers",
)
_TLS_KEYS = ("ca_file", "insecure_skip_verify")
_CANARY_KEYS = (
    "name",
    "commands",
    "expect_stdout",
    "expect_stdout_regex",
    "expect_status",
    "timeout",
)
_COMMAND_KEYS = ("command", "timeout")
_EXPECT_KEYS = ("languages", "packages", "bin")
_THRESHOLD_KEYS = ("load_warning", "load_critical")
_SEVERITY_KEYS = ("expectation_missed", "overloaded", "canary_failed")
_PROBE_ENDPOINT_KEYS = ("allow_unlisted_targets", "allowed_urls")

_INLINE_SECRET = (
    "inline secrets are not allowed (they would sit in a file anyone reading the "
    "configuration sees): put it in a file and use {stem}_file, or name an "
    "environment variable with {stem}_env"
)
_REJECTED_AUTH_KEYS = {
    "password": _INLINE_SECRET.format(stem="password"),
    "bearer_token": _INLINE_SECRET.format(stem="bearer_token"),
    "token": _INLINE_SECRET.format(stem="bearer_token"),
}
_REJECTED_CANARY_KEYS = {
    "save": "a canary must never save its environment: the server would keep it on "
    "disk for a day after every run; remove 'save'",
    "environment": "a canary runs in a fresh container and cannot upload an environment",
}


def _join(path: str, key: str) -> str:
    shown = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)
    if not path:
        return shown
    return f"{path}.{shown}" if _PLAIN_KEY.fullmatch(key) else f"{path}[{shown}]"


def _shorten(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _describe(value: object, *, show: bool = True) -> str:
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
        return f"the string {_shorten(value)}" if show else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return "a date (YAML reads unquoted dates as dates)"
    if isinstance(value, bytes):
        return "binary data"
    return type(value).__name__


def _quote_hint(value: object) -> str:
    if isinstance(value, bool):
        return " (YAML reads true/false/yes/no/on/off as booleans: put the value in quotes)"
    if isinstance(value, int | float):
        return " (YAML reads it as a number: put the value in quotes)"
    if isinstance(value, datetime.date):
        return " (put the value in quotes)"
    return ""


def _has_control_characters(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


@dataclass(frozen=True)
class _CanaryEntry:
    """A canary as written: whether its timeout was written decides whether
    it must fit as is (an error otherwise) or may shrink to fit."""

    canary: Canary
    explicit_timeout: bool

    @property
    def promised(self) -> float:
        """The time this canary must be allowed, whatever the probe deadline."""
        if self.explicit_timeout:
            return self.canary.timeout
        return _longest_command_timeout(self.canary)


def _longest_command_timeout(canary: Canary) -> float:
    return max(
        (float(c["timeout"]) for c in canary.commands if not isinstance(c, str) and "timeout" in c),
        default=0.0,
    )


def _probe_kinds_in(section: object) -> set[str]:
    """The probe kinds a YAML mapping sets (nothing if it is not a mapping)."""
    return {key for key in section if key in PROBES} if isinstance(section, dict) else set()


def _fit_timeouts(
    intervals: Mapping[str, float], timeouts: Mapping[str, float], written_here: set[str]
) -> Mapping[str, float]:
    """Inherited timeouts shrink to fit a shorter interval, the way Prometheus
    treats scrape_timeout: setting `intervals: {canary: 5s}` alone just works.
    Timeouts written in the same section are checked instead (check_timings)."""
    fitted = {
        kind: (min(timeouts[kind], intervals[kind]) if kind not in written_here else timeouts[kind])
        for kind in timeouts
    }
    return timeouts if fitted == dict(timeouts) else FrozenDict(fitted)


def _fit_canaries(entries: Sequence[_CanaryEntry], deadline: float) -> tuple[Canary, ...]:
    """Canaries whose timeout nobody wrote get the default, or less to fit the
    probe deadline, but never less than their longest command may take."""
    fitted = []
    for entry in entries:
        canary = entry.canary
        if not entry.explicit_timeout:
            timeout = max(min(DEFAULT_CANARY_TIMEOUT, deadline), _longest_command_timeout(canary))
            if timeout != canary.timeout:
                canary = dataclasses.replace(canary, timeout=timeout)
        fitted.append(canary)
    return tuple(fitted)


class _Parser:
    """Walks the YAML document, collecting every error with its key path.

    Readers return ``None`` for an invalid value after recording why; the
    caller then carries on with a default so that later problems are found
    too (the result is thrown away when there are errors). Cross-field checks
    run only on sections that had no error of their own, to avoid reporting
    consequences of a problem already reported.
    """

    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.environ = environ
        self.errors: list[str] = []
        # What targets inherit; kept unfitted so that each target fits the
        # canaries to its own deadline.
        self.default_canaries: tuple[_CanaryEntry, ...] = (_CanaryEntry(DEFAULT_CANARY, False),)
        self.defaults_valid = True

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}" if path else message)

    # -- generic readers -----------------------------------------------------

    def mapping(
        self,
        value: object,
        path: str,
        allowed: Sequence[str] | None,
        rejected: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """A mapping with string keys; unknown keys are reported, not returned."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path or "(top level)", f"expected a mapping, got {_describe(value)}")
            return None
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(path or "(top level)", f"keys must be strings, got {_describe(key)}")
            elif rejected and key in rejected:
                self.error(_join(path, key), rejected[key])
            elif allowed is not None and key not in allowed:
                self.unknown_key(path, key, allowed)
            else:
                result[key] = item
        return result

    def unknown_key(self, path: str, key: str, allowed: Sequence[str], what: str = "key") -> None:
        lowered = {name.lower(): name for name in allowed}
        close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
        hint = f" (did you mean {lowered[close[0]]!r}?)" if close else ""
        self.error(_join(path, key), f"unknown {what}{hint}; expected one of: {', '.join(allowed)}")

    def sequence(self, value: object, path: str) -> list[Any] | None:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_describe(value)}")
            return None
        return value

    def string(
        self, value: object, path: str, *, show: bool = True, allow_empty: bool = False
    ) -> str | None:
        if not isinstance(value, str):
            hint = _quote_hint(value) if show else ""
            self.error(path, f"expected a string, got {_describe(value, show=show)}{hint}")
            return None
        if not allow_empty and not value.strip():
            self.error(path, "must not be empty")
            return None
        return value

    def boolean(self, value: object, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {_describe(value)}")
            return None
        return value

    def number(self, value: object, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"expected a number, got {_describe(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.error(path, f"expected a finite number, got {_describe(value)}")
            return None
        return number

    def duration(self, value: object, path: str) -> float | None:
        """A duration > 0."""
        if value is None:
            self.error(path, "missing value (a duration such as 10s or 1m)")
            return None
        try:
            seconds = parse_duration(value)  # type: ignore[arg-type]
        except ValueError as error:
            self.error(path, str(error))
            return None
        if seconds <= 0:
            self.error(path, "must be longer than 0s")
            return None
        return seconds

    def name(self, value: object, path: str, what: str) -> str | None:
        """A human-chosen identifier that ends up as a label value."""
        text = self.string(value, path)
        if text is None:
            return None
        if text != text.strip():
            self.error(path, f"{what} {_shorten(text)} must not start or end with spaces")
        elif _has_control_characters(text):
            self.error(path, f"{what} {_shorten(text)} must not contain control characters")
        elif len(text) > _MAX_NAME_LENGTH:
            self.error(path, f"{what} is longer than {_MAX_NAME_LENGTH} characters")
        else:
            return text
        return None

    def file_path(self, value: object, path: str, *, show: bool = True) -> str | None:
        """A file name from the config, resolved against the config's directory."""
        name = self.string(value, path, show=show)
        if name is None:
            return None
        if _has_control_characters(name):
            self.error(path, "a file name must not contain control characters")
            return None
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(name)))

    # -- sections --------------------------------------------------------------

    def config(self, document: object, source: str) -> Config:
        top = self.mapping(document, "", _TOP_KEYS) or {}
        defaults = self.defaults(top.get("defaults"), "defaults")
        probe_endpoint = self.probe_endpoint(top.get("probe_endpoint"), "probe_endpoint")
        targets: list[Target] = []
        first_index: dict[str, int] = {}
        for index, raw in enumerate(self.sequence(top.get("targets"), "targets") or ()):
            path = f"targets[{index}]"
            target = self.target(raw, path, defaults)
            if target is None:
                continue
            if target.name in first_index:
                self.error(
                    _join(path, "name"),
                    f"duplicate target name {target.name!r} (also "
                    f"targets[{first_index[target.name]}]); names identify targets in metrics "
                    "and /probe",
                )
                continue
            first_index[target.name] = index
            targets.append(target)
        return Config(
            targets=tuple(targets),
            defaults=defaults,
            probe_endpoint=probe_endpoint,
            source=source,
        )

    def timings(
        self,
        section: Mapping[str, Any],
        path: str,
        base_intervals: Mapping[str, float],
        base_timeouts: Mapping[str, float],
    ) -> tuple[Mapping[str, float], Mapping[str, float], set[str]]:
        """Intervals and timeouts of a section over their base; the probe kinds
        whose timeout was written here (only those must fit, the rest shrink)."""
        timeout_keys = _probe_kinds_in(section.get("timeouts"))
        intervals = self.durations(
            section.get("intervals"), _join(path, "intervals"), base_intervals
        )
        timeouts = _fit_timeouts(
            intervals,
            self.durations(section.get("timeouts"), _join(path, "timeouts"), base_timeouts),
            timeout_keys,
        )
        return intervals, timeouts, timeout_keys

    def defaults(self, value: object, path: str) -> Defaults:
        builtin = Defaults()
        section = self.mapping(value, path, _DEFAULTS_KEYS)
        if not section:
            return builtin
        errors_before = len(self.errors)
        intervals, timeouts, timeout_keys = self.timings(
            section, path, builtin.intervals, builtin.timeouts
        )
        canaries_here = section.get("canaries") is not None
        if canaries_here:
            self.default_canaries = self.canaries(section["canaries"], _join(path, "canaries"))
        defaults = Defaults(
            intervals=intervals,
            timeouts=timeouts,
            canaries=_fit_canaries(self.default_canaries, timeouts["canary"]),
            expect=self.expectations(section.get("expect"), _join(path, "expect")),
            thresholds=self.thresholds(
                section.get("thresholds"), _join(path, "thresholds"), builtin.thresholds
            ),
            severities=self.severities(
                section.get("severities"), _join(path, "severities"), builtin.severities
            ),
            tls=self.tls(section.get("tls"), _join(path, "tls"), builtin.tls),
        )
        if len(self.errors) != errors_before:
            # Targets inherit from these: checking their timings against broken
            # defaults would only repeat the same problems.
            self.defaults_valid = False
        else:
            self.check_timings(
                path,
                intervals,
                timeouts,
                timeout_keys,
                self.default_canaries,
                canaries_here=canaries_here,
                check_canaries=True,
            )
        return defaults

    def target(self, value: object, path: str, defaults: Defaults) -> Target | None:
        section = self.mapping(value, path, _TARGET_KEYS)
        if section is None:
            return None
        errors_before = len(self.errors)
        # Read in the documented key order, so that errors come in that order.
        name = None
        if "name" in section:
            name = self.name(section["name"], _join(path, "name"), "target name")
            if name is not None and "://" in name:
                self.error(
                    _join(path, "name"),
                    f"target name {_shorten(name)} must not look like a URL "
                    "(/probe?target= takes either a name or a URL)",
                )
                name = None
        url = None
        if section.get("url") is None:
            self.error(
                _join(path, "url"),
                "missing (the sandbox's base URL, e.g. https://sandbox.example.org/)",
            )
        else:
            url = self.url(section["url"], _join(path, "url"))
        if "name" not in section and url is not None:
            name = _name_from_url(url)
        labels = self.labels(section.get("labels"), _join(path, "labels"))
        auth = self.auth(section.get("auth"), _join(path, "auth"))
        tls = self.tls(section.get("tls"), _join(path, "tls"), defaults.tls)
        interval_keys = _probe_kinds_in(section.get("intervals"))
        intervals, timeouts, timeout_keys = self.timings(
            section, path, defaults.intervals, defaults.timeouts
        )
        canaries_here = section.get("canaries") is not None
        canary_entries = self.default_canaries
        if canaries_here:
            canary_entries = self.canaries(section["canaries"], _join(path, "canaries"))
        expect = defaults.expect
        if section.get("expect") is not None:
            expect = self.expectations(section["expect"], _join(path, "expect"))
        thresholds = self.thresholds(
            section.get("thresholds"), _join(path, "thresholds"), defaults.thresholds
        )
        severities = self.severities(
            section.get("severities"), _join(path, "severities"), defaults.severities
        )
        if len(self.errors) != errors_before or name is None or url is None:
            return None
        if self.defaults_valid:
            self.check_timings(
                path,
                intervals,
                timeouts,
                timeout_keys,
                canary_entries,
                canaries_here=canaries_here,
                # Otherwise the canary settings are the defaults', checked there.
                check_canaries=canaries_here or "canary" in timeout_keys | interval_keys,
            )
        return Target(
            name=name,
            url=url,
            labels=labels,
            auth=auth,
            tls=tls,
            intervals=intervals,
            timeouts=timeouts,
            canaries=_fit_canaries(canary_entries, timeouts["canary"]),
            expect=expect,
            thresholds=thresholds,
            severities=severities,
        )

    def check_timings(
        self,
        path: str,
        intervals: Mapping[str, float],
        timeouts: Mapping[str, float],
        timeout_keys: set[str],
        canary_entries: Sequence[_CanaryEntry],
        *,
        canaries_here: bool,
        check_canaries: bool,
    ) -> None:
        """Report the timeouts written in this section that cannot be honoured.

        A timeout longer than its interval would let probes of one kind pile
        up on a server that is already slow: an error rather than a warning,
        since the fix is one edit and the failure mode is load on production.
        Timeouts nobody wrote shrink to fit instead (see _fit_timeouts).
        """
        for kind in PROBES:
            if kind in timeout_keys and timeouts[kind] > intervals[kind]:
                self.error(
                    f"{path}.timeouts.{kind}",
                    f"the {kind} timeout ({format_duration(timeouts[kind])}) is longer than its "
                    f"interval ({format_duration(intervals[kind])}): a probe must end before the "
                    f"next one is due; lower timeouts.{kind} or raise intervals.{kind}",
                )
        if not check_canaries:
            return
        # Canaries run one after another (one container at a time), so the
        # time promised to each must add up within the canary probe's deadline.
        promised = [(index, entry) for index, entry in enumerate(canary_entries) if entry.promised]
        total = sum(entry.promised for _, entry in promised)
        deadline = timeouts["canary"]
        if total <= deadline:
            return
        limit = (
            f"more than the whole canary probe may take ({format_duration(deadline)}: "
            "timeouts.canary, which never exceeds intervals.canary)"
        )
        if len(promised) == 1:
            index, entry = promised[0]
            what = "timeout" if entry.explicit_timeout else "commands"
            where = f"canaries[{index}].{what}"
            reason = "its timeout" if entry.explicit_timeout else "its longest command timeout"
            problem = (
                f"canary {entry.canary.name!r} may take {format_duration(total)} ({reason}), "
                f"{limit}"
            )
        else:
            where = "canaries"
            each = ", ".join(
                f"{entry.canary.name} {format_duration(entry.promised)}" for _, entry in promised
            )
            problem = (
                f"the canaries may take {format_duration(total)} one after another ({each}), "
                f"{limit}; raise timeouts.canary or lower their timeouts"
            )
        if not canaries_here:
            where = "timeouts.canary" if "canary" in timeout_keys else "intervals.canary"
        self.error(f"{path}.{where}", problem)

    def durations(self, value: object, path: str, base: Mapping[str, float]) -> Mapping[str, float]:
        section = self.mapping(value, path, PROBES)
        if not section:
            return base
        merged = dict(base)
        for kind, raw in section.items():
            seconds = self.duration(raw, _join(path, kind))
            if seconds is not None:
                merged[kind] = seconds
        return FrozenDict(merged)

    def url(self, value: object, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        text = text.strip()
        if any(char.isspace() for char in text) or _has_control_characters(text):
            self.error(path, "must not contain spaces or control characters")
            return None
        try:
            parts = urlsplit(text)
            netloc_has_credentials = "@" in parts.netloc
        except ValueError as error:
            self.error(path, f"not a valid URL ({error})")
            return None
        if netloc_has_credentials:
            # Never echo this URL: it holds a password.
            self.error(
                path,
                "must not contain credentials (user:password@): they would show in labels "
                "and logs; use auth.username with auth.password_file or auth.password_env",
            )
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            suggestion = "" if parts.scheme else f" (did you mean 'https://{text}'?)"
            self.error(path, f"{_shorten(text)} must start with http:// or https://{suggestion}")
            return None
        try:
            port = parts.port
        except ValueError:
            self.error(path, f"{_shorten(text)} has an invalid port")
            return None
        if not parts.hostname:
            self.error(path, f"{_shorten(text)} has no host name")
            return None
        if port == 0:
            self.error(path, f"{_shorten(text)} has an invalid port")
            return None
        if parts.query or parts.fragment or text.endswith(("?", "#")):
            self.error(path, f"{_shorten(text)} must not have a query string or fragment")
            return None
        base_path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return urlunsplit((scheme, parts.netloc, base_path, "", ""))

    def labels(self, value: object, path: str) -> Mapping[str, str]:
        section = self.mapping(value, path, None)
        if not section:
            return FrozenDict()
        labels = {}
        for label, raw in section.items():
            label_path = _join(path, label)
            if not _LABEL_NAME.fullmatch(label):
                self.error(
                    label_path,
                    "invalid label name: use letters, digits and underscores, "
                    "not starting with a digit",
                )
            elif label.startswith("__"):
                self.error(label_path, "label names starting with '__' are reserved by Prometheus")
            elif label in RESERVED_LABEL_NAMES:
                self.error(
                    label_path,
                    f"{label!r} is reserved (reserved: {', '.join(RESERVED_LABEL_NAMES)})",
                )
            else:
                text = self.string(raw, label_path, allow_empty=True)
                if text is not None:
                    labels[label] = text
        return FrozenDict(labels)

    def auth(self, value: object, path: str) -> Auth:
        section = self.mapping(value, path, _AUTH_KEYS, rejected=_REJECTED_AUTH_KEYS)
        if not section:
            return Auth()
        username = None
        if section.get("username") is not None:
            username = self.string(section["username"], _join(path, "username"))
            if username is not None and (":" in username or _has_control_characters(username)):
                self.error(
                    _join(path, "username"),
                    "must not contain ':' or control characters (HTTP basic authentication)",
                )
                username = None
        password = self.secret(section, path, "password")
        bearer_token = self.secret(section, path, "bearer_token")
        has_password = any(section.get(k) is not None for k in ("password_file", "password_env"))
        has_token = any(
            section.get(k) is not None for k in ("bearer_token_file", "bearer_token_env")
        )
        if isinstance(value, dict) and any(key in value for key in _REJECTED_AUTH_KEYS):
            pass  # already reported; pairing advice would only add noise
        elif has_password and has_token:
            self.error(
                path, "set either a password (basic authentication) or a bearer token, not both"
            )
        elif has_password and section.get("username") is None:
            self.error(_join(path, "username"), "missing: a password needs a username")
        elif section.get("username") is not None and not has_password:
            self.error(
                _join(path, "password_file"),
                "missing: a username needs a password (password_file or password_env)",
            )
        return Auth(
            username=username,
            password=password,
            bearer_token=bearer_token,
            headers=self.headers(section.get("headers"), _join(path, "headers")),
        )

    def secret(self, section: Mapping[str, Any], path: str, stem: str) -> Secret | None:
        file_key, env_key = f"{stem}_file", f"{stem}_env"
        from_file, from_env = section.get(file_key), section.get(env_key)
        if from_file is not None and from_env is not None:
            self.error(_join(path, file_key), f"set either {file_key} or {env_key}, not both")
            return None
        if from_file is not None:
            return self.secret_from_file(from_file, _join(path, file_key))
        if from_env is not None:
            return self.secret_from_environment(from_env, _join(path, env_key))
        for key in (file_key, env_key):
            if key in section:
                self.error(_join(path, key), "missing value")
        return None

    def secret_from_file(self, value: object, path: str) -> Secret | None:
        file_path = self.file_path(value, path, show=False)
        if file_path is None:
            return None
        try:
            with open(file_path, "rb") as handle:
                data = handle.read(_MAX_SECRET_FILE_BYTES + 1)
        except OSError as error:
            self.error(path, f"cannot read {file_path!r}: {error.strerror or type(error).__name__}")
            return None
        if len(data) > _MAX_SECRET_FILE_BYTES:
            self.error(path, f"{file_path!r} is larger than 64 KiB: not a password or token file")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.error(path, f"{file_path!r} is not UTF-8 text")
            return None
        return self.checked_secret(text.rstrip("\r\n"), path, f"file {file_path}", repr(file_path))

    def secret_from_environment(self, value: object, path: str) -> Secret | None:
        name = self.string(value, path)
        if name is None:
            return None
        if not _ENV_NAME.fullmatch(name):
            self.error(path, f"{_shorten(name)} is not an environment variable name")
            return None
        text = self.environ.get(name)
        if text is None:
            self.error(path, f"environment variable {name!r} is not set")
            return None
        return self.checked_secret(
            text, path, f"environment variable {name}", f"environment variable {name!r}"
        )

    def checked_secret(self, text: str, path: str, origin: str, shown: str) -> Secret | None:
        # Messages name where the secret came from, never what it is.
        if not text:
            self.error(path, f"{shown} is empty")
            return None
        if _has_control_characters(text):
            self.error(path, f"{shown} holds line breaks or control characters (one line expected)")
            return None
        return Secret(text, origin)

    def headers(self, value: object, path: str) -> Mapping[str, str]:
        section = self.mapping(value, path, None)
        if not section:
            return FrozenDict()
        headers: dict[str, str] = {}
        for header, raw in section.items():
            header_path = _join(path, header)
            if not _HEADER_NAME.fullmatch(header):
                self.error(header_path, "invalid HTTP header name")
            elif header.lower() in _CREDENTIAL_HEADERS:
                self.error(
                    header_path,
                    "credentials cannot be set as a header: use auth.bearer_token_file "
                    "(or auth.username with auth.password_file)",
                )
            elif header.lower() in (h.lower() for h in headers):
                self.error(header_path, "set twice (header names are case-insensitive)")
            else:
                # Header values may be keys of some sort: never echo them.
                text = self.string(raw, header_path, show=False, allow_empty=True)
                if text is not None and _has_control_characters(text):
                    self.error(header_path, "must not contain line breaks or control characters")
                elif text is not None:
                    headers[header] = text
        return FrozenDict(headers)

    def tls(self, value: object, path: str, base: TLS) -> TLS:
        section = self.mapping(value, path, _TLS_KEYS)
        if not section:
            return base
        ca_file = base.ca_file
        if "ca_file" in section:
            ca_file = None
            if section["ca_file"] is not None:
                ca_file = self.file_path(section["ca_file"], _join(path, "ca_file"))
                if ca_file is not None and (
                    not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK)
                ):
                    self.error(_join(path, "ca_file"), f"{ca_file!r} is not a readable file")
        insecure = base.insecure_skip_verify
        if "insecure_skip_verify" in section:
            checked = self.boolean(
                section["insecure_skip_verify"], _join(path, "insecure_skip_verify")
            )
            insecure = insecure if checked is None else checked
        return TLS(ca_file=ca_file, insecure_skip_verify=insecure)

    def canaries(self, value: object, path: str) -> tuple[_CanaryEntry, ...]:
        items = self.sequence(value, path)
        if items is None:
            return ()
        canaries: list[_CanaryEntry] = []
        first_index: dict[str, int] = {}
        for index, raw in enumerate(items):
            entry = self.canary(raw, f"{path}[{index}]")
            if entry is None:
                continue
            canary = entry.canary
            if canary.name in first_index:
                self.error(
                    f"{path}[{index}].name",
                    f"duplicate canary name {canary.name!r} "
                    f"(also {path}[{first_index[canary.name]}])",
                )
                continue
            first_index[canary.name] = index
            canaries.append(entry)
        return tuple(canaries)

    def canary(self, value: object, path: str) -> _CanaryEntry | None:
        section = self.mapping(value, path, _CANARY_KEYS, rejected=_REJECTED_CANARY_KEYS)
        if section is None:
            return None
        errors_before = len(self.errors)
        name = None
        if section.get("name") is None:
            self.error(_join(path, "name"), "missing (canaries are told apart by name in metrics)")
        else:
            name = self.name(section["name"], _join(path, "name"), "canary name")
        explicit_timeout = "timeout" in section
        timeout = DEFAULT_CANARY_TIMEOUT
        if explicit_timeout:
            timeout = self.duration(section["timeout"], _join(path, "timeout")) or timeout
        commands = self.commands(
            section.get("commands"), _join(path, "commands"), timeout if explicit_timeout else None
        )

        expect_stdout = None
        if section.get("expect_stdout") is not None:
            text = self.string(
                section["expect_stdout"], _join(path, "expect_stdout"), allow_empty=True
            )
            expect_stdout = text.strip() if text is not None else None
        expect_stdout_regex = None
        if section.get("expect_stdout_regex") is not None:
            expect_stdout_regex = self.regex(
                section["expect_stdout_regex"], _join(path, "expect_stdout_regex")
            )
        expect_status = 0
        if "expect_status" in section:
            raw_status = section["expect_status"]
            if isinstance(raw_status, bool) or not isinstance(raw_status, int):
                self.error(
                    _join(path, "expect_status"),
                    f"expected an integer, got {_describe(raw_status)}",
                )
            elif raw_status not in _EXPECT_STATUS_RANGE:
                self.error(
                    _join(path, "expect_status"),
                    f"{_describe(raw_status)} is not a possible status "
                    "(exit codes 0..255, sandbox errors -1..-4)",
                )
            else:
                expect_status = raw_status
        if len(self.errors) != errors_before or name is None:
            return None
        canary = Canary(
            name=name,
            commands=commands,
            expect_stdout=expect_stdout,
            expect_stdout_regex=expect_stdout_regex,
            expect_status=expect_status,
            timeout=timeout,
        )
        return _CanaryEntry(canary, explicit_timeout)

    def commands(
        self, value: object, path: str, canary_timeout: float | None
    ) -> tuple[str | Mapping[str, Any], ...]:
        if value is None:
            self.error(path, "missing (a list of bash commands)")
            return ()
        items = self.sequence(value, path)
        if items is None:
            return ()
        if not items:
            self.error(path, "must list at least one command")
            return ()
        commands: list[str | Mapping[str, Any]] = []
        for index, raw in enumerate(items):
            item_path = f"{path}[{index}]"
            if isinstance(raw, dict):
                section = self.mapping(raw, item_path, _COMMAND_KEYS)
                if section is None:
                    continue
                if section.get("command") is None:
                    self.error(_join(item_path, "command"), "missing (the bash command to run)")
                    continue
                command = self.string(section["command"], _join(item_path, "command"))
                if command is None:
                    continue
                if section.get("timeout") is None:
                    if "timeout" in section:
                        self.error(_join(item_path, "timeout"), "missing value")
                    commands.append(command)
                    continue
                seconds = self.duration(section["timeout"], _join(item_path, "timeout"))
                if seconds is None:
                    continue
                if canary_timeout is not None and seconds > canary_timeout:
                    self.error(
                        _join(item_path, "timeout"),
                        f"{format_duration(seconds)} is longer than the canary's own timeout "
                        f"({format_duration(canary_timeout)}): the exporter would give up first",
                    )
                    continue
                # The server accepts int or float; send whole seconds as integers.
                number: int | float = int(seconds) if seconds.is_integer() else seconds
                commands.append(FrozenDict(command=command, timeout=number))
            elif isinstance(raw, str) and raw.strip():
                commands.append(raw)
            elif isinstance(raw, str):
                self.error(item_path, "empty command")
            else:
                self.error(
                    item_path,
                    f"expected a command string or a mapping {{command, timeout}}, "
                    f"got {_describe(raw)}{_quote_hint(raw)}",
                )
        return tuple(commands)

    def regex(self, value: object, path: str) -> re.Pattern[str] | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as error:
            position = f" at position {error.pos}" if error.pos is not None else ""
            self.error(path, f"invalid regular expression {_shorten(text)}: {error.msg}{position}")
        except (OverflowError, RecursionError):
            self.error(path, f"invalid regular expression {_shorten(text)}: too large or too deep")
        return None

    def expectations(self, value: object, path: str) -> Expectations:
        section = self.mapping(value, path, _EXPECT_KEYS)
        if not section:
            return Expectations()
        languages: dict[str, Matcher] = {}
        languages_path = _join(path, "languages")
        known_names = (*LANGUAGES, *LANGUAGE_ALIASES)
        for language, spec in (
            self.mapping(section.get("languages"), languages_path, None) or {}
        ).items():
            canonical = LANGUAGE_ALIASES.get(language, language)
            if canonical not in LANGUAGES:
                self.unknown_key(languages_path, language, known_names, what="language")
            elif canonical in languages:
                self.error(_join(languages_path, language), f"{canonical!r} is expected twice")
            else:
                matcher = self.matcher(spec, _join(languages_path, language))
                if matcher is not None:
                    languages[canonical] = matcher
        packages: dict[str, Mapping[str, Matcher]] = {}
        packages_path = _join(path, "packages")
        for kind, raw in (
            self.mapping(section.get("packages"), packages_path, PACKAGE_KINDS) or {}
        ).items():
            kind_path = _join(packages_path, kind)
            of_kind: dict[str, Matcher] = {}
            for package, spec in (self.mapping(raw, kind_path, None) or {}).items():
                if not package.strip():
                    self.error(kind_path, "package names must not be empty")
                    continue
                matcher = self.matcher(spec, _join(kind_path, package))
                if matcher is not None:
                    of_kind[package] = matcher
            packages[kind] = FrozenDict(of_kind)
        bin_names: list[str] = []
        bin_path = _join(path, "bin")
        for index, raw in enumerate(self.sequence(section.get("bin"), bin_path) or ()):
            name = self.string(raw, f"{bin_path}[{index}]")
            if name is None:
                continue
            if name in bin_names:
                self.error(f"{bin_path}[{index}]", f"{name!r} is listed twice")
                continue
            bin_names.append(name)
        return Expectations(
            languages=FrozenDict(languages), packages=FrozenDict(packages), bin=tuple(bin_names)
        )

    def matcher(self, value: object, path: str) -> Matcher | None:
        if value is not None and not isinstance(value, str):
            self.error(
                path,
                f"expected a version spec such as '>=3.8', '3.8.*' or 'present', "
                f"got {_describe(value)}{_quote_hint(value)}",
            )
            return None
        try:
            return Matcher(value)
        except ValueError as error:
            self.error(path, str(error))
            return None

    def thresholds(self, value: object, path: str, base: Thresholds) -> Thresholds:
        section = self.mapping(value, path, _THRESHOLD_KEYS)
        if not section:
            return base
        errors_before = len(self.errors)
        warning = base.load_warning
        if "load_warning" in section:
            warning = self.ratio(section["load_warning"], _join(path, "load_warning"))
        critical = base.load_critical
        if "load_critical" in section:
            critical = None
            if section["load_critical"] is not None:
                critical = self.ratio(section["load_critical"], _join(path, "load_critical"))
        if len(self.errors) != errors_before or warning is None:
            return base
        if critical is not None and critical < warning:
            where = "load_critical" if "load_critical" in section else "load_warning"
            self.error(
                f"{path}.{where}",
                f"load_critical ({critical:g}) must not be below load_warning ({warning:g})",
            )
        return Thresholds(load_warning=warning, load_critical=critical)

    def ratio(self, value: object, path: str) -> float | None:
        number = self.number(value, path)
        if number is None:
            return None
        if not 0 <= number <= 1:
            hint = f" ({number:g}% is {number / 100:g})" if 1 < number <= 100 else ""
            self.error(path, f"must be a ratio between 0 and 1{hint}")
            return None
        return number

    def severities(self, value: object, path: str, base: Severities) -> Severities:
        section = self.mapping(value, path, _SEVERITY_KEYS)
        if not section:
            return base
        chosen = {key: getattr(base, key) for key in _SEVERITY_KEYS}
        for key, raw in section.items():
            if raw not in SEVERITY_LEVELS:
                self.error(
                    _join(path, key),
                    f"expected one of: {', '.join(SEVERITY_LEVELS)}; got {_describe(raw)}",
                )
            else:
                chosen[key] = raw
        return Severities(**chosen)

    def probe_endpoint(self, value: object, path: str) -> ProbeEndpoint:
        section = self.mapping(value, path, _PROBE_ENDPOINT_KEYS)
        if not section:
            return ProbeEndpoint()
        allow = False
        if "allow_unlisted_targets" in section:
            allow = bool(
                self.boolean(
                    section["allow_unlisted_targets"], _join(path, "allow_unlisted_targets")
                )
            )
        patterns: list[re.Pattern[str]] = []
        urls_path = _join(path, "allowed_urls")
        for index, raw in enumerate(self.sequence(section.get("allowed_urls"), urls_path) or ()):
            pattern = self.regex(raw, f"{urls_path}[{index}]")
            if pattern is not None:
                patterns.append(pattern)
        if allow and not section.get("allowed_urls"):
            self.error(
                urls_path,
                "required when allow_unlisted_targets is true: list regular expressions "
                "that a whole URL must match, e.g. 'https://sandbox-[0-9]+\\.example\\.org/'",
            )
        return ProbeEndpoint(allow_unlisted_targets=allow, allowed_urls=tuple(patterns))
