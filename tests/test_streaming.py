"""`/metrics` streams: a large scrape goes out in bounded chunks as it is
rendered, in every format Prometheus negotiates, and the loop keeps its clock.

The exporter runs in this process (`RunningExporter`, not scheduled) with
2,000 targets whose results are recorded into its `State` directly, from
the recorded documents the collector's tests use: the content needs no
network, the scrapes go over real sockets on loopback.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import yaml
from harness import RunningExporter
from test_collector import CONFIG, probe_data, result

from sandbox_exporter import collector
from sandbox_exporter.config import parse_config
from sandbox_exporter.state import State
from sandbox_exporter.vocabulary import PROBES

from helpers import wait_until

TARGETS = 2000
# What Prometheus sends (scrape_protocols' default order, then gzip).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
LOOP_STALL_PROMISE = 0.05  # seconds
SLACK = 0.2  # for a loaded 2-core machine


def populate_many(state: State, count: int) -> None:
    """`count` targets alternating the collector tests' two (a 2.x server with
    labels, two canaries and expectations; a 3.x one), every probe recorded."""
    templates = parse_config(CONFIG).targets
    definitions = yaml.safe_load(CONFIG)["targets"]
    targets = [{**definitions[i % 2], "name": f"t{i:04d}"} for i in range(count)]
    state.set_config(parse_config(json.dumps({"targets": targets})))
    # Results are immutable values: one of each per template, shared.
    data = {(t.name, probe): probe_data(t, probe) for t in templates for probe in PROBES}
    for index, target in enumerate(targets):
        template = templates[index % 2]
        for probe in PROBES:
            state.record(result(target["name"], probe, data[(template.name, probe)]))


@pytest.fixture(scope="module")
def exporter() -> Iterator[RunningExporter]:
    config = parse_config(CONFIG)
    with RunningExporter(config, scheduled=False) as running:
        populate_many(running.exporter.state, TARGETS)
        yield running


def sandboxes_text(exporter: RunningExporter, openmetrics: bool = False) -> str:
    """The samples of the sandboxes as the collector renders them whole; the
    state does not change during these tests."""
    return collector.render(exporter.exporter.state.snapshot()).text(openmetrics)


def get_chunks(
    exporter: RunningExporter, headers: dict[str, str] | None = None, version: str = "1.1"
) -> tuple[str, dict[str, str], list[bytes]]:
    """GET /metrics on a raw socket: the status line, the headers, and the
    body's HTTP chunks as they came (the chunked encoding undone by hand)."""
    host, port = exporter.address.rsplit(":", 1)
    lines = [f"GET /metrics HTTP/{version}", f"Host: {exporter.address}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        stream = sock.makefile("rb")
        status = stream.readline().decode().strip()
        head = {}
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            head[name.strip().lower()] = value.strip()
        if head.get("transfer-encoding") != "chunked":
            return status, head, [stream.read()]
        chunks = []
        while size := int(stream.readline().split(b";")[0], 16):
            chunks.append(stream.read(size))
            assert stream.read(2) == b"\r\n", "a chunk is longer than its size line says"
        assert stream.readline() == b"\r\n", "the last chunk is not followed by the end"
    return status, head, chunks


def test_a_large_scrape_goes_out_in_bounded_chunks(exporter: RunningExporter) -> None:
    status, head, chunks = get_chunks(exporter, {"Accept-Encoding": "identity"})
    assert status == "HTTP/1.1 200 OK"
    assert head["transfer-encoding"] == "chunked"
    assert "content-length" not in head
    assert head["content-type"].startswith("text/plain; version=0.0.4")
    body = b"".join(chunks).decode()
    expected = sandboxes_text(exporter)
    assert len(expected) > 100 * collector.CHUNK_CHARACTERS, "too small to show streaming"
    # Byte for byte the collector's whole text, then the process's own families.
    assert body.startswith(expected)
    assert body[len(expected) :].startswith("# HELP process_")
    # Pieces of about CHUNK_CHARACTERS each, not one block: what a scrape
    # holds at a time.
    assert len(chunks) >= len(expected) // (2 * collector.CHUNK_CHARACTERS)
    assert max(map(len, chunks)) <= 2 * collector.CHUNK_CHARACTERS


def test_gzip_streams_the_same_text(exporter: RunningExporter) -> None:
    _, plain_head, plain = get_chunks(exporter, {"Accept-Encoding": "identity"})
    _, head, chunks = get_chunks(exporter, {"Accept-Encoding": "gzip"})
    assert head["content-encoding"] == "gzip"
    assert "content-encoding" not in plain_head
    assert head["transfer-encoding"] == "chunked"
    assert len(chunks) > 1
    zipped = b"".join(chunks)
    text = gzip.decompress(zipped).decode()
    expected = sandboxes_text(exporter)
    assert text.startswith(expected)
    assert b"".join(plain).decode().startswith(expected)
    # Compressed on the way: far fewer bytes than the text.
    assert len(zipped) < len(text) / 5


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_openmetrics_as_prometheus_negotiates_it(exporter: RunningExporter, encoding: str) -> None:
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": encoding}
    _, head, chunks = get_chunks(exporter, headers)
    assert head["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    body = b"".join(chunks)
    text = (gzip.decompress(body) if encoding == "gzip" else body).decode()
    assert text.startswith(sandboxes_text(exporter, openmetrics=True))
    assert text.endswith("\n# EOF\n")
    assert text.count("# EOF") == 1


def test_an_http_1_0_client_reads_the_text_to_the_close(exporter: RunningExporter) -> None:
    # No chunked encoding in HTTP/1.0: the end of the answer is the close.
    status, head, (body,) = get_chunks(exporter, {"Accept-Encoding": "identity"}, "1.0")
    assert status == "HTTP/1.0 200 OK"
    assert "transfer-encoding" not in head
    assert body.decode().startswith(sandboxes_text(exporter))


def test_a_large_scrape_never_stalls_the_loop(exporter: RunningExporter) -> None:
    """While scrapes render 2,000 targets, a task on the exporter's loop that
    wakes every 5 ms is never late by more than the promised 50 ms."""
    done = threading.Event()

    async def watch() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        worst, ticks = 0.0, 0
        while not done.is_set():
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - due)
            ticks += 1
        return worst, ticks

    watcher = asyncio.run_coroutine_threadsafe(watch(), exporter.loop)
    started = time.monotonic()
    try:
        for encoding in ("identity", "gzip"):
            get_chunks(exporter, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": encoding})
    finally:
        done.set()
    scraping = time.monotonic() - started
    worst, ticks = watcher.result(timeout=30)
    assert scraping > 0.2, "the scrapes were too short to show anything"
    assert ticks > 10, "the watcher did not run during the scrapes"
    assert worst < LOOP_STALL_PROMISE + SLACK, (
        f"the loop stalled {worst * 1e3:.0f} ms during {scraping:.1f} s of scrapes"
    )


def test_a_client_gone_mid_scrape_ends_its_render(
    exporter: RunningExporter, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = exporter.address.rsplit(":", 1)
    with caplog.at_level(logging.DEBUG, logger="sandbox_exporter.web"):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
            # A reset, not a polite close: the server finds out on its next write.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(
            lambda: any("went away" in record.getMessage() for record in caplog.records),
            timeout=30,
        )
    # The next scrape is whole.
    _, _, chunks = get_chunks(exporter, {"Accept-Encoding": "identity"})
    assert b"".join(chunks).decode().startswith(sandboxes_text(exporter))


def test_a_scrape_renders_one_snapshot_while_reloads_change_the_targets() -> None:
    """Reloads alternate between all targets and half of them while scrapes
    stream: every family of one scrape has the same targets, those its
    `sandbox_exporter_targets` counts (one snapshot, taken at the start)."""
    count = 600
    config = parse_config(CONFIG)
    with RunningExporter(config, scheduled=False) as running:
        state = running.exporter.state
        populate_many(state, count)
        every = state.config
        assert every is not None
        definitions = [
            {**yaml.safe_load(CONFIG)["targets"][i % 2], "name": f"t{i:04d}"}
            for i in range(0, count, 2)
        ]
        half = parse_config(json.dumps({"targets": definitions}))
        stop = threading.Event()
        reloads = 0

        def reload_repeatedly() -> None:
            nonlocal reloads
            while not stop.is_set():
                state.set_config(half if reloads % 2 else every)
                reloads += 1
                time.sleep(0.001)

        reloader = threading.Thread(target=reload_repeatedly)
        reloader.start()
        try:
            texts = [
                b"".join(get_chunks(running, {"Accept-Encoding": "identity"})[2]).decode()
                for _ in range(4)
            ]
        finally:
            stop.set()
            reloader.join(10)
    assert reloads > 20, "too few reloads during the scrapes to show anything"
    for text in texts:
        (counted,) = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("sandbox_exporter_targets ")
        ]
        by_family: dict[str, set[str]] = {}
        for line in text.splitlines():
            if line.startswith("sandbox_") and 'target="' in line:
                family = line.split("{", 1)[0]
                by_family.setdefault(family, set()).add(line.split('target="', 1)[1].split('"')[0])
        info = by_family["sandbox_target_info"]
        assert len(info) == counted
        for family, targets in by_family.items():
            assert targets <= info, family
        assert by_family["sandbox_probe_runs_total"] == info
