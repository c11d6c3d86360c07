"""``/libraries/`` of either generation: the languages, packages and commands a sandbox has.

2.x names each language's version at the top level; 3.x lists only the dpkg
packages, from which the language versions are derived here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..vocabulary import PACKAGE_KINDS
from .shape import (
    as_array,
    as_object,
    as_string,
    document,
    frozen,
    key_path,
    member,
    object_field,
    string_field,
)


@dataclass(frozen=True)
class Libraries:
    """``/libraries/`` of either generation."""

    languages: Mapping[str, str | None]
    packages: Mapping[str, Mapping[str, str]]
    bin: tuple[str, ...]
    raw: Mapping[str, Any]


# The 2.x top-level key for each language; 2.x calls g++ "g++", the classic
# client's attribute (and ours) is "gpp".
_V2_LANGUAGE_KEYS = {
    "python3": "python3",
    "python2": "python2",
    "java": "java",
    "gcc": "gcc",
    "gpp": "g++",
    "perl": "perl",
    "postgres": "postgres",
}

_EPOCH = re.compile(r"\d+:")


def dpkg_upstream_version(version: str) -> str:
    """The upstream part of a Debian version: ``4:8.3.0-1`` -> ``8.3.0``.

    Drops the epoch, the Debian revision, and what follows ``+`` or ``~``
    (build numbers, repack and backport markers): ``11.0.7+10-3~deb10u1`` ->
    ``11.0.7``, ``11+200+deb10u3`` -> ``11``.
    """
    text = version.strip()
    epoch = _EPOCH.match(text)
    if epoch:
        text = text[epoch.end() :]
    if "-" in text:
        text = text.rsplit("-", 1)[0]
    for marker in ("+", "~"):
        text = text.split(marker, 1)[0]
    return text or version.strip()


def _versioned_candidates(packages: Mapping[str, str], pattern: str) -> list[str]:
    """Package names matching ``pattern`` (with ``{n}`` a number), newest number first."""
    regex = re.compile(pattern.replace("{n}", r"(\d+)") + r"\Z")
    found = []
    for name in packages:
        match = regex.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found, reverse=True)]


def language_versions_from_dpkg(system: Mapping[str, str]) -> dict[str, str | None]:
    """Language versions derived from a dpkg package list (3.x ``libraries.system``).

    Keys are :data:`LANGUAGES`; a language whose package is not installed is
    ``None``. Architecture qualifiers (``openjdk-11-jdk:amd64``) are ignored.
    """
    packages: dict[str, str] = {}
    for name, version in system.items():
        packages.setdefault(name.split(":", 1)[0], version)

    def first(*names: str) -> str | None:
        for name in names:
            if name in packages:
                return dpkg_upstream_version(packages[name])
        return None

    java_packages = [
        name
        for flavour in ("jdk", "jdk-headless", "jre", "jre-headless")
        for name in _versioned_candidates(packages, "openjdk-{n}-" + flavour)
    ]
    return {
        "python3": first("python3", "python3-minimal"),
        "python2": first("python2", "python2-minimal", "python2.7"),
        "java": first(*java_packages, "default-jdk", "default-jre"),
        "gcc": first("gcc"),
        "gpp": first("g++"),
        "perl": first("perl", "perl-base"),
        "postgres": first("postgresql", *_versioned_candidates(packages, "postgresql-{n}")),
    }


def _string_map(value: object, path: str) -> Mapping[str, str]:
    entries = as_object(value, path)
    for name, version in entries.items():
        as_string(version, key_path(path, name), allow_empty=True)
    return MappingProxyType(dict(entries))


def parse_libraries(doc: object) -> Libraries:
    """A ``/libraries/`` document of either generation.

    A 2.x document carries the language versions at the top level and they
    are used as given; on 3.x they are derived from the dpkg list.
    """
    top = document(doc)
    libraries, libraries_path = object_field(top, "libraries", "")
    packages = MappingProxyType(
        {kind: _string_map(*member(libraries, kind, libraries_path)) for kind in PACKAGE_KINDS}
    )
    bin_value, bin_path = member(top, "bin", "")
    commands = tuple(
        as_string(name, f"{bin_path}[{i}]") for i, name in enumerate(as_array(bin_value, bin_path))
    )
    if any(key in top for key in _V2_LANGUAGE_KEYS.values()):
        languages: dict[str, str | None] = {
            language: string_field(top, key, "") for language, key in _V2_LANGUAGE_KEYS.items()
        }
    else:
        languages = language_versions_from_dpkg(packages["system"])
    return Libraries(
        languages=MappingProxyType(languages),
        packages=packages,
        bin=commands,
        raw=frozen(top),
    )
