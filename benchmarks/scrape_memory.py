"""B6: the memory one scrape of /metrics adds, the text built whole against streamed.

In this process, no network: a `State` with 1,000 and 5,000 targets
(`workload.py`: every probe populated from the recorded documents), and
tracemalloc's peak of traced memory during one scrape, above what was
traced before it. Two ways to produce the bytes of /metrics:

- whole: what /metrics did before it streamed, with today's functions: the
  collector's text of every target built whole (`render(...).text()`),
  encoded, then gzipped whole at level 1;
- streamed: what /metrics does now (`web.exposition`): pieces of about
  64 KiB, each encoded and gzipped on the way, and let go of once handed
  out, as the handler lets go of a piece once written to the socket.

Each in plain text and gzip. The snapshot the scrape renders from (a
shallow copy of the state's dicts, no text) is in both, and measured alone
beside them: it is what still grows with the number of targets.
"""

from __future__ import annotations

import gc
import gzip
import time
import tracemalloc
from collections.abc import Callable

from sandbox_exporter import collector
from sandbox_exporter.state import State
from sandbox_exporter.web import exposition, process_registry

from .common import Report
from .cost import MiB
from .workload import populated_state

SIZES = (1000, 5000)
QUICK_SIZES = (300, 1000)


def added_peak(scrape: Callable[[], int]) -> tuple[int, int, float]:
    """(peak traced bytes above those before, bytes produced, seconds) of `scrape()`."""
    gc.collect()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    produced = scrape()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    return peak - before, produced, seconds


def whole(state: State, zipped: bool) -> Callable[[], int]:
    process = process_registry()

    def scrape() -> int:
        body = collector.render(state.snapshot()).text().encode()
        body += b"".join(exposition(State(), process, False, False))  # the process's families
        return len(gzip.compress(body, compresslevel=1) if zipped else body)

    return scrape


def streamed(state: State, zipped: bool) -> Callable[[], int]:
    process = process_registry()

    def scrape() -> int:
        return sum(len(piece) for piece in exposition(state, process, False, zipped))

    return scrape


def measure(size: int) -> dict[str, tuple[int, int, float]]:
    state, _ = populated_state(size)
    tracemalloc.start()
    try:
        out = {"snapshot": added_peak(lambda: len(state.snapshot().results))}
        for zipped in (False, True):
            name = "gzip" if zipped else "text"
            out[f"whole {name}"] = added_peak(whole(state, zipped))
            out[f"streamed {name}"] = added_peak(streamed(state, zipped))
    finally:
        tracemalloc.stop()
    return out


def run(report: Report, quick: bool) -> None:
    for size in QUICK_SIZES if quick else SIZES:
        found = measure(size)
        snapshot = found["snapshot"][0]
        for name in ("text", "gzip"):
            whole_peak, whole_bytes, whole_seconds = found[f"whole {name}"]
            streamed_peak, streamed_bytes, streamed_seconds = found[f"streamed {name}"]
            report.add(
                "B6 scrape memory",
                f"{size} targets, {name}: peak a scrape adds, streamed (whole)",
                f"{streamed_peak / MiB:.1f} MiB ({whole_peak / MiB:.1f} MiB)",
                "bounded by a chunk, not the text",
                f"{whole_bytes / 1e6:.1f} MB sent ({streamed_bytes / 1e6:.1f} MB streamed); "
                f"of which the snapshot {snapshot / MiB:.1f} MiB; under tracemalloc "
                f"{streamed_seconds:.1f} s streamed, {whole_seconds:.1f} s whole",
            )
