"""The Icinga 2 and Nagios definitions of deploy/ under the real programs.

Icinga 2 validates the shipped CheckCommand and apply rule (`icinga2 daemon
-C`), then runs them: two hosts name an emulated sandbox each (one healthy,
by URL; one whose canary fails, by target name of a configuration), Icinga
checks both with `sandbox-exporter --once` and hands the results to its
GraphiteWriter, whose lines a listener of this test reads on loopback (the
states and the perfdata as Icinga parsed them); its state file then shows
the command lines it ran and the raw perfdata. Nagios 4 validates the
shipped commands and service (`nagios4 -v`), then runs both commands (by
target name and by URL) against two emulated sandboxes, read from its status
file. Everything runs in the test's temporary directory (see
monitoring_systems.py), as root or not.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import perfdata_format
import pytest
from monitoring_systems import Icinga, Nagios, icinga_state, nagios_main_config, nagios_verify

from sandbox_emulator import Fault

from helpers import wait_until

REPO = Path(__file__).resolve().parents[1]
ICINGA_DEFINITIONS = [
    REPO / "deploy" / "icinga2" / f for f in ("sandbox-exporter.conf", "sandbox-service.conf")
]
NAGIOS_DEFINITIONS = [
    REPO / "deploy" / "nagios" / f for f in ("sandbox-exporter.cfg", "sandbox-service.cfg")
]
SANDBOX_EXPORTER = str(Path(sys.executable).parent / "sandbox-exporter")
# Where the shipped files expect the program and its configuration.
OPT_BINARY = "/opt/sandbox-exporter/bin/sandbox-exporter"
ETC_CONFIG = "/etc/sandbox-exporter/config.yml"
# Icinga's GraphiteWriter names a service's series after host, service and command.
SERIES_PREFIX = "icinga2.{host}.services.sandbox.sandbox-exporter."
# Both checks, each its own --once within CHECK_TIMEOUT_SECONDS, plus Icinga's start.
RESULTS_TIMEOUT_SECONDS = 30.0
CHECK_TIMEOUT_SECONDS = 10


def icinga_config(hosts: str, extra: str = "") -> str:
    """A main configuration as a package installs it (the ITL and the plugin
    commands), the shipped definitions and the test's hosts."""
    includes = "\n".join(f'include "{path}"' for path in ICINGA_DEFINITIONS)
    # constants.conf of the package defines PluginDir, which <plugins> uses.
    head = 'const PluginDir = "/usr/lib/nagios/plugins"\ninclude <itl>\ninclude <plugins>\n'
    return f"{head}{includes}\n{extra}\n{hosts}\n"


def icinga_host(name: str, **variables: str | int) -> str:
    assignments = "".join(f"  vars.{k} = {json.dumps(v)}\n" for k, v in variables.items())
    return (
        f'object Host "{name}" {{\n  check_command = "dummy"\n  enable_active_checks = false\n'
        f"{assignments}}}\n"
    )


def test_icinga2_validates_the_shipped_definitions(tmp_path: Path) -> None:
    icinga = Icinga(tmp_path)
    hosts = (
        icinga_host("by-target", sandbox_target="pl sandbox 1")
        + icinga_host("by-url", sandbox_url="https://sandbox.example.org/")
        + icinga_host("not-a-sandbox")
    )
    icinga.config.write_text(icinga_config(hosts))
    done = icinga.validate()
    assert done.returncode == 0, done.stdout + done.stderr
    # The apply rule gives the two sandbox hosts their service, and only them.
    assert "Instantiated 2 Services." in done.stdout
    assert "Instantiated 3 Hosts." in done.stdout


def test_icinga2_refuses_a_service_whose_command_is_missing(tmp_path: Path) -> None:
    # Guard: the validation above can fail.
    icinga = Icinga(tmp_path)
    rule = ICINGA_DEFINITIONS[1]
    icinga.config.write_text(
        f'include <itl>\ninclude "{rule}"\n' + icinga_host("h", sandbox_url="x")
    )
    done = icinga.validate()
    assert done.returncode != 0
    assert "sandbox-exporter" in done.stdout + done.stderr


