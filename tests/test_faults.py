"""The fault matrix: every way a sandbox can misbehave becomes a metric, never a crash.

Each fault gets its own target, all in ONE exporter beside a healthy target.
For each fault the exporter must keep answering `/metrics`, report the probe
as failed with the right `reason`, keep counting (the failure counter moves
between two scrapes), leave the healthy target alone, and say the same
through `/probe` and `sandbox-exporter --once`.

Everything listens on 127.0.0.1. Timeout faults meet 1 s deadlines, the
other faults 2 s (3 s for canaries), so the whole matrix runs in well under a
minute and a busy machine does not turn a fault into a timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from harness import RunningExporter
from misbehaving import Misbehaving

from sandbox_emulator import Emulator, Fault
from sandbox_exporter.config.models import DEFAULT_MAX_RESPONSE_BYTES
from sandbox_exporter.daemon import WORKER_THREADS
from sandbox_exporter.exporter import Exporter
from sandbox_exporter.vocabulary import CANARY, PROBES, SPECIFICATIONS

from helpers import Scrape, scrape, wait_until

FIXTURES = Path(__file__).parent / "fixtures"
FAST_EMULATOR = {"containers": 2, "usage_delay": 0.05, "libraries_delay": 0.05, "port": 0}
HUGE_BODY_BYTES = 40 * 2**20

# -------------------------------------------------------------- misbehaving servers


class TinyServer:
    """A loopback HTTP server whose every GET/POST is answered by `respond(handler)`."""

    def __init__(
        self,
        respond: Callable[[BaseHTTPRequestHandler], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                # The exporter giving up first is the point of most faults.
                with contextlib.suppress(BrokenPipeError, ConnectionError, ssl.SSLError):
                    respond(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        port = self.httpd.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{port}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def redirect_to(location: Callable[[], str]) -> Callable[[BaseHTTPRequestHandler], None]:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location() + handler.path.lstrip("/"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return respond


def huge_body(declare_length: bool) -> Callable[[BaseHTTPRequestHandler], None]:
    """40 MB of JSON-looking bytes, streamed until the client hangs up."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare_length:
            handler.send_header("Content-Length", str(HUGE_BODY_BYTES))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        chunk = b'{"pad": "' + b"x" * (64 * 1024 - 12) + b'"},'
        sent = 0
        while sent < HUGE_BODY_BYTES:
            handler.wfile.write(chunk)
            sent += len(chunk)

    return respond


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate made by the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


# ------------------------------------------------------------------------ cases


def _specifications() -> dict:
    return json.loads((FIXTURES / "v3" / "specifications.json").read_text())


def _spec_with(path: str, value: object) -> dict:
    doc = _specifications()
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


def _spec_without(path: str) -> dict:
    doc = _specifications()
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    del node[last]
    return doc


@dataclass(frozen=True)
class Case:
    """One fault: how to make it, which probe it hits, the reason we expect."""

    name: str
    probe: str
    reason: str
    says: str  # part of the message people read (landing page, debug, --once)
    # What the target's verdict in `--once` must be.
    once_status: str = "CRITICAL"
    fault: Fault | None = None  # on every endpoint of a fresh emulator
    execute_fault: Fault | None = None  # on /execute/ only
    canary: str = ""  # YAML of the target's canaries, when not the default one
    server: str = ""  # a special server instead of an emulator (see `Matrix._make_server`)
    canary_status: int | None = None  # the `status` the canary's answer must carry


NAN_SPEC = json.dumps(_specifications()).replace('"ram": 25276063744', '"ram": NaN')
INFINITY_SPEC = json.dumps(_specifications()).replace('"freq_max": 0.0', '"freq_max": Infinity')
assert "NaN" in NAN_SPEC and "Infinity" in INFINITY_SPEC

