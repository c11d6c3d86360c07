"""B8: one process at 5,000 targets against the same at 1,000.

B7's setting (default intervals, the low-CPU stand-in answering after
50 ms, a scrape every 15 s in turn as text, OpenMetrics and OpenMetrics
gzipped) at 1,000 then 5,000 targets, a fresh exporter and stand-in for
each. At each size: the first round (from the process's start until every
probe has run once), then a window of steady operation, and from it RSS
per target (at the end of the window, and the growth from 1,000 to 5,000
per added target), CPU per probe run (the exporter's CPU seconds between
the first and the last scrape over the probe runs between them, so the
scrapes' rendering is in), the median scrape time by kind, and threads.
The cost per target at 5,000 against 1,000 is what says whether one
process scales; docs/performance.md says when to shard instead.

    python -m benchmarks --only B8 --duration 60   # a short run
"""

from __future__ import annotations

import statistics

from .common import ExporterProcess, Report
from .steady import (
    DEFAULT_SECONDS,
    QUICK_SECONDS,
    Operation,
    first_round,
    history_fill,
    operate,
    probe_rate,
    stand_in,
    targets_config,
)

MiB = 2**20
SIZES = (1000, 5000)
QUICK_SIZES = (500, 2500)


def at_size(targets: int, seconds: float) -> tuple[float, int, Operation]:
    """(first round in seconds, its failed probes, the window's operation) at `targets`."""
    servers = stand_in(targets)
    try:
        exporter = ExporterProcess(targets_config(servers.urls))
        try:
            all_probed, failed = first_round(exporter, 600)
            return all_probed, failed, operate(exporter, seconds)
        finally:
            exporter.stop()
    finally:
        servers.stop()


def run(report: Report, quick: bool, duration: float | None = None) -> None:
    seconds = duration or (QUICK_SECONDS if quick else DEFAULT_SECONDS)
    sizes = QUICK_SIZES if quick else SIZES
    found = {size: at_size(size, seconds) for size in sizes}
    small, large = sizes
    per_target: dict[str, dict[int, float]] = {
        "rss": {},
        "cpu": {},
        "scrape": {},
        "render_cpu": {},
    }
    for size, (all_probed, failed, operation) in found.items():
        cpu_per_probe = operation.runs_cpu / operation.runs if operation.runs else float("nan")
        scrapes = {kind: statistics.median(times) for kind, times in operation.scrapes.items()}
        per_target["rss"][size] = operation.end_rss / size
        per_target["cpu"][size] = cpu_per_probe
        per_target["scrape"][size] = scrapes["text"] / size
        render_cpu = {kind: statistics.median(cpu) for kind, cpu in operation.render_cpu.items()}
        per_target["render_cpu"][size] = render_cpu["text"] / size
        report.add(
            "B8 scale",
            f"{size} targets: RSS at the end / target, CPU per probe run",
            f"{operation.end_rss / size / 1024:.1f} KiB, {cpu_per_probe * 1e3:.2f} ms",
            "",
            f"RSS {operation.end_rss / MiB:.0f} MiB (peak {operation.peak / MiB:.0f}); "
            f"{operation.runs:.0f} runs in {seconds:.0f} s (default intervals: "
            f"{probe_rate(size):.0f}/s), {operation.failures:.0f} failures counted; "
            f"histories {history_fill(operation.total_runs, size) * 100:.0f}% full at the end; "
            f"first round {all_probed:.1f} s after start ({failed} failed); threads at most "
            f"{operation.threads()}; scrapes (median) "
            + ", ".join(f"{kind} {time:.2f} s" for kind, time in scrapes.items())
            + "; the render thread's CPU a scrape (median) "
            + ", ".join(f"{kind} {cpu:.2f} s" for kind, cpu in render_cpu.items()),
        )
    growth = (found[large][2].end_rss - found[small][2].end_rss) / (large - small)
    report.add(
        "B8 scale",
        f"RSS added per target from {small} to {large}",
        f"{growth / 1024:.1f} KiB",
        "",
        "the difference of the RSS at the end of the two windows over the targets added",
    )
    for measure, label, context in (
        ("rss", "RSS per target", ""),
        ("cpu", "CPU per probe run", ""),
        (
            "render_cpu",
            "text scrape: the render thread's CPU per target",
            "what a scrape costs, read from the threads beside the loop's",
        ),
        (
            "scrape",
            "text scrape: time per target",
            "what a scrape waits: the render thread's share of one interpreter, which "
            "the probes' runs take more of as targets grow",
        ),
    ):
        ratio = per_target[measure][large] / per_target[measure][small]
        report.add("B8 scale", f"{label}: {large} / {small}", f"{ratio:.2f}x", "<= 1.2x", context)
    report.add(
        "B8 scale",
        f"first round: {small} / {large} targets",
        f"{found[small][0]:.1f} s / {found[large][0]:.1f} s",
        "",
        "from the process's start until every probe ran once (the start spreads first "
        "runs over first runs / 1000 s)",
    )
