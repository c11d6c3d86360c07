"""The report of `--once` as monitoring systems read it: one `|` between text
and perfdata, perfdata that the guidelines' strict grammar accepts (see
perfdata_format.py), labels unique and the same from run to run, each
target with its own. Runs probe real emulators; test_monitoring_plugins.py
has Icinga 2 itself read the same output.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import perfdata_format

from sandbox_emulator import Fault
from sandbox_exporter.client import Sandbox
from sandbox_exporter.config import Config, load_config
from sandbox_exporter.once import render_text, run_once
from sandbox_exporter.plugin_output import labels

from helpers import wait_until

TIMEOUT_SECONDS = 10.0


def config(tmp_path: Path, targets: list[dict]) -> Config:
    path = tmp_path / "config.yml"
    path.write_text(json.dumps({"targets": targets}))
    return load_config(path)


def check(configuration: Config) -> str:
    _, verdicts = run_once(configuration, timeout=TIMEOUT_SECONDS)
    return render_text(verdicts)


def test_each_target_has_its_own_labels_units_thresholds_and_bounds(tmp_path, make_emulator):
    one, two = make_emulator(api=3), make_emulator(api=2, containers=4)
    two.set_fault("execute", Fault(status=500))  # no answer to time: no round trip
    canaries = [
        {"name": "shell", "commands": ["echo 4"], "expect_stdout": "4"},
        {"name": "python", "commands": ["echo 5"], "expect_stdout": "5"},
    ]
    configuration = config(
        tmp_path,
        [
            {"name": "pl sandbox 1", "url": one.url, "canaries": canaries},
            {
                "name": "pl-sandbox-2",
                "url": two.url,
                "thresholds": {"load_warning": 0.5, "load_critical": 0.75},
            },
        ],
    )
    output = check(configuration)
    items = perfdata_format.of_output(output)
    assert list(items) == [
        "pl sandbox 1_load",
        "pl sandbox 1_canary_shell",
        "pl sandbox 1_canary_python",
        "pl-sandbox-2_load",
    ]
    assert items["pl sandbox 1_load"] == perfdata_format.Item(
        "pl sandbox 1_load", 0, "%", 80, None, 0, 100
    )
    for canary in ("shell", "python"):
        item = items[f"pl sandbox 1_canary_{canary}"]
        assert item.unit == "s" and 0 < item.value < TIMEOUT_SECONDS
        assert (item.warn, item.crit, item.min, item.max) == (None, None, 0, None)
    assert items["pl-sandbox-2_load"] == perfdata_format.Item(
        "pl-sandbox-2_load", 0, "%", 50, 75, 0, 100
    )
    # Only the first line carries perfdata: no `|` in the lines per target.
    assert all("|" not in line for line in output.splitlines()[1:])


def test_the_load_is_a_percentage_of_the_pool(tmp_path, make_emulator):
    emulator = make_emulator(api=2, containers=4)
    configuration = config(
        tmp_path,
        [
            {
                "name": "busy",
                "url": emulator.url,
                "canaries": [],
                "thresholds": {"load_warning": 0.2},
            }
        ],
    )
    # Another client's program holds one of the four containers.
    holder = threading.Thread(
        target=Sandbox(emulator.url).execute, args=({"commands": ["sleep 3"]},), daemon=True
    )
    holder.start()
    wait_until(lambda: emulator.busy_containers == 1, timeout=10)
    output = check(configuration)
    assert output.startswith("SANDBOX WARNING - ")
    assert perfdata_format.of_output(output)["busy_load"] == perfdata_format.Item(
        "busy_load", 25, "%", 20, None, 0, 100
    )
    holder.join(timeout=10)


def test_labels_stay_the_same_when_a_target_goes_down(tmp_path, make_emulator):
    up, going = make_emulator(api=3), make_emulator(api=3)
    configuration = config(
        tmp_path, [{"name": "up", "url": up.url}, {"name": "going", "url": going.url}]
    )
    before = perfdata_format.of_output(check(configuration))
    going.go_down()
    after = perfdata_format.of_output(check(configuration))
    assert list(before) == ["up_load", "up_canary_shell", "going_load", "going_canary_shell"]
    # What could not be measured is left out (no `U`); the rest keeps its label.
    assert list(after) == ["up_load", "up_canary_shell"]


def test_labels_are_unique_when_names_would_collide(tmp_path):
    configuration = config(
        tmp_path,
        [
            {
                "name": "a",
                "url": "http://127.0.0.1:1/",
                "canaries": [{"name": "b_load", "commands": ["true"]}],
            },
            {"name": "a_canary_b", "url": "http://127.0.0.1:2/"},
            {"name": "it's a=b", "url": "http://127.0.0.1:3/", "canaries": []},
        ],
    )
    found = labels(configuration.targets)
    assert found[("a", "canary b_load")] == "a_canary_b_load"
    assert found[("a_canary_b", "load")] == "a_canary_b_load_2"
    assert found[("it's a=b", "load")] == "it_s a_b_load"
    assert len(set(found.values())) == len(found)
    # Built from the configuration alone: the same list gives the same labels.
    assert labels(configuration.targets) == found


def test_a_pipe_in_a_name_or_message_does_not_split_the_output(tmp_path, make_emulator):
    emulator = make_emulator(api=3)
    emulator.set_fault("execute", Fault(status=500, body="broken | really"))
    configuration = config(tmp_path, [{"name": "a|b", "url": emulator.url}])
    output = check(configuration)
    first, *rest = output.splitlines()
    assert first.count("|") == 1
    assert first.startswith("SANDBOX CRITICAL - 1 critical of 1 target: a/b canary failing")
    assert rest[0].startswith("[CRITICAL] a/b: ")
    assert "|" not in "".join(rest)
    assert list(perfdata_format.of_output(output)) == ["a_b_load"]
