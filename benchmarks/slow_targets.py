"""Many slow sandboxes that cost almost no CPU: B2's stand-in for remote servers.

A real sandbox runs on its own machine; on the benchmark's 2 cores an
emulator process per target group competes with the exporter for the CPU,
and B2 would measure the emulators. This server listens on one loopback
port per target, in one asyncio process, reads each request whole, waits
exactly the latency and answers with a document recorded from a real
emulator beforehand (same status, headers and body), then closes the
connection as the real server does (`Connection: close`). No JSON is built
and nothing is run per request: only the HTTP head is looked at.

    python -m benchmarks.slow_targets --latency 0.5 DOCUMENTS.json
    python -m benchmarks.slow_targets --latency 0.05 --copies 2500 DOCUMENTS.json

DOCUMENTS.json is a list with one entry per target: {"METHOD path": answer}
where an answer is {"status", "reason", "headers": [[name, value], ...],
"body"} (body as latin-1 text). `--copies N` serves each entry on N ports
(the answers encoded once, shared): thousands of targets from a few
recordings. The first line printed is the JSON list of the ports, each
entry's copies in turn, in the order of the entries; the server runs until
terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from pathlib import Path

HEAD_END = b"\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
LENGTH_REQUIRED = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def encode(answer: dict) -> bytes:
    """The whole HTTP answer, built once."""
    body = answer["body"].encode("latin-1")
    lines = [f"HTTP/1.1 {answer['status']} {answer['reason']}"]
    for name, value in answer["headers"]:
        if name.lower() not in ("content-length", "connection", "date", "transfer-encoding"):
            lines.append(f"{name}: {value}")
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class SlowTarget(asyncio.Protocol):
    """One connection: read the request, answer after the latency, close."""

    def __init__(self, answers: dict[str, bytes], latency: float) -> None:
        self.answers = answers
        self.latency = latency
        self.buffer = bytearray()
        self.wanted: int | None = None  # bytes of the whole request, once the head is in
        self.answer = NOT_FOUND
        self.due = False  # the whole request is in, the answer scheduled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.due:
            return
        self.buffer += data
        if self.wanted is None:
            end = self.buffer.find(HEAD_END)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            # The probes send a Content-Length; a body of unknown length is
            # refused at once rather than guessed at.
            if "transfer-encoding" in headers:
                self.transport.write(LENGTH_REQUIRED)
                self.transport.close()
                return
            self.wanted = end + len(HEAD_END) + int(headers.get("content-length", "0"))
            path = target.split("?", 1)[0].lstrip("/")
            self.answer = self.answers.get(f"{method} {path}", NOT_FOUND)
        if len(self.buffer) >= self.wanted:
            self.due = True
            asyncio.get_running_loop().call_later(self.latency, self.send)

    def send(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(self.answer)
            self.transport.close()


async def serve(documents: list[dict[str, dict]], latency: float, copies: int = 1) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for answers in documents:
        encoded = {key: encode(answer) for key, answer in answers.items()}
        for _ in range(copies):
            servers.append(
                await loop.create_server(
                    lambda encoded=encoded: SlowTarget(encoded, latency),
                    "127.0.0.1",
                    0,
                    # Hundreds of probes connect at once: no SYN may be dropped
                    # (a dropped SYN is retried a second later).
                    backlog=1024,
                )
            )
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("documents", type=Path)
    parser.add_argument("--latency", type=float, required=True)
    parser.add_argument("--copies", type=int, default=1, help="ports per entry (default 1)")
    args = parser.parse_args()
    # A port and its connections are file descriptors: thousands of targets need them.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(json.loads(args.documents.read_text()), args.latency, args.copies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