CASES = [
    Case("refused", SPECIFICATIONS, "connection", "Connection refused", server="down"),
    Case(
        "connect-hangs",
        SPECIFICATIONS,
        "timeout",
        "could not connect within",
        server="stuck",
    ),
    # The number is what was left of the probe's 1 s when the request began.
    Case("read-timeout", SPECIFICATIONS, "timeout", "no answer within", fault=Fault(latency=4)),
    Case(
        "slow-drip",
        SPECIFICATIONS,
        "timeout",
        "answer not complete within",
        fault=Fault(drip=0.2),
    ),
    Case(
        "closed-mid-response",
        SPECIFICATIONS,
        "connection",
        "connection broken after 20 bytes",
        fault=Fault(truncate=20),
    ),
    Case(
        "dropped-without-answer",
        SPECIFICATIONS,
        "connection",
        "closed connection without response",
        fault=Fault(drop=True),
    ),
    Case("http-500", SPECIFICATIONS, "http_status", "500 Internal", fault=Fault(status=500)),
    Case("http-502", SPECIFICATIONS, "http_status", "502 Bad Gateway", fault=Fault(status=502)),
    Case(
        "http-503-overload",
        SPECIFICATIONS,
        "overloaded",
        "503 Service Unavailable",
        fault=Fault(status=503),
    ),
    Case("wrong-url-404", SPECIFICATIONS, "http_status", "404 Not Found", server="wrong-prefix"),
    Case("redirect", SPECIFICATIONS, "http_status", "302 Found", server="redirect"),
    Case("redirect-loop", SPECIFICATIONS, "http_status", "302 Found", server="redirect-loop"),
    Case(
        "not-json",
        SPECIFICATIONS,
        "invalid_response",
        "answer is not JSON",
        fault=Fault(body="<html>hi</html>"),
    ),
    Case(
        "json-not-an-object",
        SPECIFICATIONS,
        "invalid_response",
        "JSON but not an object",
        fault=Fault(body=[1, 2, 3]),
    ),
    Case(
        "json-empty-object",
        SPECIFICATIONS,
        "invalid_response",
        "not a specifications document",
        fault=Fault(body={}),
    ),
    Case(
        "json-missing-key",
        SPECIFICATIONS,
        "invalid_response",
        "container.count: required key is missing",
        fault=Fault(body=_spec_without("container.count")),
    ),
    Case(
        "json-wrong-type",
        SPECIFICATIONS,
        "invalid_response",
        "container.memory: expected an object, got an array",
        fault=Fault(body=_spec_with("container.memory", [1, 2])),
    ),
    Case(
        "json-null",
        SPECIFICATIONS,
        "invalid_response",
        "container.count: expected an integer, got null",
        fault=Fault(body=_spec_with("container.count", None)),
    ),
    Case(
        "json-negative",
        SPECIFICATIONS,
        "invalid_response",
        "got -5",
        fault=Fault(body=_spec_with("container.count", -5)),
    ),
    Case(
        "json-number-as-string",
        SPECIFICATIONS,
        "invalid_response",
        "got '5'",
        fault=Fault(body=_spec_with("container.count", "5")),
    ),
    Case("json-nan", SPECIFICATIONS, "invalid_response", "got NaN", fault=Fault(body=NAN_SPEC)),
    Case(
        "json-infinity",
        SPECIFICATIONS,
        "invalid_response",
        "got Infinity",
        fault=Fault(body=INFINITY_SPEC),
    ),
    Case(
        "json-truncated",
        SPECIFICATIONS,
        "invalid_response",
        "answer is not JSON",
        fault=Fault(body=json.dumps(_specifications())[:100]),
    ),
    Case(
        "huge-body-streamed",
        SPECIFICATIONS,
        "invalid_response",
        f"over the limit of {DEFAULT_MAX_RESPONSE_BYTES['specifications']} bytes",
        server="huge",
    ),
    Case(
        "huge-body-declared",
        SPECIFICATIONS,
        "invalid_response",
        f"answer of {HUGE_BODY_BYTES} bytes is over the limit",
        server="huge-declared",
    ),
    Case("tls-unknown-ca", SPECIFICATIONS, "tls", "CERTIFICATE_VERIFY_FAILED", server="tls"),
    Case(
        "canary-wrong-stdout",
        CANARY,
        "unexpected_output",
        "unexpected stdout '5'",
        canary="[{name: shell, commands: ['echo 5'], expect_stdout: '4'}]",
    ),
    Case(
        "canary-nonzero-status",
        CANARY,
        "execution_error",
        "status 3, expected 0",
        canary="[{name: shell, commands: ['echo 4; exit 3'], expect_stdout: '4'}]",
    ),
    Case(
        "canary-command-timeout",
        CANARY,
        "execution_error",
        "status -2, expected 0: Command timed out",
        canary="[{name: shell, commands: [{command: 'sleep 5', timeout: 1s}], timeout: 3s}]",
        canary_status=-2,
    ),
    Case(
        "canary-http-500",
        CANARY,
        "http_status",
        "500 Internal Server Error to POST",
        execute_fault=Fault(status=500),
    ),
    Case(
        "canary-wrong-shape",
        CANARY,
        "invalid_response",
        "execution: expected an array, got null",
        execute_fault=Fault(body={"status": "zero", "execution": None}),
    ),
    Case(
        "canary-dropped",
        CANARY,
        "connection",
        "closed connection without response",
        execute_fault=Fault(drop=True),
    ),
    # A full pool is overload, not an outage (its own reason); --once rates
    # it by severities.overloaded, "critical" by default: a failing canary.
    Case(
        "canary-overloaded",
        CANARY,
        "overloaded",
        "503 Service Unavailable",
        once_status="CRITICAL",
        execute_fault=Fault(status=503),
    ),
]
CASE_IDS = [case.name for case in CASES]
HEALTHY = "healthy"


