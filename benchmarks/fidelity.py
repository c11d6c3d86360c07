"""B3: how much the exporter adds to the canary round trip it reports.

The same canary (`echo $((2+2))`, one POST /execute/ with the same
multipart body) sent to one emulator process, over and over, by five
clients taking turns:

- wire floor: a raw socket sending pre-encoded request bytes;
- bare requests: `requests.Session.post` with the same multipart field;
- exporter: `await run_probe("canary", ...)` in process, on an event loop of
  the benchmark's own, over the transport the daemon uses (one aiohttp
  session, `Transports`); its `round_trip_seconds` (what
  `sandbox_canary_duration_seconds` exports);
- exporter /probe: the daemon in its own process, `sandbox_canary_duration_seconds`
  from `/probe?target=...&probe=canary`;
- blackbox_exporter: Debian's prometheus-blackbox-exporter with an http
  module doing the same POST, `probe_http_duration_seconds` summed over its
  phases and `probe_duration_seconds`.

Each client's own reported duration is compared with the bare requests
round trip measured by the benchmark (difference in ms and ratio of medians).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import quote, urlsplit

import requests
from prometheus_client.parser import text_string_to_metric_families
from requests.models import RequestEncodingMixin

from sandbox_exporter.config import parse_config
from sandbox_exporter.probes import run_probe
from sandbox_exporter.transport import Transports, open_session

from .common import (
    EVERY_PROBE_RUNS,
    BlackboxProcess,
    EmulatorProcess,
    ExporterProcess,
    Report,
    median,
    spread,
)

CANARY_CONFIG = json.dumps({"commands": ["echo $((2+2))"]})
FILES = {"config": (None, CANARY_CONFIG, "application/json")}


def encoded_canary() -> tuple[bytes, str]:
    """The multipart body and Content-Type that requests builds for FILES."""
    return RequestEncodingMixin._encode_files(FILES, {})


def blackbox_config(body: bytes, content_type: str) -> str:
    # JSON strings are valid YAML double-quoted scalars, CRLFs included.
    return f"""modules:
  canary:
    prober: http
    timeout: 10s
    http:
      method: POST
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      valid_status_codes: [200]
      headers:
        Content-Type: {json.dumps(content_type)}
        Accept-Encoding: identity
      body: {json.dumps(body.decode())}
      fail_if_body_not_matches_regexp: ['"stdout": ?"4"']
