"""A headless Chromium driven over the DevTools protocol, for what `--dump-dom` cannot see.

`--dump-dom` shows the DOM a page built; a test of what a browser *does*
with the pages needs more: the console (where Chromium reports every
Content-Security-Policy violation), a button pressed and the navigation it
starts, the requests the browser sent and the answers it got. Chromium
speaks its DevTools protocol over a pair of pipes (`--remote-debugging-pipe`:
it reads commands on fd 3 and writes answers and events on fd 4, each a JSON
object ended by a NUL byte), so no port is opened and nothing but the
standard library is needed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_ON_FDS_3_AND_4 = """
import fcntl, os, sys
# Above 9 first, so that neither lands on the other's place.
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for wanted, fd in zip((3, 4), high):
    os.dup2(fd, wanted)
os.execv(sys.argv[3], sys.argv[3:])
"""
# Generous: Chromium's start and a page's load share 2 cores with other tests.
DEADLINE_SECONDS = 60.0


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not on PATH; scripts/test installs Debian's chromium package")


@dataclass
class Exchange:
    """One request the page made, and the answer it got."""

    url: str
    method: str
    headers: dict[str, str]
    kind: str  # DevTools' resource type: "Document" for a navigation
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()
        # Chromium wants the pipes as fds 3 and 4: a small Python puts them
        # there (a shell cannot name fds above 9) and becomes Chromium.
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _ON_FDS_3_AND_4,
                str(commands_read),
                str(events_write),
                chromium(),
                *HEADLESS_FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(commands_read, events_write),
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: Chromium writes much there, and nobody reads it meanwhile.
            stderr=(profile.parent / f"{profile.name}.stderr").open("wb"),
        )
        self._stderr_path = profile.parent / f"{profile.name}.stderr"
        self._closed = False
        os.close(commands_read)
        os.close(events_write)
        self._buffer = b""
        self._next_id = 0
        self._pending: list[dict[str, Any]] = []
        #: The console as a person would read it in DevTools, in order.
        self.console: list[str] = []
        #: Every request the page sent, in order (each hop of a redirect apart).
        self.exchanges: list[Exchange] = []
        # By DevTools' request id: the hops of a request (redirects keep its id),
        # and the headers as sent of each hop (Origin, Sec-Fetch-*), which
        # DevTools reports apart, before or after the hop itself.
        self._hops: dict[str, list[Exchange]] = {}
        self._sent: dict[str, list[dict[str, str]]] = {}
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._call(f"{domain}.enable")

    # ------------------------------------------------------------ the page

    def open(self, url: str) -> str:
        """Load `url`; the DOM it built, serialised."""
        self._call("Page.navigate", {"url": url})
        self._wait_event("Page.loadEventFired")
        return self.dom()

    def press(self, selector: str) -> str:
        """Press the button `selector` names as a person would (a trusted click
        in its middle), wait for the page that follows; its DOM."""
        box = self._call(
            "Runtime.evaluate",
            {
                "expression": (
                    f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                    " e.scrollIntoView({block: 'center', inline: 'center'});"
                    " const r = e.getBoundingClientRect();"
                    " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
                ),
                "returnByValue": True,
            },
        )["result"]["value"]
        for kind in ("mousePressed", "mouseReleased"):
            self._call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
            )
        self._wait_event("Page.loadEventFired")
        return self.dom()

    @property
    def navigations(self) -> list[Exchange]:
        """The requests for documents (each hop of a redirect apart): what a
        person's clicks asked for, without the favicon and such."""
        return [exchange for exchange in self.exchanges if exchange.kind == "Document"]

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    @property
    def location(self) -> str:
        return self.evaluate("location.href")

    def policy_violations(self) -> list[str]:
        """The console lines in which Chromium reports a blocked action of the page."""
        return [line for line in self.console if "Content Security Policy" in line]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript `expression` in the page (DevTools runs it,
        whatever the page's policy allows)."""
        answer = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return answer["result"]["value"]

    # ------------------------------------------------------------ the protocol

    def _call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if method.split(".")[0] not in ("Target", "Browser"):
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            answer = self._receive(deadline, f"the answer to {method}")
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                return answer["result"]
            self._pending.append(answer)

    def _wait_event(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            while self._pending:
                event = self._pending.pop(0)
                if event.get("method") == name:
                    return event
            self._pending.append(self._receive(deadline, name))

    def _receive(self, deadline: float, awaited: str) -> dict[str, Any]:
        """The next message from Chromium; events are recorded on the way."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._events], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"Chromium sent no {awaited} within {DEADLINE_SECONDS} s")
            chunk = os.read(self._events, 1 << 16)
            if not chunk:
                raise AssertionError(f"Chromium exited waiting for {awaited}: {self._stderr()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message = json.loads(raw)
        self._record(message)
        return message

    def _record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append(f"{entry['level']} ({entry['source']}): {entry['text']}")
        elif method == "Runtime.consoleAPICalled":
            texts = (str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
            self.console.append(f"{params['type']} (console): {' '.join(texts)}")
        elif method == "Runtime.exceptionThrown":
            self.console.append(f"error (exception): {params['exceptionDetails']['text']}")
        elif method == "Network.requestWillBeSent":
            request, hops = params["request"], self._hops.setdefault(params["requestId"], [])
            if params.get("redirectResponse") is not None and hops:
                self._answered(hops[-1], params["redirectResponse"])
            exchange = Exchange(
                request["url"], request["method"], dict(request["headers"]), params.get("type", "")
            )
            sent = self._sent.get(params["requestId"], [])
            if len(sent) > len(hops):
                exchange.headers.update(sent[len(hops)])
            hops.append(exchange)
            self.exchanges.append(exchange)
        elif method == "Network.requestWillBeSentExtraInfo":
            sent = self._sent.setdefault(params["requestId"], [])
            sent.append(params["headers"])
            hops = self._hops.get(params["requestId"], [])
            if len(hops) >= len(sent):
                hops[len(sent) - 1].headers.update(params["headers"])
        elif method == "Network.responseReceived" and self._hops.get(params["requestId"]):
            self._answered(self._hops[params["requestId"]][-1], params["response"])

    @staticmethod
    def _answered(exchange: Exchange, response: dict[str, Any]) -> None:
        exchange.status = response["status"]
        exchange.response_headers = dict(response["headers"])

    def _stderr(self) -> str:
        self.close()
        return self._stderr_path.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._commands)
        os.close(self._events)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
