"""HTTP/1.1 on a socket: the listener, the threads serving its connections, and
the request handler that reads a request, applies the faults that act on the
wire (latency, drop, drip, truncate) and sends the answer."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from .answers import SERVER_ERROR_PAGE, Answer, fault_answer, text_answer
from .execution import RequestError
from .faults import FaultBoard
from .routing import endpoint_of

logger = logging.getLogger(__name__)

# Bigger bodies are refused: the emulator keeps a request in memory.
MAX_BODY_BYTES = 64 * 2**20
# A client that stops sending mid-request is dropped after this long.
SOCKET_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Application:
    """What the request handler needs from the emulator.

    `answer(method, path, query, headers, body)` returns None when the emulator
    is stopping: the connection then closes without an answer.
    """

    answer: Callable[[str, str, str, Message, bytes], Answer | None]
    faults: FaultBoard
    stopping: threading.Event


class Connections:
    """The threads serving connections, kept across listeners: a request in
    flight outlives go_down(), and stop() waits for it or cuts it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[threading.Thread, socket.socket] = {}

    def serve_in_thread(self, listener: Listener, request: socket.socket, client_address) -> None:
        thread = threading.Thread(
            target=self._serve,
            args=(listener, request, client_address),
            name="emulator-connection",
            daemon=True,
        )
        with self._lock:
            self._threads[thread] = request
        thread.start()

    def _serve(self, listener: Listener, request: socket.socket, client_address) -> None:
        try:
            listener.finish_request(request, client_address)
        except Exception:
            listener.handle_error(request, client_address)
        finally:
            listener.shutdown_request(request)
            with self._lock:
                self._threads.pop(threading.current_thread(), None)

    def join(self, timeout: float) -> int:
        """Wait up to `timeout` seconds in all; returns how many are still running."""
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return sum(thread.is_alive() for thread in self._threads)

    def cut(self) -> None:
        """Shut down every connection's socket: their threads' reads and writes fail."""
        with self._lock:
            sockets = list(self._threads.values())
        for connection in sockets:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Listener(ThreadingHTTPServer):
    """One listening socket; each connection is served by a thread of `connections`."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    # Bursts of concurrent requests (overload tests, benchmarks) overflowed the
    # default backlog of 5 and cost clients 1 s SYN retries.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple,
        family: int,
        application: Application,
        connections: Connections,
    ) -> None:
        self.address_family = family
        self.application = application
        self.connections = connections
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    def process_request(self, request, client_address) -> None:
        self.connections.serve_in_thread(self, request, client_address)

    def handle_error(self, request, client_address) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    server: Listener
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
        # Debug, not info: the demo polls its emulators every few seconds,
        # and a line per request would scroll its URLs off the screen.
        logger.debug('%s "%s" %s', self.client_address[0], self.requestline, code)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.client_address[0], format % args)

    def _handle(self) -> None:
        self.close_connection = True
        application = self.server.application
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
            endpoint = endpoint_of(path)
            fault = application.faults.for_endpoint(endpoint) if endpoint else None
            if fault is not None and fault.latency > 0 and application.stopping.wait(fault.latency):
                return
            if fault is not None and fault.drop:
                return  # the connection closes with nothing sent
            if fault is not None and fault.replaces_answer:
                answer = fault_answer(fault, endpoint)
            else:
                answer = application.answer(self.command, path, query, self.headers, body)
            if answer is None:  # the emulator is stopping: close without an answer
                return
            if fault is not None and fault.content_type is not None:
                answer.content_type = fault.content_type
            self._send(
                answer,
                head=head and not (fault is not None and fault.head_body),
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
        stopping = self.server.application.stopping
        for index in range(len(body)):
            if index and stopping.wait(drip):
                return
            self.wfile.write(body[index : index + 1])
