"""The exporter end to end: emulators on loopback, real HTTP, real scrapes."""

from __future__ import annotations

import gzip
import json
import textwrap
import threading
from pathlib import Path

import pytest
import requests
from harness import RunningExporter

from sandbox_emulator import Fault
from sandbox_exporter.client import Sandbox
from sandbox_exporter.vocabulary import PROBES

from helpers import Scrape, scrape, wait_until

FIXTURES = Path(__file__).parent / "fixtures"

CONFIG = """
defaults:
  intervals: {{specifications: 3s, usage: 3s, libraries: 3s, canary: 3s}}
  timeouts: {{specifications: 3s, usage: 3s, libraries: 3s, canary: 3s}}
  canaries: [{{name: shell, commands: ["echo $((2+2))"], expect_stdout: "4", timeout: 3s}}]
  # Tests here scrape /probe back to back and count each run.
  canary_min_interval: 1ms
  expect:
    languages: {{python3: ">=3.7", java: ">=17"}}
    packages: {{python: {{numpy: "1.18.*"}}}}
    bin: [gcc, no-such-command]
targets:
  - name: old
    url: {v2}
    labels: {{site: paris}}
  - name: new
    url: {v3}
    labels: {{site: lyon}}
{extra}
"""


class Running(RunningExporter):
    """An exporter with its web server, for one test."""

    def __init__(self, config_path: Path, *, scheduled: bool = True) -> None:
        super().__init__(config_path, scheduled=scheduled)

    def scrape(self, **kwargs) -> Scrape:
        return scrape(self.url + "metrics", **kwargs)

    def probe(self, target: str, **params) -> requests.Response:
        return requests.get(self.url + "probe", params={"target": target, **params}, timeout=30)

    def wait_for_all_probes(self) -> None:
        config = self.exporter.config

        def done() -> bool:
            snapshot = self.exporter.state.snapshot()
            return all((t.name, p) in snapshot.results for t in config.targets for p in PROBES)

        wait_until(done, timeout=30)


@pytest.fixture
def sandboxes(make_emulator):
    return {
        "v2": make_emulator(api=2, containers=5, execute_timeout=7.0),
        "v3": make_emulator(api=3, containers=4),
    }


def write_config(path: Path, sandboxes, extra: str = "") -> Path:
    urls = {name: json.dumps(emulator.url) for name, emulator in sandboxes.items()}
    path.write_text(CONFIG.format(extra=textwrap.indent(extra, "  "), **urls))
    return path


@pytest.fixture
def running(tmp_path, sandboxes):
    instance = Running(write_config(tmp_path / "config.yml", sandboxes))
    yield instance
    instance.stop()


def test_every_contract_metric_is_exported_with_its_labels(running):
    from contract import METRICS

    running.wait_for_all_probes()
    m = running.scrape()
    problems = []
    # Both emulators report an unlimited pids limit (3.x -1, 2.x nothing):
    # the contract says the series is then absent.
    unlimited = {"sandbox_container_process_limit"}
    assert m.find("sandbox_container_process_limit") == []
    for metric in METRICS:
        if metric.name in unlimited:
            continue
        for series in metric.series_names():
            samples = m.find(series)
            if not samples:
                problems.append(f"{series} missing")
            for sample in samples:
                if not metric.labels <= set(sample.labels):
                    problems.append(f"{series} lacks labels {metric.labels - set(sample.labels)}")
        if metric.type in ("counter", "histogram"):
            base = metric.name.removesuffix("_total")
            assert m.types.get(base) == metric.type, (base, m.types.get(base))
    assert not problems, problems


