"""Version expectations: what a sandbox is expected to have installed.

A :class:`Matcher` is parsed from a short spec string:

* presence: ``None`` (an empty YAML value), ``""``, ``"present"`` or ``"*"``;
  met by any reported version, even ``"?"``;
* exact: ``"3.7.3"``;
* glob (:mod:`fnmatch`): ``"3.8.*"``, ``"8.?"``;
* comparison: ``">=3.8"``, ``"<12"``, ``">3"``, ``"<=5"``, ``"==3.7"``, ``"!=3.8.1"``;
* several conditions joined by commas, all of which must hold: ``">=3.8,<4"``.

Servers report versions in whatever shape the packaging tool prints them:
``"3.7.3"``, dpkg's ``"1:2.20.1-2+deb10u3"`` (epoch ``1:``, Debian revision and
security suffix), ``"openjdk 11.0.7"``. The *version number* of such a string is
its first run of dot-separated decimal numbers once a leading dpkg epoch is
dropped: ``"1:2.20.1-2+deb10u3"`` -> ``2.20.1``, ``"openjdk 11.0.7"`` -> ``11.0.7``,
``"3.8.0rc1"`` -> ``3.8.0``. Consequences, chosen so that a spec reads the way a
person means it:

* comparisons use only the version number, missing components count as zero
  (``3.8 == 3.8.0``), and everything else (revision, ``+deb10u3``, pre-release
  tags, the epoch) is ignored; a version without any number never satisfies a
  comparison;
* exact and glob specs match the reported string as is, or without its epoch,
  or its version number: ``"3.7.3"`` matches ``"3.7.3-1"`` and
  ``"openjdk 11.0.7"``, ``"3.7"`` does not match ``"3.7.3"`` (write ``"3.7.*"``).

This module depends on nothing else in the package: ``config`` builds
:class:`Expectations` from YAML, ``probes`` calls :func:`check_expectations`.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .vocabulary import LANGUAGE_ALIASES

__all__ = [
    "ExpectationOutcome",
    "Expectations",
    "FrozenDict",
    "Matcher",
    "check_expectations",
    "version_number",
]


PRESENT = "present"
_PRESENCE_SPECS = ("", PRESENT, "*")


class FrozenDict(dict):
    """A dict that refuses changes, so frozen dataclasses stay frozen all the way down.

    It stays a real ``dict`` (not a ``MappingProxyType``) so that ``json.dumps``
    accepts it: canary commands are sent to the server as they are.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is immutable")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The default dict-subclass pickling refills the object item by item,
        # which __setitem__ refuses.
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenDict:
        return self


_EPOCH = re.compile(r"^\s*\d+:")
_NUMBER_RUN = re.compile(r"\d+(?:\.\d+)*")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
# Longest first, so that ">=" is not read as ">" followed by "=3.8".
_OPERATOR_PATTERN = re.compile(r"(>=|<=|==|!=|>|<)")
_OPERATOR_LIKE = re.compile(r"^[=<>!~^]")
_GLOB_CHARACTERS = re.compile(r"[*?\[]")


def version_number(version: str) -> tuple[int, ...] | None:
    """The first run of dotted numbers of ``version``, its dpkg epoch dropped.

    ``"1:2.20.1-2+deb10u3"`` -> ``(2, 20, 1)``; ``"openjdk 11.0.7"`` -> ``(11, 0, 7)``;
    ``"?"`` -> ``None``.
    """
    found = _NUMBER_RUN.search(_EPOCH.sub("", version, count=1))
    if found is None:
        return None
    try:
        return tuple(int(part) for part in found.group().split("."))
    except ValueError:  # more digits than int() accepts: not a version anyone uses
        return None