class GraphiteListener:
    """Graphite's plaintext protocol on loopback: `path value timestamp` lines."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self.connected = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return  # closed
            self.connected.set()
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        pending = b""
        with connection:
            while chunk := connection.recv(65536):
                *complete, pending = (pending + chunk).split(b"\n")
                with self._lock:
                    self.lines += [line.decode() for line in complete]

    def values(self, host: str) -> dict[str, float]:
        """The host's sandbox series, by path after the prefix (last value wins)."""
        prefix = SERIES_PREFIX.format(host=host)
        with self._lock:
            lines = list(self.lines)
        found = {}
        for line in lines:
            path, value, _ = line.split(" ")
            if path.startswith(prefix):
                found[path.removeprefix(prefix)] = float(value)
        return found

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def graphite() -> Iterator[GraphiteListener]:
    listener = GraphiteListener()
    yield listener
    listener.close()


@pytest.mark.timeout(90)
def test_icinga2_runs_the_check_and_reads_states_and_perfdata(
    tmp_path: Path, make_emulator, graphite: GraphiteListener
) -> None:
    healthy = make_emulator(api=3)
    failing = make_emulator(api=2)
    failing.set_fault("execute", Fault(status=500))
    # The failing sandbox is a target of a configuration, named with a space
    # (its perfdata label is quoted) and with both load thresholds.
    config = tmp_path / "sandbox-exporter.yml"
    config.write_text(
        "targets:\n"
        f"  - name: pl sandbox\n    url: {json.dumps(failing.url)}\n"
        "    thresholds: {load_warning: 0.5, load_critical: 0.75}\n"
    )
    command_pipe = tmp_path / "icinga2.cmd"
    features = (
        'object CheckerComponent "checker" { }\n'
        f'object ExternalCommandListener "command" {{ command_path = "{command_pipe}" }}\n'
        f'object GraphiteWriter "graphite" {{ host = "127.0.0.1"; port = {graphite.port}\n'
        "  enable_send_thresholds = true; enable_send_metadata = true }\n"
    )
    common = {"sandbox_exporter_binary": SANDBOX_EXPORTER, "sandbox_timeout": CHECK_TIMEOUT_SECONDS}
    hosts = icinga_host("healthy", sandbox_url=healthy.url, **common) + icinga_host(
        "failing", sandbox_target="pl sandbox", sandbox_config=str(config), **common
    )
    icinga = Icinga(tmp_path)
    icinga.config.write_text(icinga_config(hosts, features))
    started = time.monotonic()
    icinga.start()
    try:
        assert graphite.connected.wait(RESULTS_TIMEOUT_SECONDS), icinga.log()
        wait_until(command_pipe.exists, timeout=RESULTS_TIMEOUT_SECONDS)
        # The first checks would come at a random point of the shipped one-minute
        # interval: ask for them now, as an operator's "check now" does.
        now = int(time.time())
        with command_pipe.open("w") as pipe:
            for host in ("healthy", "failing"):
                pipe.write(f"[{now}] SCHEDULE_FORCED_SVC_CHECK;{host};sandbox;{now}\n")
        healthy_load = f"perfdata.{healthy.url.split('/')[2]}_load"
        expected = {
            "healthy": ("metadata.state", f"{healthy_load}.max"),
            "failing": ("metadata.state", "perfdata.pl_sandbox_load.max"),
        }

        def arrived() -> bool:
            return all(set(keys) <= set(graphite.values(h)) for h, keys in expected.items())

        try:
            wait_until(arrived, timeout=RESULTS_TIMEOUT_SECONDS, interval=0.1)
        except AssertionError:
            pytest.fail(f"results missing: {graphite.lines}\n{icinga.log()[-3000:]}")
    finally:
        icinga.stop()
    ok, critical = graphite.values("healthy"), graphite.values("failing")
    assert ok["metadata.state"] == 0
    # Icinga's parse of `HOST:PORT_load=0%;80;;0;100` (the URL's defaults) and
    # `HOST:PORT_canary_shell=...s;;;0`: values, thresholds, bounds.
    assert {k: v for k, v in ok.items() if k.startswith(healthy_load)} == {
        f"{healthy_load}.value": 0,
        f"{healthy_load}.warn": 80,
        f"{healthy_load}.min": 0,
        f"{healthy_load}.max": 100,
    }
    canary = healthy_load.removesuffix("_load") + "_canary_shell"
    assert 0 < ok[f"{canary}.value"] < CHECK_TIMEOUT_SECONDS
    assert ok[f"{canary}.min"] == 0 and f"{canary}.warn" not in ok
    # CRITICAL: its canary fails; `'pl sandbox_load'=0%;50;75;0;100` is one
    # label (Graphite's path turns the space into _), with both thresholds.
    assert critical["metadata.state"] == 2
    assert {k: v for k, v in critical.items() if k.startswith("perfdata.")} == {
        "perfdata.pl_sandbox_load.value": 0,
        "perfdata.pl_sandbox_load.warn": 50,
        "perfdata.pl_sandbox_load.crit": 75,
        "perfdata.pl_sandbox_load.min": 0,
        "perfdata.pl_sandbox_load.max": 100,
    }
    # What Icinga ran and kept: the arguments of each host's vars, the exit
    # codes, and perfdata that the guidelines' strict grammar reads.
    state = icinga_state(icinga.state_file)
    ran_ok = state["healthy!sandbox"]["last_check_result"]
    assert ran_ok["command"] == [
        SANDBOX_EXPORTER,
        "--once",
        "--output",
        "text",
        "--timeout",
        str(CHECK_TIMEOUT_SECONDS),
        "--url",
        healthy.url,
    ]
    assert ran_ok["exit_status"] == 0
    assert ran_ok["output"].startswith("SANDBOX OK - ")
    items = perfdata_format.parse(" ".join(ran_ok["performance_data"]))
    assert [(i.unit, i.warn, i.crit, i.min, i.max) for i in items.values()] == [
        ("%", 80, None, 0, 100),
        ("s", None, None, 0, None),
    ]
    ran_critical = state["failing!sandbox"]["last_check_result"]
    assert ran_critical["command"][2:] == [
        "--config.file",
        str(config),
        "--output",
        "text",
        "--target",
        "pl sandbox",
        "--timeout",
        str(CHECK_TIMEOUT_SECONDS),
    ]
    assert ran_critical["exit_status"] == 2
    assert "pl sandbox canary failing (http_status)" in ran_critical["output"]
    assert perfdata_format.parse(" ".join(ran_critical["performance_data"])) == {
        "pl sandbox_load": perfdata_format.Item("pl sandbox_load", 0, "%", 50, 75, 0, 100)
    }
    log = icinga.log()
    # Icinga warns of every perfdata item it cannot parse.
    assert "invalid perfdata" not in log.lower(), log
    assert "invalid performance data" not in log.lower(), log
    assert "Icinga has shut down" in log
    assert time.monotonic() - started < 60


