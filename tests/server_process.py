"""A Prometheus-family server (Prometheus, Alertmanager) run by a test.

On 127.0.0.1 and a free port, with its log in the test's directory. Every
wait is bounded; a server that does not come up fails the test with the end
of its log. Subclasses say which binary and which arguments.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Self

import pytest
import requests

from helpers import free_port

STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# A port picked by free_port() can be taken by someone else before the server
# binds it; try a few fresh ones before giving up.
START_ATTEMPTS = 3
LOG_TAIL_CHARACTERS = 4000


def terminate(process: subprocess.Popen | None, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout``: every server a
    test starts stops within a bound, whatever state it is in."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class ServerProcess:
    name = "server"

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.log_path = directory / f"{self.name.lower()}.log"
        self.process: subprocess.Popen | None = None
        self.url = ""

    def arguments(self, port: int) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [self.binary, *self.arguments(port)],
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return self
            port_taken = "address already in use" in self.log_tail()
            self.stop()
            if not port_taken or attempt == START_ATTEMPTS:
                break
        pytest.fail(f"{self.name} did not become ready; its log ends with:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        """True once /-/ready answers 200; False if the process exits or time runs out."""
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass  # not listening yet
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Terminate (both flush and exit on SIGTERM), kill after a bound."""
        process, self.process = self.process, None
        terminate(process)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        if not self.log_path.is_file():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARACTERS:]
