"""Version expectations: what a sandbox is expected to have installed.

A :class:`Matcher` is parsed from a spec (``config/example.yml`` shows them
to users): presence (``None``, ``""``, ``"present"``, ``"*"``: any version,
even ``"?"``), exact (``"3.7.3"``), glob (``"3.8.*"``), comparison
(``">=3.8"``, ``"!=3.8.1"``...), or conditions joined by commas, all of which
must hold. Servers report versions as the packaging tool prints them
(``"1:2.20.1-2+deb10u3"``, ``"openjdk 11.0.7"``); their *version number* is the
first run of dotted numbers once a dpkg epoch is dropped (``2.20.1``,
``11.0.7``). Comparisons use that number only, zero-padded (``3.8 == 3.8.0``);
exact and glob specs match the string, the string without its epoch, or that
number, so ``"3.7.3"`` matches ``"3.7.3-1"`` but ``"3.7"`` does not (``"3.7.*"``).
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from .vocabulary import LANGUAGE_ALIASES

PRESENT = "present"


class FrozenDict(dict):
    """A dict that refuses changes, so that frozen objects stay frozen (and
    hashable) all the way down; still a ``dict`` for ``json.dumps`` and pydantic."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is immutable")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # The default dict-subclass pickling (and copying) refills the object
        # item by item, which __setitem__ refuses.
        return (type(self), (dict(self),))


_EPOCH = re.compile(r"^\s*\d+:")
_NUMBER_RUN = re.compile(r"\d+(?:\.\d+)*")
# Longest first, so that ">=" is not read as ">" followed by "=3.8".
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


def version_number(version: str) -> tuple[int, ...] | None:
    """The first run of dotted numbers of ``version``, its dpkg epoch dropped:
    ``"1:2.20.1-2+deb10u3"`` -> ``(2, 20, 1)``; ``"?"`` -> ``None``."""
    found = _NUMBER_RUN.search(_EPOCH.sub("", version, count=1))
    try:
        return tuple(int(part) for part in found.group().split(".")) if found else None
    except ValueError:  # more digits than int() accepts: not a version anyone uses
        return None


#: One condition of a spec: an operator and a version number, or ("", an exact or glob text).
_Clause = tuple[str, Any]


def _matches(clause: _Clause, version: str) -> bool:
    symbol, operand = clause
    if not symbol:
        # An exact text is a glob without wildcards.
        stripped = version.strip()
        without_epoch = _EPOCH.sub("", stripped, count=1)
        number = _NUMBER_RUN.search(without_epoch)
        candidates = (stripped, without_epoch, number.group() if number else "")
        return any(fnmatch.fnmatchcase(c, operand) for c in candidates if c)
    found = version_number(version)
    if found is None:
        return False
    width = max(len(found), len(operand))
    pad = (0,) * width
    return _OPERATORS[symbol]((found + pad)[:width], (operand + pad)[:width])


def _parse_clause(clause: str, spec: str) -> _Clause:
    invalid = f"invalid version spec {spec if len(spec) <= 60 else spec[:60] + '...'!r}"
    if not clause:
        raise ValueError(f"{invalid}: empty condition between commas")
    if clause in (PRESENT, "*"):
        raise ValueError(f"{invalid}: {clause!r} (any version) cannot be combined with others")
    symbol = next((s for s in _OPERATORS if clause.startswith(s)), "")
    operand = clause[len(symbol) :].strip()
    if symbol and not operand:
        raise ValueError(f"{invalid}: missing version after {symbol!r} (e.g. '{symbol}3.8')")
    if symbol and not _NUMBER_RUN.fullmatch(operand):
        raise ValueError(
            f"{invalid}: {operand[:60]!r} after {symbol!r} must be numbers separated by dots "
            f"(e.g. '{symbol}3.8'); use a glob such as '3.8.*' for patterns"
        )
    if symbol:
        number = version_number(operand)
        if number is None:
            raise ValueError(f"{invalid}: version too long")
        return symbol, number
    if clause[0] in "=<>!~^":
        raise ValueError(
            f"{invalid}: unknown operator in {clause[:60]!r} (use >=, <=, ==, !=, > or <)"
        )
    return "", clause


@dataclass(frozen=True)
class Matcher:
    """A parsed version spec (:class:`ValueError` naming it if invalid);
    ``str(matcher)`` gives it back normalised, presence as ``"present"``."""

    spec: str | None
    _clauses: tuple[_Clause, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = (self.spec or "").strip()
        clauses: tuple[_Clause, ...] = ()
        if text not in ("", PRESENT, "*"):
            clauses = tuple(_parse_clause(part.strip(), text) for part in text.split(","))
        written = [s + (".".join(map(str, o)) if s else o) for s, o in clauses]
        object.__setattr__(self, "spec", ",".join(written) or PRESENT)
        object.__setattr__(self, "_clauses", clauses)

    def matches(self, version: str | None) -> bool:
        """Whether a reported ``version`` (``None``: not installed) satisfies the spec."""
        return version is not None and all(_matches(c, version) for c in self._clauses)

    def __str__(self) -> str:
        return str(self.spec)


class Expected(Protocol):
    """What a target is expected to provide: the ``expect`` block of the configuration."""

    @property
    def languages(self) -> Mapping[str, Matcher]: ...
    @property
    def packages(self) -> Mapping[str, Mapping[str, Matcher]]: ...
    @property
    def bin(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation checked against what the server reported: ``kind`` is
    "language", a package kind or "bin"; ``found`` is the reported version
    (``"present"`` for a bin found), ``None`` when the server did not list it."""

    kind: str
    name: str
    expected: str
    found: str | None
    met: bool


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lookup_package(
    kind: str, name: str, matcher: Matcher, listed: Mapping[str, str]
) -> str | None:
    """The reported version of ``name`` among ``listed`` packages of ``kind``."""
    if kind == "python":
        # pip freeze prints "Jinja2"; people write "jinja2" or "jinja_2": compare
        # the way pip does (PEP 503 normalisation).
        same = [version for n, version in listed.items() if _pep503(n) == _pep503(name)]
    elif kind == "system":
        # dpkg qualifies multi-arch packages ("libc6:amd64"); an expectation on
        # "libc6" is about whichever architecture is installed.
        same = [listed[n] for n in sorted(listed) if name in (n, n.partition(":")[0])]
    else:
        same = [listed[name]] if name in listed else []
    # With several candidates, one that meets the expectation.
    return next((v for v in same if matcher.matches(v)), same[0] if same else None)


def check_expectations(
    expect: Expected,
    languages: Mapping[str, str | None],
    packages: Mapping[str, Mapping[str, str]],
    bin: Iterable[str],
) -> list[ExpectationOutcome]:
    """Check every expectation against a libraries report: languages, then
    packages kind by kind, then bin, each in the order of the configuration."""
    checked: list[tuple[str, str, Matcher, str | None]] = []
    for name, matcher in expect.languages.items():
        spellings = [name, *(alias for alias, is_ in LANGUAGE_ALIASES.items() if is_ == name)]
        found = next((languages[n] for n in spellings if languages.get(n) is not None), None)
        checked.append(("language", name, matcher, found))
    for kind, expected_packages in expect.packages.items():
        listed = packages.get(kind) or {}
        for name, matcher in expected_packages.items():
            checked.append((kind, name, matcher, _lookup_package(kind, name, matcher, listed)))
    available = set(bin)
    for name in expect.bin:
        checked.append(("bin", name, Matcher(PRESENT), PRESENT if name in available else None))
    return [
        ExpectationOutcome(kind, name, str(matcher), found, matcher.matches(found))
        for kind, name, matcher, found in checked
    ]
