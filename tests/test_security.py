"""Secrets stay secret, and our own endpoints survive whatever is sent to them.

Credentials of every kind (password file, bearer token file, password from
the environment) must reach the sandbox, and must never show anywhere else:
`/metrics`, the landing page, `/probe?debug=true`, logs at debug level,
`--once` in text or JSON, reprs. The sandboxes here misbehave on purpose,
some of them echoing the request's `Authorization` header back in error
pages and documents, the way a debugging proxy or a broken server might.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from harness import RunningExporter

from sandbox_emulator import Emulator, default_libraries
from sandbox_exporter import web
from sandbox_exporter.client import Sandbox, SandboxConnectionError
from sandbox_exporter.config import load_config

from helpers import Scrape, free_port, wait_until

USER = "monitor"
PASSWORD = "S3CR3T-MARKER-PASSWORD"
TOKEN = "S3CR3T-MARKER-TOKEN"
ENV_PASSWORD = "S3CR3T-MARKER-ENV-PASSWORD"
ENV_NAME = "SANDBOX_EXPORTER_TEST_PASSWORD"
FIXTURES = Path(__file__).parent / "fixtures"

# What each kind of target sends in its Authorization header.
CREDENTIALS = {
    "basic-file": f"Basic {base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}",
    "bearer-file": f"Bearer {TOKEN}",
    "basic-env": f"Basic {base64.b64encode(f'{USER}:{ENV_PASSWORD}'.encode()).decode()}",
}


def leaks(text: str) -> list[str]:
    """Any piece of a secret found in `text`: the marker itself, or the start
    of an encoded user:password pair long enough to hold password characters."""
    found = ["S3CR3T"] if "S3CR3T" in text else []
    for header in CREDENTIALS.values():
        if header.startswith("Basic "):
            encoded = header.removeprefix("Basic ")
            # 16 base64 characters hold 12 bytes: "monitor:" and 4 of the password.
            found += [encoded[:k] for k in range(16, len(encoded) + 1) if encoded[:k] in text][:1]
    return found


# ------------------------------------------------------------- the sandboxes


def _cut_at(limit: int, credential: str) -> str:
    """Padding that puts the cut of a `limit`-character excerpt inside the credential."""
    scheme, _, secret = credential.partition(" ")
    return "p" * (limit - len(scheme) - 2 - len(secret) // 2)


def _answer(
    handler: BaseHTTPRequestHandler, status: int, body: str, content_type: str = "text/plain"
) -> None:
    data = body.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    if status == 401:
        handler.send_header("WWW-Authenticate", 'Basic realm="sandbox"')
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(data)


def _spec_with_version(version: object, count: object) -> str:
    doc = json.loads((FIXTURES / "v3" / "specifications.json").read_text())
    doc["host"]["sandbox_version"] = version
    doc["container"]["count"] = count
    return json.dumps(doc)


# mode -> (what the exporter should report, how the server answers)
MODES: dict[str, str] = {
    "healthy": "",  # forwards to a real emulator
    "echo-500": "http_status",  # every request header in a 500 page
    "echo-500-cut": "http_status",  # ...placed so the excerpt ends inside the secret
    "echo-401": "http_status",
    "echo-not-json": "invalid_response",  # a 200 that is not JSON, secret at the cut
    "echo-in-document": "invalid_response",  # the header as a value of a JSON document
    "echo-in-version": "",  # ...of a valid one, where it would become a metric label
    "dropped": "connection",
    "slow": "timeout",
}


class CaptureServer:
    """A sandbox stand-in that records every Authorization header it is sent."""

    def __init__(self, mode: str, upstream: str) -> None:
        self.mode = mode
        self.authorizations: list[str] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                authorization = self.headers.get("Authorization", "")
                capture.authorizations.append(authorization)
                with contextlib.suppress(BrokenPipeError, ConnectionError):
                    capture.respond(self, authorization, body)

            do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.upstream = upstream
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def respond(
        self,
        handler: BaseHTTPRequestHandler,
        authorization: str,
        body: bytes,
        mode: str | None = None,
    ) -> None:
        mode = mode or self.mode
        headers = "\n".join(f"{k}: {v}" for k, v in handler.headers.items())
        if mode == "healthy":
            forwarded = {k: v for k, v in handler.headers.items() if k.lower() in ("content-type",)}
            answer = requests.request(
                handler.command,
                self.upstream + handler.path.lstrip("/"),
                data=body,
                headers=forwarded,
                timeout=10,
            )
            _answer(
                handler,
                answer.status_code,
                answer.text,
                answer.headers.get("Content-Type", "text/plain"),
            )
        elif mode == "echo-500":
            _answer(handler, 500, f"Internal Server Error\nYou sent:\n{headers}\n")
        elif mode == "echo-500-cut":
            # The client keeps the first 200 characters of an error page.
            _answer(handler, 500, _cut_at(200, authorization) + " " + authorization)
        elif mode == "echo-401":
            _answer(handler, 401, f"Unauthorized: {authorization}\n")
        elif mode == "echo-not-json":
            _answer(handler, 200, _cut_at(200, authorization) + " " + authorization)
        elif mode == "echo-in-document":
            _answer(handler, 200, _spec_with_version("3.0.3", authorization), "application/json")
        elif mode == "echo-in-version" and handler.path.startswith("/specifications/"):
            _answer(handler, 200, _spec_with_version(authorization, 5), "application/json")
        elif mode == "echo-in-version":
            self.respond(handler, authorization, body, mode="healthy")  # other routes
        elif mode == "dropped":
            handler.close_connection = True
        elif mode == "slow":
            time.sleep(3)
            _answer(handler, 200, "{}", "application/json")
        else:
            raise AssertionError(mode)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Sandboxes:
    directory: Path
    emulator: Emulator
    servers: dict[str, CaptureServer] = field(default_factory=dict)  # target name -> server

    def config_text(self) -> str:
        password_file = self.directory / "password"
        password_file.write_text(PASSWORD + "\n")
        token_file = self.directory / "token"
        token_file.write_text(TOKEN + "\n")
        auth = {
            "basic-file": f"{{username: {USER}, password_file: {password_file}}}",
            "bearer-file": f"{{bearer_token_file: {token_file}}}",
            "basic-env": f"{{username: {USER}, password_env: {ENV_NAME}}}",
        }
        lines = [
            "defaults:",
            "  intervals: {specifications: 1s, usage: 1s, libraries: 2s, canary: 2s}",
            "  timeouts: {specifications: 1s, usage: 1s, libraries: 1s, canary: 1s}",
            "targets:",
        ]
        for name, server in self.servers.items():
            kind = name.rsplit("@", 1)[1]
            lines += [
                f"  - name: {name}",
                f"    url: {json.dumps(server.url)}",
                f"    auth: {auth[kind]}",
            ]
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    # Every target's canaries may hold a container at once (--once probes
    # them all together): a pool that they can fill would rate the healthy
    # target as loaded, which is not what these tests are about.
    pool = 2 * len(MODES) * len(CREDENTIALS)
    emulator = Emulator(containers=pool, usage_delay=0.05, libraries_delay=0.05, port=0)
    emulator.start()
    found = Sandboxes(tmp_path_factory.mktemp("security"), emulator)
    for mode in MODES:
        for kind in CREDENTIALS:
            found.servers[f"{mode}@{kind}"] = CaptureServer(mode, emulator.url)
    (found.directory / "config.yml").write_text(found.config_text())
    yield found
    for server in found.servers.values():
        server.stop()
    emulator.stop()


def _env() -> dict[str, str]:
    return {**os.environ, ENV_NAME: ENV_PASSWORD}


@dataclass
class DaemonRun:
    """Everything a daemon said while its sandboxes misbehaved."""

    pages: dict[str, str]
    logs: str
    returncode: int


@pytest.fixture(scope="module")
def daemon_run(sandboxes: Sandboxes) -> DaemonRun:
    """The real daemon at debug level: scrape every page while each target fails its way."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # A file, not a pipe: debug logs would fill a pipe nobody reads until the end.
    log_file = (sandboxes.directory / "daemon.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sandbox_exporter.cli",
            "-c", str(sandboxes.directory / "config.yml"),
            "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "debug",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=_env(),
    )  # fmt: skip
    pages: dict[str, str] = {}
    try:

        def every_failure_counted() -> Scrape | None:
            try:
                m = Scrape(requests.get(url + "metrics", timeout=5).text)
            except requests.exceptions.ConnectionError:
                return None
            for name in sandboxes.servers:
                reason = MODES[name.split("@")[0]]
                if not reason and not m.get(
                    "sandbox_probe_last_success_timestamp_seconds", target=name, probe="canary"
                ):
                    return None
                if reason and not m.get(
                    "sandbox_probe_failures_total",
                    target=name,
                    probe="specifications",
                    reason=reason,
                ):
                    return None
            return m

        wait_until(every_failure_counted, timeout=60)
        pages["metrics"] = requests.get(url + "metrics", timeout=10).text
        pages["openmetrics"] = requests.get(
            url + "metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10
        ).text
        pages["landing"] = requests.get(url, timeout=10).text
        for name in sandboxes.servers:
            for debug in ("true", "false"):
                pages[f"probe {name} debug={debug}"] = requests.get(
                    url + "probe",
                    params={"target": name, "debug": debug},
                    headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"},
                    timeout=30,
                ).text
        pages["reload"] = requests.post(url + "-/reload", timeout=10).text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log_file.seek(0)
        logs = log_file.read()
        log_file.close()
    return DaemonRun(pages, logs, process.returncode)