# ----------------------------------------------------------------------- matrix


class ErrorLog(logging.Handler):
    """Collects every ERROR record of the exporter (and its scheduler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The emulators log their own troubles; they are not under test here.
        if not record.name.startswith("sandbox_emulator"):
            self.records.append(record)


class Matrix:
    """Every faulty server, the healthy emulator and the config that lists them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.emulators: list[Emulator] = []
        self.servers: list[TinyServer | Misbehaving] = []
        self.held_ports: list[socket.socket] = []
        self.healthy = self._emulator()
        self.urls = {case.name: self._make_server(case) for case in CASES}
        self.config_path = directory / "config.yml"
        self.config_path.write_text(self._config())

    def _emulator(self, **kwargs: object) -> Emulator:
        emulator = Emulator(**{**FAST_EMULATOR, **kwargs})
        emulator.start()
        self.emulators.append(emulator)
        return emulator

    def _tiny(self, respond: Callable, tls: ssl.SSLContext | None = None) -> str:
        server = TinyServer(respond, tls)
        self.servers.append(server)
        return server.url

    def _make_server(self, case: Case) -> str:
        if case.server == "down":
            emulator = self._emulator()
            emulator.go_down()
            # Hold its port, bound and not listening: connections are still
            # refused, and no server the matrix starts later can be given it
            # (one was, and the "refused" target answered with its page).
            holder = socket.socket()
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", emulator.port))
            self.held_ports.append(holder)
            return emulator.url
        if case.server == "stuck":
            stuck = Misbehaving("backlog-full")
            self.servers.append(stuck)
            return stuck.url
        if case.server == "wrong-prefix":
            return self.healthy.url + "extra/prefix/"
        if case.server == "redirect":
            return self._tiny(redirect_to(lambda: self.healthy.url))
        if case.server == "redirect-loop":
            url: list[str] = []
            url.append(self._tiny(redirect_to(lambda: url[0])))
            return url[0]
        if case.server == "huge":
            return self._tiny(huge_body(declare_length=False))
        if case.server == "huge-declared":
            return self._tiny(huge_body(declare_length=True))
        if case.server == "tls":
            return self._tiny(
                redirect_to(lambda: self.healthy.url), tls=self_signed_tls(self.directory)
            )
        assert not case.server, case.server
        emulator = self._emulator()
        if case.fault is not None:
            emulator.set_fault("*", case.fault)
        if case.execute_fault is not None:
            emulator.set_fault("execute", case.execute_fault)
        return emulator.url

    def _config(self) -> str:
        lines = [
            "defaults:",
            "  intervals: {specifications: 1s, usage: 2s, libraries: 2s, canary: 2s}",
            "  timeouts: {specifications: 1s, usage: 1s, libraries: 1s, canary: 1s}",
            "targets:",
            # Generous deadlines: the healthy target must not fail because
            # the machine is busy with the faulty ones.
            f"  - name: {HEALTHY}",
            f"    url: {json.dumps(self.healthy.url)}",
            "    intervals: {specifications: 5s, usage: 5s, libraries: 5s, canary: 5s}",
            "    timeouts: {specifications: 5s, usage: 5s, libraries: 5s, canary: 5s}",
        ]
        for case in CASES:
            lines += [f"  - name: {case.name}", f"    url: {json.dumps(self.urls[case.name])}"]
            intervals: dict[str, str] = {}
            timeouts: dict[str, str] = {}
            if case.reason != "timeout":
                # Only a timeout case needs the 1 s deadline its message
                # names; the others get room, so that a busy machine (several
                # --once processes at a time) cannot turn them into timeouts.
                for probe in ("specifications", "usage", "libraries"):
                    intervals[probe] = timeouts[probe] = "2s"
            if case.canary:
                lines.append(f"    canaries: {case.canary}")
                intervals["canary"] = timeouts["canary"] = "3s"
            if case.server.startswith("huge"):
                # Reading 16 MB before giving up takes a moment on a busy
                # machine (a deadline of 1 s would make it a timeout), and is
                # work: give it time, and do it less often.
                intervals = {"specifications": "4s", "usage": "30s", "libraries": "30s"}
                intervals["canary"] = "30s"
                timeouts = dict.fromkeys(intervals, "4s")
            for key, values in (("intervals", intervals), ("timeouts", timeouts)):
                if values:
                    mapping = ", ".join(f"{probe}: {value}" for probe, value in values.items())
                    lines.append(f"    {key}: {{{mapping}}}")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for emulator in self.emulators:
            emulator.stop()
        for holder in self.held_ports:
            holder.close()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    matrix = Matrix(tmp_path_factory.mktemp("faults"))
    yield matrix
    matrix.stop()


