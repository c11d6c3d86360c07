"""The one judgement of a target's state, from its latest probe results.

Reachable or not, the load against the pool size, the canary, and the
expectations missed with what was expected and what was found: `--once`
reports this verdict, the landing page shows it, and the collector can use
the same helpers (`pool_size`, `load_ratio`, `missed_expectations`), so that
the three never disagree about what is wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import Target
from .expectations import ExpectationOutcome
from .probes import LibrariesReport, Load, ProbeResult
from .vocabulary import CANARY, LIBRARIES, SPECIFICATIONS, USAGE, Reason


class Status(enum.IntEnum):
    """Monitoring-plugin states (Nagios, Icinga, Sensu), worst is highest."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Problem:
    status: Status
    summary: str  # a few words, for a report's first line
    detail: str = ""  # what exactly happened, for the target's own line
    probe: str = ""  # the probe kind that saw it
    # What reconciles it with another probe's contrary result, when one
    # seems to contradict it (see `refused_with_free_pool`).
    note: str = ""

    def __str__(self) -> str:
        return f"{self.summary}: {self.detail}" if self.detail else self.summary


@dataclass
class TargetVerdict:
    target: Target
    results: Mapping[str, ProbeResult]
    status: Status = Status.OK
    problems: list[Problem] = field(default_factory=list)
    load_ratio: float | None = None

    def flag(
        self, status: Status, summary: str, detail: str = "", probe: str = "", note: str = ""
    ) -> None:
        self.status = max(self.status, status)
        self.problems.append(Problem(status, summary, detail, probe, note))


def pool_size(results: Mapping[str, ProbeResult]) -> int | None:
    """Containers in the pool: 2.x says it beside the busy count, 3.x only in
    its specifications (and only a successful answer counts)."""
    usage = results.get(USAGE)
    pool = usage.data.containers_max if usage is not None and isinstance(usage.data, Load) else None
    spec = results.get(SPECIFICATIONS)
    if pool is None and spec is not None and spec.success and spec.data is not None:
        pool = spec.data.containers_max
    return pool


def busy_containers(results: Mapping[str, ProbeResult]) -> int | None:
    usage = results.get(USAGE)
    if usage is not None and isinstance(usage.data, Load):
        return usage.data.containers_running
    return None


def load_ratio(results: Mapping[str, ProbeResult]) -> float | None:
    """Busy containers over the pool size; None when either is unknown (or the pool is 0)."""
    busy, pool = busy_containers(results), pool_size(results)
    return None if busy is None or not pool else busy / pool


def missed_expectations(report: LibrariesReport) -> list[ExpectationOutcome]:
    return [outcome for outcome in report.outcomes if not outcome.met]


def _missed_summary(count: int) -> str:
    return f"{count} expectation{'s' * (count > 1)} missed"


def probe_outcome(result: ProbeResult) -> str:
    """A probe's outcome in a few words: "ok", its failure reason, or how
    many expectations it found missed (the libraries probe itself succeeded)."""
    if not result.success:
        return _reason(result)
    if isinstance(result.data, LibrariesReport):
        missed = missed_expectations(result.data)
        if missed:
            return _missed_summary(len(missed))
    return "ok"


def describe_missed(outcome: ExpectationOutcome) -> str:
    """E.g. ``language java >=17 (found 11.0.7)``: what was expected, what was found."""
    return f"{outcome.kind} {outcome.name} {outcome.expected} (found {outcome.found or 'nothing'})"


def refused_with_free_pool(results: Mapping[str, ProbeResult]) -> str:
    """Why an overloaded canary and a usage probe that found containers free
    can both be true, or "" when they do not disagree.

    The sandbox answers 503 when no container of its pool freed up within
    2 s; its usage counts busy containers at another moment, so the two
    disagree when the count is wrong or the pool filled up in between.
    """
    canary, usage = results.get(CANARY), results.get(USAGE)
    busy, pool = busy_containers(results), pool_size(results)
    if canary is None or canary.reason is not Reason.OVERLOADED:
        return ""
    if usage is None or not usage.success or busy is None or not pool or busy >= pool:
        return ""
    gap = round(canary.started_at - usage.started_at)
    when = "at the same time" if gap == 0 else f"{abs(gap)}s {'earlier' if gap > 0 else 'later'}"
    return (
        f"the sandbox refused the canary with 503 (no free container) although the usage "
        f"probe {when} found {busy} of {pool} containers busy: its count of busy containers "
        "is wrong, or the pool filled up between the two probes"
    )


def healthy_summary(verdict: TargetVerdict) -> str:
    """What a target with no problem shows instead: its server, its canaries, its load."""
    parts = [r.message for kind, r in verdict.results.items() if kind in (SPECIFICATIONS, CANARY)]
    if verdict.load_ratio is not None:
        parts.append(f"load {verdict.load_ratio:.0%}")
    return "; ".join(parts)


def judge(target: Target, results: Mapping[str, ProbeResult]) -> TargetVerdict:
    """The verdict on one target from its latest result of each probe kind
    (kinds not run yet are simply absent)."""
    verdict = TargetVerdict(target, results)
    spec = results.get(SPECIFICATIONS)
    if spec is not None and not spec.success:
        # Its other probes fail for the same cause; saying so four times
        # would bury the one line that matters.
        verdict.flag(
            Status.CRITICAL, f"unreachable ({_reason(spec)})", spec.message, SPECIFICATIONS
        )
        return verdict
    canary = results.get(CANARY)
    if canary is not None and not canary.success:
        # A configured severity ("warning", "critical") names a Status.
        status = Status[target.severities.canary_failed.upper()]
        if canary.reason is Reason.OVERLOADED:
            status = Status[target.severities.overloaded.upper()]
        summary = f"canary failing ({_reason(canary)})"
        verdict.flag(status, summary, canary.message, CANARY, refused_with_free_pool(results))
    usage = results.get(USAGE)
    if usage is not None and not usage.success:
        verdict.flag(Status.WARNING, f"usage unavailable ({_reason(usage)})", usage.message, USAGE)
    else:
        ratio = load_ratio(results)
        if ratio is not None:
            verdict.load_ratio = ratio
            thresholds = target.thresholds
            busy = f"{busy_containers(results)} of {pool_size(results)} containers busy"
            if thresholds.load_critical is not None and ratio >= thresholds.load_critical:
                verdict.flag(Status.CRITICAL, f"load {ratio:.0%}", busy, USAGE)
            elif ratio >= thresholds.load_warning:
                verdict.flag(Status.WARNING, f"load {ratio:.0%}", busy, USAGE)
    libraries = results.get(LIBRARIES)
    if libraries is not None and not libraries.success:
        summary = f"libraries unavailable ({_reason(libraries)})"
        verdict.flag(Status.WARNING, summary, libraries.message, LIBRARIES)
    elif libraries is not None and isinstance(libraries.data, LibrariesReport):
        missed = missed_expectations(libraries.data)
        if missed:
            status = Status[target.severities.expectation_missed.upper()]
            details = ", ".join(map(describe_missed, missed))
            verdict.flag(status, _missed_summary(len(missed)), details, LIBRARIES)
    return verdict


def _reason(result: ProbeResult) -> str:
    return result.reason.value if result.reason else "failed"
