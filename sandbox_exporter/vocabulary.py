"""The project's closed vocabularies, each defined once and imported everywhere.

Probe kinds, failure reasons, the languages a server reports and the kinds of
package lists: config validation, probes, state, collector, pages and `--once`
all speak these words, so they live here and nowhere else.
"""

from __future__ import annotations

import enum

SPECIFICATIONS = "specifications"
USAGE = "usage"
LIBRARIES = "libraries"
CANARY = "canary"
#: Every probe kind, in the order pages and reports show them.
PROBES: tuple[str, ...] = (SPECIFICATIONS, USAGE, LIBRARIES, CANARY)
#: The documents a server answers the probes with (each has its own size cap).
DOCUMENTS: tuple[str, ...] = ("specifications", "usages", "libraries", "execute")


class Reason(enum.StrEnum):
    """Why a probe failed: the `reason` label of `sandbox_probe_failures_total`."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    OVERLOADED = "overloaded"
    INVALID_RESPONSE = "invalid_response"
    UNEXPECTED_OUTPUT = "unexpected_output"
    EXECUTION_ERROR = "execution_error"
    #: The exporter itself failed (a bug): nothing is known of the sandbox.
    EXPORTER_ERROR = "exporter_error"


# What each probe can fail with; the collector starts these counters at 0 so
# that the first failure is a visible increase (Prometheus' advice on missing
# series), and nothing else is ever exported.
# Only a canary runs commands, so only it can see their output or errors.
_COMMANDS = (Reason.UNEXPECTED_OUTPUT, Reason.EXECUTION_ERROR)
POSSIBLE_REASONS: dict[str, tuple[Reason, ...]] = {
    probe: tuple(r for r in Reason if probe == CANARY or r not in _COMMANDS) for probe in PROBES
}

#: Language keys a server reports (2.x top level, 3.x derived from dpkg), in
#: the classic client's order.
LANGUAGES: tuple[str, ...] = ("python3", "python2", "java", "gcc", "gpp", "perl", "postgres")
#: The server itself spells the C++ compiler "g++"; configuration accepts that too.
LANGUAGE_ALIASES = {"g++": "gpp"}
#: Kinds of package list in a libraries document.
PACKAGE_KINDS: tuple[str, ...] = ("system", "python", "perl", "c")


def counted(count: int, noun: str) -> str:
    """``counted(1, "target")`` -> "1 target", ``counted(0, "target")`` -> "0 targets":
    every message that counts says it the same way (the nouns here take an s)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