@dataclass
class Daemon:
    """The exporter serving the matrix, and what it said over time."""

    exporter: Exporter
    server: RunningExporter
    errors: ErrorLog
    first: Scrape | None = None
    second: Scrape | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def scrape(self) -> Scrape:
        return scrape(self.url + "metrics")


def _runs(m: Scrape, target: str, probe: str) -> float:
    return m.get("sandbox_probe_runs_total", target=target, probe=probe) or 0.0


@pytest.fixture(scope="module")
def daemon(matrix: Matrix) -> Iterator[Daemon]:
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    server = RunningExporter(matrix.config_path)
    exporter = server.exporter
    running = Daemon(exporter, server, errors)
    try:
        # Two scrapes, each after every faulty probe has run (again): the
        # counters must have moved between them.
        running.first = wait_until(
            lambda: (
                (m := running.scrape())
                and all(_runs(m, case.name, case.probe) >= 1 for case in CASES)
                and m
            ),
            timeout=60,
        )
        first = running.first
        running.second = wait_until(
            lambda: (
                (m := running.scrape())
                and all(
                    _runs(m, case.name, case.probe) > _runs(first, case.name, case.probe)
                    for case in CASES
                )
                and all(_runs(m, HEALTHY, probe) >= 1 for probe in PROBES)
                and m
            ),
            timeout=60,
        )
        yield running
    finally:
        server.stop()
        logging.getLogger().removeHandler(errors)


