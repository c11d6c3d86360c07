"""B4: CPU time and memory, the exporter side by side with blackbox_exporter.

Per 1000 probes: each daemon in its own process, driven through `/probe`
with the same canary POST to the same emulator (4 clients at a time); the
process's CPU seconds (user + system, /proc/PID/stat) spent on them, scaled
to 1000, and its peak resident memory (VmHWM).

At 1000 targets: the exporter daemon with 1000 configured targets and the
default settings (all four probes each) until it is ready, i.e. until every
target has been probed once: CPU per 1000 probes, resident memory, threads,
the time to ready and what one /metrics scrape then costs. blackbox_exporter
beside it: 1000 /probe requests of the canary module (50 at a time), its CPU
and peak memory.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import requests

from .common import BlackboxProcess, EmulatorProcess, ExporterProcess, Report
from .fidelity import blackbox_config, encoded_canary

MiB = 2**20
QUIET = "defaults:\n  intervals: {specifications: 1h, usage: 1h, libraries: 1h, canary: 1h}\n"


def drive(urls: list[str], concurrency: int) -> None:
    """GET every URL, `concurrency` at a time, one keep-alive session per client thread."""
    session_per_thread: dict[int, requests.Session] = {}

    def get(url: str) -> None:
        session = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        session.get(url, timeout=30).raise_for_status()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(get, urls))
    for session in session_per_thread.values():
        session.close()


def wait_ready(exporter: ExporterProcess, timeout: float) -> float:
    started = time.monotonic()
    while requests.get(exporter.url + "-/ready", timeout=10).status_code != 200:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"exporter not ready within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def wait_all_probed(exporter: ExporterProcess, timeout: float) -> float:
    """Until every probe of every target has run once (the landing page lists
    what has not run yet; it costs far less to render than /metrics); seconds
    since the process was started."""
    started = exporter.started
    while "not run yet" in (page := requests.get(exporter.url, timeout=30).text):
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"not every probe ran within {timeout} s")
        time.sleep(0.2)
    failed = page.count('class="fail"')
    if failed:
        raise RuntimeError(f"{failed} probes failed; the numbers would not be comparable")
    return time.monotonic() - started


def per_probe(emulator: EmulatorProcess, probes: int) -> dict[str, float]:
    body, content_type = encoded_canary()
    out: dict[str, float] = {}
    exporter = ExporterProcess(QUIET + f"targets:\n  - {{name: bench, url: '{emulator.url}'}}\n")
    try:
        wait_ready(exporter, 30)
        wait_all_probed(exporter, 30)
        # Process start (imports, config, the first 4 probes): subtracted at scale.
        out["startup_cpu"] = exporter.usage().cpu_seconds
        drive([exporter.url + "probe?target=bench&probe=canary"] * 20, 4)  # warm up
        before = exporter.usage()
        drive([exporter.url + "probe?target=bench&probe=canary"] * probes, 4)
        after = exporter.usage()
        out["exporter_cpu"] = (after.cpu_seconds - before.cpu_seconds) / probes * 1000
        out["exporter_peak"] = after.peak_rss_bytes
    finally:
        exporter.stop()
    blackbox = BlackboxProcess(blackbox_config(body, content_type))
    try:
        url = (
            f"{blackbox.url}probe?module=canary&target={quote(emulator.url + 'execute/', safe='')}"
        )
        drive([url] * 20, 4)
        before = blackbox.usage()
        drive([url] * probes, 4)
        after = blackbox.usage()
        out["blackbox_cpu"] = (after.cpu_seconds - before.cpu_seconds) / probes * 1000
        out["blackbox_peak"] = after.peak_rss_bytes
    finally:
        blackbox.stop()
    return out


def at_scale(
    emulators: list[EmulatorProcess], targets: int, startup_cpu: float
) -> dict[str, float]:
    body, content_type = encoded_canary()
    lines = ["targets:"]
    for index in range(targets):
        lines.append(f"  - {{name: t{index:04d}, url: '{emulators[index % len(emulators)].url}'}}")
    out: dict[str, float] = {}
    exporter = ExporterProcess("\n".join(lines) + "\n")
    try:
        out["ready_seconds"] = wait_all_probed(exporter, 180)
        ready = exporter.usage()
        # The round began before the process could answer; count from its start.
        probes = 4 * (targets - 1)
        out["round_cpu_per_1000"] = (ready.cpu_seconds - startup_cpu) / probes * 1000
        out["rss"] = ready.rss_bytes
        out["peak"] = ready.peak_rss_bytes
        out["threads"] = ready.threads
        before = exporter.usage()
        begun = time.perf_counter()
        text = requests.get(exporter.url + "metrics", timeout=60).content
        out["scrape_seconds"] = time.perf_counter() - begun
        out["scrape_cpu"] = exporter.usage().cpu_seconds - before.cpu_seconds
        out["scrape_bytes"] = len(text)
        out["final_peak"] = exporter.usage().peak_rss_bytes
    finally:
        exporter.stop()
    blackbox = BlackboxProcess(blackbox_config(body, content_type))
    try:
        urls = [
            f"{blackbox.url}probe?module=canary&target="
            + quote(emulators[i % len(emulators)].url + f"execute/?t={i}", safe="")
            for i in range(targets)
        ]
        before = blackbox.usage()
        begun = time.perf_counter()
        drive(urls, 50)
        out["blackbox_seconds"] = time.perf_counter() - begun
        after = blackbox.usage()
        out["blackbox_cpu_per_1000"] = (after.cpu_seconds - before.cpu_seconds) / targets * 1000
        out["blackbox_peak"] = after.peak_rss_bytes
        out["blackbox_threads"] = after.threads
    finally:
        blackbox.stop()
    return out


def run(report: Report, quick: bool) -> None:
    probes = 300 if quick else 1000
    emulator = EmulatorProcess(api=3, containers=4)
    try:
        single = per_probe(emulator, probes)
    finally:
        emulator.stop()
    report.add(
        "B4 cost",
        "CPU per 1000 canary probes via /probe: exporter / blackbox",
        f"{single['exporter_cpu'] / single['blackbox_cpu']:.1f}x",
        "",
        f"exporter {single['exporter_cpu']:.2f} s, blackbox {single['blackbox_cpu']:.2f} s "
        f"({probes} probes each, scaled to 1000)",
    )
    report.add(
        "B4 cost",
        "peak RSS after those probes: exporter / blackbox",
        f"{single['exporter_peak'] / single['blackbox_peak']:.1f}x",
        "",
        f"exporter {single['exporter_peak'] / MiB:.0f} MiB, "
        f"blackbox {single['blackbox_peak'] / MiB:.0f} MiB",
    )
    targets = 300 if quick else 1000
    emulators = [
        EmulatorProcess(
            api=3 if i % 2 else 2,
            containers=50,
            overload_wait=30,
            usage_delay=0.05,
            libraries_delay=0.05,
        )
        for i in range(4)
    ]
    try:
        scale = at_scale(emulators, targets, single["startup_cpu"])
    finally:
        for emulator in emulators:
            emulator.stop()
    report.add(
        "B4 cost",
        f"{targets} targets, first full round (4 probes each): CPU per 1000 probes",
        f"{scale['round_cpu_per_1000']:.2f} s",
        "",
        f"all probed {scale['ready_seconds']:.1f} s after the process started; blackbox: "
        f"{scale['blackbox_cpu_per_1000']:.2f} s per 1000 canary probes "
        f"({scale['round_cpu_per_1000'] / scale['blackbox_cpu_per_1000']:.1f}x), "
        f"{targets} probes in {scale['blackbox_seconds']:.1f} s at 50 at a time",
    )
    report.add(
        "B4 cost",
        f"{targets} targets: exporter RSS / blackbox peak RSS",
        f"{scale['peak'] / scale['blackbox_peak']:.1f}x",
        "",
        f"exporter RSS {scale['rss'] / MiB:.0f} MiB (peak {scale['peak'] / MiB:.0f}, "
        f"{scale['threads']} threads), blackbox peak {scale['blackbox_peak'] / MiB:.0f} MiB "
        f"({scale['blackbox_threads']} threads)",
    )
    report.add(
        "B4 cost",
        f"{targets} targets: one /metrics scrape",
        f"{scale['scrape_cpu']:.2f} s CPU",
        "",
        f"{scale['scrape_seconds']:.2f} s wall, {scale['scrape_bytes'] / 1e6:.1f} MB; "
        f"peak RSS after it {scale['final_peak'] / MiB:.0f} MiB",
    )