def nagios_host(directory: Path, **variables: str) -> Path:
    lines = "".join(f"    _{k.upper()}    {v}\n" for k, v in variables.items())
    path = directory / "hosts.cfg"
    path.write_text(
        "define host {\n    use    linux-server\n    host_name    pl-sandbox-1\n"
        f"    address    127.0.0.1\n    hostgroups    sandboxes\n{lines}}}\n"
    )
    return path


def test_nagios_validates_the_shipped_definitions(tmp_path: Path) -> None:
    host = nagios_host(tmp_path, sandbox_target="pl sandbox 1")
    done = nagios_verify(nagios_main_config(tmp_path, [*NAGIOS_DEFINITIONS, host]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Total Errors:   0" in done.stdout
    assert "Checked 1 services." in done.stdout
    assert "Checked 4 commands." in done.stdout  # the two of the file, two stock ones


def test_nagios_refuses_the_service_without_its_commands(tmp_path: Path) -> None:
    # Guard: the validation above can fail.
    host = nagios_host(tmp_path, sandbox_target="pl sandbox 1")
    done = nagios_verify(nagios_main_config(tmp_path, [NAGIOS_DEFINITIONS[1], host]))
    assert done.returncode != 0
    assert "sandbox-exporter" in done.stdout


@pytest.mark.timeout(90)
def test_nagios_runs_both_commands_and_reads_states_and_perfdata(tmp_path: Path, make_emulator):
    healthy, failing = make_emulator(api=3), make_emulator(api=2)
    failing.set_fault("execute", Fault(status=500))
    config = tmp_path / "sandbox-exporter.yml"
    config.write_text(f"targets:\n  - name: pl sandbox\n    url: {json.dumps(healthy.url)}\n")
    # The shipped files with this machine's paths, as their comments say to adapt them.
    copies = []
    for shipped in NAGIOS_DEFINITIONS:
        text = shipped.read_text().replace(
            "/opt/sandbox-exporter/bin/sandbox-exporter", SANDBOX_EXPORTER
        )
        copies.append(tmp_path / shipped.name)
        copies[-1].write_text(text.replace("/etc/sandbox-exporter/config.yml", str(config)))
    # The healthy sandbox through the shipped hostgroup service (a target name
    # with a space); the failing one by URL, with its own service, as the guide says.
    hosts = tmp_path / "hosts.cfg"
    hosts.write_text(
        "define host {\n    use linux-server\n    host_name healthy\n    address 127.0.0.1\n"
        "    hostgroups sandboxes\n    _SANDBOX_TARGET pl sandbox\n}\n"
        "define host {\n    use linux-server\n    host_name failing\n    address 127.0.0.1\n"
        f"    _SANDBOX_URL {failing.url}\n}}\n"
        "define service {\n    use sandbox-exporter,generic-service\n    host_name failing\n"
        "    service_description sandbox\n    check_command check_sandbox_url\n"
        f"    _SANDBOX_TIMEOUT {CHECK_TIMEOUT_SECONDS}\n}}\n"
    )
    # interval_length 1: the template's check_interval of 1 becomes a second,
    # so the first checks come at once (the host checks are not wanted).
    settings = {"interval_length": 1, "status_update_interval": 1, "execute_host_checks": 0}
    nagios = Nagios(nagios_main_config(tmp_path, [*copies, hosts], settings=settings))
    started = time.monotonic()
    nagios.start()
    keys = {("healthy", "sandbox"), ("failing", "sandbox")}

    def checked() -> dict | None:
        services = nagios.services()
        done = all(services.get(k, {}).get("plugin_output", "").startswith("SANDBOX") for k in keys)
        return services if done else None

    try:
        # Read while it runs: Nagios deletes its status file when it stops.
        services = wait_until(checked, timeout=RESULTS_TIMEOUT_SECONDS, interval=0.2)
    except AssertionError:
        pytest.fail(f"results missing: {nagios.services()}\n{nagios.log()[-3000:]}")
    finally:
        nagios.stop()
    ok, critical = services[("healthy", "sandbox")], services[("failing", "sandbox")]
    assert ok["current_state"] == "0", ok
    assert ok["plugin_output"] == "SANDBOX OK - 1 ok of 1 target"
    items = perfdata_format.parse(ok["performance_data"])
    assert list(items) == ["pl sandbox_load", "pl sandbox_canary_shell"]
    assert items["pl sandbox_load"] == perfdata_format.Item(
        "pl sandbox_load", 0, "%", 80, None, 0, 100
    )
    assert critical["current_state"] == "2", critical
    assert "canary failing (http_status)" in critical["plugin_output"]
    host = failing.url.split("/")[2]
    assert list(perfdata_format.parse(critical["performance_data"])) == [f"{host}_load"]
    assert time.monotonic() - started < 60