def test_values_follow_the_emulators_state(running, sandboxes):
    running.wait_for_all_probes()
    m = running.scrape()
    assert m.value("sandbox_exporter_targets") == 2
    assert m.value("sandbox_exporter_config_last_reload_successful") == 1
    assert m.value("sandbox_up", target="old") == 1
    assert m.value("sandbox_up", target="new") == 1
    assert m.find("sandbox_info", target="old", api="2")
    assert m.find("sandbox_info", target="new", api="3")
    assert m.value("sandbox_target_info", target="old", site="paris") == 1
    assert m.value("sandbox_target_info", target="new", site="lyon") == 1
    assert m.value("sandbox_containers_max", target="old") == 5
    assert m.value("sandbox_containers_max", target="new") == 4
    for target in ("old", "new"):
        assert m.value("sandbox_probe_success", target=target, probe="canary") == 1
        assert m.value("sandbox_canary_success", target=target, canary="shell") == 1
        assert m.value("sandbox_canary_status", target=target, canary="shell") == 0
        steps = m.find("sandbox_canary_command_duration_seconds", target=target, canary="shell")
        assert [s.labels["step"] for s in steps] == ["0"]
        assert (
            0
            <= steps[0].value
            <= m.value("sandbox_canary_server_duration_seconds", target=target, canary="shell")
        )
        # Only the exporter's own canary ever holds a container here, and the
        # usage probe may run while it does.
        running = m.value("sandbox_containers_running", target=target)
        assert running in (0, 1)
        pool = m.value("sandbox_containers_max", target=target)
        assert m.value("sandbox_load_ratio", target=target) == running / pool
        assert m.value("sandbox_container_memory_limit_bytes", target=target, kind="ram") == 1e8
        assert (
            m.value("sandbox_canary_round_trip_seconds_count", target=target, canary="shell") >= 1
        )
    # 2.x reports the server-side execute bound, 3.x does not.
    assert m.value("sandbox_execute_timeout_seconds", target="old") == 7
    assert m.find("sandbox_execute_timeout_seconds", target="new") == []
    assert m.find("sandbox_host_memory_bytes", target="new")
    assert m.find("sandbox_host_memory_bytes", target="old") == []


def test_library_expectations_met_and_missed(running, sandboxes):
    running.wait_for_all_probes()
    m = running.scrape()
    v2_doc = json.loads((FIXTURES / "v2" / "libraries.json").read_text())
    for target in ("old", "new"):

        def met(kind: str, name: str, target: str = target) -> float:
            return m.value("sandbox_library_expectation_met", target=target, kind=kind, name=name)

        assert met("language", "python3") == 1
        assert met("language", "java") == 0  # openjdk 11 on both emulators
        assert met("python", "numpy") == 1
        assert met("bin", "gcc") == 1
        assert met("bin", "no-such-command") == 0
        assert (
            m.find("sandbox_library_version_info", target=target, kind="python", name="numpy")[0]
            .labels["version"]
            .startswith("1.18")
        )
        # Only what the config expects is exported: bounded cardinality.
        assert m.find("sandbox_library_version_info", target=target, name="sympy") == []
    assert m.value("sandbox_libraries", target="old", kind="python") == len(
        v2_doc["libraries"]["python"]
    )
    assert m.value("sandbox_libraries", target="old", kind="bin") == len(v2_doc["bin"])


def test_help_texts_say_values_come_from_the_last_probe(running):
    running.wait_for_all_probes()
    m = running.scrape()
    assert "last" in m.helps["sandbox_containers_max"].lower()
    assert "last" in m.helps["sandbox_canary_duration_seconds"].lower()


