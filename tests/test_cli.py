"""The command line as a user runs it: subprocesses, real emulators, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import ExporterProcess

from sandbox_emulator import Fault

from helpers import free_port, scrape, wait_until

FAST = "defaults:\n  timeouts: {specifications: 5s, usage: 5s, libraries: 5s, canary: 5s}\n"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def config_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text(body)
    return str(path)


def one_target(url: str, extra: str = "") -> str:
    return FAST + f"targets:\n  - name: sb\n    url: {json.dumps(url)}\n" + extra


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert "sandbox-exporter" in result.stdout


def test_once_ok(tmp_path, make_emulator):
    emulator = make_emulator(api=3)
    result = run_cli("--once", "-c", config_file(tmp_path, one_target(emulator.url)))
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("SANDBOX OK - ")
    assert "|" in first and "sb_load=0%;80;;0;100" in first and "sb_canary_shell=" in first
    assert "Traceback" not in result.stderr


def test_once_warning_when_an_expectation_is_missed(tmp_path, make_emulator):
    emulator = make_emulator(api=2)
    extra = "    expect:\n      languages: {java: '>=17'}\n"
    result = run_cli("--once", "-c", config_file(tmp_path, one_target(emulator.url, extra)))
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("SANDBOX WARNING - ")
    assert "java" in result.stdout


def test_once_warning_when_load_is_high(tmp_path, make_emulator):
    emulator = make_emulator(api=2, containers=1)
    extra = "    thresholds: {load_warning: 0.5}\n"
    path = config_file(tmp_path, one_target(emulator.url, extra))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from sandbox_exporter.client import Sandbox; "
                f"Sandbox({emulator.url!r}).execute({{'commands': ['sleep 4']}})"
            ),
        ]
    )
    try:
        wait_until(lambda: emulator.busy_containers == 1, timeout=15)
        result = run_cli("--once", "--output", "json", "-c", path)
    finally:
        holder.wait(timeout=30)
    report = json.loads(result.stdout)
    assert report["targets"][0]["load_ratio"] == 1.0
    assert any("load" in p for p in report["targets"][0]["problems"])
    assert result.returncode >= 1


def test_once_critical_when_unreachable(tmp_path, make_emulator):
    emulator = make_emulator(api=3)
    emulator.go_down()
    result = run_cli("--once", "-c", config_file(tmp_path, one_target(emulator.url)))
    assert result.returncode == 2
    assert result.stdout.startswith("SANDBOX CRITICAL - ")
    assert "connection" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_once_critical_when_the_canary_fails(tmp_path, make_emulator):
    emulator = make_emulator(api=2)
    extra = "    canaries:\n      - {name: shell, commands: ['echo 5'], expect_stdout: '4'}\n"
    result = run_cli("--once", "-c", config_file(tmp_path, one_target(emulator.url, extra)))
    assert result.returncode == 2
    assert "unexpected_output" in result.stdout


def test_once_json_output(tmp_path, make_emulator):
    emulator = make_emulator(api=3)
    emulator.set_fault("libraries", Fault(status=500))
    result = run_cli(
        "--once", "--output", "json", "-c", config_file(tmp_path, one_target(emulator.url))
    )
    report = json.loads(result.stdout)
    assert report["status"] == "WARNING" and report["exit_code"] == 1 == result.returncode
    probes = report["targets"][0]["probes"]
    assert probes["libraries"]["reason"] == "http_status"
    assert probes["canary"]["success"] is True


def test_once_with_url_and_no_config(make_emulator):
    emulator = make_emulator(api=2)
    result = run_cli("--once", "--url", emulator.url)
    assert result.returncode == 0, result.stdout + result.stderr


def test_once_target_filter(tmp_path, make_emulator):
    good, bad = make_emulator(api=3), make_emulator(api=3)
    bad.go_down()
    body = FAST + (
        f"targets:\n  - name: good\n    url: {json.dumps(good.url)}\n"
        f"  - name: bad\n    url: {json.dumps(bad.url)}\n"
    )
    path = config_file(tmp_path, body)
    assert run_cli("--once", "-c", path).returncode == 2
    assert run_cli("--once", "-c", path, "--target", "good").returncode == 0
    unknown = run_cli("--once", "-c", path, "--target", "nope")
    assert unknown.returncode == 3 and "nope" in unknown.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--once", "-c", "/nonexistent/config.yml"],
        ["--once", "--bogus-flag"],
    ],
)
def test_once_unknown_on_bad_config_or_arguments(args):
    result = run_cli(*args)
    assert result.returncode == 3
    assert "Traceback" not in result.stdout + result.stderr


def test_config_check(tmp_path):
    good = config_file(tmp_path, "targets:\n  - name: a\n    url: http://127.0.0.1:1/\n")
    result = run_cli("--config.check", "-c", good)
    assert result.returncode == 0 and "valid" in result.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text("targets:\n  - name: a\n    url: http://127.0.0.1:1/\n    canaries: 3\n")
    result = run_cli("--config.check", "-c", str(bad))
    assert result.returncode == 1
    assert "targets[0].canaries" in result.stderr


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("prometheus.yml", "global: {scrape_interval: 15s}\nscrape_configs: []\n"),
        ("alertmanager.yml", "route: {receiver: x}\nreceivers: [{name: x}]\n"),
        ("rules.yml", "groups: [{name: g, rules: [{record: r, expr: '1'}]}]\n"),
    ],
)
def test_config_check_names_the_checker_of_another_programs_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("--config.check", "-c", str(path))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    checker = line.split("check it with: ", 1)[1]
    # The advice works as given: the named tool accepts the file.
    program, *arguments = checker.split()
    tool = shutil.which(program)
    assert tool is not None, f"{program} is not installed: ./scripts/test installs it"
    done = subprocess.run([tool, *arguments], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, checker + "\n" + done.stdout + done.stderr


@pytest.mark.parametrize(
    ("targets", "summary"),
    [(0, "config valid: 0 targets"), (1, "config valid: 1 target"), (2, "config valid: 2 targets")],
)
def test_config_check_counts_targets_in_words(tmp_path, targets, summary):
    body = "".join(f"  - name: t{i}\n    url: http://127.0.0.1:1/\n" for i in range(targets))
    result = run_cli("--config.check", "-c", config_file(tmp_path, f"targets:\n{body}"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == summary + "\n"
    # Valid, but a configuration that watches nothing says so where warnings go.
    assert ("watch nothing" in result.stderr) == (targets == 0), result.stderr


def test_an_empty_file_is_valid_and_watches_nothing_and_once_is_unknown(tmp_path):
    empty = config_file(tmp_path, "")
    result = run_cli("--config.check", "-c", empty)
    assert result.returncode == 0 and result.stdout == "config valid: 0 targets\n"
    assert (
        result.stderr
        == f"warning: {empty}: it lists no targets: the exporter would watch nothing\n"
    )
    once = run_cli("--once", "-c", empty)
    assert once.returncode == 3, once.stdout + once.stderr
    assert once.stdout.startswith("SANDBOX UNKNOWN - no targets")


def test_a_daemon_without_targets_warns_that_it_watches_nothing(tmp_path):
    daemon = ExporterProcess("-c", config_file(tmp_path, "targets: []\n"))
    try:
        daemon.wait_serving()
    finally:
        code, _, err = daemon.terminate()
    assert code == 0, err
    assert "with 0 targets" in err
    assert "it lists no targets: the exporter would watch nothing" in err


def test_daemon_reloads_on_sighup_and_stops_on_sigterm(tmp_path, make_emulator):
    emulator = make_emulator(api=3)
    path = tmp_path / "config.yml"
    path.write_text(one_target(emulator.url))
    daemon = ExporterProcess("-c", str(path), "--log.format", "json")
    try:
        daemon.wait_serving()
        assert scrape(daemon.url + "metrics").value("sandbox_exporter_targets") == 1
        path.write_text(
            one_target(emulator.url) + f"  - name: second\n    url: {json.dumps(emulator.url)}\n"
        )
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: scrape(daemon.url + "metrics").value("sandbox_exporter_targets") == 2,
            timeout=20,
        )
        path.write_text("targets: {")
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: (
                scrape(daemon.url + "metrics").value(
                    "sandbox_exporter_config_last_reload_successful"
                )
                == 0
            ),
            timeout=20,
        )
        assert scrape(daemon.url + "metrics").value("sandbox_exporter_targets") == 2
    finally:
        code, _, err = daemon.terminate()
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("reload failed" in line["msg"] for line in lines)
    # Counts agree in number.
    assert any(line["msg"].endswith(" with 1 target") for line in lines), lines
    assert any(line["msg"] == "config reloaded: 2 targets" for line in lines), lines
    assert "Traceback" not in err


def test_daemon_refuses_to_start_with_a_bad_config(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("targets: 5\n")
    result = run_cli("-c", str(path), "--web.listen-address", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "targets" in result.stderr


def test_demo_starts_and_serves_metrics():
    daemon = ExporterProcess("--demo")
    try:
        daemon.wait_serving()

        def demo_probed():
            m = scrape(daemon.url + "metrics")
            return m.get("sandbox_up", target="demo-v3") == 1 and m

        m = wait_until(demo_probed, timeout=60, interval=0.5)
        assert m.value("sandbox_exporter_targets") == 3
        faulty = wait_until(
            lambda: scrape(daemon.url + "metrics").get(
                "sandbox_probe_failures_total",
                target="demo-faulty",
                probe="canary",
                reason="overloaded",
            ),
            timeout=60,
            interval=0.5,
        )
        assert faulty >= 1
    finally:
        code, out, err = daemon.terminate()
    assert code == 0, err
    assert "landing page" in out and daemon.url in out
    assert "Traceback" not in err


def test_sigterm_stops_promptly_even_mid_probe(tmp_path, make_emulator):
    emulator = make_emulator(api=3, faults={"*": Fault(latency=20)})
    path = tmp_path / "config.yml"
    path.write_text(f"targets:\n  - name: slow\n    url: {json.dumps(emulator.url)}\n")
    daemon = ExporterProcess("-c", str(path))
    daemon.wait_serving()
    time.sleep(0.5)
    code, _, err = daemon.terminate()
    assert code == 0, err


def test_environment_is_not_needed_for_help():
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_exporter.cli", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0
    assert "--web.listen-address" in result.stdout


@pytest.mark.parametrize(
    ("argv", "address"),
    [
        ([], ":9929"),
        (["--demo"], "127.0.0.1:9929"),
        (["--demo", "--web.listen-address", ":8080"], ":8080"),
        (["--web.listen-address", "127.0.0.1:1234"], "127.0.0.1:1234"),
    ],
)
def test_listen_address_defaults_to_loopback_for_the_demo(argv, address):
    from sandbox_exporter.cli import build_parser, listen_address_for

    assert listen_address_for(build_parser().parse_args(argv)) == address


@pytest.mark.parametrize(
    ("severities", "expected"),
    [("{}", 2), ("{canary_failed: warning}", 1), ("{overloaded: warning}", 2)],
)
def test_once_canary_severity_is_configurable(tmp_path, make_emulator, severities, expected):
    emulator = make_emulator(api=3)
    extra = (
        "    canaries:\n      - {name: shell, commands: ['echo 5'], expect_stdout: '4'}\n"
        f"    severities: {severities}\n"
    )
    result = run_cli("--once", "-c", config_file(tmp_path, one_target(emulator.url, extra)))
    assert result.returncode == expected, result.stdout


def test_once_report_is_short_first_and_detailed_per_target(tmp_path, make_emulator):
    healthy, gone = make_emulator(api=3), make_emulator(api=2)
    gone.go_down()
    body = FAST + (
        f"targets:\n  - name: healthy\n    url: {json.dumps(healthy.url)}\n"
        f"  - name: gone\n    url: {json.dumps(gone.url)}\n"
    )
    result = run_cli("--once", "-c", config_file(tmp_path, body))
    first, *per_target = result.stdout.splitlines()
    summary, perfdata = first.split(" | ")
    assert (
        summary == "SANDBOX CRITICAL - 1 critical, 1 ok of 2 targets: gone unreachable (connection)"
    )
    assert perfdata.startswith("healthy_load=0%;80;;0;100 healthy_canary_shell=")
    assert per_target[0].startswith("[OK] healthy: sandbox 3.0.3")
    # An unreachable sandbox is one problem, with its detail, not four.
    assert per_target[1].startswith("[CRITICAL] gone: unreachable (connection): GET http")
    assert per_target[1].count("connection") == 2  # the reason, and the error's own words
