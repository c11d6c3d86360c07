"""``/libraries/`` of either generation: the languages, packages and commands a sandbox has.

2.x names each language's version at the top level; 3.x lists only the dpkg
packages, from which the language versions are derived here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, Field
from typing_extensions import TypedDict

from ..vocabulary import LANGUAGES, PACKAGE_KINDS
from .base import Document, Items, ReadOnlyMap, String, Text, at, read_only, validated

_EPOCH = re.compile(r"^\d+:")


def dpkg_upstream_version(version: str) -> str:
    """The upstream part of a Debian version: ``4:8.3.0-1`` -> ``8.3.0``.

    Drops the epoch, the Debian revision, and what follows ``+`` or ``~``
    (build numbers, repack and backport markers): ``11.0.7+10-3~deb10u1`` ->
    ``11.0.7``, ``11+200+deb10u3`` -> ``11``.
    """
    text = _EPOCH.sub("", version.strip(), count=1)
    text = text.rsplit("-", 1)[0]
    for marker in ("+", "~"):
        text = text.split(marker, 1)[0]
    return text or version.strip()


def _versioned_candidates(packages: Mapping[str, str], pattern: str) -> list[str]:
    """Package names matching ``pattern`` (with ``{n}`` a number), newest number first."""
    regex = re.compile(pattern.replace("{n}", r"(\d+)") + r"\Z")
    found = [(int(match[1]), name) for name in packages if (match := regex.match(name))]
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


#: One list per kind of package: name -> version, as the server reports it.
PackageLists = TypedDict("PackageLists", {kind: ReadOnlyMap[String] for kind in PACKAGE_KINDS})


class Libraries(Document):
    """``/libraries/`` of either generation."""

    packages: Annotated[PackageLists, AfterValidator(read_only)] = at("libraries")
    bin: Items[Text]

    @property
    def languages(self) -> Mapping[str, str | None]:
        """Language versions; 3.x lists only packages, so they are derived from dpkg's list."""
        return read_only(language_versions_from_dpkg(self.packages["system"]))


class LibrariesV2(Libraries):
    """2.x also names each language's version at the top level; those are used as given."""

    python3: Text
    python2: Text
    java: Text
    gcc: Text
    gpp: Text = Field(alias="g++")  # the classic client's attribute name
    perl: Text
    postgres: Text

    @property
    def languages(self) -> Mapping[str, str | None]:
        return read_only({language: getattr(self, language) for language in LANGUAGES})


# The keys only a 2.x document has.
_V2_KEYS = {
    field.alias or name for name, field in LibrariesV2.model_fields.items() if name in LANGUAGES
}


def parse_libraries(doc: object) -> Libraries:
    """A ``/libraries/`` document of either generation."""
    v2 = isinstance(doc, Mapping) and not _V2_KEYS.isdisjoint(doc)
    return validated(LibrariesV2 if v2 else Libraries, doc)
