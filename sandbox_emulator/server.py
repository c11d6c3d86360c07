"""The HTTP side: routes, the real server's quirks, fault injection, and the Emulator object."""

from __future__ import annotations

import contextlib
import http
import ipaddress
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import hostinfo
from .execution import (
    UUID_PATTERN,
    EnvironmentStore,
    RequestError,
    execute,
    parse_config_text,
    parse_execute_request,
)
from .faults import ENDPOINTS, Fault, FaultBoard, check_endpoint, fault_from_json
from .forms import parse_form
from .pool import ContainerPool

logger = logging.getLogger("sandbox_emulator")

SANDBOX_VERSIONS = {2: "2.0.3", 3: "3.0.3"}
DOCKER_VERSION = "28.2.2"
DEFAULT_EXPIRATION_SECONDS = 86400
CONTROL_PATH = "/_emulator/faults/"
# Bigger bodies are refused: the emulator keeps a request in memory.
MAX_BODY_BYTES = 64 * 2**20
# A client that stops sending mid-request is dropped after this long.
SOCKET_TIMEOUT_SECONDS = 60.0
# How long stop() lets in-flight requests finish before cutting their connections.
STOP_GRACE_SECONDS = 2.0
STOP_JOIN_SECONDS = 10.0
# serve_forever() notices shutdown() only between polls: short, so stop() and go_down() are quick.
LISTENER_POLL_SECONDS = 0.02

HTML = "text/html; charset=utf-8"
JSON = "application/json"
# Django's page for an unmatched URL when DEBUG is off.
NOT_FOUND_PAGE = (
    b"<!doctype html>\n"
    b'<html lang="en">\n'
    b"<head>\n"
    b"  <title>Not Found</title>\n"
    b"</head>\n"
    b"<body>\n"
    b"  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    b"</body>\n"
    b"</html>\n"
)
SERVER_ERROR_PAGE = b"<h1>Server Error (500)</h1>"
OVERLOADED = {
    3: "Sandbox overloaded, retry after a few seconds.",
    2: "Sandbox overloaded, retry after a few secondes.",
}

ROUTES = (
    ("specifications", re.compile(r"^/specifications/$")),
    ("usages", re.compile(r"^/usages/$")),
    ("libraries", re.compile(r"^/libraries/$")),
    ("execute", re.compile(r"^/execute/$")),
    ("environments", re.compile(r"^/environments/(?P<env>[^/]+)/$")),
    ("files", re.compile(r"^/files/(?P<env>[^/]+)/(?P<path>.+)/$")),
)
NATURAL_CONTENT_TYPES = {
    "specifications": JSON,
    "usages": JSON,
    "libraries": JSON,
    "execute": JSON,
    "environments": "application/gzip",
    "files": "application/octet-stream",
}
# Methods each view answers, per generation. 3.x class-based views also
# answer OPTIONS (200 with Allow); 2.x function views answer 405 to anything else.
VIEW_METHODS = {
    3: {
        "specifications": ("GET", "HEAD"),
        "usages": ("GET", "HEAD"),
        "libraries": ("GET", "HEAD"),
        "execute": ("POST",),
        "environments": ("GET", "HEAD"),
        "files": ("GET", "HEAD"),
    },
    2: {
        "specifications": ("GET",),
        "libraries": ("GET",),
        "execute": ("POST",),
        "environments": ("GET", "HEAD"),
        "files": ("GET", "HEAD"),
    },
}


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str | None = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_answer(document: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(document).encode(), JSON)


def text_answer(status: int, message: str, content_type: str = HTML) -> Answer:
    return Answer(status, message.encode(), content_type)


def match_route(path: str) -> tuple[str, dict[str, str]] | None:
    """(endpoint, URL parameters) for a path the real server routes, None for its 404 page."""
    for endpoint, pattern in ROUTES:
        match = pattern.match(path)
        if match:
            return endpoint, match.groupdict()
    return None


def endpoint_of(path: str) -> str | None:
    """The endpoint a path belongs to (its first segment), for fault lookups."""
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in ENDPOINTS else None


