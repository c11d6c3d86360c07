"""One function per probe kind: talk to a sandbox, return a `ProbeResult`.

Probes never touch metrics. Every failure becomes one of the `Reason`
values, the bounded set that `sandbox_probe_failures_total` uses as a label;
the human-readable `message` is for the landing page and `/probe?debug=true`
only, never a label.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import errors, offload
from .config import Canary, Expectations, Target
from .documents import (
    InvalidDocument,
    Libraries,
    Specifications,
    Usage,
    detect_api,
    parse_execute_response,
    parse_libraries,
    parse_specifications,
    parse_usage,
)
from .expectations import ExpectationOutcome, check_expectations
from .protocol import LIBRARIES_PATH, SPECIFICATIONS_PATH, USAGES_PATH, Secrets, seconds_text
from .transport import NotAnObject, ProbeTransport, decode_object
from .vocabulary import CANARY, LIBRARIES, SPECIFICATIONS, USAGE, Reason


@dataclass(frozen=True, slots=True)
class Load:
    """Live container counts (and, on 3.x, the host usage document)."""

    containers_running: int
    containers_max: int | None  # 2.x reports it beside the running count; 3.x: None
    usage: Usage | None  # 3.x only


@dataclass(frozen=True, slots=True)
class LibrariesReport:
    """Counts of a libraries document's packages and executables, and the
    expectations checked against it. Not the lists themselves: a real server
    lists thousands of packages, which must not cost memory per target."""

    package_counts: Mapping[str, int]
    bin_count: int
    outcomes: tuple[ExpectationOutcome, ...]

    @classmethod
    def of(cls, libraries: Libraries, outcomes: tuple[ExpectationOutcome, ...]) -> LibrariesReport:
        counts = {kind: len(packages) for kind, packages in libraries.packages.items()}
        return cls(counts, len(libraries.bin), outcomes)


@dataclass(frozen=True, slots=True)
class CanaryResult:
    name: str
    success: bool
    reason: Reason | None
    message: str
    round_trip_seconds: float | None = None  # None when no HTTP answer came back
    server_seconds: float | None = None
    status: int | None = None
    command_seconds: tuple[float, ...] = ()
    # How long the canary had waited when its deadline cut it: a sandbox too
    # slow to answer at all must count in the round-trip histogram as at least
    # that slow, or its latency would look better the worse it gets.
    cut_after_seconds: float | None = None
    # Not the stdout itself: it is judged when it arrives, only the message
    # quotes its start, and a result is kept for as long as it is the latest
    # (a server's output can be megabytes).

    @property
    def observed_seconds(self) -> float | None:
        """What the round-trip histogram observes: the round trip, or the time
        a deadline cut it after; None when no request went out or it failed fast."""
        if self.round_trip_seconds is not None:
            return self.round_trip_seconds
        return self.cut_after_seconds

    @property
    def wait_seconds(self) -> float | None:
        """Round trip minus the server's own time: queueing, transfer, HTTP."""
        if self.round_trip_seconds is None or self.server_seconds is None:
            return None
        return max(0.0, self.round_trip_seconds - self.server_seconds)


ProbeData = Specifications | Load | LibrariesReport | tuple[CanaryResult, ...] | None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: str
    probe: str
    success: bool
    reason: Reason | None
    started_at: float  # wall clock, seconds since the epoch
    duration_seconds: float
    message: str
    data: ProbeData = field(default=None, compare=False)


def reason_for(error: BaseException) -> Reason:
    """Map anything a transport raises to the bounded reason set."""
    if isinstance(error, errors.SandboxTimeout):
        return Reason.TIMEOUT
    if isinstance(error, errors.SandboxTLSError):
        return Reason.TLS
    if isinstance(error, errors.SandboxConnectionError):
        return Reason.CONNECTION
    if isinstance(error, errors.SandboxHTTPError):
        # The pool answers 503 when no container frees up within 2 s.
        if error.status_code == 503:
            return Reason.OVERLOADED
        return Reason.HTTP_STATUS
    return Reason.INVALID_RESPONSE


def describe(error: BaseException) -> str:
    """A one-line account of an error; the transport keeps credentials out of it."""
    if isinstance(error, InvalidDocument):
        return f"unexpected document: {error}"
    return str(error)


async def probe_specifications(transport: ProbeTransport, target: Target, deadline: float):
    spec = parse_specifications(await transport.get_object(SPECIFICATIONS_PATH, deadline))
    transport.api_version = spec.api
    return (
        spec,
        f"sandbox {spec.sandbox_version} (api {spec.api}), {spec.containers_max} containers",
    )


async def probe_usage(transport: ProbeTransport, target: Target, deadline: float):
    if transport.api_version != 3:
        # 2.x has no /usages/ route; its live counts are part of /specifications/.
        doc = await transport.get_object(SPECIFICATIONS_PATH, deadline)
        with contextlib.suppress(InvalidDocument):
            transport.api_version = detect_api(doc)
        spec = parse_specifications(doc)
        if spec.containers_running is not None:
            load = Load(spec.containers_running, spec.containers_max, usage=None)
            return load, f"{load.containers_running} of {spec.containers_max} containers busy"
    usage = parse_usage(await transport.get_object(USAGES_PATH, deadline))
    load = Load(containers_running=usage.containers_running, containers_max=None, usage=usage)
    return load, f"{load.containers_running} containers busy"


