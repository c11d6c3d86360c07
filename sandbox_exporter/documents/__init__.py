"""Raw JSON documents of a sandbox server, either generation, turned into typed values.

Everything here is pure: no I/O, no clock. Each ``parse_*`` function checks the
shape strictly and raises :class:`InvalidDocument` naming the JSON path of the
first thing that is wrong, so an operator reading the exporter's log knows
which field of which server answer to look at.

Both generations are normalised to the same units: bytes, hertz, seconds, and
``None`` for "unlimited". One module per document (``specifications``,
``usage``, ``libraries``, ``execute``), all written with the checks of
``shape``; every name is importable from here.
"""

from __future__ import annotations

from .execute import CommandExecution, ExecuteResponse, parse_execute_response
from .libraries import (
    Libraries,
    dpkg_upstream_version,
    language_versions_from_dpkg,
    parse_libraries,
)
from .shape import InvalidDocument
from .specifications import (
    MEMORY_KINDS,
    HostSpecs,
    Specifications,
    detect_api,
    parse_docker_memory,
    parse_specifications,
)
from .usage import Usage, parse_usage

__all__ = [
    "MEMORY_KINDS",
    "CommandExecution",
    "ExecuteResponse",
    "HostSpecs",
    "InvalidDocument",
    "Libraries",
    "Specifications",
    "Usage",
    "detect_api",
    "dpkg_upstream_version",
    "language_versions_from_dpkg",
    "parse_docker_memory",
    "parse_execute_response",
    "parse_libraries",
    "parse_specifications",
    "parse_usage",
]
