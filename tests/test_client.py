"""client.py over real HTTP: the emulator of both generations, plus tiny purpose-built servers
for what the emulator cannot do (redirect targets, header capture, TLS, endless bodies)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import gc
import http
import io
import ipaddress
import json
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
import requests
from misbehaving import Misbehaving, every_kind

from sandbox_emulator import Emulator, Fault
from sandbox_emulator.answers import NOT_FOUND_PAGE
from sandbox_exporter import client
from sandbox_exporter.client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Sandbox,
    SandboxConnectionError,
    SandboxConnectTimeout,
    SandboxErrCode,
    SandboxError,
    SandboxHTTPError,
    SandboxInvalidResponse,
    SandboxReadTimeout,
    SandboxResponseTooLarge,
    SandboxTimeout,
    SandboxTLSError,
    status_exceptions,
    validate,
)

from helpers import make_tgz, wait_until

FIXTURES = Path(__file__).parent / "fixtures"
SLACK = 2.0  # beyond a deadline, for a loaded 2-core machine
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(params=[2, 3], ids=["v2", "v3"])
def emulator(request, make_emulator) -> Emulator:
    return make_emulator(api=request.param, containers=3, usage_delay=0.05, libraries_delay=0.01)


@pytest.fixture
def sandbox(emulator: Emulator) -> Iterator[Sandbox]:
    with Sandbox(emulator.url, timeout=10) as sandbox:
        yield sandbox


class Recorded:
    def __init__(self, method: str, path: str, headers: dict[str, str], client_port: int):
        self.method = method
        self.path = path
        self.headers = headers
        self.client_port = client_port


Respond = Callable[[BaseHTTPRequestHandler], None]


class TinyServer:
    """A loopback HTTP(S) server whose answer a test scripts; records every request."""

    def __init__(self, respond: Respond, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Recorded] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, unlike the sandbox

            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                outer.requests.append(
                    Recorded(self.command, self.path, dict(self.headers), self.client_address[1])
                )
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                try:
                    respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_HEAD = do_POST = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def tiny_server() -> Iterator[Callable[..., TinyServer]]:
    servers: list[TinyServer] = []

    def make(respond: Respond, tls: ssl.SSLContext | None = None) -> TinyServer:
        server = TinyServer(respond, tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Respond:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    return respond


V3_SPECIFICATIONS = (FIXTURES / "v3" / "specifications.json").read_bytes()


# ------------------------------------------------------- classic attributes


def test_generation_is_detected_not_configured(emulator, sandbox):
    assert sandbox.known_api_version is None  # nothing asked yet
    assert sandbox.api_version == emulator.api
    assert sandbox.known_api_version == emulator.api


def test_specification_attributes(emulator, sandbox):
    assert sandbox.docker_version == "28.2.2"
    assert sandbox.cpu["count"] == 1
    assert sandbox.cpu["period"] == 1000
    assert sandbox.containers == {"total": 3, "running": 0, "available": 3}
    if emulator.api == 2:
        assert sandbox.sandbox_version == "2.0.3"
        # 2.x attributes stay as the classic client gave them
        assert sandbox.memory == {"ram": "100m", "swap": "200m", "storage": "host"}
        assert isinstance(sandbox.cpu["name"], str)
        assert sandbox.environ == {}
        assert sandbox.execute_timeout == emulator.execute_timeout
        assert sandbox.expiration == 86400
    else:
        assert sandbox.sandbox_version == "3.0.3"
        # in bytes, swap beyond RAM, None for unlimited
        assert sandbox.memory == {"ram": 100_000_000, "swap": 100_000_000, "storage": None}
        assert "name" not in sandbox.cpu
        # what 3.x does not report
        assert sandbox.environ is None
        assert sandbox.execute_timeout is None
        assert sandbox.expiration is None


def test_library_attributes_of_the_default_lists(emulator, sandbox):
    assert sandbox.python3 == "3.7.3"
    assert sandbox.python2 == "2.7.16"
    assert sandbox.gcc == "8.3.0"
    assert sandbox.gpp == "8.3.0"
    assert sandbox.perl == "5.28.1"
    if emulator.api == 2:  # top-level strings, as given
        assert (sandbox.java, sandbox.postgres) == ("openjdk 11.0.7", "11.7")
    else:  # derived from the dpkg list
        assert (sandbox.java, sandbox.postgres) == ("11.0.7", "11")
    assert set(sandbox.libraries) == {"system", "python", "perl", "c"}
    assert sandbox.libraries["python"]["numpy"] == "1.18.3"
    assert "bash" in sandbox.bin


def test_v3_language_versions_follow_the_dpkg_list(make_emulator):
    emulator = make_emulator(api=3, libraries_delay=0.0)
    emulator.set_libraries(
        {
            "libraries": {
                "system": {
                    "python3": "3.9.2-3",
                    "g++": "4:10.2.1-1",
                    "gcc": "4:10.2.1-1",
                    "openjdk-17-jdk:amd64": "17.0.2+8-1~deb11u1",
                    "postgresql": "13+225",
                    "perl": "5.32.1-4+deb11u2",
                },
                "python": {},
                "perl": {},
                "c": {},
            },
            "bin": ["bash"],
        }
    )
    with Sandbox(emulator.url, timeout=10) as sandbox:
        assert sandbox.python3 == "3.9.2"
        assert sandbox.gpp == "10.2.1"
        assert sandbox.gcc == "10.2.1"
        assert sandbox.java == "17.0.2"
        assert sandbox.postgres == "13"
        assert sandbox.perl == "5.32.1"
        assert sandbox.python2 is None  # not installed
        assert sandbox.bin == ["bash"]


def test_v2_language_versions_are_the_top_level_strings(make_emulator):
    emulator = make_emulator(api=2, libraries_delay=0.0)
    document = json.loads((FIXTURES / "v2" / "libraries.json").read_text())
    document.update({"python3": "3.11.2", "g++": "12.2.0", "java": "openjdk 17.0.6"})
    emulator.set_libraries(document)
    with Sandbox(emulator.url, timeout=10) as sandbox:
        assert (sandbox.python3, sandbox.gpp, sandbox.java) == (
            "3.11.2",
            "12.2.0",
            "openjdk 17.0.6",
        )


def test_a_category_is_fetched_once_then_cached(emulator, sandbox):
    assert sandbox.sandbox_version
    assert sandbox.python3 == "3.7.3"
    # From now on a request to these endpoints would fail: cached attributes must not make one.
    emulator.set_fault("specifications", Fault(status=500))
    emulator.set_fault("libraries", Fault(status=500))
    assert sandbox.docker_version == "28.2.2"
    assert sandbox.memory is not None
    assert sandbox.cpu["count"] == 1
    assert sandbox.gpp == "8.3.0"
    assert "bash" in sandbox.bin
    assert sandbox.api_version == emulator.api
    emulator.go_down()
    assert sandbox.perl == "5.28.1"
    assert sandbox.docker_version == "28.2.2"


def test_containers_are_fetched_on_every_access(emulator, sandbox):
    assert sandbox.containers["running"] == 0
    emulator.set_fault("specifications", Fault(status=500))
    with pytest.raises(client.Sandbox500):
        sandbox.containers  # noqa: B018
    with pytest.raises(client.Sandbox500):
        sandbox.usage()


def test_containers_and_usage_follow_the_busy_pool(emulator, sandbox):
    done = threading.Event()

    def occupy() -> None:
        try:
            with Sandbox(emulator.url, timeout=10) as other:
                other.execute({"commands": ["sleep 1"]})
        finally:
            done.set()

    worker = threading.Thread(target=occupy)
    worker.start()
    try:
        containers = wait_until(lambda: (c := sandbox.containers)["running"] == 1 and c, timeout=5)
        assert containers == {"total": 3, "running": 1, "available": 2}
        assert sandbox.usage() == pytest.approx(1 / 3)
    finally:
        worker.join(timeout=10)
    assert done.is_set()
    wait_until(lambda: sandbox.containers["running"] == 0, timeout=5)
    assert sandbox.usage() == 0.0


def test_usage_of_an_idle_sandbox(sandbox):
    assert sandbox.usage() == 0.0


def test_usage_of_an_empty_pool_is_full(make_emulator):
    emulator = make_emulator(api=3, containers=0)
    with Sandbox(emulator.url, timeout=10) as sandbox:
        assert sandbox.containers == {"total": 0, "running": 0, "available": 0}
        assert sandbox.usage() == 1.0


def test_attributes_can_be_set_and_deleted(emulator, sandbox):
    emulator.set_fault("libraries", Fault(status=500))
    sandbox.python3 = "9.9.9"
    assert sandbox.python3 == "9.9.9"  # no request: the fault would have raised
    with pytest.raises(client.Sandbox500):
        sandbox.java  # noqa: B018  (not set: fetched, and the server fails)
    emulator.clear_faults()
    assert sandbox.gpp == "8.3.0"
    assert sandbox.python3 == "9.9.9"  # fetching the category kept the value that was set
    del sandbox.python3
    assert sandbox.python3 == "3.7.3"  # deleted: fetched again
    emulator.set_fault("specifications", Fault(status=503))
    del sandbox.docker_version
    with pytest.raises(client.Sandbox503):
        sandbox.docker_version  # noqa: B018


def test_deleting_an_attribute_never_fetched_is_harmless(sandbox):
    del sandbox.perl
    assert sandbox.perl == "5.28.1"


def test_the_classic_category_lists(emulator, sandbox):
    # The classic package's own tests read these class attributes.
    assert Sandbox._specs == (
        "sandbox_version",
        "docker_version",
        "containers",
        "memory",
        "cpu",
        "environ",
        "execute_timeout",
        "expiration",
    )
    assert Sandbox._libs == (
        "python3",
        "python2",
        "java",
        "gcc",
        "gpp",
        "perl",
        "postgres",
        "libraries",
        "bin",
    )
    # Each list names attributes fetched with its own document and no other.
    emulator.set_fault("libraries", Fault(status=500))
    for name in Sandbox._specs:
        getattr(sandbox, name)
    emulator.clear_faults()
    emulator.set_fault("specifications", Fault(status=500))
    emulator.set_fault("usages", Fault(status=500))
    for name in Sandbox._libs:
        getattr(sandbox, name)


def test_unknown_attributes_raise_attribute_error(sandbox):
    with pytest.raises(AttributeError):
        sandbox.ruby  # noqa: B018
    with pytest.raises(AttributeError):
        sandbox.ruby = "3.2"  # type: ignore[attr-defined]


def test_an_invalid_specifications_document_raises_invalid_response(emulator, sandbox):
    emulator.set_fault("specifications", Fault(body={"containers": "five"}))
    with pytest.raises(SandboxInvalidResponse, match=r"containers: expected an object") as caught:
        sandbox.sandbox_version  # noqa: B018
    assert caught.value.response is not None


# ----------------------------------------------------------- raw documents


def test_fetches_are_fresh_every_time(emulator, sandbox):
    first = sandbox.fetch_specifications()
    assert isinstance(first, dict)
    emulator.set_fault("specifications", Fault(body={"made": "up"}))
    assert sandbox.fetch_specifications() == {"made": "up"}  # raw: only an object is required
    assert sandbox.fetch_libraries()["bin"]
    emulator.set_fault("libraries", Fault(status=502))
    with pytest.raises(client.Sandbox502):
        sandbox.fetch_libraries()


def test_fetch_usages(emulator, sandbox):
    if emulator.api == 2:
        with pytest.raises(client.Sandbox404):  # 2.x has no such route
            sandbox.fetch_usages()
    else:
        usages = sandbox.fetch_usages()
        assert usages["container"] == 0
        assert set(usages) >= {"cpu", "memory", "io", "network", "process"}


def test_fetch_specifications_records_the_generation(emulator, sandbox):
    sandbox.fetch_specifications(timeout=5)
    assert sandbox.known_api_version == emulator.api


@pytest.mark.parametrize("body", [[1, 2], "text", 42, None])
def test_raw_fetch_requires_a_json_object(emulator, sandbox, body):
    emulator.set_fault("libraries", Fault(body=json.dumps(body)))
    with pytest.raises(SandboxInvalidResponse, match="not an object"):
        sandbox.fetch_libraries()


# ----------------------------------------------- execute, download, check


def test_execute_simple(sandbox):
    response = sandbox.execute({"commands": ["echo $((2+2))"]})
    assert response["status"] == 0
    assert response["execution"][0]["stdout"] == "4"
    assert response["total_time"] >= 0


def test_execute_reports_failures_in_the_document(sandbox):
    response = sandbox.execute(
        {"commands": ["-false", "echo $FOO", "exit 3"], "environ": {"FOO": 1}}
    )
    assert response["status"] == 3
    assert [step["exit_code"] for step in response["execution"]] == [1, 0, 3]
    assert response["execution"][1]["stdout"] == "1"


@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
def test_execute_uploads_an_environment(sandbox, as_file):
    archive = make_tgz({"input.txt": b"hello from the archive"})
    environ = io.BytesIO(archive) if as_file else archive
    response = sandbox.execute({"commands": ["cat input.txt"]}, environ=environ)
    assert response["status"] == 0
    assert response["execution"][0]["stdout"] == "hello from the archive"


def test_execute_rejects_an_environ_of_the_wrong_type(sandbox):
    with pytest.raises(TypeError, match="environ must be"):
        sandbox.execute({"commands": ["true"]}, environ="input.txt")  # type: ignore[arg-type]


def test_execute_rejects_a_config_that_is_not_json(sandbox):
    with pytest.raises(TypeError, match="not JSON serializable"):
        sandbox.execute({"commands": [object()]})


def test_saved_environments_can_be_checked_and_downloaded(sandbox):
    response = sandbox.execute(
        {
            "commands": ["mkdir -p dir && printf hello > dir/out.txt && echo 42 > answer.txt"],
            "save": True,
        }
    )
    uuid = response["environment"]
    assert isinstance(uuid, str)

    archive = sandbox.download(uuid)
    assert isinstance(archive, io.BytesIO)
    assert sandbox.check(uuid) == len(archive.getvalue()) > 0
    with tarfile.open(fileobj=archive, mode="r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("out.txt"))
        assert tar.extractfile(member).read() == b"hello"  # type: ignore[union-attr]

    assert sandbox.download(uuid, "dir/out.txt").read() == b"hello"
    assert sandbox.check(uuid, "dir/out.txt") == 5
    assert sandbox.check(uuid, "answer.txt") == 3

    again = sandbox.execute({"commands": ["cat answer.txt"], "environment": uuid})
    assert again["execution"][0]["stdout"] == "42"


def test_check_is_not_held_to_the_size_cap(emulator):
    with Sandbox(emulator.url, timeout=10) as sandbox:
        uuid = sandbox.execute({"commands": ["echo hello > a.txt"], "save": True})["environment"]
    with Sandbox(emulator.url, timeout=10, max_response_bytes=3) as small:
        assert small.check(uuid, "a.txt") == 6  # a HEAD answer has no body to cap
        with pytest.raises(SandboxResponseTooLarge, match="limit of 3 bytes"):
            small.download(uuid, "a.txt")


def test_check_of_something_unknown_is_zero(sandbox):
    assert sandbox.check(UNKNOWN_UUID) == 0
    saved = sandbox.execute({"commands": ["true"], "save": True})["environment"]
    assert sandbox.check(saved, "missing.txt") == 0


def test_download_of_something_unknown_is_404(sandbox):
    with pytest.raises(client.Sandbox404, match="No environment with UUID") as caught:
        sandbox.download(UNKNOWN_UUID)
    assert caught.value.response.status_code == 404


# ------------------------------------------------ the real servers' answers to HEAD

# The real 2.0.3 and 3.0.3 on Django's development server (their README's way to
# run them) answer HEAD with a body; a strict parser refuses the bytes after the
# headers (../shared/SANDBOX_API.md, "quirks seen on a second look").
REAL_HEAD_404 = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
    + NOT_FOUND_PAGE
)
KEPT_ALIVE_HEAD_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (
    len(NOT_FOUND_PAGE),
    NOT_FOUND_PAGE,
)
HEAD_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: 7\r\n\r\n"
SPECIFICATIONS_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(V3_SPECIFICATIONS), V3_SPECIFICATIONS)
)


class BodyOnHead:
    """A loopback server that answers HEAD and GET of an environment with `head`,
    headers and body, and anything else with the v3 specifications. Its
    connections stay open unless `head` says `Connection: close` (it ignores
    the client's). With `late`, a HEAD's body follows the headers once the
    client sends its next request on that connection, or 0.1 s later: the
    client has the headers alone first."""

    def __init__(self, head: bytes, late: bool = False) -> None:
        self.head = head
        self.late = late
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request line)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stopped = threading.Event()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        number = 0
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = self._sock.accept()
                number += 1
                threading.Thread(target=self._serve, args=(connection, number), daemon=True).start()

    def _serve(self, connection: socket.socket, number: int) -> None:
        with connection, contextlib.suppress(OSError):
            connection.settimeout(10)
            pending = b""
            while data := connection.recv(65536):
                pending += data
                while b"\r\n\r\n" in pending:
                    request, pending = pending.split(b"\r\n\r\n", 1)
                    self.requests.append((number, request.split(b"\r\n")[0]))
                    if b" /environments/" not in request.split(b"\r\n")[0]:
                        connection.sendall(SPECIFICATIONS_ANSWER)
                        continue
                    headers, _, body = self.head.partition(b"\r\n\r\n")
                    if self.late and request.startswith(b"HEAD "):
                        connection.sendall(headers + b"\r\n\r\n")
                        connection.settimeout(0.1)
                        with contextlib.suppress(TimeoutError):
                            pending += connection.recv(65536)
                        connection.settimeout(10)
                        connection.sendall(body)
                    else:
                        connection.sendall(self.head)
                    if b"connection: close" in headers.lower():
                        return

    def followed_a_head(self) -> list[bytes]:
        """Requests sent on a connection after a HEAD on it."""
        heads = {number for number, line in self.requests if line.startswith(b"HEAD ")}
        seen: set[int] = set()
        after = []
        for number, line in self.requests:
            if number in seen:
                after.append(line)
            if number in heads and line.startswith(b"HEAD "):
                seen.add(number)
        return after

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()


@pytest.fixture
def body_on_head() -> Iterator[Callable[..., BodyOnHead]]:
    servers: list[BodyOnHead] = []

    def make(head: bytes, late: bool = False) -> BodyOnHead:
        servers.append(BodyOnHead(head, late))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    ("head", "late", "size"),
    [
        (REAL_HEAD_404, False, 0),  # as recorded: no Content-Length, then closed
        (KEPT_ALIVE_HEAD_404, False, 0),  # the same page, connection kept alive
        (KEPT_ALIVE_HEAD_404, True, 0),  # ... the page after the headers, apart
        (HEAD_200 + b"archive", False, 7),
        (HEAD_200 + b"archive", True, 7),
    ],
    ids=["real-404", "kept-alive-404", "kept-alive-404-late", "200", "200-late"],
)
def test_check_tolerates_a_body_after_the_answer_to_head(body_on_head, head, late, size):
    server = body_on_head(head, late)
    with Sandbox(server.url, timeout=10) as sandbox:
        for _ in range(3):
            assert sandbox.check(UNKNOWN_UUID) == size
            # The stray body never passes for the next answer.
            assert sandbox.fetch_specifications()["container"]["count"] == 5
    assert server.followed_a_head() == []


@pytest.mark.parametrize("api", [2, 3])
def test_check_against_an_emulator_that_answers_head_with_a_body(make_emulator, api):
    emulator = make_emulator(api=api, faults={"environments": Fault(head_body=True)})
    emulator.set_fault("files", Fault(head_body=True))
    with Sandbox(emulator.url, timeout=10) as sandbox:
        assert sandbox.check(UNKNOWN_UUID) == 0
        saved = sandbox.execute({"commands": ["echo hello > a.txt"], "save": True})
        uuid = saved["environment"]
        assert sandbox.check(uuid) == len(sandbox.download(uuid).getvalue()) > 0
        assert sandbox.check(uuid, "a.txt") == 6
        assert sandbox.check(uuid, "missing.txt") == 0


def test_an_environment_answered_empty_right_after_its_save(emulator, sandbox):
    # 2.0.3 writes a saved environment in the background: a download right
    # after the save can be a 200 with no body. The classic client returned it.
    uuid = sandbox.execute({"commands": ["true"], "save": True})["environment"]
    emulator.set_fault("environments", Fault(body=b""))
    assert sandbox.download(uuid).getvalue() == b""
    assert sandbox.check(uuid) == 0


def test_execute_with_no_commands_is_each_generations_answer(emulator, sandbox):
    if emulator.api == 2:
        document = sandbox.execute({"commands": []})
        assert (document["status"], document["execution"]) == (0, [])
    else:
        with pytest.raises(client.Sandbox400, match="Command list cannot be empty"):
            sandbox.execute({"commands": []})


def test_execute_result_path(sandbox):
    response = sandbox.execute(
        {"commands": ['printf "hello result" > res.txt'], "result_path": "res.txt"}
    )
    assert response["result"] == "hello result"
    missing = sandbox.execute({"commands": ["true"], "result_path": "nope.txt"})
    assert missing["status"] == SandboxErrCode.RESULT_NOT_FOUND


def test_execute_a_bad_config_is_the_servers_400(sandbox):
    with pytest.raises(client.Sandbox400, match="Missing field 'commands' in config") as caught:
        sandbox.execute({"command": ["echo"]})
    assert caught.value.status_code == 400


def test_execute_with_a_document_of_the_wrong_shape(emulator, sandbox):
    emulator.set_fault("execute", Fault(body={"status": "0", "execution": []}))
    with pytest.raises(SandboxInvalidResponse, match=r"status: expected an integer"):
        sandbox.execute({"commands": ["true"]})


def test_sandbox_err_codes():
    assert [(code.name, code.value) for code in SandboxErrCode] == [
        ("UNKNOWN", -1),
        ("TIMEOUT", -2),
        ("RESULT_NOT_FOUND", -3),
        ("RESULT_NOT_UTF8", -4),
    ]


# ------------------------------------------------------------------ validate

INVALID_CONFIGS = [
    ([], "config must be an object, not <class 'list'>"),
    ({}, "Missing field 'commands' in config"),
    ({"commands": "echo"}, "commands must be a list, not <class 'str'>"),
    ({"commands": ["true"], "environ": []}, "environ must be an object, not <class 'list'>"),
    ({"commands": []}, "Command list cannot be empty"),
    ({"commands": [42]}, "Command badly formatted : '42'"),
    ({"commands": [{"timeout": 1}]}, "Command badly formatted : '{'timeout': 1}'"),
    (
        {"commands": [{"command": "ls", "timeout": "1"}]},
        "Command badly formatted : '{'command': 'ls', 'timeout': '1'}'",
    ),
    (
        {"commands": [{"command": "ls", "extra": 1}]},
        "Command badly formatted : '{'command': 'ls', 'extra': 1}'",
    ),
    ({"commands": ["ls"], "result_path": 3}, "result_path must be a string, not <class 'int'>"),
    ({"commands": ["ls"], "save": "yes"}, "save must be a boolean, not <class 'str'>"),
]


@pytest.mark.parametrize(("config", "message"), INVALID_CONFIGS)
def test_validate_rejects_with_the_servers_message(config, message):
    assert validate(config) == (False, message)


@pytest.mark.parametrize(
    "config",
    [
        {"commands": ["echo hi"]},
        {"commands": [{"command": "sleep 1", "timeout": 2}, {"command": "ls", "timeout": 0.5}]},
        {"commands": ["-false", "true"], "environ": {"A": 1}, "result_path": "r", "save": False},
        {"commands": ("echo", "tuples become lists")},
    ],
)
def test_validate_accepts(config):
    assert validate(config) == (True, "")


def test_validate_a_config_that_cannot_be_sent():
    ok, message = validate({"commands": [object()]})
    assert not ok
    assert "not JSON serializable" in message


@pytest.mark.parametrize(("config", "message"), INVALID_CONFIGS)
def test_validate_agrees_with_the_emulated_3x_server(make_emulator, config, message):
    emulator = make_emulator(api=3)
    with Sandbox(emulator.url, timeout=10) as sandbox, pytest.raises(client.Sandbox400) as caught:
        sandbox.execute(config)  # type: ignore[arg-type]
    assert caught.value.response.text == message


# ---------------------------------------------------------- HTTP statuses


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 405, 429, 500, 502, 503, 504])
def test_every_status_of_300_and_more_raises_its_exception(emulator, sandbox, status):
    emulator.set_fault("specifications", Fault(status=status))
    with pytest.raises(SandboxHTTPError) as caught:
        sandbox.fetch_specifications()
    error = caught.value
    assert type(error) is getattr(client, f"Sandbox{status}")
    assert isinstance(error, SandboxError)
    assert error.status_code == status
    assert error.response is not None and error.response.status_code == status
    assert str(status) in str(error)


@pytest.mark.parametrize(
    "method", ["fetch_libraries", "fetch_specifications", "execute", "download", "usage"]
)
def test_503_on_every_endpoint(emulator, sandbox, method):
    emulator.set_fault(
        "*", Fault(status=503, body="Sandbox overloaded, retry after a few seconds.")
    )
    calls = {
        "fetch_libraries": lambda: sandbox.fetch_libraries(),
        "fetch_specifications": lambda: sandbox.fetch_specifications(),
        "execute": lambda: sandbox.execute({"commands": ["true"]}),
        "download": lambda: sandbox.download(UNKNOWN_UUID),
        "usage": lambda: sandbox.usage(),
    }
    with pytest.raises(client.Sandbox503, match="Sandbox overloaded"):
        calls[method]()


def test_a_status_unknown_to_http_status_is_a_plain_http_error(emulator, sandbox):
    emulator.set_fault("specifications", Fault(status=599))
    with pytest.raises(SandboxHTTPError) as caught:
        sandbox.fetch_specifications()
    assert type(caught.value) is SandboxHTTPError
    assert caught.value.status_code == 599


def test_check_raises_for_statuses_other_than_404(emulator, sandbox):
    emulator.set_fault("environments", Fault(status=500))
    with pytest.raises(client.Sandbox500):
        sandbox.check(UNKNOWN_UUID)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed(emulator, tiny_server, status):
    # The redirect points at a working sandbox: following it would succeed.
    target = emulator.url + "specifications/"
    server = tiny_server(answer(status, b"", {"Location": target}))
    with (
        Sandbox(server.url(), timeout=10) as sandbox,
        pytest.raises(getattr(client, f"Sandbox{status}")) as caught,
    ):
        sandbox.fetch_specifications()
    assert caught.value.response.headers["Location"] == target
    assert len(server.requests) == 1


def test_one_exception_class_per_http_status():
    for status in http.HTTPStatus:
        name = f"Sandbox{status.value}"
        if status.value >= 300:
            cls = getattr(client, name)
            assert issubclass(cls, SandboxHTTPError)
            assert cls.status is status
            assert name in client.__all__
        else:
            assert not hasattr(client, name)


def test_status_exceptions_maps_a_response_to_its_exception():
    response = requests.Response()
    response.status_code = 418
    error = status_exceptions(response)
    assert type(error) is client.Sandbox418
    assert error.response is response
    assert str(error) == "Sandbox responded with status 418 I'm a Teapot"
    response.status_code = 299
    assert type(status_exceptions(response)) is SandboxHTTPError


# ------------------------------------------------------- transport failures


def test_connection_refused(emulator, sandbox):
    emulator.go_down()
    with pytest.raises(SandboxConnectionError, match="refused") as caught:
        sandbox.fetch_specifications()
    assert caught.value.response is None
    emulator.come_up()
    assert sandbox.fetch_specifications()  # the same client recovers


def test_unresolvable_host_is_a_connection_error():
    with (
        Sandbox("http://sandbox.invalid/", timeout=5) as sandbox,
        pytest.raises(SandboxConnectionError) as caught,
    ):
        sandbox.fetch_specifications()
    assert caught.value.response is None


def test_read_timeout_when_the_server_is_slow_to_answer(emulator):
    emulator.set_fault("specifications", Fault(latency=2.0))
    with Sandbox(emulator.url, timeout=0.3) as sandbox:
        started = time.monotonic()
        with pytest.raises(SandboxReadTimeout) as caught:
            sandbox.fetch_specifications()
        assert time.monotonic() - started >= 0.3
    assert isinstance(caught.value, SandboxTimeout)
    assert caught.value.response is None


def test_a_call_timeout_overrides_the_default(emulator):
    emulator.set_fault("specifications", Fault(latency=0.5))
    with Sandbox(emulator.url, timeout=0.1) as sandbox:
        assert sandbox.fetch_specifications(timeout=10)
        with pytest.raises(SandboxReadTimeout):
            sandbox.fetch_specifications()


@pytest.mark.timeout(30)
def test_a_slow_drip_cannot_stretch_the_deadline(emulator):
    # One byte every 0.1 s: the whole document would take more than 30 s.
    emulator.set_fault("specifications", Fault(drip=0.1))
    deadline = 0.5
    with Sandbox(emulator.url, timeout=deadline) as sandbox:
        started = time.monotonic()
        with pytest.raises(SandboxReadTimeout, match="bytes read") as caught:
            sandbox.fetch_specifications()
        elapsed = time.monotonic() - started
    assert deadline <= elapsed < deadline + SLACK
    assert caught.value.response is not None  # headers did arrive


def test_a_body_that_stops_is_given_up_on_at_the_deadline(tiny_server):
    def stalls(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b'{"a": ')
        handler.wfile.flush()
        time.sleep(0.3)
        handler.wfile.write(b"1")
        handler.wfile.flush()
        time.sleep(8)  # then the handler ends; the test is long over

    server = tiny_server(stalls)
    timeout = 1.0
    with Sandbox(server.url(), timeout=timeout) as sandbox:
        started = time.monotonic()
        with pytest.raises(SandboxReadTimeout, match=r"within 1 s \(7 bytes read\)"):
            sandbox.fetch_specifications()
        elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + SLACK


# Each misbehaviour of tests/misbehaving.py: the error it must end in with a
# 1 s deadline, and what the message says.
MISBEHAVIOURS = {
    "backlog-full": (SandboxConnectTimeout, "could not connect within 1 s"),
    "silent": (SandboxReadTimeout, "no answer within 1 s"),
    "header-drip": (SandboxReadTimeout, "no answer within 1 s"),
    "body-drip": (SandboxReadTimeout, r"answer not complete within 1 s \(\d+ bytes read\)"),
    "content-length-lie": (SandboxReadTimeout, r"not complete within 1 s \(2 bytes read\)"),
    # 16 MiB may or may not arrive within 1 s: the size cap or the deadline.
    "endless-chunked": ((SandboxReadTimeout, SandboxResponseTooLarge), "within 1 s|limit of"),
    "gzip-bomb": ((SandboxReadTimeout, SandboxResponseTooLarge), "within 1 s|limit of"),
}


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[dict[str, Misbehaving]]:
    with every_kind() as started:
        yield started


@pytest.mark.parametrize("kind", Misbehaving.KINDS)
@pytest.mark.parametrize("call", ["fetch_specifications", "execute"])
def test_the_deadline_holds_whatever_the_server_does(misbehaving, kind, call):
    error, message = MISBEHAVIOURS[kind]
    with Sandbox(misbehaving[kind].url, timeout=1) as sandbox:
        started = time.monotonic()
        with pytest.raises(error, match=message) as caught:
            if call == "execute":
                sandbox.execute({"commands": ["true"]}, environ=make_tgz({"a": b"b"}))
            else:
                sandbox.fetch_specifications()
        elapsed = time.monotonic() - started
    assert elapsed <= 1 + SLACK, f"{kind}: {elapsed:.2f} s"
    if isinstance(caught.value, SandboxTimeout):
        assert elapsed >= 0.95, f"{kind}: {elapsed:.2f} s"


@pytest.mark.parametrize("kind", ["endless-chunked", "gzip-bomb"])
def test_an_endless_body_is_refused_at_the_size_cap(misbehaving, kind):
    # The bomb is ~1 KiB a MiB on the wire: reaching the cap before the
    # deadline shows decoded bytes are what is counted.
    limit = DEFAULT_MAX_RESPONSE_BYTES
    with (
        Sandbox(misbehaving[kind].url, timeout=30) as sandbox,
        pytest.raises(SandboxResponseTooLarge, match=f"over the limit of {limit} bytes"),
    ):
        sandbox.fetch_specifications()


def test_connect_timeout_bounds_connecting_only(misbehaving, make_emulator):
    emulator = make_emulator(api=3)
    with Sandbox(misbehaving["backlog-full"].url, timeout=10, connect_timeout=0.5) as sandbox:
        started = time.monotonic()
        with pytest.raises(SandboxConnectTimeout, match=r"could not connect within 0\.5 s"):
            sandbox.fetch_specifications()
        assert time.monotonic() - started < 0.5 + SLACK
    emulator.set_fault("specifications", Fault(latency=1.0))
    with Sandbox(emulator.url, timeout=10, connect_timeout=0.5) as sandbox:
        assert sandbox.fetch_specifications()  # connected at once, answered later


def test_a_dropped_connection(emulator, sandbox):
    emulator.set_fault("execute", Fault(drop=True))
    with pytest.raises(SandboxConnectionError) as caught:
        sandbox.execute({"commands": ["true"]})
    assert caught.value.response is None


def test_a_connection_closed_mid_answer(emulator, sandbox):
    emulator.set_fault("specifications", Fault(truncate=10))
    with pytest.raises(SandboxConnectionError, match="after 10 bytes") as caught:
        sandbox.fetch_specifications()
    assert caught.value.response is not None


@pytest.mark.parametrize("body", [b"<html>Server Error</html>", b"", b"{'single': 'quotes'}"])
def test_a_body_that_is_not_json(emulator, sandbox, body):
    emulator.set_fault("specifications", Fault(body=body))
    with pytest.raises(SandboxInvalidResponse, match="not JSON") as caught:
        sandbox.fetch_specifications()
    assert caught.value.response.status_code == 200


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("deflate", b"\x78\x9cnot deflate"),
        # Complete on the wire, but the compressed stream stops short: found
        # when the answer ends, which may be while its headers are parsed.
        ("deflate", zlib.compress(b"{}" * 5000)[:20]),
    ],
    ids=["gzip", "deflate", "deflate-cut"],
)
def test_a_body_that_cannot_be_decoded(tiny_server, encoding, body):
    server = tiny_server(answer(200, body, {"Content-Encoding": encoding}))
    with (
        Sandbox(server.url(), timeout=10) as sandbox,
        pytest.raises(SandboxInvalidResponse, match=f"cannot decode the answer: .*{encoding}"),
    ):
        sandbox.fetch_specifications()


def test_an_answer_over_the_size_limit_announced_by_its_length(emulator):
    emulator.set_fault("libraries", Fault(body=b"x" * 100_000))
    with (
        Sandbox(emulator.url, timeout=10, max_response_bytes=1000) as sandbox,
        pytest.raises(SandboxResponseTooLarge, match="limit of 1000 bytes") as caught,
    ):
        sandbox.fetch_libraries()
    assert isinstance(caught.value, SandboxInvalidResponse)


def endless_chunked_body(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"[" + b"0," * 32_000
    for _ in range(512):  # 32 MiB at most, far past any limit the test sets
        handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    handler.wfile.write(b"0\r\n\r\n")


def test_an_answer_over_the_size_limit_is_cut_while_streaming(tiny_server):
    server = tiny_server(endless_chunked_body)
    with (
        Sandbox(server.url(), timeout=10, max_response_bytes=200_000) as sandbox,
        pytest.raises(SandboxResponseTooLarge, match="over the limit of 200000 bytes"),
    ):
        sandbox.fetch_specifications()


def test_a_long_error_page_does_not_spoil_the_next_request(tiny_server):
    # Only the start of an error page is read; that connection must not be reused.
    answers = iter(
        [answer(500, b"e" * 300_000), answer(200, V3_SPECIFICATIONS), answer(200, b"{}")]
    )
    server = tiny_server(lambda handler: next(answers)(handler))
    with Sandbox(server.url(), timeout=10) as sandbox:
        with pytest.raises(client.Sandbox500) as caught:
            sandbox.fetch_specifications()
        assert len(caught.value.response.content) < 300_000
        assert sandbox.fetch_specifications()["container"]["count"] == 5
    assert len({r.client_port for r in server.requests}) == 2


def test_an_answer_at_the_size_limit_is_fine(emulator):
    body = json.dumps({"bin": [], "pad": "x" * 500}).encode()
    emulator.set_fault("libraries", Fault(body=body))
    with Sandbox(emulator.url, timeout=10, max_response_bytes=len(body)) as sandbox:
        assert sandbox.fetch_libraries()["pad"] == "x" * 500


def test_everything_raised_is_a_sandbox_error():
    for name in client.__all__:
        value = getattr(client, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, SandboxError), name


# --------------------------------------------------------------------- TLS


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(key_path), "-out", str(cert_path),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tiny_server, tmp_path) -> tuple[TinyServer, Path]:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return tiny_server(answer(200, V3_SPECIFICATIONS), tls=context), cert


def test_an_unknown_certificate_is_a_tls_error(tls_server):
    server, _ = tls_server
    with (
        Sandbox(server.url("https"), timeout=10) as sandbox,
        pytest.raises(SandboxTLSError, match=r"CERTIFICATE_VERIFY_FAILED|certificate") as e,
    ):
        sandbox.fetch_specifications()
    assert e.value.response is None


def test_the_certificate_as_ca_bundle_is_trusted(tls_server):
    server, cert = tls_server
    with Sandbox(server.url("https"), timeout=10, verify=str(cert)) as sandbox:
        assert sandbox.api_version == 3
        assert sandbox.sandbox_version == "3.0.3"


def test_verification_can_be_turned_off(tls_server):
    server, _ = tls_server
    with Sandbox(server.url("https"), timeout=10, verify=False) as sandbox:
        assert sandbox.fetch_specifications()["container"]["count"] == 5


def test_plain_http_to_a_tls_port_fails_cleanly(tls_server):
    server, _ = tls_server
    with Sandbox(server.url("http"), timeout=5) as sandbox, pytest.raises(SandboxError):
        sandbox.fetch_specifications()


# -------------------------------------------------- credentials, headers, URL


@pytest.mark.parametrize(
    ("password", "encoded"),
    [("s3cret-pass", b"alice:s3cret-pass"), ("p\u20acss", "alice:p\u20acss".encode())],
    ids=["latin-1", "utf-8"],  # the euro sign has no latin-1 byte: RFC 7617's UTF-8
)
def test_basic_auth_is_sent(tiny_server, password, encoded):
    server = tiny_server(answer(200, V3_SPECIFICATIONS))
    with Sandbox(server.url(), timeout=10, auth=("alice", password)) as sandbox:
        sandbox.fetch_specifications()
    expected = "Basic " + base64.b64encode(encoded).decode()
    assert server.requests[0].headers["Authorization"] == expected


def test_bearer_token_and_extra_headers_are_sent(tiny_server):
    server = tiny_server(answer(200, V3_SPECIFICATIONS))
    with Sandbox(
        server.url(),
        timeout=10,
        bearer_token="tok-0123456789",
        headers={"X-Api-Key": "key-abcdefgh", "X-Team": "ops"},
    ) as sandbox:
        sandbox.fetch_specifications()
        sandbox.check(UNKNOWN_UUID)
    for recorded in server.requests:
        assert recorded.headers["Authorization"] == "Bearer tok-0123456789"
        assert recorded.headers["X-Api-Key"] == "key-abcdefgh"
        assert recorded.headers["X-Team"] == "ops"
    assert [r.method for r in server.requests] == ["GET", "HEAD"]


def test_credentials_in_the_url_are_used_and_never_shown(tiny_server):
    server = tiny_server(answer(200, V3_SPECIFICATIONS))
    port = server.server.server_address[1]
    with Sandbox(f"http://bob:hunter%402@127.0.0.1:{port}/", timeout=10) as sandbox:
        sandbox.fetch_specifications()
        assert sandbox.url == f"http://127.0.0.1:{port}/"
        assert "hunter" not in repr(sandbox) and "bob" not in repr(sandbox)
    expected = "Basic " + base64.b64encode(b"bob:hunter@2").decode()
    assert server.requests[0].headers["Authorization"] == expected


def echo_headers(status: int) -> Respond:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        body = "\n".join(f"{k}: {v}" for k, v in handler.headers.items()).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


@pytest.mark.parametrize(
    ("options", "secrets"),
    [
        ({"auth": ("alice", "s3cret-pass")}, ["s3cret-pass", "YWxpY2U6czNjcmV0LXBhc3M="]),
        ({"bearer_token": "tok-0123456789"}, ["tok-0123456789"]),
        ({"headers": {"X-Api-Key": "key-abcdefgh"}}, ["key-abcdefgh"]),
    ],
    ids=["basic", "bearer", "header"],
)
def test_secrets_never_appear_in_messages_or_repr(tiny_server, options, secrets):
    # A server that echoes the request headers in its error page.
    server = tiny_server(echo_headers(500))
    with Sandbox(server.url(), timeout=10, **options) as sandbox:
        with pytest.raises(client.Sandbox500) as caught:
            sandbox.fetch_specifications()
        shown = [str(caught.value), caught.value.message, repr(caught.value), repr(sandbox)]
    assert "***" in str(caught.value)  # the echoed header was there, redacted
    for secret in secrets:
        for text in shown:
            assert secret not in text


def test_url_credentials_never_appear_in_transport_errors(emulator):
    port = emulator.port
    emulator.go_down()
    with (
        Sandbox(f"http://bob:hunter2@127.0.0.1:{port}/", timeout=5) as sandbox,
        pytest.raises(SandboxConnectionError) as caught,
    ):
        sandbox.fetch_specifications()
    assert "hunter2" not in str(caught.value)
    assert "bob" not in str(caught.value)


@pytest.mark.parametrize("suffix", ["", "/"])
def test_endpoints_always_end_with_a_slash(tiny_server, suffix):
    server = tiny_server(answer(200, V3_SPECIFICATIONS))
    base = server.url().rstrip("/") + "/sandbox"
    with Sandbox(base + suffix, timeout=10) as sandbox:
        assert sandbox.url == base + "/"
        sandbox.fetch_specifications()
        sandbox.check(UNKNOWN_UUID, "dir/file.txt")
    assert [r.path for r in server.requests] == [
        "/sandbox/specifications/",
        f"/sandbox/files/{UNKNOWN_UUID}/dir/file.txt/",
    ]


def test_connections_are_reused(tiny_server):
    server = tiny_server(answer(200, V3_SPECIFICATIONS))
    with Sandbox(server.url(), timeout=10) as sandbox:
        for _ in range(5):
            sandbox.fetch_specifications(timeout=5)
    assert len(server.requests) == 5
    assert len({r.client_port for r in server.requests}) == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:pw@example.org/",
        "example.org:8000",
        "http://",
        "http:///specifications/",
        "http://example.org:99999/",
        "http://example.org/?x=1",
        "http://example.org/#top",
    ],
)
def test_bad_urls_are_refused_clearly(url):
    with pytest.raises(ValueError, match="URL") as caught:
        Sandbox(url)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
        ({"max_response_bytes": True}, "max_response_bytes"),
        ({"auth": ("a", "b"), "bearer_token": "t"}, "not both"),
        ({"bearer_token": "t", "headers": {"authorization": "x"}}, "not both"),
        ({"bearer_token": ""}, "bearer_token"),
        ({"headers": {"X-Evil": "a\r\nInjected: 1"}}, "line breaks"),
        ({"verify": "/nonexistent/ca.pem"}, "does not exist"),
    ],
)
def test_bad_options_are_refused_clearly(options, message):
    with pytest.raises(ValueError, match=message):
        Sandbox("http://127.0.0.1:1/", **options)


def test_url_credentials_and_auth_together_are_refused():
    with pytest.raises(ValueError, match="not both") as caught:
        Sandbox("http://bob:hunter2@127.0.0.1:1/", auth=("alice", "pw"))
    assert "hunter2" not in str(caught.value)


def test_a_bad_call_timeout_is_refused(sandbox):
    with pytest.raises(ValueError, match="timeout"):
        sandbox.fetch_specifications(timeout=-3)


def test_context_manager_and_close(emulator):
    sandbox = Sandbox(emulator.url)
    with sandbox as entered:
        assert entered is sandbox
        assert sandbox.fetch_specifications()
    sandbox.close()  # closing twice is harmless
    assert sandbox.fetch_specifications()  # and a later call connects again
    sandbox.close()


def test_close_and_reuse_accumulate_nothing(make_emulator):
    emulator = make_emulator(api=3)

    def alive() -> dict[str, int]:
        gc.collect()
        kinds = {"finalizers": weakref.finalize, "sessions": aiohttp.ClientSession}
        counts = dict.fromkeys(kinds, 0)
        for item in gc.get_objects():
            for name, kind in kinds.items():
                counts[name] += isinstance(item, kind)
        return counts

    sandbox = Sandbox(emulator.url, timeout=10)
    sandbox.fetch_specifications()
    sandbox.close()
    before = alive()
    for _ in range(1500):
        sandbox.fetch_specifications()
        sandbox.close()
    assert alive() == before
    del sandbox
    after_collection = alive()
    assert after_collection["sessions"] == before["sessions"] - 1, (before, after_collection)


# ------------------------------------------- the background loop and its thread


class Watched:
    """A loopback server that answers every request with `answer` (or never, if
    None), keeps connections open, and counts those the client closed."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.opened = self.closed = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stopped = threading.Event()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = self._sock.accept()
                with self._lock:
                    self.opened += 1
                threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.settimeout(30)
            while data := connection.recv(65536):  # b"": the client closed it
                if self.answer is not None and b"\r\n\r\n" in data:
                    connection.sendall(self.answer)
            with self._lock:
                self.closed += 1

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()


@pytest.fixture
def watched() -> Iterator[Callable[[bytes | None], Watched]]:
    servers: list[Watched] = []

    def make(answer: bytes | None) -> Watched:
        servers.append(Watched(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


KEEP_ALIVE_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


def test_close_and_the_garbage_collector_close_the_connections(watched):
    server = watched(KEEP_ALIVE_ANSWER)
    sandbox = Sandbox(server.url, timeout=10)
    assert sandbox.fetch_specifications() == {}
    assert (server.opened, server.closed) == (1, 0)  # kept alive
    sandbox.close()
    wait_until(lambda: server.closed == 1, timeout=5)
    forgotten = Sandbox(server.url, timeout=10)
    assert forgotten.fetch_specifications() == {}
    del forgotten  # never closed
    gc.collect()
    wait_until(lambda: server.closed == 2, timeout=5)
    assert server.opened == 2


def test_interrupting_a_call_cancels_its_request(watched, request):
    # Ctrl-C reaches the main thread while it waits for the background loop.
    assert threading.current_thread() is threading.main_thread()
    # Python's own handler, whatever was inherited: a shell's background job
    # (`./scripts/test &`) starts with SIGINT ignored.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, inherited))
    server = watched(None)  # never answers
    main = threading.main_thread().ident
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    with Sandbox(server.url, timeout=30) as sandbox:
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            sandbox.fetch_specifications()
        assert time.monotonic() - started < 0.5 + SLACK
        # The request was cancelled: its connection is closed, not left waiting 30 s.
        wait_until(lambda: server.closed == 1, timeout=5)
    timer.join()


def test_calls_from_inside_an_event_loop_do_not_deadlock(emulator):
    async def inside_a_coroutine() -> dict:
        with Sandbox(emulator.url, timeout=10) as sandbox:
            return sandbox.fetch_specifications()

    assert asyncio.run(inside_a_coroutine())


def test_one_thread_serves_every_sandbox_of_the_process(make_emulator):
    emulator = make_emulator(api=3)

    def ours() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name != "emulator-connection"}

    before = ours()
    sandboxes = [Sandbox(emulator.url, timeout=10) for _ in range(10)]
    try:
        for sandbox in sandboxes:
            assert sandbox.fetch_specifications()
        started = ours() - before
    finally:
        for sandbox in sandboxes:
            sandbox.close()
    assert {t.name for t in started} <= {"sandbox-client"}
    assert [t.name for t in threading.enumerate()].count("sandbox-client") == 1


# Run in a fresh interpreter: a Sandbox never closed, and a fork after a call.
NEVER_CLOSED_THEN_FORKED = """
import os, sys
from sandbox_exporter.client import Sandbox
kept = Sandbox(sys.argv[1], timeout=10)  # never closed
assert kept.fetch_specifications()
pid = os.fork()
if pid == 0:  # the parent's loop thread did not come along: calls must not hang
    ok = kept.fetch_specifications() and Sandbox(sys.argv[1], timeout=10).fetch_specifications()
    os._exit(0 if ok else 1)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_forked_child_and_the_exit_of_a_sandbox_never_closed(make_emulator):
    emulator = make_emulator(api=3)
    command = [sys.executable, "-W", "default", "-c", NEVER_CLOSED_THEN_FORKED, emulator.url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no "Unclosed client session" at exit


@pytest.mark.parametrize("url", ["ftp://alice:s3cr@t@127.0.0.1/", "http://alice:s3cr@t@/"])
def test_a_password_holding_at_signs_is_never_shown(url):
    # Everything up to the last '@' of the authority is credentials.
    with pytest.raises(ValueError) as caught:
        Sandbox(url)
    assert "s3cr" not in str(caught.value) and "t@" not in str(caught.value), caught.value