def test_credentials_reach_the_sandbox(daemon_run: DaemonRun, sandboxes: Sandboxes) -> None:
    assert daemon_run.returncode == 0
    for name, server in sandboxes.servers.items():
        kind = name.split("@")[1]
        assert server.authorizations, name
        assert set(server.authorizations) == {CREDENTIALS[kind]}, name


def test_healthy_targets_work_through_the_capture_server(daemon_run: DaemonRun) -> None:
    m = Scrape(daemon_run.pages["metrics"])
    for kind in CREDENTIALS:
        assert m.value("sandbox_up", target=f"healthy@{kind}") == 1
        # Has worked (the latest run may lose its 1 s budget on a busy machine).
        last_success = "sandbox_probe_last_success_timestamp_seconds"
        assert m.value(last_success, target=f"healthy@{kind}", probe="canary") > 0


def test_no_page_shows_a_secret(daemon_run: DaemonRun) -> None:
    leaked = {page: found for page, text in daemon_run.pages.items() if (found := leaks(text))}
    assert leaked == {}


def test_debug_pages_do_say_what_went_wrong(daemon_run: DaemonRun) -> None:
    # Absence of secrets means something only if the failures are described.
    page = daemon_run.pages["probe echo-500@bearer-file debug=true"]
    assert "FAILED (http_status)" in page and "500 Internal Server Error" in page
    assert "Authorization: ***" in page  # the echoed header, redacted
    page = daemon_run.pages["probe echo-in-document@basic-file debug=true"]
    assert "FAILED (invalid_response)" in page
    assert "container.count: expected an integer, got 'Basic ***'" in page


