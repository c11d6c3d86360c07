"""B2: many slow targets at once.

Round: 200 targets whose every endpoint answers after 0.5 s, the exporter
daemon started through its command line with the default settings; how long
until every target has a first result for every probe. Measured by the
exporter itself: once the landing page shows no probe left to run, one
/metrics scrape gives each probe's end
(`sandbox_probe_last_success_timestamp_seconds`) and duration
(`sandbox_probe_duration_seconds`), hence its start; the round runs from the
first start to the last end. The first runs are spread on purpose over
`first_run_window` (0.8 s for 800 first runs with the default intervals), so
the figure set against 0.5 s is the round minus that spread.

Two kinds of targets, rounds interleaved:

- the stand-in (`slow_targets.py`): one asyncio process listening on 200
  loopback ports, one per target, answering every request after exactly
  0.5 s with a document recorded from the emulators at the start of the
  benchmark (the canary's `/execute/` with the recorded result of its
  command). It costs almost no CPU, as a sandbox on a machine of its own
  costs the exporter's: the round shows the exporter's own fan-out. The
  goal is read here.
- four emulator processes (50 targets and 50 containers each, a real bash
  per `/execute/`) on the same 2 cores as the exporter: what a Python
  server beside the exporter does to the round. Context only.

The floor beside each, interleaved with the exporter's rounds: the same
requests (the GETs and the canary POST of the four probes, for every
target), each sent at a random moment of the same spread by a bare aiohttp
client in the benchmark's process, with no connection limit and nothing
done with the answers.

/probe: an exporter daemon in its own process with 50 targets on the
emulators, hit by 50 concurrent `/probe?target=...&probe=canary` requests
(Prometheus scraping many targets at once through one exporter); requests
per second and the mean /probe latency against the mean latency of the
same 50 concurrent requests sent straight to the emulators.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox_exporter.config import DEFAULT_INTERVALS
from sandbox_exporter.config.models import DEFAULT_CANARY
from sandbox_exporter.protocol import (
    EXECUTE_PATH,
    LIBRARIES_PATH,
    SPECIFICATIONS_PATH,
    USAGES_PATH,
)
from sandbox_exporter.scheduler import first_run_window
from sandbox_exporter.vocabulary import CANARY, LIBRARIES, PROBES, SPECIFICATIONS, USAGE

from .common import (
    Child,
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
CANARY_CONFIG = json.dumps(DEFAULT_CANARY.request_config())
# What the scheduler spreads the first runs over, with the default intervals.
FIRST_RUN_SPREAD = first_run_window(TARGETS * len(PROBES), min(DEFAULT_INTERVALS.values()))

# A target as the floor needs it: base URL, and the API its documents speak.
Target = tuple[str, int]


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


def record_answers(emulator: EmulatorProcess) -> dict[str, dict]:
    """What the emulator answers to every request the probes send, as slow_targets replays it."""

    def answer(response: requests.Response) -> dict:
        return {
            "status": response.status_code,
            "reason": response.reason,
            "headers": list(response.headers.items()),
            "body": response.content.decode("latin-1"),
        }

    answers = {}
    with requests.Session() as session:
        for path in (SPECIFICATIONS_PATH, USAGES_PATH, LIBRARIES_PATH):
            answers[f"GET {path}"] = answer(session.get(emulator.url + path, timeout=30))
        body = {"config": (None, CANARY_CONFIG, "application/json")}
        answers[f"POST {EXECUTE_PATH}"] = answer(
            session.post(emulator.url + EXECUTE_PATH, files=body, timeout=30)
        )
    return answers


class SlowTargetsProcess(Child):
    """slow_targets.py in its own process, `copies` ports (targets) per recorded answer set."""

    def __init__(self, answers: list[dict[str, dict]], latency: float, copies: int = 1) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="bench-slow-targets-")
        documents = Path(self.directory.name) / "answers.json"
        documents.write_text(json.dumps(answers))
        args = [sys.executable, "-m", "benchmarks.slow_targets", "--latency", str(latency)]
        args += ["--copies", str(copies)]
        super().__init__([*args, str(documents)], stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        try:
            ports = json.loads(line)
        except ValueError:
            self.stop()
            raise RuntimeError(f"slow_targets did not start: {line!r}") from None
        self.urls = [f"http://127.0.0.1:{port}/" for port in ports]
        wait_for_http(self.urls[0] + SPECIFICATIONS_PATH)

    def stop(self) -> None:
        super().stop()
        self.directory.cleanup()


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


def one_round(targets: list[Target], servers: list[Child]) -> dict[str, float]:
    """The exporter's first round over `targets`, served by `servers` (whose CPU is counted)."""
    server_cpu = sum(s.usage().cpu_seconds for s in servers)
    exporter = ExporterProcess(targets_yaml(len(targets), [url for url, _ in targets]))
    try:
        wait_all_probed(exporter, 60)
        cpu = exporter.usage().cpu_seconds
        server_cpu = sum(s.usage().cpu_seconds for s in servers) - server_cpu
        text = requests.get(exporter.url + "metrics", timeout=60).text
    finally:
        exporter.stop()
    times = probe_times(text)
    wanted = {(f"t{i:04d}", probe) for i in range(len(targets)) for probe in PROBES}
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
        "server_cpu": server_cpu,
    }