def test_openmetrics_by_content_negotiation(running):
    running.wait_for_all_probes()
    response = requests.get(
        running.url + "metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=10,
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    plain = requests.get(running.url + "metrics", timeout=10)
    assert plain.headers["Content-Type"].startswith("text/plain")


def test_down_target_is_a_connection_failure_and_others_are_unaffected(running, sandboxes):
    running.wait_for_all_probes()
    sandboxes["v2"].go_down()
    m = wait_until(
        lambda: (s := running.scrape()).get("sandbox_up", target="old") == 0 and s, timeout=20
    )
    assert (
        m.value(
            "sandbox_probe_failures_total",
            target="old",
            probe="specifications",
            reason="connection",
        )
        >= 1
    )
    assert m.value("sandbox_up", target="new") == 1
    assert m.value("sandbox_probe_success", target="new", probe="canary") == 1


def test_overload_is_reported_as_overloaded_not_down(tmp_path, make_emulator):
    busy = make_emulator(api=3, containers=1, overload_wait=0.2)
    path = tmp_path / "config.yml"
    path.write_text(f"targets:\n  - name: busy\n    url: {json.dumps(busy.url)}\n")
    # Only /probe runs probes here: a scheduled canary would queue too.
    instance = Running(path, scheduled=False)
    try:
        # Hold the only container with a long command, then probe.
        holder = threading.Thread(
            target=lambda: Sandbox(busy.url).execute({"commands": ["sleep 5"]}), daemon=True
        )
        holder.start()
        wait_until(lambda: busy.busy_containers == 1, timeout=10)
        response = instance.probe("busy", probe="specifications,usage,canary")
        assert response.status_code == 200
        m = Scrape(response.text)
        assert m.value("sandbox_up", target="busy") == 1
        assert m.value("sandbox_canary_success", target="busy", canary="shell") == 0
        assert (
            m.value(
                "sandbox_probe_failures_total", target="busy", probe="canary", reason="overloaded"
            )
            == 1
        )
        assert m.value("sandbox_load_ratio", target="busy") == 1
        holder.join(timeout=20)
    finally:
        instance.stop()


def test_probe_returns_only_that_target(running):
    response = running.probe("new", probe="specifications,canary")
    assert response.status_code == 200
    m = Scrape(response.text)
    assert {s.labels.get("target") for s in m.samples} == {"new"}
    assert m.value("sandbox_up", target="new") == 1
    assert m.value("sandbox_probe_success", target="new", probe="canary") == 1
    assert "sandbox_exporter_targets" not in m.names()


def test_probe_returns_the_series_of_the_probes_asked_for_only(running):
    """Jobs that split a target's probes (`probe=canary` often, `probe=usage`
    less) must not both return, and Prometheus store, the same series."""
    running.wait_for_all_probes()
    canary = Scrape(running.probe("new", probe="canary").text)
    assert {s.labels["probe"] for s in canary.find("sandbox_probe_runs_total")} == {"canary"}
    assert canary.value("sandbox_canary_success", target="new", canary="shell") == 1
    assert canary.find("sandbox_canary_round_trip_seconds_count", target="new")
    assert canary.find("sandbox_up") == []
    assert canary.find("sandbox_containers_running") == []
    # The join key of the target's labels comes with every answer.
    assert canary.value("sandbox_target_info", target="new", site="lyon") == 1

    usage = Scrape(running.probe("new", probe="usage").text)
    assert {s.labels["probe"] for s in usage.find("sandbox_probe_runs_total")} == {"usage"}
    assert usage.find("sandbox_canary_success") == []
    assert usage.find("sandbox_up") == []
    # 3.x's usage document has no pool size: the load is judged with the last
    # specifications, which the answer does not repeat.
    assert usage.value("sandbox_load_ratio", target="new") >= 0

    both = Scrape(running.probe("new", probe="usage,canary").text)
    assert {s.labels["probe"] for s in both.find("sandbox_probe_runs_total")} == {
        "usage",
        "canary",
    }
    # Without `probe=`, the whole target, as /metrics has it.
    whole = Scrape(running.probe("new").text)
    assert {s.labels["probe"] for s in whole.find("sandbox_probe_runs_total")} == set(PROBES)
    assert whole.value("sandbox_up", target="new") == 1


def test_probe_counters_keep_counting_across_scrapes(running):
    first = Scrape(running.probe("old", probe="canary").text)
    second = Scrape(running.probe("old", probe="canary").text)
    runs = "sandbox_probe_runs_total"
    assert second.value(runs, target="old", probe="canary") > first.value(
        runs, target="old", probe="canary"
    )


def test_probe_debug_is_readable(running):
    response = running.probe("new", debug="true", probe="specifications")
    assert response.status_code == 200
    assert "specifications: ok" in response.text
    assert "sandbox_up" in response.text


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({}, 400, "'target' parameter is missing"),
        ({"target": "nope"}, 404, "unknown target 'nope'"),
        ({"target": "http://127.0.0.1:1/"}, 403, "disabled"),
        ({"target": "new", "probe": "bogus"}, 400, "unknown probe bogus"),
    ],
)
def test_probe_refuses_bad_requests_with_a_clear_message(running, params, status, text):
    response = requests.get(running.url + "probe", params=params, timeout=10)
    assert response.status_code == status
    assert text in response.text


