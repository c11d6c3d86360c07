"""B6: the memory one scrape of /metrics adds, streamed against the text built whole.

In this process: an exporter daemon (`daemon.run`, not scheduled) on a
loop in a thread of its own, its `State` filled with 1,000 then 5,000
targets (`workload.py`: every probe populated from the recorded documents),
and tracemalloc's peak of traced memory during one scrape, above what was
traced before it, every thread counted:

- streamed: a real GET /metrics over loopback, what the exporter does now;
  the client reads the answer 64 KiB at a time, undecoded, and keeps
  nothing, so what is counted is the server's (the handler's pieces, the
  render thread's trips, aiohttp's buffers) plus a read buffer;
- whole: what /metrics did before it streamed, with today's functions and
  no socket: the collector's text of every target built whole
  (`render(...).text()`), encoded, then gzipped whole at level 1. The
  socket would have added its own copy of the answer in the transport's
  buffer: this is an underestimate of the old way.

Each in plain text and gzip. The snapshot the scrape renders from (a
shallow copy of the state's dicts, no text) is in both, and measured alone
beside them: it is what still grows with the number of targets.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests

from sandbox_exporter import collector
from sandbox_exporter.daemon import run as serve
from sandbox_exporter.exporter import Exporter
from sandbox_exporter.state import State
from sandbox_exporter.web import WebServer, exposition, process_registry

from .common import Report
from .cost import MiB
from .workload import build_config, populate

SIZES = (1000, 5000)
QUICK_SIZES = (300, 1000)
READ = 64 * 1024


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


@contextmanager
def serving(size: int) -> Iterator[tuple[State, str]]:
    """An unscheduled exporter with `size` populated targets: its state and URL."""
    exporter = Exporter(build_config(size), scheduled=False)
    populate(exporter.state)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    servers: list[WebServer] = []

    def thread() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(exporter, "127.0.0.1:0", servers.append, None, stop))

    runner = threading.Thread(target=thread, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not servers:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter did not start")
            time.sleep(0.05)
        yield exporter.state, servers[0].url
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(10)


def streamed(url: str, zipped: bool) -> Callable[[], int]:
    headers = {"Accept-Encoding": "gzip" if zipped else "identity"}

    def scrape() -> int:
        received = 0
        with requests.get(url + "metrics", headers=headers, stream=True, timeout=300) as answer:
            answer.raise_for_status()
            while data := answer.raw.read(READ, decode_content=False):
                received += len(data)
        return received

    return scrape


def whole(state: State, zipped: bool) -> Callable[[], int]:
    process = process_registry()

    def scrape() -> int:
        body = collector.render(state.snapshot()).text().encode()
        body += b"".join(exposition(State(), process, False, False))  # the process's families
        return len(gzip.compress(body, compresslevel=1) if zipped else body)

    return scrape


def measure(size: int) -> dict[str, tuple[int, int, float]]:
    with serving(size) as (state, url):
        streamed(url, False)()  # first scrape: the render thread, lazy imports
        tracemalloc.start()
        try:
            out = {"snapshot": added_peak(lambda: len(state.snapshot().results))}
            for zipped in (False, True):
                name = "gzip" if zipped else "text"
                out[f"streamed {name}"] = added_peak(streamed(url, zipped))
                out[f"whole {name}"] = added_peak(whole(state, zipped))
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
                "bounded, not growing with the text",
                f"{streamed_bytes / 1e6:.1f} MB received ({whole_bytes / 1e6:.1f} MB whole); "
                f"of which the snapshot {snapshot / MiB:.1f} MiB; under tracemalloc "
                f"{streamed_seconds:.1f} s streamed, {whole_seconds:.1f} s whole",
            )
