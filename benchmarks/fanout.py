"""B2: many slow targets at once.

Round: 200 targets whose every endpoint answers after 0.5 s (four emulator
processes, 50 targets and 50 containers each), the exporter daemon started
through its command line with the default settings; how long until every
target has a first result for every probe. Measured by the exporter itself:
once the landing page shows no probe left to run, one /metrics scrape gives
each probe's end (`sandbox_probe_last_success_timestamp_seconds`) and
duration (`sandbox_probe_duration_seconds`), hence its start; the round runs
from the first start to the last end. The first runs are spread on purpose
over `START_SPREAD` x min(interval, 2 s) (0.5 s with the default
intervals), so the figure set against 0.5 s is the round minus that spread.

The floor beside it, interleaved with the exporter's rounds: the same 800
requests (the GETs and the canary POST of the four probes, for every
target), each sent at a random moment of the same spread by a bare aiohttp
client in the benchmark's process, with no connection limit and nothing done
with the answers. On a loaded 2-core machine the emulators cannot answer
800 requests in 0.5 s; the floor shows how much of the round is theirs.

/probe: an exporter daemon in its own process with 50 such targets, hit by
50 concurrent `/probe?target=...&probe=canary` requests (Prometheus scraping
many targets at once through one exporter); requests per second and the mean
/probe latency against the mean latency of the same 50 concurrent requests
sent straight to the emulators.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox_exporter.config import DEFAULT_INTERVALS
from sandbox_exporter.scheduler import START_SPREAD
from sandbox_exporter.vocabulary import CANARY, LIBRARIES, PROBES, SPECIFICATIONS, USAGE

from .common import (
    EmulatorProcess,
    ExporterProcess,
    Report,
    median,
    spread,
    targets_yaml,
    wait_all_probed,
    wait_for_http,
)

LATENCY = 0.5
TARGETS = 200
EMULATORS = 4
CONCURRENT_PROBES = 50
CANARY_CONFIG = json.dumps({"commands": ["echo $((2+2))"]})
# What the scheduler spreads the first runs over, with the default intervals.
FIRST_RUN_SPREAD = START_SPREAD * min(2.0, *DEFAULT_INTERVALS.values())


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


def probe_times(text: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(target, probe) -> (start, end), wall clock, from one exposition."""
    ends: dict[tuple[str, str], float] = {}
    durations: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "sandbox_probe_last_success_timestamp_seconds":
            into = ends
        elif family.name == "sandbox_probe_duration_seconds":
            into = durations
        else:
            continue
        for sample in family.samples:
            into[(sample.labels["target"], sample.labels["probe"])] = sample.value
    return {key: (end - durations[key], end) for key, end in ends.items()}


def one_round(emulators: list[EmulatorProcess]) -> dict[str, float]:
    emulator_cpu = sum(e.usage().cpu_seconds for e in emulators)
    exporter = ExporterProcess(targets_yaml(TARGETS, [e.url for e in emulators]))
    try:
        wait_all_probed(exporter, 60)
        cpu = exporter.usage().cpu_seconds
        emulator_cpu = sum(e.usage().cpu_seconds for e in emulators) - emulator_cpu
        text = requests.get(exporter.url + "metrics", timeout=60).text
    finally:
        exporter.stop()
    times = probe_times(text)
    wanted = {(f"t{i:04d}", probe) for i in range(TARGETS) for probe in PROBES}
    if wanted - times.keys():
        raise RuntimeError(f"{len(wanted - times.keys())} probes have no successful result")
    first_start = min(start for start, _ in times.values())

    def round_of(probes: tuple[str, ...]) -> float:
        return max(end for (_, probe), (_, end) in times.items() if probe in probes) - first_start

    first_results: dict[str, float] = {}
    for (target, _), (_, end) in times.items():
        first_results[target] = min(end, first_results.get(target, end))
    durations = [end - start for start, end in times.values()]
    return {
        "round": round_of(PROBES),
        "every_target_has_a_result": max(first_results.values()) - first_start,
        "round_specifications_canary": round_of((SPECIFICATIONS, CANARY)),
        "last_start": max(start for start, _ in times.values()) - first_start,
        "median_duration": median(durations),
        "max_duration": max(durations),
        "cpu": cpu,
        "emulator_cpu": emulator_cpu,
    }


