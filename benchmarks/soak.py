"""Soak test: many misbehaving sandboxes, fast probes, steady scrapes, a reload storm.

    python benchmarks/soak.py                  # 180 s, 60 targets
    python benchmarks/soak.py --seconds 30 --targets 20

The exporter runs in this process, its event loop in a thread of its own,
as the daemon runs it (`daemon.run`), so /proc/self tells its memory,
threads and file descriptors (the script's own two threads, main and
scraper, included); the sandboxes are emulator subprocesses, most of them
faulty on purpose (slow, 500, dropped, truncated, not JSON, dripping,
overloaded, refused). A thread scrapes /metrics every 0.5 s and checks that
no counter of a target that stays ever goes down; halfway through, a reload
storm alternates good and bad configurations while everything keeps
running. Every few seconds a sample of RSS, threads and open fds is taken.

Prints a table of samples, then first/last/max, then a verdict; exits 1 if
a scrape failed, a counter went down, a reload answered unexpectedly or an
unexpected error was logged. Not a test: it takes minutes and its numbers
are for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox_exporter.config import load_config
from sandbox_exporter.daemon import run
from sandbox_exporter.exporter import Exporter
from sandbox_exporter.web import WebServer

# name -> emulator arguments; "refused" has no server at all.
SANDBOX_KINDS: dict[str, list[str]] = {
    "healthy-v3": ["--api", "3"],
    "healthy-v2": ["--api", "2"],
    "slow": ["--fault", "*:latency=3"],
    "http-500": ["--fault", "*:status=500"],
    "dropped": ["--fault", "*:drop"],
    "truncated": ["--fault", "*:truncate=20"],
    "not-json": ["--fault", "*:body=<html>not json</html>"],
    "dripping": ["--fault", "*:drip=0.2"],
    "overloaded": ["--fault", "execute:status=503"],
    "refused": [],
}
COUNTERS = ("sandbox_probe_runs_total", "sandbox_probe_failures_total")
SCRAPE_EVERY = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def sandboxes() -> Iterator[dict[str, str]]:
    """Start one emulator subprocess per kind; yield kind -> URL; stop them by pid."""
    processes: list[subprocess.Popen] = []
    urls: dict[str, str] = {}
    try:
        for kind, extra in SANDBOX_KINDS.items():
            if kind == "refused":
                urls[kind] = f"http://127.0.0.1:{free_port()}/"
                continue
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "sandbox_emulator", "--port", "0",
                    "--containers", "4", "--usage-delay", "0.05", "--libraries-delay", "0.05",
                    "--overload-wait", "0.2", "--log-level", "error", *extra,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )  # fmt: skip
            processes.append(process)
            assert process.stdout is not None
            urls[kind] = process.stdout.readline().strip()
            if not urls[kind].startswith("http://"):
                raise RuntimeError(f"emulator {kind} did not start")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def serving(exporter: Exporter) -> Iterator[str]:
    """Run the exporter as the daemon does, on its own loop in a thread; yield its URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    url: list[str] = []
    stop: list[asyncio.Event] = []

    async def main() -> int:
        stop.append(asyncio.Event())

        def on_started(server: WebServer) -> None:
            url.append(server.url)
            started.set()

        try:
            return await run(exporter, "127.0.0.1:0", on_started, stop=stop[0])
        finally:
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(60) or not url:
        raise RuntimeError("the exporter did not start")
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=15)


