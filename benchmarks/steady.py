"""B7: steady operation, as users live with it: probes at the default intervals
and a Prometheus scraping every 15 s, for minutes.

The exporter daemon (its own process, default settings) with 1,000 targets
at the default intervals (usage every 15 s, specifications and canary every
30 s, libraries hourly: about 134 probes a second). The targets are the
low-CPU stand-in (`slow_targets.py`) answering after 50 ms with what a 2.x
and a 3.x emulator answered at the start (half the targets each), so the
exporter's cores are the exporter's. Once every probe has run once, a
scraper GETs /metrics every 15 s, in turn as text, as OpenMetrics, and as
OpenMetrics gzipped (Prometheus' own Accept header, then with
`Accept-Encoding: gzip`), someone opens the landing page once a minute,
and the exporter's RSS is read from /proc every second until the end.

Steady operation begins when every target's history holds its 100 entries
(`--history.limit`), about 12.5 minutes after the start at the default
intervals: until then memory grows with the histories, by design. So the
run lasts that long, then `--duration` more (300 s by default); with
`--quick` only the 90 s, histories partly filled (the report says how full).

Reported: the exporter's peak RSS (VmHWM) over the whole run and its RSS
at the end, and whether RSS is flat over the last half of the `--duration`
window (max - min within 5% of the median), against blackbox_exporter's
peak RSS under the same probe rate at the same time: its `/probe` with the
canary's POST, paced at the exporter's rate over 1,000 distinct target URLs
of the same stand-in. And the floors: the peak RSS of the exporter with no
target and of a bare aiohttp `/probe` (`bare_probe.py`).

    python -m benchmarks --only B7 --duration 120   # 12.5 minutes, then 120 s
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from subprocess import PIPE
from urllib.parse import quote

import aiohttp
import requests

from sandbox_exporter.config import DEFAULT_INTERVALS
from sandbox_exporter.protocol import EXECUTE_PATH
from sandbox_exporter.state import DEFAULT_HISTORY_LIMIT

from .common import (
    BlackboxProcess,
    Child,
    EmulatorProcess,
    ExporterProcess,
    Report,
    other_threads_cpu,
    sum_samples,
    threads_cpu,
)
from .fanout import SlowTargetsProcess, record_answers
from .fidelity import blackbox_config, encoded_canary

MiB = 2**20
TARGETS = 1000
LATENCY = 0.05  # seconds: a sandbox on its own machine, answering promptly
SCRAPE_EVERY = 15.0  # Prometheus' default scrape_interval
DEFAULT_SECONDS = 300.0
QUICK_SECONDS = 90.0
FLAT_WITHIN = 0.05
PAGE_EVERY = 4  # scrapes: the landing page once a minute
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# The three ways a scrape asks, in turn.
SCRAPES = {
    "text": {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"},
    "OpenMetrics": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "identity"},
    "OpenMetrics gzip": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
}


def probe_rate(targets: int) -> float:
    """Probe runs a second at the default intervals."""
    return targets * sum(1 / interval for interval in DEFAULT_INTERVALS.values())


def stand_in(targets: int) -> SlowTargetsProcess:
    """The low-CPU stand-in with `targets` ports, half answering as 2.x, half as 3.x."""
    answers = []
    for api in (2, 3):
        emulator = EmulatorProcess(api=api, containers=5)
        try:
            answers.append(record_answers(emulator))
        finally:
            emulator.stop()
    return SlowTargetsProcess(answers, LATENCY, copies=targets // 2)


def targets_config(urls: list[str]) -> str:
    """Every target at the default intervals, 2.x and 3.x interleaved."""
    half = len(urls) // 2
    interleaved = [url for pair in zip(urls[:half], urls[half:], strict=True) for url in pair]
    lines = ["targets:"]
    lines += [f"  - {{name: t{i:05d}, url: '{url}'}}" for i, url in enumerate(interleaved)]
    return "\n".join(lines) + "\n"


def first_round(exporter: ExporterProcess, timeout: float) -> tuple[float, int]:
    """Seconds from the process's start until every probe ran once (`/-/ready`,
    cheap to ask, unlike a page or a scrape of every target), and how many of
    those probes failed."""
    while requests.get(exporter.url + "-/ready", timeout=60).status_code != 200:
        if time.monotonic() - exporter.started > timeout:
            raise RuntimeError(f"not every probe ran within {timeout} s")
        time.sleep(0.5)
    ready = time.monotonic() - exporter.started
    text = requests.get(exporter.url + "metrics", timeout=120).text
    failed = sum(
        line.endswith(" 0.0") for line in text.splitlines() if line.startswith("sandbox_up{")
    )
    return ready, failed


def history_fill(runs: float, targets: int) -> float:
    """How full the targets' histories are, from the probe runs so far: each
    run adds an entry, up to `--history.limit` a target."""
    return min(1.0, runs / targets / DEFAULT_HISTORY_LIMIT)


def settle_seconds(targets: int) -> float:
    """Time from the start until every target's history holds its
    `--history.limit` entries at the default intervals (about 12.5 minutes):
    before it, memory grows with them, so steady operation begins there."""
    return DEFAULT_HISTORY_LIMIT / (probe_rate(targets) / targets)


@dataclass
class Sample:
    at: float  # seconds since the window began
    rss: int
    cpu: float
    threads: int


@dataclass
class Operation:
    """What a window of steady operation showed."""

    samples: list[Sample] = field(default_factory=list)
    scrapes: dict[str, list[float]] = field(default_factory=dict)  # seconds, by kind
    # CPU seconds of the threads beside the loop's during each scrape, by kind:
    # the render thread's work, whatever share of the interpreter it got.
    render_cpu: dict[str, list[float]] = field(default_factory=dict)
    runs: float = 0.0  # probe runs between the first and the last scrape
    total_runs: float = 0.0  # probe runs since the start, at the last scrape
    pages: int = 0  # landing pages viewed
    runs_cpu: float = 0.0  # the exporter's CPU seconds between them
    failures: float = 0.0
    peak: int = 0
    end_rss: int = 0

    def flatness(self, since: float = 0.0) -> float:
        """(max - min) / median of RSS over the last half of the window that
        begins `since` seconds into the operation."""
        half = since + (self.samples[-1].at - since) / 2
        last = [s.rss for s in self.samples if s.at >= half]
        return (max(last) - min(last)) / statistics.median(last)

    def threads(self) -> int:
        return max(s.threads for s in self.samples)


def operate(exporter: ExporterProcess, seconds: float, page_every: int = 0) -> Operation:
    """`seconds` of scrapes every SCRAPE_EVERY, kinds in turn, RSS read every
    second; with `page_every`, someone opens the landing page after every
    `page_every`-th scrape, as an operator keeping an eye on it would."""
    out = Operation(
        scrapes={kind: [] for kind in SCRAPES}, render_cpu={kind: [] for kind in SCRAPES}
    )
    began = time.monotonic()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            usage = exporter.usage()
            at = time.monotonic() - began
            out.samples.append(Sample(at, usage.rss_bytes, usage.cpu_seconds, usage.threads))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    first: tuple[float, float] | None = None
    try:
        for index in range(max(2, int(seconds // SCRAPE_EVERY) + 1)):
            time.sleep(max(0.0, began + index * SCRAPE_EVERY - time.monotonic()))
            kind = list(SCRAPES)[index % len(SCRAPES)]
            cpu = exporter.usage().cpu_seconds
            threads_before = threads_cpu(exporter.pid)
            started = time.monotonic()
            response = requests.get(exporter.url + "metrics", headers=SCRAPES[kind], timeout=120)
            response.raise_for_status()
            out.scrapes[kind].append(time.monotonic() - started)
            rendered = other_threads_cpu(exporter.pid, threads_before, threads_cpu(exporter.pid))
            out.render_cpu[kind].append(rendered)
            runs = sum_samples(response.text, "sandbox_probe_runs_total")
            if first is None:
                first = (runs, cpu)
            out.runs, out.runs_cpu = runs - first[0], cpu - first[1]
            out.total_runs = runs
            out.failures = sum_samples(response.text, "sandbox_probe_failures_total")
            del response, runs
            if page_every and index % page_every == page_every - 1:
                requests.get(exporter.url, timeout=120).raise_for_status()
                out.pages += 1
    finally:
        stop.set()
        sampler.join(5)
    usage = exporter.usage()
    out.peak, out.end_rss = usage.peak_rss_bytes, usage.rss_bytes
    return out


class PacedBlackbox:
    """blackbox_exporter's /probe canary over `urls`, `rate` a second, in a thread
    of this process until `stop()`; its usage is read from /proc like ours."""

    def __init__(self, target_urls: list[str], rate: float) -> None:
        body, content_type = encoded_canary()
        self.blackbox = BlackboxProcess(blackbox_config(body, content_type))
        self.urls = [
            f"{self.blackbox.url}probe?module=canary&target={quote(url + EXECUTE_PATH, safe='')}"
            for url in target_urls
        ]
        self.rate = rate
        self.done = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._drive()), daemon=True)
        self._thread.start()

    async def _drive(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

            async def probe(url: str) -> None:
                try:
                    async with session.get(url) as response:
                        text = await response.text()
                        self.done += 1
                        self.failed += "probe_success 1" not in text
                except aiohttp.ClientError:
                    self.failed += 1

            tasks = set()
            began = time.monotonic()
            sent = 0
            while not self._stop.is_set():
                due = int((time.monotonic() - began) * self.rate)
                while sent < due:
                    task = asyncio.create_task(probe(self.urls[sent % len(self.urls)]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                await asyncio.sleep(0.01)
            await asyncio.gather(*tasks)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.blackbox.stop()


def floors(sandbox_url: str) -> dict[str, int]:
    """Peak RSS of what any exporter on this stack costs before its targets:
    the exporter with no target (the interpreter and its libraries, one
    scrape and one landing page served), and the bare aiohttp `/probe` of
    B4 (`bare_probe.py`, client and server, nothing else) after 500 canaries
    to `sandbox_url`, 4 at a time."""
    out = {}
    exporter = ExporterProcess("targets: []\n")
    try:
        for path in ("metrics", ""):
            requests.get(exporter.url + path, timeout=30).raise_for_status()
        out["exporter"] = exporter.usage().peak_rss_bytes
    finally:
        exporter.stop()
    bare = Child([sys.executable, "-m", "benchmarks.bare_probe", sandbox_url], stdout=PIPE)
    try:
        assert bare.process.stdout is not None
        url = bare.process.stdout.readline().strip() + "probe"
        with requests.Session() as session:
            for _ in range(500):
                session.get(url, timeout=30).raise_for_status()
        out["bare"] = bare.usage().peak_rss_bytes
    finally:
        bare.stop()
    return out


def run(report: Report, quick: bool, duration: float | None = None) -> None:
    seconds = duration or (QUICK_SECONDS if quick else DEFAULT_SECONDS)
    rate = probe_rate(TARGETS)
    servers = stand_in(TARGETS)
    try:
        exporter = ExporterProcess(targets_config(servers.urls))
        try:
            all_probed, failed = first_round(exporter, 300)
            # Until the histories are full memory grows with them: the
            # window begins after (not with --quick, a check of the code).
            settle = 0.0 if quick else max(0.0, settle_seconds(TARGETS) - all_probed)
            blackbox = PacedBlackbox(servers.urls, rate)
            try:
                operation = operate(exporter, settle + seconds, page_every=PAGE_EVERY)
                blackbox_usage = blackbox.blackbox.usage()
            finally:
                blackbox.stop()
        finally:
            exporter.stop()
        floor = floors(servers.urls[0])
    finally:
        servers.stop()
    flat = operation.flatness(since=settle)
    fill = history_fill(operation.total_runs, TARGETS)
    report.add(
        "B7 steady",
        f"{TARGETS} targets, default intervals, scraped every {SCRAPE_EVERY:.0f} s "
        + (f"for {settle:.0f} s until the histories are full, then " if settle else "for ")
        + f"{seconds:.0f} s: exporter peak RSS / blackbox peak RSS",
        f"{operation.peak / blackbox_usage.peak_rss_bytes:.2f}x",
        "<= 2.5x",
        f"exporter peak (VmHWM) {operation.peak / MiB:.0f} MiB, RSS at the end "
        f"{operation.end_rss / MiB:.0f} MiB; blackbox peak "
        f"{blackbox_usage.peak_rss_bytes / MiB:.0f} MiB with {blackbox.done} /probe canaries "
        f"at {rate:.0f}/s ({blackbox.failed} failed); all probed {all_probed:.1f} s after "
        f"start ({failed} failed); histories {fill * 100:.0f}% full at the end "
        f"({DEFAULT_HISTORY_LIMIT} entries a target); the landing page viewed "
        f"{operation.pages} times",
    )
    blackbox_peak = blackbox_usage.peak_rss_bytes
    report.add(
        "B7 steady",
        "the floors: peak RSS / blackbox peak RSS",
        f"{floor['exporter'] / blackbox_peak:.2f}x with no target, "
        f"{floor['bare'] / blackbox_peak:.2f}x bare aiohttp",
        "",
        f"the exporter with no target {floor['exporter'] / MiB:.0f} MiB (the interpreter and "
        f"its libraries); bare aiohttp /probe (benchmarks/bare_probe.py) "
        f"{floor['bare'] / MiB:.0f} MiB; so {TARGETS} targets cost "
        f"{(operation.peak - floor['exporter']) / MiB:.0f} MiB of the exporter's peak",
    )
    report.add(
        "B7 steady",
        f"RSS over the last half of the {seconds:.0f} s: (max - min) / median",
        f"{flat * 100:.1f}%",
        f"<= {FLAT_WITHIN * 100:.0f}%",
        f"{len(operation.samples)} samples, one a second; {operation.runs:.0f} probe runs "
        f"between the first and the last scrape ({operation.failures:.0f} failures counted "
        f"in all); threads at most {operation.threads()}",
    )
    report.add(
        "B7 steady",
        "scrape time by kind (median)",
        ", ".join(
            f"{kind} {statistics.median(times):.2f} s" for kind, times in operation.scrapes.items()
        ),
        "",
        f"{sum(map(len, operation.scrapes.values()))} scrapes, in turn; CPU of the render "
        "thread a scrape (median): "
        + ", ".join(
            f"{kind} {statistics.median(cpu):.2f} s" for kind, cpu in operation.render_cpu.items()
        ),
    )
