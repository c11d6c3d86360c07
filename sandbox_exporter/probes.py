"""One function per probe kind: talk to a sandbox, return a `ProbeResult`.

Probes never touch metrics. Every failure becomes one of the `Reason`
values, the bounded set that `sandbox_probe_failures_total` uses as a label;
the human-readable `message` is for the landing page and `/probe?debug=true`
only, never a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import client as sandbox_client
from .config import Canary, Target
from .documents import (
    InvalidDocument,
    Libraries,
    Specifications,
    Usage,
    parse_execute_response,
    parse_libraries,
    parse_specifications,
    parse_usage,
)
from .expectations import ExpectationOutcome, check_expectations
from .vocabulary import CANARY, LIBRARIES, SPECIFICATIONS, USAGE, Reason


@dataclass(frozen=True)
class Load:
    """Live container counts (and, on 3.x, the host usage document)."""

    containers_running: int
    containers_max: int | None  # 2.x reports it beside the running count; 3.x: None
    usage: Usage | None  # 3.x only


@dataclass(frozen=True)
class LibrariesReport:
    libraries: Libraries
    outcomes: tuple[ExpectationOutcome, ...]


@dataclass(frozen=True)
class CanaryResult:
    name: str
    success: bool
    reason: Reason | None
    message: str
    round_trip_seconds: float | None = None  # None when no HTTP answer came back
    server_seconds: float | None = None
    status: int | None = None
    command_seconds: tuple[float, ...] = ()
    stdout: str | None = None

    @property
    def wait_seconds(self) -> float | None:
        """Round trip minus the server's own time: queueing, transfer, HTTP."""
        if self.round_trip_seconds is None or self.server_seconds is None:
            return None
        return max(0.0, self.round_trip_seconds - self.server_seconds)


ProbeData = Specifications | Load | LibrariesReport | tuple[CanaryResult, ...] | None


@dataclass(frozen=True)
class ProbeResult:
    target: str
    probe: str
    success: bool
    reason: Reason | None
    started_at: float  # wall clock, seconds since the epoch
    duration_seconds: float
    message: str
    data: ProbeData = field(default=None, compare=False)


class ProbeFailure(Exception):
    """Raised inside a probe to end it with a reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def reason_for(error: BaseException) -> Reason:
    """Map anything the client raises to the bounded reason set."""
    if isinstance(error, ProbeFailure):
        return error.reason
    if isinstance(error, sandbox_client.SandboxTimeout):
        return Reason.TIMEOUT
    if isinstance(error, sandbox_client.SandboxTLSError):
        return Reason.TLS
    if isinstance(error, sandbox_client.SandboxConnectionError):
        return Reason.CONNECTION
    if isinstance(error, sandbox_client.SandboxHTTPError):
        # The pool answers 503 when no container frees up within 2 s.
        if error.status_code == 503:
            return Reason.OVERLOADED
        return Reason.HTTP_STATUS
    if isinstance(error, (sandbox_client.SandboxInvalidResponse, InvalidDocument)):
        return Reason.INVALID_RESPONSE
    return Reason.INVALID_RESPONSE


def describe(error: BaseException) -> str:
    """A one-line account of an error; the client keeps credentials out of it.

    The client's messages already say the method, URL and what happened; a
    document of the wrong shape is parsed here, so that says where it was.
    """
    if isinstance(error, InvalidDocument):
        return f"unexpected document: {error}"
    return str(error)


class Deadline:
    """A hard deadline shared by every request a probe makes."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise ProbeFailure(Reason.TIMEOUT, "probe deadline reached")
        return remaining


def probe_specifications(sandbox: sandbox_client.Sandbox, target: Target, deadline: Deadline):
    spec = parse_specifications(sandbox.fetch_specifications(timeout=deadline.remaining()))
    return (
        spec,
        f"sandbox {spec.sandbox_version} (api {spec.api}), {spec.containers_max} containers",
    )


def probe_usage(sandbox: sandbox_client.Sandbox, target: Target, deadline: Deadline):
    # `known_api_version` does no I/O: a fetch for detection would escape the deadline.
    if sandbox.known_api_version != 3:
        # 2.x has no /usages/ route; its live counts are part of /specifications/.
        spec = parse_specifications(sandbox.fetch_specifications(timeout=deadline.remaining()))
        if spec.containers_running is not None:
            load = Load(spec.containers_running, spec.containers_max, usage=None)
            return load, f"{load.containers_running} of {spec.containers_max} containers busy"
    usage = parse_usage(sandbox.fetch_usages(timeout=deadline.remaining()))
    load = Load(containers_running=usage.containers_running, containers_max=None, usage=usage)
    return load, f"{load.containers_running} containers busy"