def config_text(urls: dict[str, str], targets: int, variant: str) -> str:
    """`full`: every target; `shrunk`: the last tenth gone, intervals changed; `bad`: invalid."""
    if variant == "bad":
        return "targets:\n  - name: [not closed\n"
    kinds = list(SANDBOX_KINDS)
    count = targets if variant == "full" else targets - max(1, targets // 10)
    slow_specifications = "2s" if variant == "shrunk" else "1s"
    lines = [
        "defaults:",
        f"  intervals: {{specifications: {slow_specifications}, usage: 1s, libraries: 2s,"
        " canary: 2s}",
        "  timeouts: {specifications: 1s, usage: 1s, libraries: 1s, canary: 1s}",
        "targets:",
    ]
    for index in range(count):
        kind = kinds[index % len(kinds)]
        lines.append(f"  - {{name: t{index:03d}-{kind}, url: {json.dumps(urls[kind])}}}")
    return "\n".join(lines) + "\n"


def surviving_targets(targets: int) -> set[str]:
    kinds = list(SANDBOX_KINDS)
    stay = targets - max(1, targets // 10)
    return {f"t{index:03d}-{kinds[index % len(kinds)]}" for index in range(stay)}


# ------------------------------------------------------------------ measures


def process_sample() -> tuple[float, int, int]:
    """RSS in MiB, threads, open file descriptors of this process."""
    rss_kib = 0
    threads = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kib / 1024, threads, len(os.listdir("/proc/self/fd"))


@dataclass
class Sample:
    elapsed: float
    rss_mib: float
    threads: int
    fds: int
    scrapes: int
    probe_runs: float
    phase: str


@dataclass
class Watch:
    """What the scraper saw."""

    survivors: set[str]
    scrapes: int = 0
    scrape_errors: list[str] = field(default_factory=list)
    decreases: list[str] = field(default_factory=list)
    slowest_scrape: float = 0.0
    probe_runs: float = 0.0
    previous: dict[tuple, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, text: str) -> None:
        current: dict[tuple, float] = {}
        runs = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name not in COUNTERS:
                    continue
                if sample.name == "sandbox_probe_runs_total":
                    runs += sample.value
                if sample.labels.get("target") in self.survivors:
                    current[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        with self.lock:
            for key, value in current.items():
                before = self.previous.get(key)
                if before is not None and value < before:
                    self.decreases.append(f"{key}: {before} -> {value}")
            self.previous = current
            self.scrapes += 1
            self.probe_runs = runs


class ErrorCounter(logging.Handler):
    """ERROR records other than the expected reload refusals."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info or not message.startswith("config reload failed"):
            if record.exc_info:
                # The traceback is what tells a crash's cause.
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.unexpected.append(message)


def scraper(url: str, watch: Watch, stop: threading.Event) -> None:
    while not stop.wait(SCRAPE_EVERY):
        started = time.perf_counter()
        try:
            response = requests.get(url + "metrics", timeout=10)
            response.raise_for_status()
            watch.check(response.text)
        except (requests.RequestException, ValueError) as error:
            watch.scrape_errors.append(f"{type(error).__name__}: {error}")
        watch.slowest_scrape = max(watch.slowest_scrape, time.perf_counter() - started)


def reload_storm(url: str, path: Path, texts: dict[str, str], count: int) -> list[str]:
    """`count` reloads cycling full, bad, shrunk, bad; returns the surprises."""
    surprises = []
    cycle = ["full", "bad", "shrunk", "bad"]
    for index in range(count):
        variant = cycle[index % len(cycle)]
        path.write_text(texts[variant])
        status = requests.post(url + "-/reload", timeout=30).status_code
        expected = 500 if variant == "bad" else 200
        if status != expected:
            surprises.append(f"reload #{index} ({variant}): {status}, expected {expected}")
    path.write_text(texts["full"])
    if requests.post(url + "-/reload", timeout=30).status_code != 200:
        surprises.append("final reload failed")
    return surprises


# ---------------------------------------------------------------------- main


def print_report(samples: list[Sample], watch: Watch, storm: list[str], errors: list[str]) -> bool:
    print(f"{'t (s)':>7} {'RSS MiB':>8} {'threads':>7} {'fds':>5} {'scrapes':>7} "
          f"{'probe runs':>10}  phase")  # fmt: skip
    for s in samples:
        print(f"{s.elapsed:7.0f} {s.rss_mib:8.1f} {s.threads:7d} {s.fds:5d} {s.scrapes:7d} "
              f"{s.probe_runs:10.0f}  {s.phase}")  # fmt: skip
    print()
    # The first sample is taken before any probe ran; the one at mid-run shows
    # whether the second half still grows (a leak) or has levelled off.
    middle = samples[len(samples) // 2]
    for name in ("rss_mib", "threads", "fds"):
        values = [getattr(s, name) for s in samples]
        print(
            f"{name:>8}: first {values[0]:.1f}  mid-run {getattr(middle, name):.1f}  "
            f"last {values[-1]:.1f}  max {max(values):.1f}"
        )
    print()
    print(f"scrapes: {watch.scrapes} ok, {len(watch.scrape_errors)} failed, "
          f"slowest {watch.slowest_scrape * 1000:.0f} ms")  # fmt: skip
    print(f"probe runs counted at the end: {watch.probe_runs:.0f}")
    print(f"counter decreases on surviving targets: {len(watch.decreases)}")
    print(f"reload storm surprises: {len(storm)}")
    print(f"unexpected error log records: {len(errors)}")
    for problem in [*watch.scrape_errors[:5], *watch.decreases[:5], *storm[:5], *errors[:5]]:
        print(f"  - {problem}")
    healthy = not (watch.scrape_errors or watch.decreases or storm or errors)
    print("verdict:", "OK" if healthy else "PROBLEMS")
    return healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="duration (default 180)")
    parser.add_argument("--targets", type=int, default=60, help="targets (default 60)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--reloads", type=int, default=100, help="reloads in the storm")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.targets < 10 or args.sample_every <= 0:
        parser.error("need --seconds > 0, --targets >= 10, --sample-every > 0")

    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    with sandboxes() as urls, tempfile.TemporaryDirectory() as directory:
        texts = {v: config_text(urls, args.targets, v) for v in ("full", "shrunk", "bad")}
        path = Path(directory) / "config.yml"
        path.write_text(texts["full"])
        exporter = Exporter(load_config(path), path)
        with serving(exporter) as url:
            watch = Watch(surviving_targets(args.targets))
            stop = threading.Event()
            scraping = threading.Thread(target=scraper, args=(url, watch, stop), daemon=True)
            samples: list[Sample] = []
            storm: list[str] = []
            storm_done = threading.Event()
            phase = "probing"
            started = time.monotonic()
            scraping.start()
            try:
                next_sample = 0.0
                storm_at = args.seconds / 2
                while (elapsed := time.monotonic() - started) < args.seconds:
                    if elapsed >= next_sample:
                        rss, threads, fds = process_sample()
                        samples.append(
                            Sample(
                                elapsed, rss, threads, fds, watch.scrapes, watch.probe_runs, phase
                            )
                        )
                        next_sample += args.sample_every
                    if elapsed >= storm_at and phase == "probing":
                        phase = "reload storm"

                        def storm_job() -> None:
                            storm.extend(reload_storm(url, path, texts, args.reloads))
                            storm_done.set()

                        threading.Thread(target=storm_job, daemon=True).start()
                    if phase == "reload storm" and storm_done.is_set():
                        phase = "after storm"
                    time.sleep(0.1)
                rss, threads, fds = process_sample()
                samples.append(
                    Sample(time.monotonic() - started, rss, threads, fds, watch.scrapes,
                           watch.probe_runs, phase)
                )  # fmt: skip
            finally:
                stop.set()
                scraping.join(timeout=15)
    logging.getLogger().removeHandler(errors)
    if not storm_done.is_set():
        storm.append("the reload storm did not finish within the run")
    kinds = ", ".join(SANDBOX_KINDS)
    print(f"soak: {args.targets} targets over {len(SANDBOX_KINDS)} sandboxes ({kinds}),")
    print(f"      {args.seconds:.0f} s, {args.reloads} reloads in the storm")
    print()
    return 0 if print_report(samples, watch, storm, errors.unexpected) else 1


if __name__ == "__main__":
    sys.exit(main())