"""


async def _open_session():
    # aiohttp binds a session to the loop it is created on.
    return open_session()


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


class Clients:
    def __init__(self, emulator_url: str, exporter: ExporterProcess, blackbox: BlackboxProcess):
        self.execute_url = emulator_url + "execute/"
        config = parse_config(f"targets:\n  - {{name: bench, url: '{emulator_url}'}}\n")
        self.target = config.targets[0]
        # The probes' own stack, as the daemon builds it, on a loop we drive.
        self.loop = asyncio.new_event_loop()
        self.probe_http = self.loop.run_until_complete(_open_session())
        self.transport = Transports(self.probe_http).get(self.target)
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Accept-Encoding"] = "identity"
        body, content_type = encoded_canary()
        parts = urlsplit(emulator_url)
        self.address = (parts.hostname, parts.port)
        self.raw_request = (
            f"POST /execute/ HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        ).encode() + body
        self.exporter_probe = f"{exporter.url}probe?target=bench&probe=canary"
        self.blackbox_probe = (
            f"{blackbox.url}probe?module=canary&target={quote(self.execute_url, safe='')}"
        )
        self.probe_session = requests.Session()
        self.probe_session.trust_env = False

    def wire(self) -> float:
        started = time.perf_counter()
        with socket.create_connection(self.address) as connection:
            connection.sendall(self.raw_request)
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
        elapsed = time.perf_counter() - started
        if b" 200 " not in received[:20] or b'"4"' not in received:
            raise RuntimeError(f"raw canary failed: {received[:200]!r}")
        return elapsed

    def bare(self) -> float:
        started = time.perf_counter()
        response = self.session.post(self.execute_url, files=FILES, timeout=10)
        response.content  # noqa: B018 - the body is part of the round trip
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or response.json()["execution"][-1]["stdout"] != "4":
            raise RuntimeError(f"bare canary failed: {response.status_code}")
        return elapsed

    def close(self) -> None:
        self.loop.run_until_complete(self.probe_http.close())
        self.loop.close()
        self.session.close()
        self.probe_session.close()

    def exporter_in_process(self) -> float:
        result = self.loop.run_until_complete(run_probe("canary", self.transport, self.target))
        if not result.success:
            raise RuntimeError(f"exporter canary failed: {result.message}")
        return result.data[0].round_trip_seconds

    def exporter_probe_endpoint(self) -> float:
        families = _families(self.probe_session.get(self.exporter_probe, timeout=15).text)
        samples = families["sandbox_canary_duration_seconds"]
        success = families["sandbox_canary_success"][0].value
        if success != 1:
            raise RuntimeError("exporter /probe canary failed")
        return samples[0].value

    def blackbox(self) -> tuple[float, float]:
        families = _families(self.probe_session.get(self.blackbox_probe, timeout=15).text)
        if families["probe_success"][0].value != 1:
            raise RuntimeError("blackbox canary failed; check its module config")
        http_phases = sum(s.value for s in families["probe_http_duration_seconds"])
        return http_phases, families["probe_duration_seconds"][0].value


def run(report: Report, quick: bool) -> None:
    repetitions = 40 if quick else 300
    body, content_type = encoded_canary()
    emulator = EmulatorProcess(api=3, containers=2)
    exporter = blackbox = clients = None
    try:
        exporter = ExporterProcess(
            "defaults:\n"
            + EVERY_PROBE_RUNS
            + "  intervals: {specifications: 1h, usage: 1h, libraries: 1h, canary: 1h}\n"
            f"targets:\n  - {{name: bench, url: '{emulator.url}'}}\n"
        )
        blackbox = BlackboxProcess(blackbox_config(body, content_type))
        clients = Clients(emulator.url, exporter, blackbox)
        series: dict[str, list[float]] = {
            "wire": [],
            "bare": [],
            "exporter": [],
            "exporter_probe": [],
            "blackbox_http": [],
            "blackbox_total": [],
        }
        for _ in range(3):  # warm up every path once (imports, first connections)
            clients.bare(), clients.exporter_in_process(), clients.blackbox()
        for _ in range(repetitions):
            series["wire"].append(clients.wire())
            series["bare"].append(clients.bare())
            series["exporter"].append(clients.exporter_in_process())
            series["exporter_probe"].append(clients.exporter_probe_endpoint())
            http_phases, total = clients.blackbox()
            series["blackbox_http"].append(http_phases)
            series["blackbox_total"].append(total)
    finally:
        if clients is not None:
            clients.close()
        for child in (blackbox, exporter, emulator):
            if child is not None:
                child.stop()
    bare = median(series["bare"])
    report.add(
        "B3 fidelity",
        "bare requests POST round trip (reference)",
        f"{bare * 1e3:.2f} ms",
        "",
        f"{repetitions} runs, {spread(series['bare'])}; raw-socket wire floor "
        f"{median(series['wire']) * 1e3:.2f} ms ({median(series['wire']) / bare:.2f}x)",
    )
    labels = {
        "exporter": "exporter run_probe round_trip_seconds",
        "exporter_probe": "exporter /probe sandbox_canary_duration_seconds",
        "blackbox_http": "blackbox probe_http_duration_seconds (sum of phases)",
        "blackbox_total": "blackbox probe_duration_seconds",
    }
    wire = median(series["wire"])
    for key, label in labels.items():
        value = median(series[key])
        report.add(
            "B3 fidelity",
            f"{label} vs bare",
            f"{value / bare:.2f}x ({(value - bare) * 1e3:+.2f} ms)",
            "",
            f"median {value * 1e3:.2f} ms, {spread(series[key])}; "
            f"vs wire floor {value / wire:.2f}x ({(value - wire) * 1e3:+.2f} ms)",
        )