def probe_libraries(sandbox: sandbox_client.Sandbox, target: Target, deadline: Deadline):
    libraries = parse_libraries(sandbox.fetch_libraries(timeout=deadline.remaining()))
    outcomes = tuple(
        check_expectations(target.expect, libraries.languages, libraries.packages, libraries.bin)
    )
    missed = [f"{o.kind}/{o.name}" for o in outcomes if not o.met]
    summary = f"{sum(len(p) for p in libraries.packages.values())} packages listed"
    if outcomes:
        summary += f", {len(outcomes) - len(missed)}/{len(outcomes)} expectations met"
    if missed:
        summary += f" (missed: {', '.join(missed)})"
    return LibrariesReport(libraries=libraries, outcomes=outcomes), summary


def run_canary(sandbox: sandbox_client.Sandbox, canary: Canary, deadline: Deadline) -> CanaryResult:
    """One canary: one `/execute/` request, never with `save`."""
    try:
        timeout = min(canary.timeout, deadline.remaining())
    except ProbeFailure as failure:
        return CanaryResult(canary.name, False, failure.reason, str(failure))
    started = time.perf_counter()
    try:
        raw = sandbox.execute(canary.request_config(), timeout=timeout)
        round_trip = time.perf_counter() - started
        response = parse_execute_response(raw)
    except (sandbox_client.SandboxError, InvalidDocument) as error:
        return CanaryResult(canary.name, False, reason_for(error), describe(error))
    stdout = response.execution[-1].stdout if response.execution else ""
    common = {
        "round_trip_seconds": round_trip,
        "server_seconds": response.total_time,
        "status": response.status,
        "command_seconds": tuple(step.time for step in response.execution),
        "stdout": stdout,
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


def probe_canary(sandbox: sandbox_client.Sandbox, target: Target, deadline: Deadline):
    results = tuple(run_canary(sandbox, canary, deadline) for canary in target.canaries)
    failed = [r for r in results if not r.success]
    summary = "; ".join(f"{r.name}: {r.message}" for r in results)
    if failed:
        raise _CanaryProbeFailed(failed[0].reason or Reason.EXECUTION_ERROR, summary, results)
    return results, summary


class _CanaryProbeFailed(ProbeFailure):
    def __init__(self, reason: Reason, message: str, results: tuple[CanaryResult, ...]) -> None:
        super().__init__(reason, message)
        self.results = results


_PROBE_FUNCTIONS: Mapping[str, Callable] = {
    SPECIFICATIONS: probe_specifications,
    USAGE: probe_usage,
    LIBRARIES: probe_libraries,
    CANARY: probe_canary,
}


def run_probe(
    kind: str, sandbox: sandbox_client.Sandbox, target: Target, timeout: float | None = None
) -> ProbeResult:
    """Run one probe within its hard deadline; never raises for a sandbox's fault."""
    budget = target.timeouts[kind] if timeout is None else min(timeout, target.timeouts[kind])
    deadline = Deadline(budget)
    started_at = time.time()
    started = time.perf_counter()
    data: ProbeData = None
    try:
        data, message = _PROBE_FUNCTIONS[kind](sandbox, target, deadline)
        success, reason = True, None
    except _CanaryProbeFailed as failure:
        # Failed canaries still carry timings worth exporting.
        success, reason, message, data = False, failure.reason, str(failure), failure.results
    except (sandbox_client.SandboxError, InvalidDocument, ProbeFailure) as error:
        success, reason, message = False, reason_for(error), describe(error)
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


def make_sandbox(target: Target) -> sandbox_client.Sandbox:
    """A client for one target, with its credentials and TLS settings."""
    auth = None
    if target.auth.username is not None:
        password = target.auth.password.value() if target.auth.password else ""
        auth = (target.auth.username, password)
    bearer = target.auth.bearer_token.value() if target.auth.bearer_token else None
    verify: bool | str = True
    if target.tls.insecure_skip_verify:
        verify = False
    elif target.tls.ca_file:
        verify = target.tls.ca_file
    return sandbox_client.Sandbox(
        target.url,
        timeout=max(target.timeouts.values()),
        headers=dict(target.auth.headers),
        auth=auth,
        bearer_token=bearer,
        verify=verify,
    )