def test_probe_allows_unlisted_urls_only_on_the_allow_list(tmp_path, sandboxes):
    allowed = sandboxes["v3"].url
    extra = "\nprobe_endpoint:\n  allow_unlisted_targets: true\n  allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/']\n"
    path = write_config(tmp_path / "config.yml", sandboxes)
    path.write_text(path.read_text() + extra.replace("  allow", "  allow"))
    instance = Running(path)
    try:
        response = instance.probe(allowed, probe="specifications")
        assert response.status_code == 200, response.text
        assert Scrape(response.text).find("sandbox_up")[0].value == 1
        refused = instance.probe("http://localhost:1/", probe="specifications")
        assert refused.status_code == 403
        assert "allowed_urls" in refused.text
        # An unlisted URL leaves nothing behind in /metrics.
        assert instance.scrape().find("sandbox_up", target="127.0.0.1") == []
    finally:
        instance.stop()


def test_probe_honours_the_scrape_timeout_header(running, sandboxes):
    sandboxes["v3"].set_fault("specifications", Fault(latency=5))
    response = requests.get(
        running.url + "probe",
        params={"target": "new", "probe": "specifications", "debug": "true"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
        timeout=30,
    )
    assert response.status_code == 200
    assert "budget 1.0s" in response.text
    assert "FAILED (timeout)" in response.text


def test_bad_scrape_timeout_header_is_rejected(running):
    response = requests.get(
        running.url + "probe",
        params={"target": "new"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "soon"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "X-Prometheus-Scrape-Timeout-Seconds" in response.text


def test_reload_good_then_bad(running, sandboxes, tmp_path):
    running.wait_for_all_probes()
    before = running.scrape().value("sandbox_probe_runs_total", target="old", probe="canary")
    extra = f"- name: third\n  url: {json.dumps(sandboxes['v3'].url)}\n"
    write_config(running.config_path, sandboxes, extra=extra)
    response = requests.post(running.url + "-/reload", timeout=10)
    assert response.status_code == 200
    m = running.scrape()
    assert m.value("sandbox_exporter_targets") == 3
    assert m.value("sandbox_exporter_config_last_reload_successful") == 1
    # Counters of targets that stay keep counting.
    assert m.value("sandbox_probe_runs_total", target="old", probe="canary") >= before

    running.config_path.write_text("targets:\n  - name: [broken\n")
    response = requests.post(running.url + "-/reload", timeout=10)
    assert response.status_code == 500
    assert "line" in response.text and "column" in response.text
    m = running.scrape()
    assert m.value("sandbox_exporter_config_last_reload_successful") == 0
    assert m.value("sandbox_exporter_targets") == 3
    wait_until(
        lambda: (
            running.scrape().value("sandbox_probe_runs_total", target="third", probe="canary") >= 1
        )
    )


def test_reload_needs_post(running):
    response = requests.get(running.url + "-/reload", timeout=10)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_health_readiness_and_landing_page(running):
    assert requests.get(running.url + "-/healthy", timeout=10).status_code == 200
    wait_until(lambda: requests.get(running.url + "-/ready", timeout=10).status_code == 200)
    running.wait_for_all_probes()
    page = requests.get(running.url, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html")
    for text in ("old", "new", "metrics", 'name="target" value="new"'):
        assert text in page.text
    # java >=17 and no-such-command are missed on both sandboxes (one problem
    # each; the strips' tooltips name the outcome again, without the colon).
    assert page.text.count("2 expectations missed:") == 2
    assert requests.get(running.url + "nope", timeout=10).status_code == 404


def test_not_ready_until_every_target_was_probed(tmp_path, make_emulator):
    slow = make_emulator(api=3, faults={"*": Fault(latency=3)})
    path = tmp_path / "config.yml"
    path.write_text(f"targets:\n  - name: slow\n    url: {json.dumps(slow.url)}\n")
    instance = Running(path)
    try:
        assert requests.get(instance.url + "-/ready", timeout=10).status_code == 503
        wait_until(
            lambda: requests.get(instance.url + "-/ready", timeout=10).status_code == 200,
            timeout=30,
        )
    finally:
        instance.stop()


def test_metrics_scrape_does_no_network_io(running, sandboxes):
    running.wait_for_all_probes()
    running.loop.call_soon_threadsafe(running.exporter.scheduler.shutdown)
    for emulator in sandboxes.values():
        emulator.go_down()
    # With every sandbox unreachable and no scheduler, scrapes still render
    # the last results: they never reach out to a sandbox.
    m = running.scrape()
    assert m.value("sandbox_up", target="old") == 1
    assert m.value("sandbox_up", target="new") == 1


def test_without_scheduler_only_probe_requests_probe(tmp_path, sandboxes):
    path = write_config(tmp_path / "config.yml", sandboxes)
    server = RunningExporter(path, scheduled=False)
    try:
        # Ready at once: there is no round of scheduled probes to wait for.
        assert requests.get(server.url + "-/ready", timeout=10).status_code == 200
        threading.Event().wait(1.0)  # longer than a scheduled first run would take
        m = scrape(server.url + "metrics")
        assert m.value("sandbox_probe_runs_total", target="old", probe="canary") == 0
        probed = Scrape(
            requests.get(
                server.url + "probe", params={"target": "old", "probe": "canary"}, timeout=30
            ).text
        )
        assert probed.value("sandbox_probe_runs_total", target="old", probe="canary") == 1
        m = scrape(server.url + "metrics")
        assert m.value("sandbox_probe_runs_total", target="new", probe="canary") == 0
    finally:
        server.stop()


def test_probe_asks_a_failing_libraries_endpoint_once_per_interval(tmp_path, make_emulator):
    """/libraries/ starts a container: /probe adds it once its interval has
    passed since the last run, failed or not, never on every scrape."""
    broken = make_emulator(api=3, faults={"libraries": Fault(status=500)})
    path = tmp_path / "config.yml"
    path.write_text(
        json.dumps(
            {
                "defaults": {"intervals": {"libraries": "1h"}},
                "targets": [{"name": "t", "url": broken.url}],
            }
        )
    )
    server = RunningExporter(path, scheduled=False)
    try:
        for _ in range(3):
            requests.get(server.url + "probe", params={"target": "t"}, timeout=30)
        m = scrape(server.url + "metrics")
        assert m.value("sandbox_probe_runs_total", target="t", probe="libraries") == 1
        assert m.value("sandbox_probe_runs_total", target="t", probe="usage") == 3
    finally:
        server.stop()


def test_probe_and_metrics_answer_gzip_when_asked(running):
    running.wait_for_all_probes()
    for path, params in (("probe", {"target": "new", "probe": "canary"}), ("metrics", {})):
        zipped = requests.get(
            running.url + path,
            params=params,
            headers={"Accept-Encoding": "gzip"},
            stream=True,
            timeout=30,
        )
        assert zipped.headers["Content-Encoding"] == "gzip", path
        text = gzip.decompress(zipped.raw.read(decode_content=False)).decode()
        assert Scrape(text).find("sandbox_probe_runs_total", target="new"), path
        plain = requests.get(
            running.url + path, params=params, headers={"Accept-Encoding": "identity"}, timeout=30
        )
        assert "Content-Encoding" not in plain.headers, path
