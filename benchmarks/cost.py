"""B4: CPU time, memory and threads, the exporter side by side with blackbox_exporter.

Every daemon runs in its own process, started through its command line;
CPU seconds (user + system), resident memory and threads come from
/proc/PID. CPU comparisons are interleaved, as B1's and B3's: rounds of
one side then the other, A B A B ..., so that a burst of load from other
processes, or a slower minute of the machine, hits both alike; the ratio
reported is the median of the rounds' ratios. Three measurements:

- `/probe`: the exporter with 10 targets (probing on its own only once an
  hour), blackbox_exporter, and the framework's floor (a bare aiohttp
  server doing the same POST and answering as much, `bare_probe.py`), all
  three running, each driven in turn through its `/probe` with the same
  canary POST to the same emulator, 4 clients at a time; CPU per 1000
  probes, peak RSS, threads.
- scheduled: the exporter with 1000 targets, canaries every 10 s and the
  other probes once an hour. Once every probe of every target has run once:
  its RSS and threads. Then windows of steady operation in which only
  canaries run, each followed by a round of blackbox's `/probe` (driven as
  above, against one of the same emulators): CPU per 1000 canary probes on
  each side. The canaries run in a window are counted from
  `sandbox_probe_runs_total`, read by a /metrics scrape at each end; the
  scrapes themselves are left out of the CPU, as rates over the window
  between them (see `steady_canaries`).
- blackbox_exporter at scale: 1000 canary probes of 1000 distinct target
  URLs, 50 at a time, through its `/probe`; its peak RSS is what the
  exporter's RSS at 1000 targets is compared with.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from subprocess import PIPE
from urllib.parse import quote

import requests

from .common import (
    BlackboxProcess,
    Child,
    EmulatorProcess,
    ExporterProcess,
    Report,
    alternate,
    median,
    quantile,
    sum_samples,
    targets_yaml,
    wait_all_probed,
)
from .fidelity import blackbox_config, encoded_canary

MiB = 2**20
HOURLY = "{specifications: 1h, usage: 1h, libraries: 1h, canary: 1h}"
CANARY_EVERY = 10  # seconds; 1000 targets make 100 canaries a second
STEADY = f"{{specifications: 1h, usage: 1h, libraries: 1h, canary: {CANARY_EVERY}s}}"
SMALL = 10


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


def scrape(exporter: ExporterProcess) -> tuple[float, str]:
    """(wall-clock time the request was sent, the text of /metrics)."""
    sent = time.time()
    response = requests.get(
        exporter.url + "metrics", headers={"Accept-Encoding": "identity"}, timeout=60
    )
    response.raise_for_status()
    return sent, response.text


def cpu_per_1000(process: Child, url: str, probes: int) -> Callable[[], float]:
    """A round of `probes` GETs of `url`, 4 clients: the CPU seconds `process`
    spent, per 1000."""

    def measure() -> float:
        before = process.usage().cpu_seconds
        drive([url] * probes, 4)
        return (process.usage().cpu_seconds - before) / probes * 1000

    return measure


def exporter_canaries_per_1000(exporter: ExporterProcess, probes: int) -> Callable[[], float]:
    """A round of `probes` /probe canaries, 4 clients, over the `SMALL`
    targets in turn: the exporter's CPU seconds per 1000 canaries it ran.

    Two /probe requests for one target at once share one run (one run at a
    time per target and probe), so the requests are spread over the targets
    and the CPU is divided by the runs counted (`sandbox_probe_runs_total`,
    read by a scrape outside the CPU's reading), not by the requests."""
    urls = [
        f"{exporter.url}probe?target=t{index % SMALL:04d}&probe=canary" for index in range(probes)
    ]

    def measure() -> float:
        runs_before = sum_samples(scrape(exporter)[1], "sandbox_probe_runs_total", probe="canary")
        before = exporter.usage().cpu_seconds
        drive(urls, 4)
        spent = exporter.usage().cpu_seconds - before
        runs = sum_samples(scrape(exporter)[1], "sandbox_probe_runs_total", probe="canary")
        return spent / max(1.0, runs - runs_before) * 1000

    return measure


def blackbox_canary(emulator_url: str) -> tuple[BlackboxProcess, str]:
    """blackbox_exporter with the canary module, and its /probe URL for `emulator_url`."""
    body, content_type = encoded_canary()
    blackbox = BlackboxProcess(blackbox_config(body, content_type))
    target = quote(emulator_url + "execute/", safe="")
    return blackbox, f"{blackbox.url}probe?module=canary&target={target}"


def via_probe(emulator: EmulatorProcess, probes: int, rounds: int) -> dict:
    """CPU per 1000 canary probes through /probe, the three daemons in turn
    (`rounds` rounds of probes / rounds each); peak RSS, threads."""
    out: dict = {}
    per_round = probes // rounds
    children: list[Child] = []
    try:
        exporter = ExporterProcess(targets_yaml(SMALL, [emulator.url], intervals=HOURLY))
        children.append(exporter)
        wait_all_probed(exporter, 60)
        blackbox, blackbox_url = blackbox_canary(emulator.url)
        children.append(blackbox)
        bare = Child([sys.executable, "-m", "benchmarks.bare_probe", emulator.url], stdout=PIPE)
        children.append(bare)
        assert bare.process.stdout is not None
        urls = {
            "exporter": (exporter, exporter.url + "probe?target=t0000&probe=canary"),
            "blackbox": (blackbox, blackbox_url),
            "bare": (bare, bare.process.stdout.readline().strip() + "probe"),
        }
        for _, url in urls.values():
            drive([url] * 20, 4)  # warm up: first connections, lazy imports
        rounds_of = {
            name: cpu_per_1000(process, url, per_round) for name, (process, url) in urls.items()
        }
        rounds_of["exporter"] = exporter_canaries_per_1000(exporter, per_round)
        out["cpu"] = alternate(rounds_of, rounds)
        out["exporter_peak"] = exporter.usage().peak_rss_bytes
        out["blackbox_peak"] = blackbox.usage().peak_rss_bytes
        threads = exporter.usage().threads
        scrape(exporter)
        out["small_threads"] = max(threads, exporter.usage().threads)
    finally:
        for child in children:
            child.stop()
    return out


def steady_canaries(exporter: ExporterProcess, window: float) -> dict[str, float]:
    """CPU per 1000 scheduled canaries over `window` seconds of steady operation.

    Runs are counted by two scrapes. A scrape takes its snapshot when it
    starts, then renders for a second or so at 1000 targets; the CPU is read
    between the end of the first scrape and the start of the second, so it
    holds no rendering. Both are turned into rates over their own span (runs
    per second between the two snapshots, CPU seconds per second between the
    two readings), which a steady cadence makes comparable.
    """
    first_sent, text = scrape(exporter)
    runs_before = sum_samples(text, "sandbox_probe_runs_total", probe="canary")
    cpu_from, cpu_from_time = exporter.usage().cpu_seconds, time.time()
    time.sleep(window)
    cpu_to, cpu_to_time = exporter.usage().cpu_seconds, time.time()
    second_sent, text = scrape(exporter)
    runs = sum_samples(text, "sandbox_probe_runs_total", probe="canary") - runs_before
    failures = sum_samples(text, "sandbox_probe_failures_total", probe="canary")
    runs_per_second = runs / (second_sent - first_sent)
    cpu_per_second = (cpu_to - cpu_from) / (cpu_to_time - cpu_from_time)
    return {
        "canary_cpu": cpu_per_second / runs_per_second * 1000,
        "canary_runs": runs,
        "canary_rate": runs_per_second,
        "canary_failures": failures,
    }


def scheduled(
    emulators: list[EmulatorProcess], targets: int, window: float, rounds: int, probes: int
) -> dict:
    """The exporter at `targets` targets: RSS and threads once all probed, then
    `rounds` windows of steady canaries (`window` seconds in all), each
    followed by a round of `probes` blackbox /probe canaries."""
    out: dict = {}
    exporter = ExporterProcess(targets_yaml(targets, [e.url for e in emulators], intervals=STEADY))
    blackbox, blackbox_url = blackbox_canary(emulators[0].url)
    try:
        out["all_probed_after"] = wait_all_probed(exporter, 180)
        ready = exporter.usage()
        out["rss"] = ready.rss_bytes
        out["peak"] = ready.peak_rss_bytes
        out["threads"] = ready.threads
        drive([blackbox_url] * 20, 4)
        blackbox_round = cpu_per_1000(blackbox, blackbox_url, probes)
        windows: list[dict[str, float]] = []
        out["cpu"] = {"exporter": [], "blackbox": []}
        for _ in range(rounds):
            windows.append(steady_canaries(exporter, window / rounds))
            out["cpu"]["exporter"].append(windows[-1]["canary_cpu"])
            out["cpu"]["blackbox"].append(blackbox_round())
        out["canary_runs"] = sum(w["canary_runs"] for w in windows)
        out["canary_rate"] = median([w["canary_rate"] for w in windows])
        out["canary_failures"] = windows[-1]["canary_failures"]
        after = exporter.usage()
        out["threads_max"] = max(ready.threads, after.threads)
        out["rss_after_window"] = after.rss_bytes
        out["peak_after_window"] = after.peak_rss_bytes
    finally:
        exporter.stop()
        blackbox.stop()
    return out


def blackbox_at_scale(emulators: list[EmulatorProcess], targets: int) -> dict[str, float]:
    out: dict[str, float] = {}
    body, content_type = encoded_canary()
    blackbox = BlackboxProcess(blackbox_config(body, content_type))
    try:
        urls = [
            f"{blackbox.url}probe?module=canary&target="
            + quote(emulators[i % len(emulators)].url + f"execute/?t={i}", safe="")
            for i in range(targets)
        ]
        begun = time.perf_counter()
        drive(urls, 50)
        out["seconds"] = time.perf_counter() - begun
        after = blackbox.usage()
        out["peak"] = after.peak_rss_bytes
        out["threads"] = after.threads
    finally:
        blackbox.stop()
    return out


def emulators_at_scale() -> list[EmulatorProcess]:
    """Four emulator processes, half 2.x and half 3.x, for 1000 targets' probes."""
    return [
        EmulatorProcess(
            api=3 if i % 2 else 2,
            containers=50,
            overload_wait=30,
            usage_delay=0.05,
            libraries_delay=0.05,
        )
        for i in range(4)
    ]


def paired(cpu: dict[str, list[float]], side: str, against: str) -> tuple[str, str]:
    """The median of the rounds' ratios, as `0.93x`, and its context."""
    ratios = [a / b for a, b in zip(cpu[side], cpu[against], strict=True)]
    return f"{median(ratios):.2f}x", (
        f"ratio quartiles {quantile(ratios, 0.25):.2f} / {quantile(ratios, 0.75):.2f} "
        f"over {len(ratios)} interleaved rounds"
    )


def run(report: Report, quick: bool) -> None:
    # 300 probes a round: about 30 ticks of the kernel's CPU accounting (10 ms).
    probes = 1000 if quick else 3000
    rounds = 5 if quick else 10
    emulator = EmulatorProcess(api=3, containers=4)
    try:
        single = via_probe(emulator, probes, rounds)
    finally:
        emulator.stop()
    targets = 300 if quick else 1000
    window = 20.0 if quick else 60.0
    emulators = emulators_at_scale()
    try:
        scale = scheduled(emulators, targets, window, rounds // 2, probes // rounds)
        blackbox = blackbox_at_scale(emulators, targets)
    finally:
        for emulator in emulators:
            emulator.stop()
    cpu = single["cpu"]
    ratio, spread = paired(cpu, "exporter", "blackbox")
    report.add(
        "B4 cost",
        "CPU per 1000 canary probes via /probe: exporter / blackbox",
        ratio,
        "<= 1",
        f"{spread} of {probes // rounds} probes each, 4 clients; medians: exporter "
        f"{median(cpu['exporter']):.2f} s, blackbox {median(cpu['blackbox']):.2f} s; peak RSS "
        f"exporter {single['exporter_peak'] / MiB:.0f} MiB, "
        f"blackbox {single['blackbox_peak'] / MiB:.0f} MiB",
    )
    ratio, spread = paired(cpu, "bare", "blackbox")
    report.add(
        "B4 cost",
        "CPU per 1000 canary probes via /probe: bare aiohttp floor / blackbox",
        ratio,
        "",
        f"benchmarks/bare_probe.py, the same POST and an answer of the same size, nothing "
        f"else: median {median(cpu['bare']):.2f} s; {spread}",
    )
    ratio, spread = paired(scale["cpu"], "exporter", "blackbox")
    report.add(
        "B4 cost",
        f"CPU per 1000 scheduled canary probes ({targets} targets) / blackbox via /probe",
        ratio,
        "<= 1",
        f"{spread}: windows of {window / (rounds // 2):.0f} s of the exporter's canaries "
        f"(every {CANARY_EVERY} s per target; {scale['canary_runs']:.0f} in all, "
        f"{scale['canary_rate']:.0f}/s, {scale['canary_failures']:.0f} failed), each followed "
        f"by {probes // rounds} blackbox /probe canaries; medians: exporter "
        f"{median(scale['cpu']['exporter']):.2f} s, blackbox "
        f"{median(scale['cpu']['blackbox']):.2f} s",
    )
    report.add(
        "B4 cost",
        f"{targets} targets, every probe run once: exporter RSS / blackbox peak RSS",
        f"{scale['rss'] / blackbox['peak']:.2f}x",
        "<= 2.5",
        f"exporter RSS {scale['rss'] / MiB:.0f} MiB (peak {scale['peak'] / MiB:.0f}; "
        f"{scale['rss_after_window'] / MiB:.0f} MiB after the canary window and a scrape, "
        f"peak {scale['peak_after_window'] / MiB:.0f}), all probed "
        f"{scale['all_probed_after']:.1f} s after start; blackbox peak "
        f"{blackbox['peak'] / MiB:.0f} MiB after {targets} probes of {targets} targets, "
        f"50 at a time, in {blackbox['seconds']:.1f} s",
    )
    report.add(
        "B4 cost",
        f"threads of the exporter: {SMALL} targets / {targets} targets",
        f"{single['small_threads']:.0f} / {scale['threads_max']:.0f}",
        "equal",
        f"{SMALL}: after {probes} /probe requests and a scrape; {targets}: after the "
        f"first round, the canary window and two scrapes; blackbox: {blackbox['threads']:.0f}",
    )