def test_a_credential_reflected_into_a_document_never_becomes_a_label(
    daemon_run: DaemonRun,
) -> None:
    m = Scrape(daemon_run.pages["metrics"])
    versions = {
        kind: m.find("sandbox_info", target=f"echo-in-version@{kind}")[0].labels["sandbox_version"]
        for kind in CREDENTIALS
    }
    assert versions == {"basic-file": "Basic ***", "bearer-file": "***", "basic-env": "Basic ***"}


def test_debug_logs_show_failures_but_no_secret(daemon_run: DaemonRun) -> None:
    logs = daemon_run.logs
    assert "level=debug" in logs and "probe failed" in logs
    for mode, reason in MODES.items():
        if reason:
            assert f"target={mode}@basic-file" in logs, mode
    assert leaks(logs) == []
    assert "Traceback" not in logs


@pytest.mark.parametrize("output", ["text", "json"])
def test_once_reports_show_no_secret(sandboxes: Sandboxes, output: str) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "sandbox_exporter.cli", "--once", "--output", output,
            "-c", str(sandboxes.directory / "config.yml"), "--log.level", "debug",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert leaks(result.stdout + result.stderr) == []
    if output == "json":
        report = {t["name"]: t for t in json.loads(result.stdout)["targets"]}
        healthy = report["healthy@basic-env"]
        assert healthy["status"] == "OK", healthy
        assert report["echo-500@basic-file"]["probes"]["specifications"]["reason"] == "http_status"