async def _bare_round(targets: list[Target]) -> dict[str, float]:
    """The requests of the first round, as the probes send them, with nothing else."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def request(url: str) -> None:
            if url.endswith(EXECUTE_PATH):
                form = aiohttp.FormData()
                form.add_field("config", CANARY_CONFIG, content_type="application/json")
                answer = session.post(url, data=form)
            else:
                answer = session.get(url)
            async with answer as response:
                await response.read()
                response.raise_for_status()

        async def probe(kind: str, url: str, api: int) -> tuple[str, float, float]:
            await asyncio.sleep(random.uniform(0, FIRST_RUN_SPREAD))
            started = time.perf_counter()
            # A first usage probe does not know the API yet: it asks
            # /specifications/ and, on 3.x, /usages/ after it.
            paths = {
                SPECIFICATIONS: [SPECIFICATIONS_PATH],
                USAGE: [SPECIFICATIONS_PATH] + ([USAGES_PATH] if api == 3 else []),
                LIBRARIES: [LIBRARIES_PATH],
                CANARY: [EXECUTE_PATH],
            }[kind]
            for path in paths:
                await request(url + path)
            return kind, started, time.perf_counter()

        times = await asyncio.gather(
            *(probe(kind, url, api) for url, api in targets for kind in PROBES)
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


def bare_round(targets: list[Target]) -> dict[str, float]:
    return asyncio.run(_bare_round(targets))


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
        # Target i is served by emulator i % 4, or by the stand-in's port i
        # with that emulator's recorded answers.
        by_target = [emulators[i % len(emulators)] for i in range(TARGETS)]
        with ThreadPoolExecutor(max_workers=len(emulators)) as pool:
            recorded = dict(zip(emulators, pool.map(record_answers, emulators), strict=True))
        stand_in = SlowTargetsProcess([recorded[e] for e in by_target], LATENCY)
        try:
            kinds = {
                "stand-in": (
                    [(url, e.api) for url, e in zip(stand_in.urls, by_target, strict=True)],
                    [stand_in],
                ),
                "emulators": ([(e.url, e.api) for e in by_target], list(emulators)),
            }
            rounds: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            floors: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            for _ in range(1 if quick else 3):
                for kind, (targets, servers) in kinds.items():
                    rounds[kind].append(one_round(targets, servers))
                    floors[kind].append(bare_round(targets))
        finally:
            stand_in.stop()
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

    def middle(rounds: list[dict[str, float]], key: str) -> str:
        return f"{median([r[key] for r in rounds]):.2f} s"

    both = "round_specifications_canary"
    ours, floor = rounds["stand-in"], floors["stand-in"]
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets x {LATENCY} s (stand-in), first round of specifications and "
        f"canary: (round - {FIRST_RUN_SPREAD:g} s start spread) / {LATENCY} s",
        f"{beyond(ours, both):.2f}",
        "<= 1.5",
        f"exporter round {seconds(ours, both)} from the first probe's start to the last "
        f"one's end, {len(ours)} runs; bare aiohttp floor {seconds(floor, both)}, "
        f"i.e. {beyond(floor, both):.2f}; every target had a first result "
        f"{middle(ours, 'every_target_has_a_result')} after the first start; exporter CPU "
        f"until all were done (start-up included) {middle(ours, 'cpu')}, the stand-in "
        f"{middle(ours, 'server_cpu')} (one process, 200 loopback ports, recorded answers)",
    )
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets x {LATENCY} s (stand-in), first round of all 4 probes: "
        f"(round - {FIRST_RUN_SPREAD:g} s) / {LATENCY} s",
        f"{beyond(ours, 'round'):.2f}",
        "",
        f"exporter {seconds(ours, 'round')}, floor {seconds(floor, 'round')} "
        f"({beyond(floor, 'round'):.2f}): a first usage probe asks /specifications/ and, "
        f"on 3.x, /usages/ after it, two latencies; last probe started "
        f"{middle(ours, 'last_start')} after the first",
    )
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets (stand-in): probe duration the exporter reports / {LATENCY} s",
        f"median {median([r['median_duration'] for r in ours]) / LATENCY:.2f}, "
        f"max {max(r['max_duration'] for r in ours) / LATENCY:.2f}",
        "",
        f"noise that the fan-out adds to the latency it measures ({TARGETS * len(PROBES)} "
        "probes a round); the floor's probes: median "
        f"{median([f['median_duration'] for f in floor]) / LATENCY:.2f}, max "
        f"{max(f['max_duration'] for f in floor) / LATENCY:.2f}",
    )
    ours, floor = rounds["emulators"], floors["emulators"]
    report.add(
        "B2 fan-out",
        f"{TARGETS} targets x {LATENCY} s on {EMULATORS} emulator processes (same cores), "
        f"specifications and canary: (round - {FIRST_RUN_SPREAD:g} s) / {LATENCY} s",
        f"{beyond(ours, both):.2f}",
        "",
        f"context: exporter round {seconds(ours, both)}, floor {seconds(floor, both)} "
        f"({beyond(floor, both):.2f}); all 4 probes {middle(ours, 'round')} "
        f"({beyond(ours, 'round'):.2f}), floor {middle(floor, 'round')}; reported durations "
        f"median {median([r['median_duration'] for r in ours]) / LATENCY:.2f}x the latency; "
        f"exporter CPU {middle(ours, 'cpu')}, emulators {middle(ours, 'server_cpu')}",
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
