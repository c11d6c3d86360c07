"""`sandbox-exporter --once`: probe every target once, judge, report.

Exit codes and output follow the monitoring-plugin convention (Nagios,
Icinga, Sensu): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; a short first line,
then `|` and perfdata, then one line per target.
"""

from __future__ import annotations

import asyncio
import json
import time

from . import plugin_output
from .config import Config, Target
from .health import Status, TargetVerdict, healthy_summary, judge
from .once_deadline import DEFAULT_TIMEOUT_SECONDS
from .probes import ProbeResult, run_probe
from .protocol import seconds_text
from .transport import ProbeTransport, open_session
from .vocabulary import CANARY, LIBRARIES, PROBES, SPECIFICATIONS, USAGE, Reason

# Each target's probes in steps: first its specifications (a target that
# fails them is not probed again: its other probes would fail for the same
# cause and burn the check's budget), then its usage, then its libraries and
# canaries together: a canary holds a container, so it runs after the usage
# probe has counted the busy ones, or the check would see its own canary as
# load. Targets are probed side by side.
STEPS: tuple[tuple[str, ...], ...] = ((SPECIFICATIONS,), (USAGE,), (LIBRARIES, CANARY))
# Kept from the budget, counted from the process's start (cli gives it):
# probes that overran their deadline get LATE_PROBE_SECONDS to record what
# cut them, then the rest is for cancelling them, judging and printing before
# the watchdog's EXIT_SECONDS (once_deadline), which all the checks a
# monitoring server started together do at the same moment, on the same cores.
REPORT_SECONDS = 0.5
LATE_PROBE_SECONDS = 0.1


async def _probe_target(
    target: Target, transport: ProbeTransport, end: float, results: dict[str, ProbeResult]
) -> None:
    loop = asyncio.get_running_loop()
    for step in STEPS:
        remaining = end - loop.time()
        if remaining <= 0:
            return
        outcomes = await asyncio.gather(
            *(run_probe(kind, transport, target, remaining) for kind in step)
        )
        results.update((r.probe, r) for r in outcomes)
        if step == (SPECIFICATIONS,) and not outcomes[0].success:
            return


async def probe_all(
    targets: list[Target], timeout: float, started: float | None = None
) -> list[TargetVerdict]:
    """Every probe of every target, all of it within ``timeout`` seconds of
    ``started`` (event-loop time; None for now)."""
    loop = asyncio.get_running_loop()
    end = (loop.time() if started is None else started) + max(timeout - REPORT_SECONDS, 0.0)
    results: dict[str, dict[str, ProbeResult]] = {t.name: {} for t in targets}
    async with open_session() as session:
        tasks = [
            asyncio.create_task(_probe_target(t, ProbeTransport(t, session), end, results[t.name]))
            for t in targets
        ]
        if tasks:
            # Each probe's deadline already ends by `end`; this is the net under it.
            await asyncio.wait(tasks, timeout=max(end - loop.time(), 0.0) + LATE_PROBE_SECONDS)
        for task in tasks:
            task.cancel()
    late = f"not finished within the check's timeout of {seconds_text(timeout)} (-t)"
    now = time.time()
    verdicts = []
    for target in targets:
        done = results[target.name]
        unreachable = SPECIFICATIONS in done and not done[SPECIFICATIONS].success
        for kind in PROBES:
            if kind not in done and not unreachable:
                done[kind] = ProbeResult(target.name, kind, False, Reason.TIMEOUT, now, 0.0, late)
        verdicts.append(judge(target, {k: done[k] for k in PROBES if k in done}))
    return verdicts


def overall(verdicts: list[TargetVerdict]) -> Status:
    return max((v.status for v in verdicts), default=Status.UNKNOWN)


def render_text(verdicts: list[TargetVerdict]) -> str:
    status = overall(verdicts)
    if not verdicts:
        return "SANDBOX UNKNOWN - no targets to check\n"
    counts = {s: sum(1 for v in verdicts if v.status == s) for s in Status}
    worst_first = sorted(Status, reverse=True)
    summary = ", ".join(f"{counts[s]} {s.name.lower()}" for s in worst_first if counts[s])
    summary += f" of {len(verdicts)} target{'s' * (len(verdicts) > 1)}"
    bad = sorted((v for v in verdicts if v.status != Status.OK), key=lambda v: -v.status)
    if bad:
        summary += ": " + "; ".join(
            f"{v.target.name} {', '.join(p.summary for p in v.problems)}" for v in bad[:3]
        )
        if len(bad) > 3:
            summary += f"; and {len(bad) - 3} more"
    perfdata = " ".join(map(str, plugin_output.perfdata(verdicts)))
    lines = [f"SANDBOX {status.name} - {summary}"]
    for v in verdicts:
        detail = "; ".join(map(str, v.problems)) if v.problems else healthy_summary(v)
        lines.append(f"[{v.status.name}] {v.target.name}: {detail}")
    text = plugin_output.plain_text("\n".join(lines))
    first, newline, rest = text.partition("\n")
    if perfdata:
        first += f" | {perfdata}"
    return first + newline + rest + "\n"


def render_json(verdicts: list[TargetVerdict]) -> str:
    status = overall(verdicts)
    document = {
        "status": status.name,
        "exit_code": int(status),
        "targets": [
            {
                "name": v.target.name,
                "status": v.status.name,
                "problems": [str(p) for p in v.problems],
                "load_ratio": v.load_ratio,
                "probes": {
                    kind: {
                        "success": r.success,
                        "reason": r.reason.value if r.reason else None,
                        "duration_seconds": round(r.duration_seconds, 6),
                        "message": r.message,
                    }
                    for kind, r in v.results.items()
                },
            }
            for v in verdicts
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def run_once(
    config: Config,
    names: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    started: float | None = None,
) -> tuple[Status, list[TargetVerdict]]:
    """Probe, judge; the caller ends the process right after (see cli._exit_now).

    ``timeout`` counts from ``started`` (``time.monotonic()``; None for now):
    the command line gives the process's start (:func:`once_deadline.process_start`).
    """
    targets = [t for t in config.targets if not names or t.name in names]
    verdicts = asyncio.new_event_loop().run_until_complete(probe_all(targets, timeout, started))
    return overall(verdicts), verdicts
