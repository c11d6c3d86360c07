"""A DNS server on loopback that answers some names and never answers others.

The exporter's session can be pointed at it (``resolver()``) without touching
the machine's resolver configuration. Names in ``answers`` get an A record
(and an empty answer to any other type, as a real server for an IPv4-only
name); names in ``silent`` are read and never answered, over UDP and TCP, as a
broken or firewalled DNS server does; any other name is NXDOMAIN. Minimal by
design: one question per query, no compression in questions.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterable, Mapping

import aiohttp

_A, _IN = 1, 1
_NXDOMAIN = 3


def _question(query: bytes) -> tuple[str, int, int]:
    """(name, type, end of the question) of a query's first question."""
    labels, offset = [], 12
    while query[offset]:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    kind = struct.unpack_from("!H", query, offset + 1)[0]
    return ".".join(labels), kind, offset + 5


def _udp_and_tcp_on_one_port() -> tuple[socket.socket, socket.socket]:
    # A free UDP port may be taken for TCP: try a few.
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp
    raise OSError("no port free for both UDP and TCP")


class DNSServer:
    """``DNSServer(answers={"ok.test": "127.0.0.1"}, silent={"hang.test"})``, until ``stop()``."""

    def __init__(self, answers: Mapping[str, str], silent: Iterable[str] = ()) -> None:
        self.answers = {name.lower(): address for name, address in answers.items()}
        self.silent = {name.lower() for name in silent}
        self.queries: list[str] = []  # names asked (A and AAAA each), answered or not
        self._a_queries: list[str] = []
        self._stop = threading.Event()
        self._udp, self._tcp = _udp_and_tcp_on_one_port()
        self.port = self._udp.getsockname()[1]
        for sock in (self._udp, self._tcp):
            sock.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def lookups(self, name: str) -> int:
        """How many lookups of ``name`` came (a lookup asks for A, and maybe AAAA)."""
        return self._a_queries.count(name)

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def resolver(self) -> aiohttp.AsyncResolver:
        """aiohttp's AsyncResolver asking this server only (call it on the loop that
        uses it). One try of 60 s: a silent name's lookup stays pending past any
        deadline of the tests, where c-ares' defaults would give up within seconds."""
        return aiohttp.AsyncResolver(nameservers=[self.nameserver], timeout=60.0, tries=1)

    def answer(self, query: bytes) -> bytes | None:
        """The answer to ``query``, or None to stay silent."""
        name, kind, end = _question(query)
        self.queries.append(name)
        if kind == _A:
            self._a_queries.append(name)
        if name in self.silent:
            return None
        (ident,) = struct.unpack_from("!H", query)
        address = self.answers.get(name)
        rcode = 0 if address is not None else _NXDOMAIN
        records = b""
        if address is not None and kind == _A:
            # The name as a pointer to the question's (offset 12), TTL 60 s.
            records = struct.pack("!HHHIH", 0xC00C, _A, _IN, 60, 4) + socket.inet_aton(address)
        count = 1 if records else 0
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, count, 0, 0)
        return header + query[12:end] + records

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            reply = self.answer(query)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self._udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        # Queries over TCP (c-ares falls back to it) are read and held unanswered.
        while not self._stop.is_set():
            try:
                connection, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(connection)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in (self._udp, self._tcp, *self._held):
            sock.close()

    def __enter__(self) -> DNSServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
