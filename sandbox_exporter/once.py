"""`sandbox-exporter --once`: probe every target once, judge, report.

Exit codes and output follow the monitoring-plugin convention (Nagios,
Icinga, Sensu): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; a short first line,
then `|` and perfdata, then one line per target.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from .config import Config, Target
from .health import Status, TargetVerdict, judge
from .probes import ProbeResult, make_sandbox, run_probe
from .vocabulary import CANARY, LIBRARIES, PROBES, SPECIFICATIONS, USAGE

# Two waves, every target at once in each: the canary holds a container, so
# it runs after the usage probe has counted the busy ones; otherwise the
# check would see its own canary as load.
WAVES: tuple[tuple[str, ...], ...] = ((SPECIFICATIONS, USAGE), (LIBRARIES, CANARY))


def probe_all(targets: list[Target]) -> list[TargetVerdict]:
    """Every probe of every target, each bounded by its deadline."""
    sandboxes = {target.name: make_sandbox(target) for target in targets}
    outcomes: dict[tuple[str, str], ProbeResult] = {}
    try:
        workers = max(1, min(64, 2 * len(targets)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for wave in WAVES:
                futures = {
                    (target.name, kind): pool.submit(
                        run_probe, kind, sandboxes[target.name], target
                    )
                    for target in targets
                    for kind in wave
                }
                outcomes.update((key, future.result()) for key, future in futures.items())
    finally:
        for sandbox in sandboxes.values():
            sandbox.close()
    return [
        judge(target, {kind: outcomes[(target.name, kind)] for kind in PROBES})
        for target in targets
    ]


def overall(verdicts: list[TargetVerdict]) -> Status:
    return max((v.status for v in verdicts), default=Status.UNKNOWN)


def _perf_label(text: str) -> str:
    return "'" + text.replace("'", "") + "'"


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
    perfdata = []
    for v in verdicts:
        name = v.target.name
        if v.load_ratio is not None:
            t = v.target.thresholds
            critical = "" if t.load_critical is None else f"{t.load_critical:g}"
            label = _perf_label(f"{name}_load")
            perfdata.append(f"{label}={v.load_ratio:.3f};{t.load_warning:g};{critical};0;1")
        canary = v.results.get(CANARY)
        if canary is not None and isinstance(canary.data, tuple):
            for c in canary.data:
                if c.round_trip_seconds is not None:
                    label = _perf_label(f"{name}_canary_{c.name}")
                    perfdata.append(f"{label}={c.round_trip_seconds:.4f}s;;;0")
    lines = [
        f"SANDBOX {status.name} - {summary}" + (" | " + " ".join(perfdata) if perfdata else "")
    ]
    for v in verdicts:
        detail = "; ".join(map(str, v.problems)) if v.problems else _healthy_summary(v)
        lines.append(f"[{v.status.name}] {v.target.name}: {detail}")
    return "\n".join(lines) + "\n"


def _healthy_summary(verdict: TargetVerdict) -> str:
    parts = [r.message for kind, r in verdict.results.items() if kind in (SPECIFICATIONS, CANARY)]
    if verdict.load_ratio is not None:
        parts.append(f"load {verdict.load_ratio:.0%}")
    return "; ".join(parts)


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


def run_once(config: Config, names: list[str] | None = None) -> tuple[Status, list[TargetVerdict]]:
    targets = list(config.targets)
    if names:
        targets = [t for t in targets if t.name in set(names)]
    verdicts = probe_all(targets)
    return overall(verdicts), verdicts
