"""B5: where the exporter's memory goes at 1000 targets, the breakdown behind B4's RSS.

The exporter runs in this process, on an event loop in a thread of its own,
against four emulator processes set up as in B4 (every probe hourly, so the
first round is the only traffic). tracemalloc follows every allocation from
the parsing of the configuration on; once every probe of every target has
run once, the live Python objects are summed by component (by the file that
allocated them) and set beside their peak during the round. The RSS of a
bare import of the daemon's modules (`sandbox_exporter.daemon`; the command
line imports them only when it serves) is read in a child process; the daemon's
RSS is B4's. tracemalloc slows the exporter down, so the round takes longer
here than in B4.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass

from sandbox_exporter.config import parse_config
from sandbox_exporter.daemon import run as serve
from sandbox_exporter.exporter import Exporter
from sandbox_exporter.vocabulary import PROBES

from .common import Report, targets_yaml
from .cost import HOURLY, MiB, emulators_at_scale

# Components by the files that allocate their objects; the first match wins.
# An allocation belongs to the innermost of our modules on its stack (pydantic
# builds both configuration and documents; aiohttp allocates for probes),
# else to the library that made it.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("configuration", ("sandbox_exporter/config/", "/yaml/")),
    (
        "results, counters, history",
        (
            "sandbox_exporter/state.py",
            "sandbox_exporter/history_ring.py",
            "sandbox_exporter/probes.py",
            "sandbox_exporter/health.py",
        ),
    ),
    ("server documents", ("sandbox_exporter/documents/", "/json/decoder.py")),
    ("scheduler jobs", ("sandbox_exporter/scheduler.py", "/apscheduler/")),
    (
        "HTTP client",
        ("/aiohttp/", "sandbox_exporter/transport.py", "sandbox_exporter/protocol.py", "/asyncio/"),
    ),
)
STACK_FRAMES = 12


def import_rss() -> int:
    """RSS of a fresh interpreter that imported the daemon's modules."""
    code = (
        "import sandbox_exporter.daemon, pathlib\n"
        "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmRSS:')][0].split()[1])"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return int(output.stdout) * 1024


def component_of(traceback: tracemalloc.Traceback) -> str:
    innermost_first = [frame.filename for frame in reversed(traceback)]
    ours = [filename for filename in innermost_first if "sandbox_exporter/" in filename]
    if "/json/" in innermost_first[0]:
        # JSON is decoded on behalf of the documents, whoever read the answer.
        candidates = innermost_first[:1]
    else:
        candidates = ours[:1] or innermost_first
    for filename in candidates:
        for name, parts in COMPONENTS:
            if any(part in filename for part in parts):
                return name
    return "other"


def by_component(snapshot: tracemalloc.Snapshot) -> dict[str, int]:
    sizes = {name: 0 for name, _ in COMPONENTS} | {"other": 0}
    for statistic in snapshot.statistics("traceback"):
        sizes[component_of(statistic.traceback)] += statistic.size
    return sizes


@dataclass
class RoundCost:
    live: int  # traced bytes once the round is done
    peak: int  # traced bytes at most during it
    components: dict[str, int]
    failed: int


def first_round(urls: list[str], targets: int, timeout: float) -> RoundCost:
    """Run an exporter in this process until every probe ran once; what it cost."""
    text = targets_yaml(targets, urls, intervals=HOURLY)
    gc.collect()
    tracemalloc.start(STACK_FRAMES)
    exporter = Exporter(parse_config(text))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    def thread() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(exporter, "127.0.0.1:0", lambda _: started.set(), None, stop))

    runner = threading.Thread(target=thread, daemon=True)
    runner.start()
    try:
        if not started.wait(60):
            raise RuntimeError("the exporter did not start")
        deadline = time.monotonic() + timeout
        while len(results := exporter.state.snapshot().results) < targets * len(PROBES):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every probe ran within {timeout} s")
            time.sleep(0.2)
        failed = sum(not result.success for result in results.values())
        del results
        gc.collect()
        components = by_component(tracemalloc.take_snapshot())
        live, peak = tracemalloc.get_traced_memory()
        return RoundCost(live, peak, components, failed)
    finally:
        tracemalloc.stop()
        loop.call_soon_threadsafe(stop.set)
        runner.join(10)


def run(report: Report, quick: bool) -> None:
    targets = 300 if quick else 1000
    emulators = emulators_at_scale()
    try:
        cost = first_round([e.url for e in emulators], targets, 300)
    finally:
        for emulator in emulators:
            emulator.stop()
    report.add(
        "B5 memory",
        "RSS of a fresh `import sandbox_exporter.daemon`",
        f"{import_rss() / MiB:.1f} MiB",
        "",
        "the interpreter, aiohttp, pydantic, prometheus_client, APScheduler, PyYAML",
    )
    report.add(
        "B5 memory",
        f"live Python objects once every probe of {targets} targets ran once",
        f"{cost.live / MiB:.1f} MiB ({cost.live / targets:.0f} bytes a target, fixed costs in)",
        "",
        ", ".join(f"{name} {size / MiB:.1f} MiB" for name, size in cost.components.items())
        + f"; {cost.failed} probes failed",
    )
    report.add(
        "B5 memory",
        "peak of live Python objects during the first round",
        f"{cost.peak / MiB:.1f} MiB",
        "",
        "the allocator keeps much of a peak: compare B4's RSS. This process's own "
        "RSS says little (tracemalloc's bookkeeping, the benchmark's objects)",
    )