def test_reprs_and_config_errors_show_no_secret(
    sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_NAME, ENV_PASSWORD)
    config = load_config(sandboxes.directory / "config.yml")
    assert leaks(repr(config)) == [] and leaks(str(config)) == []
    for target in config.targets:
        assert leaks(repr(target.auth)) == []
    # A secret that is not valid (a line break inside) is refused without quoting it.
    bad = sandboxes.directory / "bad-password"
    bad.write_text("S3CR3T-MARKER\nSECOND-LINE")
    path = sandboxes.directory / "bad.yml"
    path.write_text(
        f"targets: [{{name: a, url: 'http://h/', auth: {{username: u, password_file: {bad}}}}}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_exporter.cli", "--config.check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "password_file" in result.stderr
    assert leaks(result.stdout + result.stderr) == []


def test_ordinary_headers_are_not_mistaken_for_secrets() -> None:
    # Only credential-like headers are redacted: hiding the "https" of
    # X-Forwarded-Proto would garble every URL and package name holding it.
    headers = {"X-Forwarded-Proto": "https", "X-Api-Key": "S3CR3T-MARKER-KEY"}
    libraries = default_libraries(3)
    libraries["libraries"]["system"]["apt-transport-https"] = "1.8.2.3"
    libraries["libraries"]["system"]["S3CR3T-MARKER-KEY"] = "1.0"
    with (
        Emulator(libraries=libraries, libraries_delay=0.01, port=0) as emulator,
        Sandbox(emulator.url, timeout=10, headers=headers) as sandbox,
    ):
        system = sandbox.fetch_libraries()["libraries"]["system"]
    assert system["apt-transport-https"] == "1.8.2.3"
    assert system["***"] == "1.0"  # the real secret is still hidden
    port = free_port()
    with (
        Sandbox(f"https://127.0.0.1:{port}/", timeout=5, headers=headers) as sandbox,
        pytest.raises(SandboxConnectionError) as raised,
    ):
        sandbox.fetch_specifications()
    assert f"GET https://127.0.0.1:{port}/specifications/" in str(raised.value)


# --------------------------------------------------------------- /probe abuse


# Clients that never finish a request are dropped after this long (30 s in
# production; shorter here so the tests need not wait that long).
IDLE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def exporter_url(sandboxes: Sandboxes) -> Iterator[str]:
    """An in-process exporter over a single healthy target, for request abuse."""
    path = sandboxes.directory / "single.yml"
    path.write_text(f"targets: [{{name: only, url: {json.dumps(sandboxes.emulator.url)}}}]\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(web, "HEADER_DEADLINE_SECONDS", IDLE_TIMEOUT)
        server = RunningExporter(path)
    yield server.url
    server.stop()


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:1/",
        f"http://{USER}:{PASSWORD}@127.0.0.1:1/",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_probe_refuses_unlisted_targets_by_default(exporter_url: str, target: str) -> None:
    response = requests.get(exporter_url + "probe", params={"target": target}, timeout=10)
    assert response.status_code == 403
    assert "allow_unlisted_targets" in response.text
    assert leaks(response.text) == []


# ------------------------------------------------------------ garbage requests


def raw_exchange(url: str, data: bytes, *, read: bool = True) -> bytes:
    """Send raw bytes to the exporter, return what it answers (until it closes)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def status_of(answer: bytes) -> int | None:
    first = answer.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) >= 2 and first[1].isdigit() else None


GARBAGE: list[tuple[str, bytes, Callable[[int | None], bool]]] = [
    (
        "invalid-percent-encoding",
        b"GET /probe?target=%ZZ%E9%&debug=%%% HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        lambda status: status == 404,  # an unknown target named with the odd characters
    ),
    (
        "nul-in-target",
        b"GET /probe?target=only%00x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        lambda status: status == 404,
    ),
    (
        "query-over-our-limit",
        b"GET /probe?target=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        lambda status: status == 414,
    ),
    (
        "request-line-over-64k",
        b"GET /probe?target=" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        # aiohttp's parser refuses a request line over 8 KiB as a bad request.
        lambda status: status in (400, 414),
    ),
    (
        "repeated-params",
        b"GET /probe?target=nope&target=nope2&" + b"probe=usage&" * 300 + b" HTTP/1.1\r\n"
        b"Host: x\r\nConnection: close\r\n\r\n",
        lambda status: status == 404,
    ),
    (
        "header-of-100k",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
        lambda status: status in (400, 431),
    ),
    (
        "too-many-headers",
        b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500)) + b"\r\n",
        lambda status: status in (400, 431),
    ),
    (
        "unknown-path",
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        lambda status: status == 404,
    ),
    (
        "wrong-method",
        b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        lambda status: status == 405,
    ),
    (
        "made-up-method",
        b"BREW /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        # aiohttp's parser refuses methods it does not know as a bad request.
        lambda status: status in (400, 405, 501),
    ),
    (
        "reload-with-get",
        b"GET /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        lambda status: status == 405,
    ),
    (
        "raw-garbage",
        b"\x00\xff\xfe\x16\x03\x01garbage\r\n\r\n",
        lambda status: status in (None, 400),
    ),
    (
        "tls-hello-on-plain-port",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        lambda status: status in (None, 400),
    ),
    ("http-0.9", b"GET /metrics\r\n", lambda status: status in (None, 200, 400)),
    ("bad-version", b"GET /metrics HTTP/7.3\r\n\r\n", lambda status: status in (None, 400, 505)),
    ("empty-line", b"\r\n", lambda status: status in (None, 400)),
    (
        "lying-content-length",
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc",
        lambda status: status in (None, 200, 400, 413, 500),
    ),
    (
        "bad-scrape-timeout-header",
        b"GET /probe?target=only&probe=usage HTTP/1.1\r\nHost: x\r\n"
        b"X-Prometheus-Scrape-Timeout-Seconds: nan\r\nConnection: close\r\n\r\n",
        lambda status: status == 400,
    ),
]


@pytest.mark.parametrize(
    ("data", "acceptable"), [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE]
)
def test_garbage_requests_get_an_answer_and_the_server_stays_up(
    exporter_url: str, data: bytes, acceptable: Callable[[int | None], bool]
) -> None:
    answer = raw_exchange(exporter_url, data)
    assert acceptable(status_of(answer)), answer[:300]
    assert requests.get(exporter_url + "metrics", timeout=10).status_code == 200


def test_silent_and_half_finished_clients_do_not_block_others(exporter_url: str) -> None:
    host, port = exporter_url.removeprefix("http://").rstrip("/").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(20)]
    half = socket.create_connection((host, int(port)), timeout=10)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
    try:
        for _ in range(3):
            assert requests.get(exporter_url + "metrics", timeout=10).status_code == 200
    finally:
        for sock in [*idle, half]:
            sock.close()


def _connection_threads() -> int:
    return sum("process_request" in t.name for t in threading.enumerate())


def test_silent_clients_are_dropped_after_the_idle_timeout(exporter_url: str) -> None:
    host, port = exporter_url.removeprefix("http://").rstrip("/").split(":")
    before = _connection_threads()
    # Taken before connecting: the server cannot drop a client sooner than
    # IDLE_TIMEOUT after accepting it, so this lower bound holds however
    # slowly this test runs.
    started = time.monotonic()
    silent = [socket.create_connection((host, int(port)), timeout=30) for _ in range(10)]
    half = socket.create_connection((host, int(port)), timeout=30)
    half.sendall(b"GET /metrics\r\n")  # HTTP/0.9: the server then waits for headers
    try:
        # Eleven silent clients hold eleven threads, yet others are served.
        assert requests.get(exporter_url + "metrics", timeout=10).status_code == 200
        for sock in [*silent, half]:
            assert sock.recv(1024) == b""  # closed by the server, without an answer
        assert time.monotonic() - started >= IDLE_TIMEOUT  # not at once, though
        wait_until(lambda: _connection_threads() <= before, timeout=10)
    finally:
        for sock in [*silent, half]:
            sock.close()
    assert requests.get(exporter_url + "metrics", timeout=10).status_code == 200


def test_many_parallel_garbage_clients_leave_the_server_answering(exporter_url: str) -> None:
    def hammer(index: int) -> None:
        data = GARBAGE[index % len(GARBAGE)][1]
        with contextlib.suppress(OSError):
            raw_exchange(exporter_url, data)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert requests.get(exporter_url + "metrics", timeout=10).status_code == 200
    assert requests.get(exporter_url + "-/healthy", timeout=10).status_code == 200
