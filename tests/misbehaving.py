"""TCP servers on loopback that misbehave on purpose, one way each.

Every case of "whatever the server does" that a probe's deadline must
survive: a listener whose backlog is full (the handshake never completes),
one that accepts and says nothing, status line and headers sent a byte at a
time, a body dripped, an endless chunked body, a compressed body that
inflates without end, and a Content-Length that promises more than comes.
Each connection is served by a thread that stops when the peer goes or the
server stops, so every loop here ends by itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import zlib
from collections.abc import Callable, Iterator

DRIP_SECONDS = 0.1


class Misbehaving:
    """`Misbehaving(kind).url` misbehaves for every request, until `stop()`."""

    KINDS = (
        "backlog-full",
        "silent",
        "header-drip",
        "body-drip",
        "endless-chunked",
        "gzip-bomb",
        "content-length-lie",
    )

    def __init__(self, kind: str) -> None:
        assert kind in self.KINDS, kind
        self.kind = kind
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        if kind == "backlog-full":
            self._fill_accept_queue()
            return
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.requests += 1
            self._spawn(self._serve, connection)

    def _wait(self, seconds: float) -> bool:
        """False once the server stops."""
        return not self._stop.wait(seconds)

    def _serve(self, connection: socket.socket) -> None:
        # OSError: the client gave up, which is the point.
        with connection, contextlib.suppress(OSError):
            getattr(self, "_" + self.kind.replace("-", "_"))(connection)

    def _silent(self, connection: socket.socket) -> None:
        while self._wait(DRIP_SECONDS):
            pass

    def _header_drip(self, connection: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Drip: "
        for byte in head:
            if not self._wait(DRIP_SECONDS):
                return
            connection.sendall(bytes([byte]))
        while self._wait(DRIP_SECONDS):
            connection.sendall(b"a")

    def _body_drip(self, connection: socket.socket) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"
        )
        while self._wait(DRIP_SECONDS):
            connection.sendall(b" ")

    def _endless_chunked(self, connection: socket.socket) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 65536
        while not self._stop.is_set():
            connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def _gzip_bomb(self, connection: socket.socket) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # One gzip stream that never ends: each piece is ~1 KiB on the wire
        # and a MiB of zeros once inflated.
        stream = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = b"\0" * 2**20
        while not self._stop.is_set():
            piece = stream.compress(zeros) + stream.flush(zlib.Z_SYNC_FLUSH)
            connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))

    def _content_length_lie(self, connection: socket.socket) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{}"
        )
        while self._wait(DRIP_SECONDS):
            pass

    def _fill_accept_queue(self) -> None:
        """Never accept, and fill the queue so the kernel drops further SYNs.

        With a backlog of 0 Linux queues a connection or so that nobody
        accepts; we keep connecting (non-blocking) until a short blocking
        connect times out, which proves the queue is full.
        """
        self._sock.listen(0)
        for _ in range(32):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._clients.append(filler)
            with socket.socket() as probe:
                probe.settimeout(0.3)
                try:
                    probe.connect(("127.0.0.1", self.port))
                except (TimeoutError, BlockingIOError):
                    return
        raise RuntimeError("could not fill the accept queue of a backlog-0 socket")

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for client in self._clients:
            client.close()
        for thread in self._threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def every_kind() -> Iterator[dict[str, Misbehaving]]:
    """One server of each kind, by kind, all stopped on leaving."""
    started = {kind: Misbehaving(kind) for kind in Misbehaving.KINDS}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()
