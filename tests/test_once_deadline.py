"""`--once -t` counts from the process's start, as the monitoring system does.

A monitoring server starts dozens of checks at once; on 2 cores their imports
alone then take seconds. Each check must still have printed its report and
exited within `-t` of the moment it was spawned: the promise is `-t` + 1 s.
A check that cannot finish in time (the machine is too busy even to import
us) reports UNKNOWN, on time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from misbehaving import Misbehaving

from sandbox_exporter.health import Status
from sandbox_exporter.once import LATE_PROBE_SECONDS, REPORT_SECONDS
from sandbox_exporter.once_deadline import EXIT_SECONDS, UNKNOWN_EXIT_CODE

CHECKS = 32
TIMEOUT = 15.0
PROMISE = 1.0  # beyond -t, measured from the spawn of each process
SLACK = 2.0  # for a lone process on a loaded 2-core machine
# Servers that accept and never finish an answer: the probes wait until the
# check's own deadline cuts them.
KINDS = ("silent", "content-length-lie", "header-drip")


@pytest.fixture
def servers() -> Iterator[dict[str, Misbehaving]]:
    started = {kind: Misbehaving(kind) for kind in KINDS}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


class Check:
    """One `--once` process, the time it was spawned and the time it was seen ending."""

    def __init__(self, config: Path, *flags: str) -> None:
        command = [sys.executable, "-m", "sandbox_exporter.cli", "--once", "-c", str(config)]
        command += flags
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout = self.stderr = ""
        self.ended = float("inf")
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        # Reads both pipes to their end (the process exited), then takes the time.
        self.stdout, self.stderr = self.process.communicate()
        self.ended = time.monotonic()

    def join(self, timeout: float) -> None:
        self._waiter.join(timeout)
        if self._waiter.is_alive():
            self.process.kill()
            self._waiter.join(5)

    @property
    def elapsed(self) -> float:
        return self.ended - self.spawned


def test_parallel_checks_each_exit_within_their_timeout_from_spawn(servers, tmp_path) -> None:
    config = tmp_path / "config.yml"
    targets = [{"name": kind, "url": server.url} for kind, server in servers.items()]
    config.write_text(json.dumps({"targets": targets}))
    checks = [Check(config, "-t", f"{TIMEOUT:g}") for _ in range(CHECKS)]
    for check in checks:
        # Far past the promise: a check still running then has broken it anyway.
        check.join(timeout=TIMEOUT * 3)
    elapsed = sorted(round(check.elapsed, 2) for check in checks)
    for check in checks:
        assert check.elapsed <= TIMEOUT + PROMISE, f"{check.elapsed:.2f} s; all: {elapsed}"
        lines = check.stdout.splitlines()
        if check.process.returncode == UNKNOWN_EXIT_CODE:
            # Too busy a machine to even start in time: said so, on time.
            assert lines == [f"SANDBOX UNKNOWN - {NOT_DONE}"], check.stdout + check.stderr
            continue
        assert check.process.returncode == 2, check.stdout + check.stderr
        assert lines[0].startswith("SANDBOX CRITICAL - 3 critical of 3 targets"), check.stdout
        for kind in KINDS:
            assert any(line.startswith(f"[CRITICAL] {kind}: ") for line in lines), check.stdout


NOT_DONE = f"not done within the check's timeout of {TIMEOUT:g} s (-t), counted from its start"


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_check_too_slow_to_start_reports_unknown_on_time(tmp_path, output) -> None:
    # Importing alone takes longer than 0.3 s of CPU: only the watchdog can report.
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"targets": [{"name": "x", "url": "http://127.0.0.1:1/"}]}))
    check = Check(config, "-t", "0.3", "--output", output)
    check.join(timeout=30)
    assert check.elapsed <= 0.3 + PROMISE + SLACK, check.elapsed
    assert check.process.returncode == UNKNOWN_EXIT_CODE == Status.UNKNOWN, check.stderr
    said = "not done within the check's timeout of 0.3 s (-t), counted from its start"
    if output == "json":
        report = json.loads(check.stdout)
        assert (report["status"], report["exit_code"], report["message"]) == ("UNKNOWN", 3, said)
    else:
        assert check.stdout == f"SANDBOX UNKNOWN - {said}\n"


def test_the_report_is_due_before_the_watchdog_reports() -> None:
    assert LATE_PROBE_SECONDS + EXIT_SECONDS < REPORT_SECONDS


STANDS_DOWN = """
import time
from sandbox_exporter.once_deadline import Watchdog
watchdog = Watchdog(time.monotonic(), 0.5)
watchdog.claim()  # before it starts: whatever the scheduling, the check was first
watchdog.start()
print("the check's own report", flush=True)
# Until the watchdog's thread has passed its deadline and ended: it must stay quiet.
watchdog._thread.join(10)
assert not watchdog._thread.is_alive()
"""


def test_the_watchdog_stands_down_once_the_check_reports() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STANDS_DOWN], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (0, "the check's own report\n"), done.stderr


START = """
from sandbox_exporter.once_deadline import _IMPORTED, process_start
print(process_start(), _IMPORTED)
"""


def test_the_process_start_is_the_kernels_before_the_imports() -> None:
    spawned = time.monotonic()
    done = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, timeout=30)
    started, imported = map(float, done.stdout.split())
    # The kernel counts in clock ticks (10 ms at most), rounded down.
    assert spawned - 0.011 <= started <= imported, (spawned, started, imported)
