"""A real Alertmanager for end-to-end tests: Debian's `prometheus-alertmanager`
binary (upstream calls it `alertmanager`) on 127.0.0.1, a free port, a
throw-away configuration and data directory, clustering off.

    with AlertmanagerServer(config, tmp_path) as alertmanager:
        alertmanager.url  # http://127.0.0.1:PORT

Every wait is bounded; a server that does not come up fails the test with
the end of its log.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from helpers import free_port

STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
START_ATTEMPTS = 3
LOG_TAIL_CHARACTERS = 4000
# Debian renames the server binary; upstream tarballs and images call it alertmanager.
BINARY_NAMES = ("alertmanager", "prometheus-alertmanager")


def alertmanager_binary() -> str:
    """The path of the Alertmanager server binary; fails the test when absent."""
    for name in BINARY_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        "Alertmanager is not installed: ./scripts/test installs Debian's "
        "prometheus-alertmanager package (apt-get install prometheus-alertmanager)"
    )


class AlertmanagerServer:
    def __init__(self, config: Mapping[str, Any], directory: Path) -> None:
        self.binary = alertmanager_binary()
        self.directory = directory
        self.config_path = directory / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        self.log_path = directory / "alertmanager.log"
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> AlertmanagerServer:
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={self.config_path}",
                        f"--storage.path={self.directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        # No gossip: the default would listen on 0.0.0.0:9094.
                        "--cluster.listen-address=",
                    ],
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
        pytest.fail(f"Alertmanager did not become ready; its log ends with:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
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
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> AlertmanagerServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        if not self.log_path.is_file():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARACTERS:]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds now (API v2), with their status."""
        response = requests.get(f"{self.url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        return response.json()
