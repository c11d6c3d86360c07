"""One sandbox's trouble never changes another's results.

The isolation matrix: 8 targets whose names hang in lookup (their DNS server
reads the query and never answers), 8 that accept and never answer, 8 that
send every document at its size cap, and one healthy emulated target named
through the same DNS server, which answers for it. The healthy target must
succeed on every run, and the durations it reports must stay within
ISOLATION_SECONDS of what it reports when it is probed alone.

The emulators run in processes of their own (`python -m sandbox_emulator`):
in this process they would take the GIL from the exporter's loop, which is
what is being measured. The exporter runs in this process, its session's
resolver pointed at the test's DNS server (the machine's resolver is not
touched).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest
import requests
from dns_server import DNSServer
from harness import RunningExporter
from misbehaving import Misbehaving

from sandbox_exporter import exporter as exporter_module
from sandbox_exporter.config import parse_config
from sandbox_exporter.config.models import DEFAULT_MAX_RESPONSE_BYTES
from sandbox_exporter.transport import open_session
from sandbox_exporter.vocabulary import PROBES

from helpers import wait_until

# What the product promises: a healthy target's reported durations move by
# no more than this (medians) whatever the other targets do.
ISOLATION_SECONDS = 0.020
EACH = 8  # targets of each misbehaviour
HEALTHY = "healthy.test"
ALONE_SECONDS = 12.0
MATRIX_SECONDS = 20.0
# The first runs of the matrix start the libraries parser's process (about
# a second of CPU on a 2-core machine): they count for success, not medians.
SETTLE_SECONDS = 4.0
INTERVALS = {"specifications": "1s", "usage": "1s", "libraries": "3s", "canary": "1s"}
TIMEOUTS = {kind: "900ms" for kind in PROBES}
CANARY = {"name": "shell", "commands": ["echo $((2+2))"], "expect_stdout": "4"}


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """`python -m sandbox_emulator` on a free port, fast; its URL until the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox_emulator", "--port", "0", "--log-level", "error",
         "--containers", "5", "--usage-delay", "0.05", "--libraries-delay", "0.05", *args],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url = _first_line(process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _first_line(process: subprocess.Popen) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    if not line or not line[0].startswith("http://"):
        raise AssertionError(f"the emulator printed no URL: {line}")
    return line[0].strip()


def padded(doc: Mapping[str, object], size: int) -> str:
    """``doc`` as JSON of exactly ``size`` bytes, with a key the parser ignores."""
    text = json.dumps({**doc, "padding": ""})
    assert len(text) <= size
    return json.dumps({**doc, "padding": "x" * (size - len(text))})


def serve_documents_at_the_cap(url: str) -> None:
    """Make the emulator at ``url`` answer every document at its default cap."""
    caps = DEFAULT_MAX_RESPONSE_BYTES
    documents = {
        "specifications": requests.get(url + "specifications/", timeout=10).json(),
        "usages": requests.get(url + "usages/", timeout=10).json(),
        "libraries": requests.get(url + "libraries/", timeout=10).json(),
        "execute": {
            "status": 0,
            "execution": [{"command": "echo $((2+2))", "exit_code": 0, "stdout": "4",
                           "stderr": "", "time": 0.001}],
            "total_time": 0.002,
        },
    }  # fmt: skip
    for endpoint, doc in documents.items():
        fault = {"endpoint": endpoint, "body": padded(doc, caps[endpoint])}
        answer = requests.post(url + "_emulator/faults/", json=fault, timeout=10)
        assert answer.status_code < 300, answer.text


def config(targets: Mapping[str, str]) -> str:
    return json.dumps(
        {
            "defaults": {"intervals": INTERVALS, "timeouts": TIMEOUTS, "canaries": [CANARY]},
            "targets": [{"name": name, "url": url} for name, url in targets.items()],
        }
    )


def healthy_runs(targets: Mapping[str, str], seconds: float, monkeypatch, dns: DNSServer):
    """The healthy target's runs (after SETTLE_SECONDS) and all of them, with ``targets``."""
    monkeypatch.setattr(exporter_module, "open_session", lambda: open_session(dns.resolver()))
    with RunningExporter(parse_config(config(targets))) as running:
        state = running.exporter.state
        started = time.time()
        wait_until(lambda: time.time() - started > seconds, timeout=seconds + 30, interval=0.5)
        history = list(state.history(HEALTHY).entries)
        others = {name: list(state.history(name).entries) for name in targets if name != HEALTHY}
    settled = [run for run in history if run.started_at >= started + SETTLE_SECONDS]
    return settled, history, others


def medians(runs) -> dict[str, float]:
    return {
        kind: statistics.median(r.duration_seconds for r in runs if r.probe == kind)
        for kind in PROBES
    }


@pytest.mark.timeout(120)
def test_a_healthy_target_is_not_touched_by_the_others(monkeypatch) -> None:
    with (
        emulator_process() as healthy_url,
        emulator_process() as capped_url,
    ):
        serve_documents_at_the_cap(capped_url)
        port = healthy_url.rsplit(":", 1)[1].rstrip("/")
        hanging = {f"hang-{i}.test" for i in range(EACH)}
        silent = Misbehaving("silent")
        try:
            with DNSServer({HEALTHY: "127.0.0.1"}, silent=hanging) as dns:
                healthy = {HEALTHY: f"http://{HEALTHY}:{port}/"}
                alone, _, _ = healthy_runs(healthy, ALONE_SECONDS, monkeypatch, dns)
                matrix = {
                    **{name: f"http://{name}:{port}/" for name in sorted(hanging)},
                    **{f"silent-{i}": silent.url for i in range(EACH)},
                    **{f"capped-{i}": capped_url for i in range(EACH)},
                    **healthy,
                }
                settled, every, others = healthy_runs(matrix, MATRIX_SECONDS, monkeypatch, dns)
                assert dns.lookups(HEALTHY) >= 2  # through the DNS server, alone and in the matrix
                assert hanging <= set(dns.queries)
        finally:
            silent.stop()

    failed = [run for run in every if not run.success]
    assert failed == [], failed
    # The others did misbehave as meant: lookups and silent servers cut at
    # their deadline, documents at the cap accepted.
    for name, runs in others.items():
        assert runs, name
        if name.startswith("capped-"):
            # Accepted at the cap: each kind succeeded. The eight share one
            # parsing process for their 4 MiB libraries lists, so one may
            # wait past its deadline behind the others: their own cost.
            assert {r.probe for r in runs if r.success} == set(PROBES), runs
            assert {r.outcome for r in runs if not r.success} <= {"timeout"}, runs
        else:
            assert not any(run.success for run in runs), runs
    alone_medians, matrix_medians = medians(alone), medians(settled)
    figures = {
        kind: f"alone {alone_medians[kind] * 1000:.1f} ms, matrix {matrix_medians[kind] * 1000:.1f}"
        f" ms ({sum(r.probe == kind for r in settled)} runs)"
        for kind in PROBES
    }
    print("isolation:", json.dumps(figures, indent=1))
    for kind in PROBES:
        difference = matrix_medians[kind] - alone_medians[kind]
        assert abs(difference) <= ISOLATION_SECONDS, figures
