"""What every benchmark needs: timing statistics, the machine, child processes.

Child processes (emulators, blackbox_exporter, the exporter daemon) are
started on loopback ports and stopped by their own pid; their CPU time and
memory are read from /proc.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

BLACKBOX_EXPORTER = (
    shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"
)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ results


@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    measure: str
    value: str
    goal: str = ""
    context: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, benchmark: str, measure: str, value: str, goal: str = "", context: str = ""):
        self.rows.append(Row(benchmark, measure, value, goal, context))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        lines = [
            "| benchmark | measure | result | goal | context |",
            "|---|---|---|---|---|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.benchmark} | {row.measure} | {row.value} | {row.goal} | {row.context} |"
            )
        return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """Noise of a series of repeats: the inter-quartile range relative to the median."""
    if len(values) < 4:
        return f"min {min(values):.3g}, max {max(values):.3g}"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"IQR ±{(q3 - q1) / 2 / statistics.median(values) * 100:.0f}%"


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def alternate(
    functions: dict[str, Callable[[], float]],
    repeats: int,
    before_each: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Run each function `repeats` times, interleaved (A B A B ...) so that a
    burst of load from other processes hits every variant alike. Each function
    returns what it measured itself (seconds, CPU seconds per 1000 probes)."""
    timings: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            if before_each is not None:
                before_each()
            timings[name].append(function())
    return timings


# ------------------------------------------------------------------ machine


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load average at start": load,
    }


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ProcessUsage:
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int
    threads: int


def process_usage(pid: int) -> ProcessUsage:
    """CPU time (user + system) and memory of a running process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces: fields start after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    kib = 1024
    return ProcessUsage(
        cpu_seconds=cpu,
        rss_bytes=int(status["VmRSS"].split()[0]) * kib,
        peak_rss_bytes=int(status["VmHWM"].split()[0]) * kib,
        threads=int(status["Threads"]),
    )


def threads_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a running process, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return out


def other_threads_cpu(pid: int, before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two `threads_cpu` readings by every thread but
    the main one (whose id is the process's)."""
    return sum(seconds - before.get(tid, 0.0) for tid, seconds in after.items() if tid != pid)


class Child:
    """A child process we started; stopped by its own pid, never by name."""

    def __init__(self, args: Sequence[str], *, stdout=subprocess.DEVNULL) -> None:
        self.args = list(args)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            self.args, stdout=stdout, stderr=subprocess.DEVNULL, text=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def usage(self) -> ProcessUsage:
        return process_usage(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


class EmulatorProcess(Child):
    """The emulator in its own process (its own GIL), see emulator_main.py."""

    def __init__(self, api: int = 3, containers: int = 5, faults: Sequence[str] = (), **options):
        self.api = api
        args = [
            sys.executable,
            "-m",
            "benchmarks.emulator_main",
            "--api",
            str(api),
            "--port",
            "0",
            "--containers",
            str(containers),
            "--log-level",
            "error",
        ]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        for fault in faults:
            args += ["--fault", fault]
        super().__init__(args, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"emulator did not start: {self.url!r}")
        wait_for_http(self.url + "specifications/")


class BlackboxProcess(Child):
    """Debian's prometheus-blackbox-exporter with a module config, on loopback."""

    def __init__(self, config_text: str) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="bench-blackbox-")
        config = Path(self.directory.name) / "blackbox.yml"
        config.write_text(config_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        super().__init__(
            [
                BLACKBOX_EXPORTER,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ]
        )
        wait_for_http(self.url + "-/healthy")

    def stop(self) -> None:
        super().stop()
        self.directory.cleanup()


class ExporterProcess(Child):
    """The exporter daemon (`sandbox-exporter -c FILE`) in its own process."""

    def __init__(self, config_text: str) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="bench-exporter-")
        config = Path(self.directory.name) / "config.yml"
        config.write_text(config_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        super().__init__(
            [
                sys.executable,
                "-m",
                "sandbox_exporter.cli",
                "-c",
                str(config),
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ]
        )
        wait_for_http(self.url + "-/healthy")

    def stop(self) -> None:
        super().stop()
        self.directory.cleanup()


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a text exposition (simple lines only)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def sum_samples(text: str, name: str, **labels: str) -> float:
    """The sum of one metric's samples whose labels include `labels`.

    A line scan rather than prometheus_client's parser: at 1000 targets the
    exposition is several MB, and parsing it would cost the benchmark's
    process (and the shared cores) seconds.
    """
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


# /probe answers with the last canary for `canary_min_interval` (10 s by
# default, to spare the sandbox's containers); a benchmark that times what one
# /probe canary costs must run one each time.
EVERY_PROBE_RUNS = "  canary_min_interval: 1ms\n"


def targets_yaml(count: int, urls: Sequence[str], intervals: str = "") -> str:
    """`count` targets named t0000..., spread over `urls`, optional default
    intervals; every /probe runs its probes (`EVERY_PROBE_RUNS`)."""
    lines = ["defaults:\n" + EVERY_PROBE_RUNS + (f"  intervals: {intervals}" if intervals else "")]
    lines.append("targets:")
    for index in range(count):
        lines.append(f"  - {{name: t{index:04d}, url: '{urls[index % len(urls)]}'}}")
    return "\n".join(lines) + "\n"


def wait_all_probed(exporter: ExporterProcess, timeout: float, every: float = 0.5) -> float:
    """Until every probe of every target has run once; seconds since the process started.

    The landing page lists what has not run yet and costs far less to render
    than /metrics. A failed probe makes the numbers incomparable: refused.
    """
    while "not run yet" in (page := requests.get(exporter.url, timeout=30).text):
        if time.monotonic() - exporter.started > timeout:
            raise RuntimeError(f"not every probe ran within {timeout} s")
        time.sleep(every)
    failed = page.count('class="fail"')
    if failed:
        raise RuntimeError(f"{failed} probes failed; the numbers would not be comparable")
    return time.monotonic() - exporter.started
