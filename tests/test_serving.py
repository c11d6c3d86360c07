"""The exporter's own server stays prompt and thread-flat whatever clients do,
and SIGTERM ends it within 2 s whatever its clients and probes are doing.

Real clients on loopback against `sandbox-exporter` run as a subprocess, so
its threads are counted from /proc and its stop is timed from outside.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from harness import ExporterProcess
from misbehaving import Misbehaving

from helpers import wait_until

SLACK = 2.0  # for a loaded 2-core machine
HALF_SENT = 1000
SLOW_READERS = 200
HEADER_DEADLINE = 5.0  # web.HEADER_DEADLINE_SECONDS, as a client sees it


def _room_for(connections: int) -> int:
    """Raise this process's open-file limit; how many connections fit under it,
    at least half of `connections` (or the test would prove little)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    room = min(connections, max(hard - 200, 0))
    assert room >= connections // 2, "the open-file hard limit leaves too little room"
    return room


def _half_sent(port: int, count: int) -> list[socket.socket]:
    """Connections that send a request line and one header, then nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def _timed_metrics(exporter: ExporterProcess, **kwargs) -> float:
    started = time.monotonic()
    response = exporter.get("metrics", timeout=30, **kwargs)
    assert response.status_code == 200
    assert "sandbox_exporter_build_info" in response.text
    return time.monotonic() - started


@pytest.fixture
def config(tmp_path: Path, make_emulator) -> Path:
    path = tmp_path / "config.yml"
    targets = [{"name": f"s{i}", "url": make_emulator(api=3).url} for i in range(3)]
    path.write_text(json.dumps({"targets": targets}))
    return path


@pytest.mark.parametrize("basic_auth", [False, True], ids=["open", "basic-auth"])
def test_half_sent_requests_and_slow_readers_cost_no_thread(
    config: Path, tmp_path: Path, basic_auth: bool
) -> None:
    count = _room_for(HALF_SENT)
    args = ["-c", str(config)]
    auth: dict = {}
    if basic_auth:
        # Half-sent requests never reach the password check: no bcrypt, no thread.
        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
        web_config = tmp_path / "web.yml"
        web_config.write_text(f"basic_auth_users: {{prometheus: '{hashed}'}}\n")
        args += ["--web.config.file", str(web_config)]
        auth = {"auth": ("prometheus", "secret")}
    exporter = ExporterProcess(*args)
    clients: list[socket.socket] = []
    try:
        exporter.wait_serving(**auth)
        exporter.poll(lambda: exporter.get("-/ready", **auth).status_code == 200)
        _timed_metrics(exporter, **auth)  # the render (and bcrypt) threads exist from now on
        threads = exporter.threads()
        clients = _half_sent(exporter.port, count)
        # Slow readers: a whole request each, and no reading of the answer.
        for _ in range(SLOW_READERS):
            sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(sock)
        latencies = [_timed_metrics(exporter, **auth) for _ in range(5)]
        assert max(latencies) < 1.0 + SLACK, latencies
        started = time.monotonic()
        probed = exporter.get("probe", params={"target": "s0", "probe": "canary"}, **auth)
        assert probed.status_code == 200
        assert time.monotonic() - started < 2.0 + SLACK
        assert exporter.threads() <= threads, "threads grew with connections"
        # Each half-sent request is dropped once its header deadline passes.
        half_sent = clients[:count]
        wait_until(
            lambda: all(_closed_by_server(s) for s in half_sent),
            timeout=HEADER_DEADLINE + 5 + SLACK,
            interval=0.5,
        )
        assert _timed_metrics(exporter, **auth) < 1.0 + SLACK
    finally:
        for sock in clients:
            sock.close()
        code, _, err = exporter.terminate()
    assert code == 0, err
    assert "open-file limit: " in err


def test_tls_handshakes_never_finished_cost_no_thread(tmp_path: Path, config: Path) -> None:
    key, cert = tmp_path / "server.key", tmp_path / "server.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"tls_server_config: {{cert_file: {cert}, key_file: {key}}}\n")
    count = _room_for(500)
    exporter = ExporterProcess(
        "-c", str(config), "--web.config.file", str(web_config), scheme="https"
    )
    silent: list[socket.socket] = []
    try:
        exporter.wait_serving(verify=str(cert))
        _timed_metrics(exporter, verify=str(cert))
        threads = exporter.threads()
        # TCP connects, and no ClientHello ever follows.
        silent = [
            socket.create_connection(("127.0.0.1", exporter.port), timeout=10) for _ in range(count)
        ]
        assert _timed_metrics(exporter, verify=str(cert)) < 1.0 + SLACK
        assert exporter.threads() <= threads
        wait_until(
            lambda: all(_closed_by_server(s) for s in silent),
            timeout=HEADER_DEADLINE + 5 + SLACK,
            interval=0.5,
        )
        # And TLS itself still works for a real client.
        context = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(("127.0.0.1", exporter.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for sock in silent:
            sock.close()
        exporter.terminate()


@pytest.fixture
def silent_server() -> Iterator[Misbehaving]:
    server = Misbehaving("silent")
    yield server
    server.stop()


def test_sigterm_ends_the_process_within_2s_whatever_it_is_doing(
    tmp_path: Path, silent_server: Misbehaving
) -> None:
    # Probes that would wait a minute for a server that never answers: a
    # stop that waited for them would take that minute.
    path = tmp_path / "config.yml"
    kinds = ("specifications", "usage", "libraries", "canary")
    path.write_text(
        json.dumps(
            {
                "defaults": {
                    "intervals": dict.fromkeys(kinds, "5m"),
                    "timeouts": dict.fromkeys(kinds, "60s"),
                },
                "targets": [{"name": f"hung{i}", "url": silent_server.url} for i in range(5)],
            }
        )
    )
    count = _room_for(300)
    exporter = ExporterProcess("-c", str(path))
    clients: list[socket.socket] = []
    try:
        exporter.wait_serving()
        # Probes in flight: the server has accepted their connections.
        wait_until(lambda: silent_server.requests >= 10, timeout=30)
        clients = _half_sent(exporter.port, count)

        def on_demand() -> None:
            # Cut off by the stop: expected.
            with contextlib.suppress(requests.RequestException):
                exporter.get("probe", params={"target": "hung0"}, timeout=60)

        threading.Thread(target=on_demand, daemon=True).start()
        wait_until(lambda: silent_server.requests >= 11, timeout=30)
        started = time.monotonic()
        exporter.process.send_signal(signal.SIGTERM)
        code = exporter.process.wait(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        for sock in clients:
            sock.close()
        exporter.kill()
    assert elapsed <= 2.0 + SLACK, f"SIGTERM took {elapsed:.1f}s"
    assert code == 0


def test_threads_do_not_grow_with_targets(tmp_path: Path, make_emulator) -> None:
    emulator = make_emulator(api=3, containers=50)

    def threads_with(count: int) -> int:
        path = tmp_path / f"config-{count}.yml"
        path.write_text(
            json.dumps(
                {
                    "defaults": {"canaries": []},
                    "targets": [{"name": f"t{i}", "url": emulator.url} for i in range(count)],
                }
            )
        )
        exporter = ExporterProcess("-c", str(path))
        try:
            exporter.wait_serving()
            exporter.poll(lambda: exporter.get("-/ready").status_code == 200, timeout=120)
            _timed_metrics(exporter)
            return exporter.threads()
        finally:
            exporter.terminate()

    few, many = threads_with(10), threads_with(300)
    assert many <= few, f"10 targets: {few} threads, 300 targets: {many}"
