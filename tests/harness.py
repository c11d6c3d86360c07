"""The harnesses for a running exporter: in the test process, or as a subprocess.

The exporter lives on an asyncio loop; the harness runs that loop in a
background thread so tests can talk to it over real HTTP on loopback, as
Prometheus would, and stops it (bounded) at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from sandbox_exporter.config import Config, load_config
from sandbox_exporter.daemon import run
from sandbox_exporter.exporter import Exporter
from sandbox_exporter.web import WebServer
from sandbox_exporter.webconfig import WebConfig

from helpers import free_port, wait_until


class RunningExporter:
    """An exporter serving on 127.0.0.1 (a free port) until `stop()`."""

    def __init__(
        self,
        config: Config | Path | str,
        *,
        scheduled: bool = True,
        web_config: WebConfig | None = None,
        listen_address: str = "127.0.0.1:0",
    ) -> None:
        config_path = None
        if not isinstance(config, Config):
            config_path = Path(config)
            config = load_config(config_path)
        self.config_path = config_path
        self.exporter = Exporter(config, config_path, scheduled=scheduled)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.server: WebServer | None = None
        self.exit_code: int | None = None
        self._thread = threading.Thread(
            target=self._serve, args=(listen_address, web_config), daemon=True
        )
        self._thread.start()
        if not self._started.wait(30):
            raise AssertionError("the exporter did not start within 30 s")
        if self.server is None:
            raise AssertionError(f"the exporter did not start (exit code {self.exit_code})")

    def _serve(self, listen_address: str, web_config: WebConfig | None) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> int:
            self._stop = asyncio.Event()

            def started(server: WebServer) -> None:
                self.server = server
                self._started.set()

            try:
                return await run(self.exporter, listen_address, started, web_config, self._stop)
            finally:
                self._started.set()

        self.exit_code = self.loop.run_until_complete(main())

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def address(self) -> str:
        """host:port, as Prometheus' static_configs take it."""
        return self.url.split("://", 1)[1].rstrip("/")

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)

    def __enter__(self) -> RunningExporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ExporterProcess:
    """`sandbox-exporter ARGS` as a subprocess on a free loopback port."""

    def __init__(self, *args: str, scheme: str = "http") -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"{scheme}://{self.address}/"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox_exporter.cli",
                "--web.listen-address",
                self.address,
                *list(args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def threads(self) -> int:
        """How many threads the process has now."""
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, **{"timeout": 30, **kwargs})

    def poll(self, check: Callable[[], object], timeout: float = 60) -> object:
        """Wait for `check()` while the process lives; refused connections count as no."""

        def attempt() -> object:
            assert self.process.poll() is None, self.process.communicate()
            try:
                return check()
            except requests.ConnectionError:
                return False

        return wait_until(attempt, timeout=timeout, interval=0.2)

    def wait_serving(self, **kwargs: Any) -> None:
        self.poll(lambda: self.get("-/healthy", timeout=2, **kwargs).status_code == 200)

    def terminate(self, timeout: float = 30) -> tuple[int, str, str]:
        """SIGTERM, then (exit code, stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)
