"""Raw JSON documents of a sandbox server, either generation, turned into typed values.

Pure: no I/O, no clock. One module per document, each a frozen pydantic model
(see ``base``); both generations in the same units: bytes, hertz, seconds, and
``None`` for "unlimited". Every name is importable from here.
"""

from __future__ import annotations

from .base import InvalidDocument
from .execute import CommandExecution, ExecuteResponse, parse_execute_response
from .libraries import (
    Libraries,
    dpkg_upstream_version,
    language_versions_from_dpkg,
    parse_libraries,
)
from .specifications import (
    HostSpecs,
    Specifications,
    detect_api,
    parse_docker_memory,
    parse_specifications,
)
from .usage import Usage, parse_usage

__all__ = [
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
