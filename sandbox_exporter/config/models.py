"""The configuration file as types: a :class:`Config` of :class:`Target` s and their
:class:`Defaults`; the sections they share live in :mod:`.section`, :mod:`.canary`
and :mod:`.connection`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, GetPydanticSchema, PrivateAttr, model_validator
from pydantic_core import core_schema

from ..expectations import Expectations, FrozenDict
from ..vocabulary import LANGUAGE_ALIASES, LANGUAGES, PACKAGE_KINDS
from .canary import DEFAULT_CANARY, Canaries
from .connection import TLS, Auth
from .errors import problem
from .fields import FrozenMapping, Items, LabelName, NonBlank, Ratio, Regex, Url, Version, name_of
from .section import (
    DEFAULT_INTERVALS,
    DEFAULT_TIMEOUTS,
    Intervals,
    Section,
    Timeouts,
    no_default,
)

SEVERITY_LEVELS = ("warning", "critical")


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


TargetName = name_of("target name", url_like=False)


class Target(Probing):
    """One sandbox server to watch.

    ``url`` always ends with ``/`` and never holds credentials. ``intervals``
    and ``timeouts`` map every probe kind to seconds. An empty ``canaries``
    means the target runs no canary probe.
    """

    name: TargetName = Field("", json_schema_extra=no_default)  # type: ignore[valid-type]
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
