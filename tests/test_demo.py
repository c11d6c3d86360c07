"""`sandbox-exporter --demo` as a user starts it: quiet, its URLs on screen
last, every one of them answering a browser, and the `--once` command it
prints working when pasted into another terminal."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from sandbox_exporter import demo
from sandbox_exporter.config import parse_config

from helpers import free_port, scrape, wait_until

# What a request logged by an emulator names: a method and one of the API's paths.
REQUEST_LINE = re.compile(
    r"\b(GET|POST|HEAD) /(specifications|usages|libraries|execute|environments|files)/"
)
URL_BLOCK_TITLE = "sandbox-exporter demo is running"
URL = re.compile(r"http://127\.0\.0\.1:\d+/\S*")
SOMEWHERE = '"http://127.0.0.1:1/"'
DEMO_TARGETS = [
    target.name
    for target in parse_config(
        demo.DEMO_CONFIG.format(v2=SOMEWHERE, v3=SOMEWHERE, faulty=SOMEWHERE)
    ).targets
]
# What a browser shows as a page rather than offering to download.
BROWSER_TYPES = ("text/html", "text/plain", "application/json", "application/openmetrics-text")
ONCE_TIMEOUT_SECONDS = 5  # the -t the banner prints
# A process start and an event loop on a loaded 2-core machine, on top.
ONCE_SLACK_SECONDS = 15


class Terminal:
    """The demo's stdout and stderr in the one stream a terminal shows, read
    line by line as they come."""

    def __init__(self, *command: str) -> None:
        self.process = subprocess.Popen(
            list(command),
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


def test_demo_prints_urls_that_answer_and_a_once_command_that_works(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # As the README starts it: the installed console script.
    program = str(Path(sys.executable).parent / "sandbox-exporter")
    terminal = Terminal(program, "--demo", "--web.listen-address", f"127.0.0.1:{port}")
    try:

        def block_printed() -> bool:
            assert terminal.process.poll() is None, "\n".join(terminal.lines)
            lines = terminal.lines
            return any(line.startswith(URL_BLOCK_TITLE) for line in lines) and bool(
                lines[-1].strip().endswith("-t 5")
            )

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

        # On screen while the demo runs, the URL block is the last thing printed.
        titles = [i for i, line in enumerate(running) if line.startswith(URL_BLOCK_TITLE)]
        assert len(titles) == 1, running
        block = running[titles[0] :]
        # ... and what came before it is start-up logging only, a few lines.
        assert titles[0] <= 10, "\n".join(running)

        urls = [found for line in block for found in URL.findall(line)]
        assert urls[0] == url and block[1].split()[:2] == ["landing", "page"]
        pages = {f"{url}target?name={name}" for name in DEMO_TARGETS}
        assert pages <= set(urls), block
        assert f"{url}metrics" in urls
        sandboxes = [u for u in urls if not u.startswith(url)]
        assert len(sandboxes) == len(DEMO_TARGETS)
        assert all(u.endswith("/specifications/") for u in sandboxes), sandboxes
        for each in urls:
            response = requests.get(each, timeout=30, headers={"Accept": "text/html,*/*"})
            assert response.status_code == 200, (each, response.status_code, response.text)
            content_type = response.headers["Content-Type"]
            assert content_type.startswith(BROWSER_TYPES), (each, content_type)

        # The last line: the command to paste, after the line that says what it is.
        assert "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN" in block[-2]
        once = block[-1].strip()
        assert "--once" in shlex.split(once) and "URL" not in once
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", once],
            cwd=tmp_path,  # another terminal, elsewhere
            capture_output=True,
            text=True,
            timeout=ONCE_TIMEOUT_SECONDS + ONCE_SLACK_SECONDS,
        )
        elapsed = time.monotonic() - started
        config_path = Path(shlex.split(once)[shlex.split(once).index("-c") + 1])
        assert config_path.is_file()
    finally:
        code = terminal.stop()
    everything = terminal.lines
    assert code == 0, "\n".join(everything)

    # The faulty sandbox is CRITICAL, the two others OK: all three were checked.
    assert done.returncode == 2, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("SANDBOX CRITICAL - 1 critical, 2 ok of 3 targets: demo-faulty")
    assert elapsed < ONCE_TIMEOUT_SECONDS + ONCE_SLACK_SECONDS
    # The demo's configuration goes with it.
    assert not config_path.exists()

    # The emulators answered dozens of requests; none of them was logged.
    requests_logged = [line for line in everything if REQUEST_LINE.search(line)]
    assert requests_logged == []


@pytest.mark.parametrize("on_path", [True, False], ids=["on PATH", "not on PATH"])
def test_the_printed_command_is_the_program_as_the_shell_finds_it(
    monkeypatch: pytest.MonkeyPatch, on_path: bool
) -> None:
    script = Path(sys.executable).parent / "sandbox-exporter"
    monkeypatch.setattr(sys, "argv", [str(script), "--demo"])
    monkeypatch.setenv("PATH", str(script.parent) if on_path else "/nonexistent")
    expected = "sandbox-exporter" if on_path else shlex.quote(str(script))
    assert demo.command_name() == expected


def test_started_with_python_m_the_printed_command_is_python_m(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", [demo.__file__.replace("demo.py", "cli.py"), "--demo"])
    name = demo.command_name()
    done = subprocess.run(
        [*shlex.split(name), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("sandbox-exporter "), done