def libraries_report(
    content: bytes, secrets: Secrets, expect: Expectations
) -> tuple[LibrariesReport, str]:
    """A ``/libraries/`` answer's report and summary; pure, so a worker process can run it."""
    libraries = parse_libraries(decode_object(content, secrets))
    outcomes = tuple(
        check_expectations(expect, libraries.languages, libraries.packages, libraries.bin)
    )
    missed = [f"{o.kind}/{o.name}" for o in outcomes if not o.met]
    summary = f"{sum(len(p) for p in libraries.packages.values())} packages listed"
    if outcomes:
        summary += f", {len(outcomes) - len(missed)}/{len(outcomes)} expectations met"
    if missed:
        summary += f" (missed: {', '.join(missed)})"
    return LibrariesReport.of(libraries, outcomes), summary


async def probe_libraries(transport: ProbeTransport, target: Target, deadline: float):
    # The one document whose cap is too big to parse on the loop (offload.py).
    response = await transport.request("GET", LIBRARIES_PATH, deadline)
    try:
        return await offload.parse(
            libraries_report, response.content, transport.secrets, target.expect
        )
    except NotAnObject as error:
        raise transport.failure(errors.SandboxInvalidResponse, response, str(error)) from None


async def run_canary(transport: ProbeTransport, canary: Canary, deadline: float) -> CanaryResult:
    """One canary: one `/execute/` request, never with `save`."""
    loop = asyncio.get_running_loop()
    canary_deadline = min(loop.time() + canary.timeout, deadline)
    if canary_deadline <= loop.time():
        return CanaryResult(canary.name, False, Reason.TIMEOUT, "probe deadline reached")
    started = time.perf_counter()
    try:
        raw = await transport.execute(canary.request_config(), canary_deadline)
        round_trip = time.perf_counter() - started
        response = parse_execute_response(raw)
    except (errors.SandboxError, InvalidDocument) as error:
        cut = time.perf_counter() - started if isinstance(error, errors.SandboxTimeout) else None
        return CanaryResult(
            canary.name, False, reason_for(error), describe(error), cut_after_seconds=cut
        )
    stdout = response.execution[-1].stdout if response.execution else ""
    common = {
        "round_trip_seconds": round_trip,
        "server_seconds": response.total_time,
        "status": response.status,
        "command_seconds": tuple(step.time for step in response.execution),
    }
    if response.status != canary.expect_status:
        message = f"status {response.status}, expected {canary.expect_status}"
        if response.execution and response.execution[-1].stderr:
            message += f": {response.execution[-1].stderr.strip()[:200]}"
        return CanaryResult(canary.name, False, Reason.EXECUTION_ERROR, message, **common)
    if not canary.stdout_matches(stdout):
        message = f"unexpected stdout {stdout[:200]!r}"
        return CanaryResult(canary.name, False, Reason.UNEXPECTED_OUTPUT, message, **common)
    return CanaryResult(canary.name, True, None, f"ok in {round_trip:.3f}s", **common)


async def probe_canary(transport: ProbeTransport, target: Target, deadline: float):
    # One after the other: each holds a container, and a sandbox's pool is small.
    results = [await run_canary(transport, canary, deadline) for canary in target.canaries]
    failed = [r for r in results if not r.success]
    summary = "; ".join(f"{r.name}: {r.message}" for r in results)
    if failed:
        raise _CanaryProbeFailed(
            failed[0].reason or Reason.EXECUTION_ERROR, summary, tuple(results)
        )
    return tuple(results), summary


class _CanaryProbeFailed(Exception):
    """Ends a canary probe with a reason, its results kept."""

    def __init__(self, reason: Reason, message: str, results: tuple[CanaryResult, ...]) -> None:
        super().__init__(message)
        self.reason = reason
        self.results = results


_PROBE_FUNCTIONS: Mapping[str, Callable] = {
    SPECIFICATIONS: probe_specifications,
    USAGE: probe_usage,
    LIBRARIES: probe_libraries,
    CANARY: probe_canary,
}

# Parsing a large document after the last byte arrived takes a moment of CPU;
# the safety net around a whole probe allows for it, and the promise (a probe
# ends within its deadline plus 0.5 s) still holds.
_PARSE_ALLOWANCE_SECONDS = 0.25


async def run_probe(
    kind: str, transport: ProbeTransport, target: Target, timeout: float | None = None
) -> ProbeResult:
    """Run one probe within its hard deadline; never raises for a sandbox's fault."""
    budget = target.timeouts[kind] if timeout is None else min(timeout, target.timeouts[kind])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    started_at = time.time()
    started = time.perf_counter()
    data: ProbeData = None
    try:
        async with asyncio.timeout_at(deadline + _PARSE_ALLOWANCE_SECONDS):
            data, message = await _PROBE_FUNCTIONS[kind](transport, target, deadline)
        success, reason = True, None
    except _CanaryProbeFailed as failure:
        # Failed canaries still carry timings worth exporting.
        success, reason, message, data = False, failure.reason, str(failure), failure.results
    except (errors.SandboxError, InvalidDocument) as error:
        success, reason, message = False, reason_for(error), describe(error)
    except TimeoutError:
        success, reason = False, Reason.TIMEOUT
        message = f"{kind} probe did not finish within {seconds_text(budget)}"
    return ProbeResult(
        target=target.name,
        probe=kind,
        success=success,
        reason=reason,
        started_at=started_at,
        duration_seconds=time.perf_counter() - started,
        message=message,
        data=data,
    )
