"""B2: many slow targets at once.

Round: 200 targets whose every endpoint answers after 0.5 s (four emulator
processes, 50 targets and 50 containers each), an exporter with the default
settings; how long until every target has completed its first
specifications and canary probe, divided by the injected 0.5 s.

/probe: an exporter daemon in its own process with 50 such targets, hit by
50 concurrent `/probe?target=...&probe=canary` requests (Prometheus scraping
many targets at once through one exporter); requests per second and the mean
/probe latency against the mean latency of the same 50 concurrent requests
sent straight to the emulators.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import requests
from apscheduler.events import EVENT_JOB_EXECUTED

from sandbox_exporter.config import parse_config
from sandbox_exporter.exporter import Exporter
from sandbox_exporter.scheduler import ProbeScheduler
from sandbox_exporter.vocabulary import CANARY, SPECIFICATIONS

from .common import EmulatorProcess, ExporterProcess, Report, median, spread, wait_for_http

LATENCY = 0.5
TARGETS = 200
EMULATORS = 4
CONCURRENT_PROBES = 50


def _targets_yaml(count: int, urls: list[str]) -> str:
    lines = ["targets:"]
    for index in range(count):
        lines.append(f"  - {{name: t{index:04d}, url: '{urls[index % len(urls)]}'}}")
    return "\n".join(lines) + "\n"


def start_emulators(count: int, containers: int) -> list[EmulatorProcess]:
    emulators = []
    try:
        for index in range(count):
            emulators.append(
                EmulatorProcess(
                    api=2 if index % 2 else 3,
                    containers=containers,
                    faults=[f"*:latency={LATENCY}"],
                    usage_delay=0.05,
                    libraries_delay=0.05,
                    overload_wait=5,
                )
            )
    except BaseException:
        for emulator in emulators:
            emulator.stop()
        raise
    return emulators


@contextlib.contextmanager
def job_delays() -> Iterator[list[float]]:
    """Seconds from each job's scheduled time to its end, from APScheduler's own events.

    The exporter builds its scheduler itself, so the listener is attached by
    wrapping the method that creates it (measurement only, nothing changes).
    """
    delays: list[float] = []
    original = ProbeScheduler._restart

    def listen(event) -> None:
        delays.append(time.time() - event.scheduled_run_time.timestamp())

    def restart(self, workers: int) -> None:
        original(self, workers)
        self._scheduler.add_listener(listen, EVENT_JOB_EXECUTED)

    ProbeScheduler._restart = restart
    try:
        yield delays
    finally:
        ProbeScheduler._restart = original


def one_round(emulators: list[EmulatorProcess]) -> dict[str, float]:
    config = parse_config(_targets_yaml(TARGETS, [e.url for e in emulators]), source="<benchmark>")
    wanted = {(t.name, p) for t in config.targets for p in (SPECIFICATIONS, CANARY)}
    emulator_cpu = sum(e.usage().cpu_seconds for e in emulators)
    cpu = time.process_time()
    with job_delays() as delays:
        started = time.time()
        exporter = Exporter(config)
        constructed = time.time() - started
    try:
        deadline = time.monotonic() + 60
        while True:
            results = exporter.state.snapshot().results
            if wanted <= results.keys() or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        cpu = time.process_time() - cpu
        emulator_cpu = sum(e.usage().cpu_seconds for e in emulators) - emulator_cpu
    finally:
        exporter.stop()
    round_results = [results[key] for key in wanted if key in results]
    if len(round_results) < len(wanted):
        raise RuntimeError(f"only {len(round_results)} of {len(wanted)} probes finished in 60 s")
    failed = [r for r in round_results if not r.success]
    return {
        "round": max(r.started_at + r.duration_seconds for r in round_results) - started,
        "last_start": max(r.started_at for r in round_results) - started,
        "median_duration": median([r.duration_seconds for r in round_results]),
        "max_duration": max(r.duration_seconds for r in round_results),
        "failed": len(failed),
        "max_delay": max(delays),
        "construct": constructed,
        "cpu": cpu,
        "emulator_cpu": emulator_cpu,
        "median_delay": median(delays),
    }


def concurrent_latencies(
    urls: list[str], session_factory, requests_per_batch: int
) -> tuple[float, list[float]]:
    """Send one batch of concurrent requests; (batch wall time, each latency)."""

    def one(url: str) -> float:
        with session_factory() as session:
            begun = time.perf_counter()
            response = session.send(url)
            elapsed = time.perf_counter() - begun
        if not response:
            raise RuntimeError(f"{url}: {response}")
        return elapsed

    with ThreadPoolExecutor(max_workers=requests_per_batch) as pool:
        begun = time.perf_counter()
        latencies = list(pool.map(one, urls[:requests_per_batch]))
        wall = time.perf_counter() - begun
    return wall, latencies


class _Get:
    def __enter__(self):
        self.session = requests.Session()
        return self

    def __exit__(self, *exc_info):
        self.session.close()

    def send(self, url: str) -> requests.Response:
        return self.session.get(url, timeout=30)


class _Execute(_Get):
    body = {"config": (None, json.dumps({"commands": ["echo $((2+2))"]}), "application/json")}

    def send(self, url: str) -> requests.Response:
        return self.session.post(url, files=self.body, timeout=30)


def probe_throughput(emulators: list[EmulatorProcess], batches: int) -> dict[str, list[float]]:
    urls = [e.url for e in emulators]
    exporter = ExporterProcess(_targets_yaml(CONCURRENT_PROBES, urls))
    try:
        wait_for_http(exporter.url + "-/ready")
        deadline = time.monotonic() + 30
        while requests.get(exporter.url + "-/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("exporter not ready within 30 s")
            time.sleep(0.1)
        probe_urls = [
            f"{exporter.url}probe?target=t{i:04d}&probe=canary" for i in range(CONCURRENT_PROBES)
        ]
        execute_urls = [urls[i % len(urls)] + "execute/" for i in range(CONCURRENT_PROBES)]
        out: dict[str, list[float]] = {
            "probe_wall": [],
            "probe_mean": [],
            "bare_wall": [],
            "bare_mean": [],
        }
        for _ in range(batches):
            wall, latencies = concurrent_latencies(probe_urls, _Get, CONCURRENT_PROBES)
            out["probe_wall"].append(wall)
            out["probe_mean"].append(sum(latencies) / len(latencies))
            wall, latencies = concurrent_latencies(execute_urls, _Execute, CONCURRENT_PROBES)
            out["bare_wall"].append(wall)
            out["bare_mean"].append(sum(latencies) / len(latencies))
        return out
    finally:
        exporter.stop()


def run(report: Report, quick: bool) -> None:
    emulators = start_emulators(EMULATORS, containers=TARGETS // EMULATORS)
    try:
        rounds = [one_round(emulators) for _ in range(1 if quick else 3)]
        throughput = probe_throughput(emulators, batches=3 if quick else 10)
    finally:
        for emulator in emulators:
            emulator.stop()
    round_seconds = [r["round"] for r in rounds]
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets x {LATENCY} s: first round (specifications + canary) / {LATENCY} s",
        f"{median(round_seconds) / LATENCY:.2f}",
        "<= 1.5",
        f"round {median(round_seconds):.2f} s over {len(rounds)} runs ({spread(round_seconds)}); "
        f"includes the scheduler's deliberate spread of first runs (up to 0.5 s); "
        f"last probe started {median([r['last_start'] for r in rounds]):.2f} s after start; "
        f"failed probes: {sum(r['failed'] for r in rounds)}; Exporter() returned after "
        f"{median([r['construct'] for r in rounds]):.2f} s; CPU until the round was done: "
        f"exporter {median([r['cpu'] for r in rounds]):.2f} s, "
        f"emulators {median([r['emulator_cpu'] for r in rounds]):.2f} s (2 cores)",
    )
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets x {LATENCY} s: each job's scheduled time -> done / {LATENCY} s",
        f"max {median([r['max_delay'] for r in rounds]) / LATENCY:.2f}, "
        f"median {median([r['median_delay'] for r in rounds]) / LATENCY:.2f}",
        "",
        "every probe kind of the first round (800 jobs), without the deliberate start spread",
    )
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets: probe duration the exporter reports / {LATENCY} s",
        f"median {median([r['median_duration'] for r in rounds]) / LATENCY:.2f}, "
        f"max {max(r['max_duration'] for r in rounds) / LATENCY:.2f}",
        "",
        "noise that the fan-out adds to the latency it measures",
    )
    probe_mean, bare_mean = median(throughput["probe_mean"]), median(throughput["bare_mean"])
    report.add(
        "B2 fan-out",
        f"{CONCURRENT_PROBES} concurrent /probe (canary): mean latency / bare emulator latency",
        f"{probe_mean / bare_mean:.2f}x",
        "",
        f"/probe mean {probe_mean * 1e3:.0f} ms ({spread(throughput['probe_mean'])}), "
        f"bare POST /execute/ mean {bare_mean * 1e3:.0f} ms at the same concurrency",
    )
    report.add(
        "B2 fan-out",
        f"{CONCURRENT_PROBES} concurrent /probe (canary): throughput",
        f"{CONCURRENT_PROBES / median(throughput['probe_wall']):.0f} req/s",
        "",
        f"bare: {CONCURRENT_PROBES / median(throughput['bare_wall']):.0f} req/s; "
        f"batch wall {median(throughput['probe_wall']):.2f} s "
        f"vs {median(throughput['bare_wall']):.2f} s",
    )