def fault_answer(fault: Fault, endpoint: str) -> Answer:
    status = fault.status if fault.status is not None else 200
    if isinstance(fault.body, dict | list):
        return Answer(status, json.dumps(fault.body).encode(), JSON)
    if fault.body is not None:
        body = fault.body.encode() if isinstance(fault.body, str) else fault.body
        content_type = NATURAL_CONTENT_TYPES[endpoint] if status < 400 else HTML
        return Answer(status, body, content_type)
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Injected fault"
    return text_answer(status, phrase)


def is_loopback(host: str) -> bool:
    """True if every address `host` stands for is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve host {host!r}: {error}") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _encode_libraries(document: object) -> bytes:
    if not isinstance(document, dict | list):
        raise TypeError(
            f"the libraries document must be a JSON object (dict), got {type(document).__name__}"
        )
    try:
        return json.dumps(document).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"the libraries document is not JSON-serializable: {error}") from None


def default_libraries(api: int) -> dict:
    """The packaged /libraries/ document of generation `api`."""
    data = resources.files(__package__).joinpath("data", f"libraries_v{api}.json").read_bytes()
    return json.loads(data)


class _Listener(ThreadingHTTPServer):
    """One listening socket; connections are handed to the Emulator, which tracks them."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    # Bursts of concurrent requests (overload tests, benchmarks) overflowed the
    # default backlog of 5 and cost clients 1 s SYN retries.
    request_queue_size = 128

    def __init__(self, address: tuple, family: int, emulator: Emulator) -> None:
        self.address_family = family
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    def process_request(self, request, client_address) -> None:
        self.emulator._serve_connection_in_thread(self, request, client_address)

    def handle_error(self, request, client_address) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Listener
    protocol_version = "HTTP/1.1"
    server_version = "WSGIServer/0.2"
    sys_version = "CPython/3"
    timeout = SOCKET_TIMEOUT_SECONDS

    def __getattr__(self, name: str):
        # Any method token reaches the router, as in Django (PUT, PATCH, FOO...).
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.info('%s "%s" %s', self.client_address[0], self.requestline, code)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.client_address[0], format % args)

    def _handle(self) -> None:
        self.close_connection = True
        emulator = self.server.emulator
        head = self.command == "HEAD"
        try:
            raw = self.path
            target = raw.split("?", 1)[0] if raw.startswith("/") else urlsplit(raw).path
            path = unquote(target, errors="replace")
            query = urlsplit(raw).query
            try:
                body = self._read_body()
            except RequestError as error:
                self._send(text_answer(error.status, error.message), head=head)
                return
            except (OSError, ValueError):
                logger.debug("could not read the request body", exc_info=True)
                return
            if path == CONTROL_PATH:
                self._send(emulator._control(self.command, query, body), head=head)
                return
            endpoint = endpoint_of(path)
            fault = emulator._faults.for_endpoint(endpoint) if endpoint else None
            if fault is not None and fault.latency > 0 and emulator._stopping.wait(fault.latency):
                return
            if fault is not None and fault.drop:
                return  # the connection closes with nothing sent
            if fault is not None and fault.replaces_answer:
                answer = fault_answer(fault, endpoint)
            else:
                answer = emulator._route(self.command, path, self.headers, body)
            if answer is None:  # the emulator is stopping: close without an answer
                return
            if fault is not None and fault.content_type is not None:
                answer.content_type = fault.content_type
            self._send(
                answer,
                head=head,
                drip=fault.drip if fault else None,
                truncate=fault.truncate if fault else None,
            )
        except (BrokenPipeError, ConnectionError, TimeoutError):
            logger.debug("client went away", exc_info=True)
        except Exception:
            logger.exception("unexpected error answering %r", self.requestline)
            with contextlib.suppress(OSError):
                self._send(Answer(500, SERVER_ERROR_PAGE), head=head)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            raise RequestError(400, f"Invalid Content-Length header: {length!r}") from None
        if size > MAX_BODY_BYTES:
            raise RequestError(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                raise RequestError(400, "Invalid chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY_BYTES:
                raise RequestError(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _send(
        self,
        answer: Answer,
        *,
        head: bool,
        drip: float | None = None,
        truncate: int | None = None,
    ) -> None:
        self.send_response(answer.status)
        if answer.content_type is not None:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        body = answer.body if truncate is None else answer.body[:truncate]
        if not drip:
            self.wfile.write(body)
            return
        stopping = self.server.emulator._stopping
        for index in range(len(body)):
            if index and stopping.wait(drip):
                return
            self.wfile.write(body[index : index + 1])


class Emulator:
    """A stand-in sandbox server of generation `api` (2 or 3) on loopback.

    Commands really run, with bash, as the current user: that is why it refuses
    a non-loopback address unless `allow_remote=True`.
    """

    def __init__(
        self,
        api: int = 3,
        containers: int = 5,
        host: str = "127.0.0.1",
        port: int = 0,
        usage_delay: float = 2.0,
        libraries_delay: float = 1.0,
        overload_wait: float = 2.0,
        execute_timeout: float = 10.0,
        restart_delay: float = 0.0,
        libraries: dict | None = None,
        faults: dict[str, Fault] | None = None,
        allow_remote: bool = False,
        expiration: float = DEFAULT_EXPIRATION_SECONDS,
    ) -> None:
        if api not in SANDBOX_VERSIONS or isinstance(api, bool):
            raise ValueError(f"api must be 2 or 3, got {api!r}")
        if isinstance(containers, bool) or not isinstance(containers, int) or containers < 0:
            raise ValueError(f"containers must be an integer >= 0, got {containers!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer 0..65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a host name or address, got {host!r}")
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on non-loopback address {host!r}: the emulator runs "
                "arbitrary commands as the current user; pass allow_remote=True "
                "(--allow-remote) to do it anyway"
            )
        self.api = api
        self.containers = containers
        self.host = host
        self.usage_delay = _check_seconds("usage_delay", usage_delay)
        self.libraries_delay = _check_seconds("libraries_delay", libraries_delay)
        self.overload_wait = _check_seconds("overload_wait", overload_wait)
        self.execute_timeout = _check_seconds("execute_timeout", execute_timeout)
        self.restart_delay = _check_seconds("restart_delay", restart_delay)
        self.expiration = _check_seconds("expiration", expiration)
        self.allow_remote = allow_remote
        self._libraries_body = _encode_libraries(
            default_libraries(api) if libraries is None else libraries
        )
        self._faults = FaultBoard(faults)
        self._port = port
        self._bound_host = host
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: _Listener | None = None
        self._listener_thread: threading.Thread | None = None
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._workdir: Path | None = None
        self._pool: ContainerPool | None = None
        self._environments: EnvironmentStore | None = None
        self._started = False

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Emulator:
        """Create the containers' directories and start listening; returns self."""
        if self._started:
            raise RuntimeError("the emulator is already started (an Emulator starts once)")
        self._started = True
        self._workdir = Path(tempfile.mkdtemp(prefix="sandbox-emulator-"))
        try:
            self._pool = ContainerPool(
                self._workdir / "containers_env",
                self.containers,
                self.restart_delay,
                self._stopping,
            )
            self._environments = EnvironmentStore(self._workdir / "environments", self.expiration)
            self._open_listener()
        except BaseException:
            self._stopping.set()
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        logger.info("sandbox %s emulator listening on %s", SANDBOX_VERSIONS[self.api], self.url)
        return self

    def stop(self) -> None:
        """Stop listening, kill running commands, wait for threads, remove the temp dir."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        self._close_listener()
        if self._pool is not None:
            self._pool.shutdown(STOP_JOIN_SECONDS)
        self._join_connections(STOP_GRACE_SECONDS)
        with self._lock:
            leftovers = list(self._connections.values())
        for connection in leftovers:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._join_connections(STOP_JOIN_SECONDS)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        logger.info("sandbox emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def go_down(self) -> None:
        """Close the listening socket: new connections are refused. In-flight requests finish."""
        self._require_running()
        self._close_listener()

    def come_up(self) -> None:
        """Listen again, on the same port."""
        self._require_running()
        with self._lock:
            if self._listener is not None:
                return
        self._open_listener()

    # -- state --------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL with the trailing slash, e.g. "http://127.0.0.1:8000/"."""
        if not self._started:
            raise RuntimeError("the emulator is not started; call start() first")
        host = self._bound_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}/"

    @property
    def port(self) -> int:
        return self._port

    @property
    def is_up(self) -> bool:
        with self._lock:
            return self._listener is not None

    @property
    def busy_containers(self) -> int:
        """Containers not free now (running a request or restarting)."""
        return self._pool.busy if self._pool is not None else 0

    @property
    def workdir(self) -> Path | None:
        """The temporary directory holding containers and environments (None before start)."""
        return self._workdir

    @property
    def faults(self) -> dict[str, Fault]:
        return self._faults.snapshot()

    def set_fault(self, endpoint: str, fault: Fault) -> None:
        """Make `endpoint` ("execute", ..., or "*" for all) misbehave as `fault` says."""
        self._faults.set(endpoint, fault)

    def clear_faults(self, endpoint: str | None = None) -> None:
        """Remove every fault, or only the one of `endpoint`."""
        self._faults.clear(endpoint)

    def set_libraries(self, document: dict) -> None:
        """Replace the /libraries/ document."""
        body = _encode_libraries(document)
        with self._lock:
            self._libraries_body = body

    # -- internals: listening -----------------------------------------------

    def _require_running(self) -> None:
        if not self._started or self._stopping.is_set():
            raise RuntimeError("the emulator is not running")

    def _open_listener(self) -> None:
        infos = socket.getaddrinfo(self.host, self._port, type=socket.SOCK_STREAM)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, like most clients
        family, _, _, _, address = infos[0]
        try:
            listener = _Listener(address, family, self)
        except OSError as error:
            raise OSError(
                error.errno, f"cannot listen on {self.host} port {self._port}: {error.strerror}"
            ) from None
        self._port = listener.server_address[1]
        self._bound_host = listener.server_address[0]
        thread = threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": LISTENER_POLL_SECONDS},
            name="emulator-listener",
            daemon=True,
        )
        with self._lock:
            self._listener, self._listener_thread = listener, thread
        thread.start()

    def _close_listener(self) -> None:
        with self._lock:
            listener, thread = self._listener, self._listener_thread
            self._listener = self._listener_thread = None
        if listener is None:
            return
        listener.shutdown()
        listener.server_close()
        if thread is not None:
            thread.join()

    def _serve_connection_in_thread(self, listener: _Listener, request, client_address) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(listener, request, client_address),
            name="emulator-connection",
            daemon=True,
        )
        with self._lock:
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, listener: _Listener, request, client_address) -> None:
        try:
            listener.finish_request(request, client_address)
        except Exception:
            listener.handle_error(request, client_address)
        finally:
            listener.shutdown_request(request)
            with self._lock:
                self._connections.pop(threading.current_thread(), None)

    def _join_connections(self, timeout: float) -> None:
        with self._lock:
            threads = list(self._connections)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stuck = [thread for thread in self._connections if thread.is_alive()]
        if stuck and timeout >= STOP_JOIN_SECONDS:
            logger.warning("%d connection threads did not finish in time", len(stuck))

    # -- internals: answering -----------------------------------------------

    def _route(self, method: str, path: str, headers, body: bytes) -> Answer | None:
        routed = match_route(path)
        if routed is None:
            return Answer(404, NOT_FOUND_PAGE)
        endpoint, params = routed
        methods = VIEW_METHODS[self.api].get(endpoint)
        if methods is None or ("env" in params and not UUID_PATTERN.match(params["env"])):
            return Answer(404, NOT_FOUND_PAGE)
        if method not in methods:
            return self._method_not_allowed(method, methods)
        try:
            return getattr(self, f"_view_{endpoint}")(params, headers, body)
        except RequestError as error:
            return text_answer(error.status, error.message)

    def _method_not_allowed(self, method: str, methods: tuple[str, ...]) -> Answer:
        if self.api >= 3:
            allow = ", ".join((*methods, "OPTIONS"))
            status = 200 if method == "OPTIONS" else 405
            return Answer(status, b"", HTML, [("Allow", allow)])
        return Answer(
            405,
            f"405 Method Not Allowed : {method}".encode(),
            HTML,
            [("Allow", ", ".join(methods))],
        )

    def _view_specifications(self, params, headers, body) -> Answer:
        if self.api >= 3:
            document = hostinfo.specifications_v3(
                str(self._workdir), self.containers, SANDBOX_VERSIONS[3], DOCKER_VERSION
            )
        else:
            expiration = int(self.expiration) if self.expiration.is_integer() else self.expiration
            document = hostinfo.specifications_v2(
                self.containers,
                self.busy_containers,
                self.execute_timeout,
                expiration,
                SANDBOX_VERSIONS[2],
                DOCKER_VERSION,
            )
        return json_answer(document)

    def _view_usages(self, params, headers, body) -> Answer | None:
        document = hostinfo.usages_v3(
            str(self._workdir), lambda: self.busy_containers, self.usage_delay, self._stopping
        )
        return None if document is None else json_answer(document)

    def _view_libraries(self, params, headers, body) -> Answer | None:
        # The real server starts a fresh container to list them: it takes a while.
        if self.libraries_delay > 0 and self._stopping.wait(self.libraries_delay):
            return None
        with self._lock:
            return Answer(200, self._libraries_body, JSON)

    def _view_environments(self, params, headers, body) -> Answer:
        env = params["env"]
        data = self._environments.read(env)
        return Answer(
            200,
            data,
            "application/gzip",
            [("Content-Disposition", f"attachment; filename={env}.tgz")],
        )

    def _view_files(self, params, headers, body) -> Answer:
        env, member = params["env"], params["path"]
        data = self._environments.read_member(env, member)
        return Answer(
            200,
            data,
            "application/octet-stream",
            [("Content-Disposition", f"attachment; filename={os.path.basename(member)}")],
        )

    def _view_execute(self, params, headers, body) -> Answer | None:
        form = parse_form(headers.get("Content-Type"), body)
        config = parse_config_text(form.fields.get("config"))
        request = parse_execute_request(
            config,
            form.files.get("environment"),
            api=self.api,
            default_timeout=self.execute_timeout,
            environment_exists=self._environments.exists,
        )
        container = self._pool.acquire(self.overload_wait)
        if container is None:
            if self._stopping.is_set():
                return None
            return text_answer(503, OVERLOADED[self.api])
        try:
            document = execute(
                request,
                container,
                self._environments,
                api=self.api,
                execute_timeout=self.execute_timeout,
                stopping=self._stopping,
            )
        finally:
            self._pool.release(container)
        if self._stopping.is_set():
            return None
        return json_answer(document)

    def _control(self, method: str, query: str, body: bytes) -> Answer:
        """Emulator-only: change faults from outside Python. Not part of the sandbox API."""
        plain = "text/plain; charset=utf-8"
        if method == "GET":
            return json_answer({name: fault.to_json() for name, fault in self.faults.items()})
        if method == "POST":
            try:
                endpoint, fault = fault_from_json(json.loads(body or b"null"))
            except json.JSONDecodeError as error:
                return text_answer(400, f"the fault must be JSON: {error}", plain)
            except (TypeError, ValueError) as error:
                return text_answer(400, str(error), plain)
            self.set_fault(endpoint, fault)
            logger.info("fault set on %s: %s", endpoint, fault)
            return json_answer({"endpoint": endpoint, "fault": fault.to_json()})
        if method == "DELETE":
            endpoint = parse_qs(query).get("endpoint", [None])[-1]
            try:
                self.clear_faults(None if endpoint is None else check_endpoint(endpoint))
            except ValueError as error:
                return text_answer(400, str(error), plain)
            return json_answer({name: fault.to_json() for name, fault in self.faults.items()})
        return Answer(405, b"", plain, [("Allow", "GET, POST, DELETE")])
