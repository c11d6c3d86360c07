"""`sandbox-exporter --demo` as a user starts it: quiet, its URLs on screen last."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

from helpers import free_port, scrape, wait_until

# What a request logged by an emulator names: one of the sandbox API's paths.
REQUEST_LINE = re.compile(r"/(specifications|usages|libraries|execute|environments|files)/")
URL_BLOCK_TITLE = "sandbox-exporter demo is running"
URL_BLOCK_LENGTH = 7  # the title, three exporter URLs, three sandboxes


class Terminal:
    """The demo's stdout and stderr in the one stream a terminal shows, read
    line by line as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox_exporter.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        return code


def test_demo_prints_its_urls_last_and_no_request_lines():
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    terminal = Terminal("--demo", "--web.listen-address", f"127.0.0.1:{port}")
    try:

        def block_printed() -> bool:
            assert terminal.process.poll() is None, "\n".join(terminal.lines)
            return any(line.startswith(URL_BLOCK_TITLE) for line in terminal.lines)

        wait_until(block_printed, timeout=60, interval=0.2)

        # Let the demo work its emulators for a few seconds: both healthy
        # sandboxes are up, and two rounds of canaries (5 s apart) have hit the
        # faulty one.
        def probed() -> bool:
            metrics = scrape(url + "metrics")
            overloaded = metrics.get(
                "sandbox_probe_failures_total",
                target="demo-faulty",
                probe="canary",
                reason="overloaded",
            )
            both_up = all(metrics.get("sandbox_up", target=t) == 1 for t in ("demo-v2", "demo-v3"))
            return both_up and (overloaded or 0) >= 2

        wait_until(probed, timeout=60, interval=0.5)
        running = terminal.lines
    finally:
        code = terminal.stop()
    everything = terminal.lines
    assert code == 0, "\n".join(everything)

    # On screen while the demo runs, the URL block is the last thing printed.
    titles = [i for i, line in enumerate(running) if line.startswith(URL_BLOCK_TITLE)]
    assert len(titles) == 1, running
    block = running[titles[0] :]
    assert len(block) == URL_BLOCK_LENGTH, "\n".join(running)
    assert block[1].split() == ["landing", "page", url]
    assert all(re.fullmatch(r"  \S.* http://127\.0\.0\.1:\d+/\S*", line) for line in block[1:])
    # ... and what came before it is start-up logging only, a few lines.
    assert len(running) - URL_BLOCK_LENGTH <= 10, "\n".join(running)

    # The emulators answered dozens of requests; none of them was logged.
    requests_logged = [line for line in everything if REQUEST_LINE.search(line)]
    assert requests_logged == []