# ----------------------------------------------------------------- reload storm
# First in the file, so that it runs before the matrix exists: it counts the
# process's threads.

STORM_RELOADS = 60


def _storm_config(emulators: list[Emulator], variant: int) -> str:
    """Good configs that differ in what reloads really change; bad ones of several kinds."""
    stay_a, stay_b = (json.dumps(e.url) for e in emulators)
    if variant % 2:
        return [
            "targets:\n  - name: [unclosed\n",
            f"targets:\n  - name: stay-a\n    url: {stay_a}\n    colour: blue\n",
            f"targets:\n  - {{name: stay-a, url: {stay_a}}}\n  - {{name: stay-a, url: {stay_b}}}\n",
            "defaults:\n  intervals: {canary: -1s}\ntargets: []\n",
        ][(variant // 2) % 4]
    interval = ["1s", "2s"][(variant // 2) % 2]
    transient = (variant // 2) % 3 == 0
    lines = [
        "defaults:",
        f"  intervals: {{specifications: {interval}, usage: 1s, libraries: 2s, canary: 1s}}",
        "  timeouts: {specifications: 1s, usage: 1s, libraries: 1s, canary: 1s}",
        "targets:",
        f"  - {{name: stay-a, url: {stay_a}, labels: {{round: '{variant}'}}}}",
        f"  - {{name: stay-b, url: {stay_b}}}",
    ]
    if transient:
        lines.append(f"  - {{name: transient, url: {stay_a}}}")
    return "\n".join(lines) + "\n"


def _counters(m: Scrape, target: str) -> dict[tuple, float]:
    """Every counter-like sample of a target, keyed by name and labels."""
    counted = (
        "sandbox_probe_runs_total",
        "sandbox_probe_failures_total",
        "sandbox_canary_round_trip_seconds_count",
        "sandbox_canary_round_trip_seconds_bucket",
    )
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in m.samples
        if s.name in counted and s.labels.get("target") == target
    }


def _process_threads() -> int:
    # The emulators' connection threads come and go with the load; the
    # exporter's are what a reload must not add to.
    return sum(t.name != "emulator-connection" for t in threading.enumerate())


def test_reload_storm_keeps_counters_threads_and_logs_in_order(tmp_path: Path) -> None:
    emulators = [Emulator(**FAST_EMULATOR) for _ in range(2)]
    for emulator in emulators:
        emulator.start()
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    path = tmp_path / "config.yml"
    path.write_text(_storm_config(emulators, 0))
    server = RunningExporter(path)
    url = server.url
    scrapes: list[Scrape] = []
    storm_over = threading.Event()

    probe_statuses: list[int] = []

    def scraper() -> None:
        while not storm_over.is_set():
            scrapes.append(scrape(url + "metrics"))
            storm_over.wait(0.05)

    def prober() -> None:
        # On-demand probes of a target that stays, in the middle of the storm.
        while not storm_over.is_set():
            response = requests.get(
                url + "probe", params={"target": "stay-a", "probe": "specifications"}, timeout=30
            )
            probe_statuses.append(response.status_code)

    try:
        wait_until(
            lambda: all(
                _runs(scrape(url + "metrics"), name, probe) >= 1
                for name in ("stay-a", "stay-b")
                for probe in PROBES
            ),
            timeout=30,
        )
        # Let every config shape run once so the worker pools have their size.
        for variant in (0, 2, 4):
            path.write_text(_storm_config(emulators, variant))
            assert requests.post(url + "-/reload", timeout=10).status_code == 200
        threads_before = _process_threads()
        helpers = [threading.Thread(target=f, daemon=True) for f in (scraper, prober)]
        for thread in helpers:
            thread.start()
        statuses = []
        for variant in range(STORM_RELOADS):
            path.write_text(_storm_config(emulators, variant))
            response = requests.post(url + "-/reload", timeout=10)
            statuses.append(response.status_code)
            if variant % 2:
                assert "reload failed: " in response.text
        # One more good reload, then let the probes run on it for a moment.
        path.write_text(_storm_config(emulators, 0))
        assert requests.post(url + "-/reload", timeout=10).status_code == 200
        last = scrape(url + "metrics")
        wait_until(
            lambda: (
                _runs(scrape(url + "metrics"), "stay-b", "canary") > _runs(last, "stay-b", "canary")
            ),
            timeout=30,
        )
        storm_over.set()
        for thread in helpers:
            thread.join(timeout=30)
        assert statuses == [500 if v % 2 else 200 for v in range(STORM_RELOADS)]
        assert probe_statuses and set(probe_statuses) == {200}

        # Counters of targets that stayed never went down, scrape after scrape.
        assert len(scrapes) >= 3
        for name in ("stay-a", "stay-b"):
            previous: dict[tuple, float] = {}
            for m in scrapes:
                current = _counters(m, name)
                went_down = {k: (v, current.get(k)) for k, v in previous.items()
                             if current.get(k, 0) < v}  # fmt: skip
                assert went_down == {}, name
                previous = current
        final = scrape(url + "metrics")
        assert final.value("sandbox_exporter_config_last_reload_successful") == 1
        assert final.value("sandbox_up", target="stay-a") == 1
        assert final.find("sandbox_target_info", target="stay-a", round="0")

        # One scheduler, on the loop, whatever the reloads did: no thread
        # per scheduler, per target or per connection came to stay; at most
        # the loop's fixed few workers (config reads) started meanwhile.
        bound = threads_before + WORKER_THREADS
        wait_until(lambda: _process_threads() <= bound, timeout=30)
    finally:
        storm_over.set()
        server.stop()
        logging.getLogger().removeHandler(errors)
        for emulator in emulators:
            emulator.stop()
    unexpected = [
        record.getMessage()
        for record in errors.records
        if record.exc_info or not record.getMessage().startswith("config reload failed")
    ]
    assert unexpected == []
    assert sum(r.getMessage().startswith("config reload failed") for r in errors.records) == (
        STORM_RELOADS // 2
    )


# ------------------------------------------------------------------ daemon mode


def _failures(m: Scrape, case: Case) -> float:
    return (
        m.get(
            "sandbox_probe_failures_total", target=case.name, probe=case.probe, reason=case.reason
        )
        or 0.0
    )


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_daemon_reports_the_fault_with_its_reason(daemon: Daemon, case: Case) -> None:
    first, second = daemon.first, daemon.second
    assert first is not None and second is not None
    assert second.value("sandbox_probe_success", target=case.name, probe=case.probe) == 0
    failures = {
        s.labels["reason"]: s.value
        for s in second.find("sandbox_probe_failures_total", target=case.name, probe=case.probe)
        if s.value
    }
    assert failures == {case.reason: failures.get(case.reason)}, failures
    assert _failures(second, case) > _failures(first, case) >= 1
    if case.probe == SPECIFICATIONS:
        assert second.value("sandbox_up", target=case.name) == 0
    if case.canary_status is not None:
        status = second.value("sandbox_canary_status", target=case.name, canary="shell")
        assert status == case.canary_status


def test_healthy_target_is_unaffected_by_its_neighbours(daemon: Daemon) -> None:
    m = daemon.second
    assert m is not None
    assert m.value("sandbox_up", target=HEALTHY) == 1
    for probe in PROBES:
        assert m.value("sandbox_probe_success", target=HEALTHY, probe=probe) == 1
    failures = m.find("sandbox_probe_failures_total", target=HEALTHY)
    assert failures and all(s.value == 0 for s in failures)


def test_exporter_keeps_serving_and_logs_no_error(daemon: Daemon) -> None:
    for path in ("metrics", "", "-/healthy", "-/ready"):
        response = requests.get(daemon.url + path, timeout=10)
        assert response.status_code == 200, path
    assert daemon.scrape().value("sandbox_exporter_targets") == len(CASES) + 1
    assert [record.getMessage() for record in daemon.errors.records] == []


def test_landing_page_names_each_failure_reason(daemon: Daemon) -> None:
    page = requests.get(daemon.url, timeout=10).text
    for reason in {case.reason for case in CASES}:
        assert f">{reason} <small>" in page, reason


# ---------------------------------------------------------------------- /probe


@pytest.fixture(scope="module")
def probe_answers(daemon: Daemon) -> dict[str, requests.Response]:
    """Every case through /probe at once (each waits for its own deadline)."""

    def probe(case: Case) -> requests.Response:
        return requests.get(
            daemon.url + "probe",
            params={"target": case.name, "probe": case.probe, "debug": "true"},
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CASE_IDS, pool.map(probe, CASES), strict=True))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_probe_endpoint_reports_the_fault(
    daemon: Daemon, probe_answers: dict[str, requests.Response], case: Case
) -> None:
    response = probe_answers[case.name]
    assert response.status_code == 200, response.text
    [line] = [line for line in response.text.splitlines() if line.startswith(f"- {case.probe}:")]
    assert line.startswith(f"- {case.probe}: FAILED ({case.reason}) in ")
    assert case.says in line
    metrics = Scrape(response.text.split("Metrics that would have been returned:", 1)[1])
    assert metrics.value("sandbox_probe_success", target=case.name, probe=case.probe) == 0
    assert _failures(metrics, case) >= 1
    # The exporter still answers afterwards.
    assert daemon.scrape().value("sandbox_up", target=HEALTHY) == 1


def test_probe_endpoint_without_debug_is_plain_metrics(daemon: Daemon) -> None:
    case = CASES[0]
    response = requests.get(
        daemon.url + "probe", params={"target": case.name, "probe": case.probe}, timeout=30
    )
    assert response.status_code == 200
    m = Scrape(response.text)
    assert m.value("sandbox_probe_success", target=case.name, probe=case.probe) == 0


# ----------------------------------------------------------------------- --once


def _once(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_exporter.cli", "--once", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,  # every probe has a deadline of at most 3 s: far within
    )


@pytest.fixture(scope="module")
def once_runs(matrix: Matrix) -> dict[str, subprocess.CompletedProcess]:
    """`--once --target NAME` for each case, several at a time."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        runs = pool.map(lambda case: _once(matrix.config_path, "--target", case.name), CASES)
        return dict(zip(CASE_IDS, runs, strict=True))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_once_rates_the_fault(
    once_runs: dict[str, subprocess.CompletedProcess], case: Case
) -> None:
    run = once_runs[case.name]
    assert "Traceback" not in run.stdout + run.stderr
    expected = {"CRITICAL": 2, "WARNING": 1}[case.once_status]
    assert run.returncode == expected, run.stdout + run.stderr
    first, *rest = run.stdout.splitlines()
    assert first.startswith(f"SANDBOX {case.once_status} - ")
    assert rest == [rest[0]] and rest[0].startswith(f"[{case.once_status}] {case.name}: ")
    assert case.reason in rest[0] and case.says in rest[0]


def test_once_json_names_each_failed_probe_and_spares_the_healthy_one(matrix: Matrix) -> None:
    run = _once(matrix.config_path, "--output", "json")
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    report = {target["name"]: target for target in json.loads(run.stdout)["targets"]}
    assert report[HEALTHY]["status"] == "OK"
    for case in CASES:
        verdict = report[case.name]
        assert verdict["status"] == case.once_status, case.name
        probe = verdict["probes"][case.probe]
        assert (probe["success"], probe["reason"]) == (False, case.reason), case.name