async def _bare_round(emulators: list[EmulatorProcess]) -> dict[str, float]:
    """The requests of the first round, as the probes send them, with nothing else."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def request(url: str) -> None:
            if url.endswith("execute/"):
                form = aiohttp.FormData()
                form.add_field("config", CANARY_CONFIG, content_type="application/json")
                answer = session.post(url, data=form)
            else:
                answer = session.get(url)
            async with answer as response:
                await response.read()
                response.raise_for_status()

        async def probe(kind: str, emulator: EmulatorProcess) -> tuple[str, float, float]:
            await asyncio.sleep(random.uniform(0, FIRST_RUN_SPREAD))
            started = time.perf_counter()
            # A first usage probe does not know the API yet: it asks
            # /specifications/ and, on 3.x, /usages/ after it.
            paths = {
                SPECIFICATIONS: ["specifications/"],
                USAGE: ["specifications/"] + (["usages/"] if emulator.api == 3 else []),
                LIBRARIES: ["libraries/"],
                CANARY: ["execute/"],
            }[kind]
            for path in paths:
                await request(emulator.url + path)
            return kind, started, time.perf_counter()

        times = await asyncio.gather(
            *(
                probe(kind, emulators[index % len(emulators)])
                for index in range(TARGETS)
                for kind in PROBES
            )
        )
    first = min(start for _, start, _ in times)
    durations = sorted(end - start for _, start, end in times)
    return {
        "round": max(end for _, _, end in times) - first,
        "round_specifications_canary": max(
            end for kind, _, end in times if kind in (SPECIFICATIONS, CANARY)
        )
        - first,
        "median_duration": median(durations),
        "max_duration": durations[-1],
    }


def bare_round(emulators: list[EmulatorProcess]) -> dict[str, float]:
    return asyncio.run(_bare_round(emulators))


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
    body = {"config": (None, CANARY_CONFIG, "application/json")}

    def send(self, url: str) -> requests.Response:
        return self.session.post(url, files=self.body, timeout=30)


def probe_throughput(emulators: list[EmulatorProcess], batches: int) -> dict[str, list[float]]:
    urls = [e.url for e in emulators]
    exporter = ExporterProcess(targets_yaml(CONCURRENT_PROBES, urls))
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
        rounds, floors = [], []
        for _ in range(1 if quick else 3):
            rounds.append(one_round(emulators))
            floors.append(bare_round(emulators))
        throughput = probe_throughput(emulators, batches=3 if quick else 10)
    finally:
        for emulator in emulators:
            emulator.stop()

    def beyond(rounds: list[dict[str, float]], key: str) -> float:
        """The median round minus the deliberate start spread, over the latency."""
        return (median([r[key] for r in rounds]) - FIRST_RUN_SPREAD) / LATENCY

    def seconds(rounds: list[dict[str, float]], key: str) -> str:
        values = [r[key] for r in rounds]
        return f"{median(values):.2f} s ({spread(values)})"

    both = "round_specifications_canary"
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets x {LATENCY} s, first round of specifications and canary: "
        f"(round - {FIRST_RUN_SPREAD:g} s start spread) / {LATENCY} s",
        f"{beyond(rounds, both):.2f}",
        "<= 1.5",
        f"exporter round {seconds(rounds, both)} from the first probe's start to the last "
        f"one's end, {len(rounds)} runs; bare aiohttp floor {seconds(floors, both)}, "
        f"i.e. {beyond(floors, both):.2f}; every target had a first result "
        f"{median([r['every_target_has_a_result'] for r in rounds]):.2f} s after the first "
        f"start; exporter CPU until all were done (start-up included) "
        f"{median([r['cpu'] for r in rounds]):.2f} s, emulators "
        f"{median([r['emulator_cpu'] for r in rounds]):.2f} s (2 cores)",
    )
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets x {LATENCY} s, first round of all 4 probes: "
        f"(round - {FIRST_RUN_SPREAD:g} s) / {LATENCY} s",
        f"{beyond(rounds, 'round'):.2f}",
        "",
        f"exporter {seconds(rounds, 'round')}, floor {seconds(floors, 'round')} "
        f"({beyond(floors, 'round'):.2f}): a first usage probe asks /specifications/ and, "
        f"on 3.x, /usages/ after it, two latencies; last probe started "
        f"{median([r['last_start'] for r in rounds]):.2f} s after the first",
    )
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets: probe duration the exporter reports / {LATENCY} s",
        f"median {median([r['median_duration'] for r in rounds]) / LATENCY:.2f}, "
        f"max {max(r['max_duration'] for r in rounds) / LATENCY:.2f}",
        "",
        f"noise that the fan-out adds to the latency it measures ({TARGETS * len(PROBES)} "
        "probes a round); the floor's probes: median "
        f"{median([f['median_duration'] for f in floors]) / LATENCY:.2f}, max "
        f"{max(f['max_duration'] for f in floors) / LATENCY:.2f}",
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