def _padded(left: tuple[int, ...], right: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    width = max(len(left), len(right))
    return (left + (0,) * (width - len(left)), right + (0,) * (width - len(right)))


def _candidates(version: str) -> tuple[str, ...]:
    """The spellings of ``version`` an exact or glob spec may match."""
    stripped = version.strip()
    without_epoch = _EPOCH.sub("", stripped, count=1)
    found = _NUMBER_RUN.search(without_epoch)
    number = found.group() if found else None
    return tuple(dict.fromkeys(s for s in (stripped, without_epoch, number) if s))


@dataclass(frozen=True)
class _Comparison:
    operator: str
    number: tuple[int, ...]

    def matches(self, version: str) -> bool:
        found = version_number(version)
        if found is None:
            return False
        left, right = _padded(found, self.number)
        return _OPERATORS[self.operator](left, right)

    def __str__(self) -> str:
        return self.operator + ".".join(str(part) for part in self.number)


@dataclass(frozen=True)
class _Glob:
    pattern: str

    def matches(self, version: str) -> bool:
        return any(fnmatch.fnmatchcase(c, self.pattern) for c in _candidates(version))

    def __str__(self) -> str:
        return self.pattern


@dataclass(frozen=True)
class _Exact:
    text: str

    def matches(self, version: str) -> bool:
        return self.text in _candidates(version)

    def __str__(self) -> str:
        return self.text


_Clause = _Comparison | _Glob | _Exact


def _shown(spec: str, limit: int = 60) -> str:
    """A spec as quoted in messages, cut short when absurdly long."""
    return repr(spec if len(spec) <= limit else spec[:limit] + "...")


def _parse_clause(clause: str, spec: str) -> _Clause:
    if not clause:
        raise ValueError(f"invalid version spec {_shown(spec)}: empty condition between commas")
    if clause in (PRESENT, "*"):
        raise ValueError(
            f"invalid version spec {_shown(spec)}: {clause!r} means 'any version' and "
            "cannot be combined with other conditions"
        )
    operator_match = _OPERATOR_PATTERN.match(clause)
    if operator_match is not None:
        symbol = operator_match.group()
        operand = clause[operator_match.end() :].strip()
        if not operand:
            raise ValueError(
                f"invalid version spec {_shown(spec)}: missing version after {symbol!r} "
                f"(e.g. '{symbol}3.8')"
            )
        if not _NUMBER_RUN.fullmatch(operand):
            raise ValueError(
                f"invalid version spec {_shown(spec)}: {_shown(operand)} after {symbol!r} must be "
                f"numbers separated by dots (e.g. '{symbol}3.8'); use a glob such as "
                "'3.8.*' for patterns"
            )
        try:
            number = tuple(int(part) for part in operand.split("."))
        except ValueError:
            raise ValueError(f"invalid version spec {_shown(spec)}: version too long") from None
        return _Comparison(symbol, number)
    if _OPERATOR_LIKE.match(clause):
        raise ValueError(
            f"invalid version spec {_shown(spec)}: unknown operator in {_shown(clause)} "
            "(use >=, <=, ==, !=, > or <)"
        )
    if _GLOB_CHARACTERS.search(clause):
        return _Glob(clause)
    return _Exact(clause)


@dataclass(frozen=True)
class Matcher:
    """A parsed version spec; ``str(matcher)`` gives the (normalised) spec back.

    ``Matcher("3.8.*")`` parses and raises :class:`ValueError` with a message
    naming the spec when it is not valid. ``None`` and ``""`` mean presence and
    read back as ``"present"``.
    """

    spec: str | None
    _clauses: tuple[_Clause, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.spec is not None and not isinstance(self.spec, str):
            raise ValueError(
                f"invalid version spec {self.spec!r}: expected a string such as '>=3.8' or '3.8.*'"
            )
        text = (self.spec or "").strip()
        if text in _PRESENCE_SPECS:
            clauses: tuple[_Clause, ...] = ()
            normalised = PRESENT
        else:
            clauses = tuple(_parse_clause(part.strip(), text) for part in text.split(","))
            normalised = ",".join(str(clause) for clause in clauses)
        object.__setattr__(self, "spec", normalised)
        object.__setattr__(self, "_clauses", clauses)

    def matches(self, version: str | None) -> bool:
        """Whether a reported ``version`` (``None``: not installed) satisfies the spec."""
        if version is None:
            return False
        return all(clause.matches(version) for clause in self._clauses)

    def __str__(self) -> str:
        return str(self.spec)


@dataclass(frozen=True)
class Expectations:
    """What a target is expected to provide.

    ``languages``: language name (one of :data:`LANGUAGES`) -> matcher;
    ``packages``: kind (one of :data:`PACKAGE_KINDS`) -> package name -> matcher;
    ``bin``: executables expected on the ``PATH`` of a container.
    """

    languages: Mapping[str, Matcher] = field(default_factory=FrozenDict)
    packages: Mapping[str, Mapping[str, Matcher]] = field(default_factory=FrozenDict)
    bin: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation checked against what the server reported.

    ``kind`` is one of "language", a package kind or "bin"; ``expected`` is the spec as
    written (``"present"`` for bin); ``found`` is the reported version
    (``"present"`` for a bin found), ``None`` when the server did not list it.
    """

    kind: str
    name: str
    expected: str
    found: str | None
    met: bool


def _python_project_key(name: str) -> str:
    # pip freeze prints "Jinja2"; people write "jinja2" or "jinja_2": compare the
    # way pip does (PEP 503 normalisation).
    return re.sub(r"[-_.]+", "-", name).lower()


def _lookup_package(
    kind: str, name: str, matcher: Matcher, listed: Mapping[str, str]
) -> str | None:
    """The reported version of ``name`` among ``listed`` packages of ``kind``."""
    if name in listed:
        return listed[name]
    if kind == "python":
        wanted = _python_project_key(name)
        for listed_name, version in listed.items():
            if _python_project_key(listed_name) == wanted:
                return version
        return None
    if kind == "system" and ":" not in name:
        # dpkg qualifies multi-arch packages ("libc6:amd64"); an expectation on
        # "libc6" is about whichever architecture is installed. When several are,
        # prefer one that meets the expectation.
        versions = [
            listed[listed_name]
            for listed_name in sorted(listed)
            if listed_name.partition(":")[0] == name
        ]
        for version in versions:
            if matcher.matches(version):
                return version
        return versions[0] if versions else None
    return None


def check_expectations(
    expect: Expectations,
    languages: Mapping[str, str | None],
    packages: Mapping[str, Mapping[str, str]],
    bin: Iterable[str],
) -> list[ExpectationOutcome]:
    """Check every expectation against a libraries report.

    Outcomes come in a stable order: languages, then packages kind by kind,
    then bin, each in the order of the configuration.
    """
    outcomes: list[ExpectationOutcome] = []
    for name, matcher in expect.languages.items():
        found = languages.get(name)
        if found is None:
            for alias, canonical in LANGUAGE_ALIASES.items():
                if canonical == name:
                    found = languages.get(alias)
        outcomes.append(
            ExpectationOutcome("language", name, str(matcher), found, matcher.matches(found))
        )
    for kind, expected_packages in expect.packages.items():
        listed = packages.get(kind) or {}
        for name, matcher in expected_packages.items():
            found = _lookup_package(kind, name, matcher, listed)
            outcomes.append(
                ExpectationOutcome(kind, name, str(matcher), found, matcher.matches(found))
            )
    available = set(bin)
    for name in expect.bin:
        present = name in available
        outcomes.append(
            ExpectationOutcome("bin", name, PRESENT, PRESENT if present else None, present)
        )
    return outcomes
