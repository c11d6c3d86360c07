"""The emulator behaves like the real sandbox server of each generation.

Raw HTTP with `requests` (and raw sockets where requests would hide what is on
the wire), against emulators on loopback. Recorded samples of the real server
are in tests/fixtures/v2 and v3.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_emulator import Emulator, Fault, default_libraries, parse_fault_spec

from helpers import make_tgz, wait_until

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 30  # seconds; bounds every request so a broken emulator fails instead of hanging
NOT_FOUND_TITLE = "<title>Not Found</title>"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HTML = "text/html; charset=utf-8"


# --- helpers -------------------------------------------------------------------


def sample(api: int, name: str) -> dict:
    return json.loads((FIXTURES / f"v{api}" / f"{name}.json").read_text())


def get(emulator: Emulator, path: str, **kwargs) -> requests.Response:
    return requests.get(emulator.url + path, timeout=TIMEOUT, **kwargs)


def execute(
    emulator: Emulator, config: object, environment: bytes | None = None
) -> requests.Response:
    files = {"config": (None, config if isinstance(config, str) else json.dumps(config))}
    if environment is not None:
        files["environment"] = ("environment.tgz", environment, "application/gzip")
    return requests.post(emulator.url + "execute/", files=files, timeout=TIMEOUT)


def shape(document: object) -> object:
    """The structure of a JSON document: keys, nesting and leaf types.

    Device names (keys starting with '/') differ between hosts, so they are
    normalised; a list is represented by its first element's shape.
    """
    if isinstance(document, dict):
        return {
            ("<device>" if key.startswith("/") else key): shape(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [shape(document[0])] if document else []
    return type(document).__name__


def raw_exchange(emulator: Emulator, payload: bytes, read_timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the emulator sends before closing."""
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=read_timeout) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)  # the whole request is sent: no waiting for more
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie waiting for its reaper is dead too


class Gate:
    """An execute that holds its container until the test opens the gate."""

    def __init__(self, emulator: Emulator, directory: Path, name: str = "gate") -> None:
        self.path = directory / name
        command = f"while [ ! -e {shlex.quote(str(self.path))} ]; do sleep 0.02; done; echo open"
        self.response: requests.Response | None = None
        self.thread = threading.Thread(
            target=self._run, args=(emulator, {"commands": [command]}), daemon=True
        )
        self.thread.start()

    def _run(self, emulator: Emulator, config: dict) -> None:
        self.response = execute(emulator, config)

    def open(self) -> requests.Response:
        self.path.touch()
        self.thread.join(TIMEOUT)
        assert self.response is not None
        return self.response


@pytest.fixture(params=[2, 3], ids=["v2", "v3"])
def emulator(request, make_emulator) -> Emulator:
    """One emulator of each generation, for behaviour both share."""
    return make_emulator(api=request.param)


# --- configuration and life cycle ----------------------------------------------


def test_defaults_match_the_real_server():
    emulator = Emulator()
    assert emulator.api == 3
    assert emulator.containers == 5
    assert emulator.usage_delay == 2.0  # the real server samples I/O for 2 s
    assert emulator.libraries_delay == 1.0
    assert emulator.overload_wait == 2.0
    assert emulator.execute_timeout == 10.0
    assert emulator.restart_delay == 0.0
    assert emulator.faults == {}


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"api": 4}, ValueError, "api must be 2 or 3"),
        ({"api": True}, ValueError, "api must be 2 or 3"),
        ({"containers": -1}, ValueError, "containers must be an integer >= 0"),
        ({"containers": 2.5}, ValueError, "containers must be an integer >= 0"),
        ({"port": 70000}, ValueError, "port must be an integer 0..65535"),
        ({"usage_delay": -1}, ValueError, "usage_delay must be a finite number >= 0"),
        ({"libraries_delay": float("nan")}, ValueError, "libraries_delay must be a finite"),
        ({"overload_wait": "2"}, TypeError, "overload_wait must be a number of seconds"),
        ({"libraries": "x"}, TypeError, "libraries document must be a JSON object"),
        ({"faults": {"nope": Fault()}}, ValueError, "unknown endpoint 'nope'"),
        ({"faults": {"execute": 500}}, TypeError, "expected a Fault"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        Emulator(**kwargs)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_refuses_non_loopback_addresses(host):
    with pytest.raises(ValueError, match=r"non-loopback.*allow_remote=True"):
        Emulator(host=host)


def test_allow_remote_lifts_the_loopback_guard():
    # Constructed only: tests never listen beyond loopback.
    assert Emulator(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"


def test_localhost_is_loopback(make_emulator):
    emulator = make_emulator(host="localhost")
    assert get(emulator, "specifications/").status_code == 200


def test_url_has_the_trailing_slash_and_the_bound_port(emulator_v3):
    assert emulator_v3.url == f"http://127.0.0.1:{emulator_v3.port}/"
    assert emulator_v3.port > 0


def test_url_before_start_and_second_start_are_errors():
    emulator = Emulator(usage_delay=0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = emulator.url
    with emulator, pytest.raises(RuntimeError, match="already started"):
        emulator.start()


def test_context_manager_starts_and_stops():
    with Emulator(api=2, libraries_delay=0) as emulator:
        assert get(emulator, "specifications/").status_code == 200
        workdir = emulator.workdir
        assert workdir.is_dir()
    assert not workdir.exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(emulator.url + "specifications/", timeout=TIMEOUT)


def emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("emulator-")]


def test_stop_kills_running_commands_and_leaves_nothing_behind(tmp_path):
    assert emulator_threads() == []
    emulator = Emulator(containers=2, execute_timeout=60, restart_delay=30).start()
    pid_file = tmp_path / "pid"
    # A command that would outlive the test, plus a background job of its own.
    command = f"sleep 60 & echo $! > {shlex.quote(str(pid_file))}; wait"
    holder = threading.Thread(
        target=lambda: _swallow(lambda: execute(emulator, {"commands": [command]})), daemon=True
    )
    holder.start()
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()))
    # A second container stuck in a long restart must not hold stop() either.
    assert execute(emulator, {"commands": ["true"]}).status_code == 200
    workdir = emulator.workdir

    emulator.stop()

    holder.join(TIMEOUT)
    assert not holder.is_alive()
    wait_until(lambda: process_gone(pid))
    assert not workdir.exists()
    assert emulator_threads() == []
    emulator.stop()  # a second stop is harmless


def _swallow(call) -> None:
    with contextlib.suppress(requests.RequestException):
        call()


# --- routes and quirks -----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "specifications",
        "libraries",
        "execute",
        "environments/0b5e2cf2-6b0a-4c8e-9d1c-6a4f35b3f0a1",
        "environments/not-a-uuid/",
        "environments/0B5E2CF2-6B0A-4C8E-9D1C-6A4F35B3F0A1/",
        "files/not-a-uuid/a.txt/",
        "nope/",
    ],
)
def test_unknown_paths_get_djangos_not_found_page(emulator, path):
    response = get(emulator, path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == HTML
    assert NOT_FOUND_TITLE in response.text
    assert "<h1>Not Found</h1>" in response.text


def test_v2_has_no_usages_route(emulator_v2):
    response = get(emulator_v2, "usages/")
    assert response.status_code == 404
    assert NOT_FOUND_TITLE in response.text


def test_every_answer_closes_the_connection(emulator):
    for response in (
        get(emulator, "specifications/"),
        get(emulator, "nope"),
        requests.post(emulator.url + "specifications/", timeout=TIMEOUT),
        execute(emulator, {"commands": ["true"]}),
    ):
        assert response.headers["Connection"] == "close"


def test_v3_wrong_method_is_an_empty_405_with_allow(emulator_v3):
    response = requests.post(emulator_v3.url + "specifications/", timeout=TIMEOUT)
    assert response.status_code == 405
    assert response.content == b""
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    response = get(emulator_v3, "execute/")
    assert response.status_code == 405
    assert response.content == b""
    assert response.headers["Allow"] == "POST, OPTIONS"
    response = requests.request("PATCH", emulator_v3.url + "libraries/", timeout=TIMEOUT)
    assert response.status_code == 405


@pytest.mark.parametrize("path", ["specifications/", "usages/", "libraries/"])
def test_v3_head_and_options_on_get_views_answer_200(emulator_v3, path):
    head = requests.head(emulator_v3.url + path, timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) > 0
    assert head.headers["Content-Type"] == "application/json"
    options = requests.options(emulator_v3.url + path, timeout=TIMEOUT)
    assert options.status_code == 200
    assert options.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert options.content == b""


def test_v3_options_on_execute_lists_post(emulator_v3):
    response = requests.options(emulator_v3.url + "execute/", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Allow"] == "POST, OPTIONS"


def test_v2_wrong_method_names_the_method_in_the_body(emulator_v2):
    response = requests.post(emulator_v2.url + "specifications/", timeout=TIMEOUT)
    assert response.status_code == 405
    assert response.text == "405 Method Not Allowed : POST"
    assert response.headers["Content-Type"] == HTML
    response = get(emulator_v2, "execute/")
    assert response.status_code == 405
    assert response.text == "405 Method Not Allowed : GET"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_v2_head_and_options_on_get_views_are_405_too(emulator_v2, method):
    response = requests.request(method, emulator_v2.url + "specifications/", timeout=TIMEOUT)
    assert response.status_code == 405
    if method == "OPTIONS":
        assert response.text == "405 Method Not Allowed : OPTIONS"


# --- /specifications/ /usages/ /libraries/ ---------------------------------------


def test_specifications_have_the_samples_shape(emulator):
    response = get(emulator, "specifications/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    document = response.json()
    assert shape(document) == shape(sample(emulator.api, "specifications"))


def test_v3_specifications_values(emulator_v3):
    document = get(emulator_v3, "specifications/").json()
    assert document["container"]["count"] == emulator_v3.containers
    assert document["host"]["sandbox_version"] == "3.0.3"
    assert document["host"]["cpu"]["logical"] == os.cpu_count()
    assert document["host"]["memory"]["ram"] > 0
    device = document["container"]["working_dir_device"]
    assert document["host"]["memory"]["storage"][device] > 0
    assert document["container"]["memory"] == {
        "ram": 100_000_000,
        "swap": 100_000_000,
        "storage": -1,
    }


def test_v2_specifications_values(emulator_v2):
    document = get(emulator_v2, "specifications/").json()
    assert document["containers"] == {"total": 3, "running": 0, "available": 3}
    assert document["memory"] == {"ram": "100m", "swap": "200m", "storage": "host"}
    assert document["sandbox_version"] == "2.0.3"
    assert document["execute_timeout"] == emulator_v2.execute_timeout
    assert document["expiration"] == 86400


def test_v2_specifications_count_busy_containers(emulator_v2, tmp_path):
    gate = Gate(emulator_v2, tmp_path)
    wait_until(lambda: emulator_v2.busy_containers == 1)
    assert get(emulator_v2, "specifications/").json()["containers"] == {
        "total": 3,
        "running": 1,
        "available": 2,
    }
    assert gate.open().json()["execution"][0]["stdout"] == "open"
    wait_until(lambda: emulator_v2.busy_containers == 0)
    assert get(emulator_v2, "specifications/").json()["containers"]["running"] == 0


def test_v3_usages_have_the_samples_shape_and_count_busy_containers(emulator_v3, tmp_path):
    idle = get(emulator_v3, "usages/")
    assert idle.status_code == 200
    assert idle.headers["Content-Type"] == "application/json"
    assert shape(idle.json()) == shape(sample(3, "usages"))
    assert idle.json()["container"] == 0

    gates = [Gate(emulator_v3, tmp_path, f"gate{i}") for i in range(2)]
    wait_until(lambda: emulator_v3.busy_containers == 2)
    busy = get(emulator_v3, "usages/").json()
    assert shape(busy) == shape(sample(3, "usages_busy"))
    assert busy["container"] == 2
    assert 0.0 <= busy["cpu"]["usage"] <= 1.0
    assert len(busy["cpu"]["usage_avg"]) == 3
    assert busy["process"] > 0
    for gate in gates:
        assert gate.open().status_code == 200


def test_usages_take_the_configured_delay(make_emulator):
    emulator = make_emulator(api=3, usage_delay=0.3)
    started = time.monotonic()
    assert get(emulator, "usages/").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_libraries_default_documents(emulator):
    response = get(emulator, "libraries/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == default_libraries(emulator.api)
    assert shape(response.json()) == shape(sample(emulator.api, "libraries"))


def test_v2_libraries_carry_language_versions_and_v3_do_not(emulator_v2, emulator_v3):
    v2 = get(emulator_v2, "libraries/").json()
    assert v2["g++"] and v2["python3"] and v2["postgres"]
    v3 = get(emulator_v3, "libraries/").json()
    assert set(v3) == {"libraries", "bin"}


def test_libraries_take_the_configured_delay(make_emulator):
    emulator = make_emulator(libraries_delay=0.3)
    started = time.monotonic()
    assert get(emulator, "libraries/").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_libraries_replaced_at_start_and_while_running(make_emulator):
    first = {"libraries": {"system": {"bash": "1"}, "python": {}, "perl": {}, "c": {}}, "bin": []}
    emulator = make_emulator(libraries=first)
    assert get(emulator, "libraries/").json() == first
    second = {
        "libraries": {"system": {"bash": "2"}, "python": {}, "perl": {}, "c": {}},
        "bin": ["x"],
    }
    emulator.set_libraries(second)
    assert get(emulator, "libraries/").json() == second
    with pytest.raises(TypeError, match="JSON object"):
        emulator.set_libraries("not a document")
    with pytest.raises(ValueError, match="not JSON-serializable"):
        emulator.set_libraries({"bin": [object()]})
    assert get(emulator, "libraries/").json() == second


# --- /execute/: config errors ------------------------------------------------------

UNKNOWN_ENV = "0b5e2cf2-6b0a-4c8e-9d1c-6a4f35b3f0a1"
BAD_CONFIGS = [
    ("{", 400, "'config' json is invalid - Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1)"),
    ("", 400, "'config' json is invalid - Expecting value: line 1 column 1 (char 0)"),
    ("[]", 400, "config must be an object, not <class 'list'>"),
    ('"x"', 400, "config must be an object, not <class 'str'>"),
    ("{}", 400, "Missing field 'commands' in config"),
    ('{"commands": "ls"}', 400, "commands must be a list, not <class 'str'>"),
    ('{"commands": {"a": 1}}', 400, "commands must be a list, not <class 'dict'>"),
    ('{"commands": [42]}', 400, "Command badly formatted : '42'"),
    ('{"commands": [null]}', 400, "Command badly formatted : 'None'"),
    ('{"commands": [{"command": 1}]}', 400, "Command badly formatted : '{'command': 1}'"),
    (
        '{"commands": [{"command": "ls", "timeout": "5"}]}',
        400,
        "Command badly formatted : '{'command': 'ls', 'timeout': '5'}'",
    ),
    ('{"commands": ["ls"], "environ": []}', 400, "environ must be an object, not <class 'list'>"),
    (
        '{"commands": ["ls"], "result_path": 1}',
        400,
        "result_path must be a string, not <class 'int'>",
    ),
    ('{"commands": ["ls"], "save": "yes"}', 400, "save must be a boolean, not <class 'str'>"),
    (
        json.dumps({"commands": ["ls"], "environment": UNKNOWN_ENV}),
        404,
        f"No environment with UUID '{UNKNOWN_ENV}' found",
    ),
    # The saved environment is looked up before anything else is checked.
    (json.dumps({"environment": "nope"}), 404, "No environment with UUID 'nope' found"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "status", "message"), BAD_CONFIGS)
def test_bad_configs_get_the_real_error_texts(emulator, config, status, message):
    response = execute(emulator, config)
    assert response.status_code == status
    assert response.headers["Content-Type"] == HTML
    assert response.text == message
    assert emulator.busy_containers == 0  # refused before a container is taken


def test_missing_config_field(emulator):
    response = requests.post(
        emulator.url + "execute/", files={"other": (None, "{}")}, timeout=TIMEOUT
    )
    assert response.status_code == 400
    assert response.text == "Missing argument 'config'"
    # A config sent as a file is not a form field either (Django puts it in FILES).
    response = requests.post(
        emulator.url + "execute/", files={"config": ("c.json", b"{}")}, timeout=TIMEOUT
    )
    assert response.text == "Missing argument 'config'"
    # No body at all.
    response = requests.post(emulator.url + "execute/", timeout=TIMEOUT)
    assert response.text == "Missing argument 'config'"


def test_urlencoded_config_is_accepted_too(emulator):
    response = requests.post(
        emulator.url + "execute/",
        data={"config": json.dumps({"commands": ["echo hi"]})},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json()["execution"][0]["stdout"] == "hi"


def test_v3_refuses_an_empty_command_list(emulator_v3):
    response = execute(emulator_v3, {"commands": []})
    assert response.status_code == 400
    assert response.text == "Command list cannot be empty"


def test_v2_accepts_an_empty_command_list(emulator_v2):
    response = execute(emulator_v2, {"commands": []})
    assert response.status_code == 200
    document = response.json()
    assert document["status"] == 0
    assert document["execution"] == []
    assert set(document) == set(sample(2, "bad_commands_empty"))


def test_unknown_command_keys_are_badly_formatted(emulator):
    # The real server fails with a 500 here (unexpected keyword); a clear 400 is kinder.
    response = execute(emulator, {"commands": [{"command": "ls", "nope": 1}]})
    assert response.status_code == 400
    assert response.text.startswith("Command badly formatted : ")


# --- /execute/: running commands --------------------------------------------------

SAMPLE_CONFIGS = {
    "execute_simple": {"commands": ["echo $((2+2))"]},
    "execute_multi": {
        "commands": ["echo out; echo err >&2", "-false", "echo $FOO $BAR", "exit 3", "echo never"],
        "environ": {"FOO": "foo", "BAR": 42},
    },
    "execute_result": {"commands": ['printf "hello result" > res.txt'], "result_path": "res.txt"},
    "execute_result_missing": {"commands": ["true"], "result_path": "missing.txt"},
    "execute_timeout": {"commands": [{"command": "sleep 5", "timeout": 1}, "echo never"]},
    "execute_non_utf8": {"commands": ['printf "\\xff\\xfe"', "echo never"]},
    "execute_save": {
        "commands": [
            "mkdir -p dir && echo hello > dir/out.txt && echo 42 > answer.txt",
            "ls -R",
        ],
        "save": True,
    },
}


def comparable(document: dict) -> dict:
    """The document without what changes from run to run (times, uuids, dates)."""
    document = dict(document)
    assert isinstance(document.pop("total_time"), float)
    if "environment" in document:
        assert UUID_RE.match(document.pop("environment"))
        assert isinstance(document.pop("expire"), str)
    document["execution"] = [dict(entry) for entry in document["execution"]]
    for entry in document["execution"]:
        assert isinstance(entry.pop("time"), float)
    return document


@pytest.mark.parametrize("name", sorted(SAMPLE_CONFIGS))
def test_execute_answers_like_the_recorded_samples(emulator, name):
    response = execute(emulator, SAMPLE_CONFIGS[name])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    document = response.json()
    recorded = sample(emulator.api, name)
    assert list(document) == list(recorded)  # same keys, same order
    assert comparable(document) == comparable(recorded)


def test_dash_commands_may_fail_and_are_recorded_without_the_dash(emulator):
    document = execute(emulator, {"commands": ["-exit 4", "echo after"]}).json()
    assert document["status"] == 0
    assert [e["command"] for e in document["execution"]] == ["exit 4", "echo after"]
    assert [e["exit_code"] for e in document["execution"]] == [4, 0]


def test_failing_command_stops_the_run_with_its_exit_code(emulator):
    document = execute(emulator, {"commands": ["echo a", "exit 7", "echo b"]}).json()
    assert document["status"] == 7
    assert len(document["execution"]) == 2


def test_output_is_stripped(emulator):
    document = execute(emulator, {"commands": ["printf '\\n  out  \\n\\n'; echo '  err ' >&2"]})
    entry = document.json()["execution"][0]
    assert entry["stdout"] == "out"
    assert entry["stderr"] == "err"


def test_environment_of_a_container(emulator):
    config = {
        "commands": ['echo "$HOME"; pwd; echo "$HOSTNAME"; ls -A | wc -l; echo "$N $B $X $S"'],
        "environ": {"N": 1, "B": True, "X": None, "S": "text"},
    }
    lines = execute(emulator, config).json()["execution"][0]["stdout"].split("\n")
    home, cwd, hostname, entries, values = lines
    assert home == cwd
    assert Path(home).parent.name == "containers_env"
    assert re.fullmatch(r"[0-9a-f]{12}", hostname)
    assert entries == "0"
    # Values are converted to strings the way Python prints them.
    assert values == "1 True None text"


def test_a_released_container_is_wiped(make_emulator):
    emulator = make_emulator(containers=1)
    first = execute(emulator, {"commands": ["touch left-over .hidden; ls -A"]}).json()
    assert first["execution"][0]["stdout"] == ".hidden\nleft-over"
    wait_until(lambda: emulator.busy_containers == 0)
    second = execute(emulator, {"commands": ["ls -A"]}).json()
    assert second["execution"][0]["stdout"] == ""


def test_a_dash_command_may_time_out_and_the_run_goes_on(emulator):
    config = {"commands": [{"command": "-sleep 5", "timeout": 0.2}, "echo after"]}
    document = execute(emulator, config).json()
    assert document["status"] == 0
    assert [e["exit_code"] for e in document["execution"]] == [-2, 0]
    assert document["execution"][0]["stderr"].endswith("timed out after 0.2 seconds\n")


@pytest.mark.parametrize(("api", "noun"), [(2, "Sandbox"), (3, "Command")])
def test_the_whole_request_is_bounded_by_execute_timeout(make_emulator, api, noun):
    emulator = make_emulator(api=api, execute_timeout=0.5)
    config = {"commands": ["true", "-sleep 5", "echo never"]}
    document = execute(emulator, config).json()
    assert document["status"] == -2
    assert len(document["execution"]) == 2
    assert document["execution"][1]["exit_code"] == -2
    assert document["execution"][1]["stderr"] == f"{noun} timed out after 0.5 seconds\n"


def test_a_timeout_kills_the_whole_process_group(emulator, tmp_path):
    pid_file = tmp_path / "pid"
    command = f"sleep 30 & echo $! > {shlex.quote(str(pid_file))}; wait"
    document = execute(emulator, {"commands": [{"command": command, "timeout": 0.3}]}).json()
    assert document["status"] == -2
    wait_until(lambda: process_gone(int(pid_file.read_text())))


def test_background_jobs_live_until_the_container_restarts(make_emulator, tmp_path):
    emulator = make_emulator(containers=1)
    pid_file = tmp_path / "pid"
    command = f"sleep 30 >/dev/null 2>&1 & echo $! > {shlex.quote(str(pid_file))}"
    document = execute(emulator, {"commands": [command]}).json()
    assert document["status"] == 0  # bash returned without waiting for its job
    wait_until(lambda: process_gone(int(pid_file.read_text())))  # the restart killed it


def test_result_is_verbatim_on_v3_and_stripped_on_v2(emulator):
    config = {"commands": ["printf '  two\\nlines\\n\\n' > r.txt"], "result_path": "r.txt"}
    document = execute(emulator, config).json()
    expected = "  two\nlines\n\n" if emulator.api == 3 else "two\nlines"
    assert document["result"] == expected
    assert document["status"] == 0


def test_result_not_utf8_is_minus_4(emulator):
    config = {"commands": ["printf '\\xff\\xfe' > r.bin"], "result_path": "r.bin"}
    document = execute(emulator, config).json()
    assert document["status"] == -4
    assert "result" not in document


@pytest.mark.parametrize(
    "path", ["../../../../../../etc/hostname", "/etc/hostname", ".", "", "sub", "fifo", "link"]
)
def test_result_outside_the_working_directory_or_not_a_file_is_missing(emulator, path):
    config = {"commands": ["mkdir sub; mkfifo fifo; ln -s /etc/hostname link"], "result_path": path}
    assert execute(emulator, config).json()["status"] == -3


def test_result_is_not_read_after_a_failure(emulator):
    config = {"commands": ["echo x > r.txt", "exit 2"], "result_path": "r.txt"}
    document = execute(emulator, config).json()
    assert document["status"] == 2
    assert "result" not in document


def test_commands_that_cannot_start_are_unknown_errors(emulator):
    # An environment variable name bash cannot receive.
    config = {"commands": ["true"], "environ": {"A=B": "1"}}
    document = execute(emulator, config).json()
    assert document["status"] == -1
    assert document["execution"][0]["stderr"] == "An unknown error occurred on the sandbox\n"


# --- environments ------------------------------------------------------------------


def saved_environment(emulator: Emulator) -> dict:
    response = execute(emulator, SAMPLE_CONFIGS["execute_save"])
    assert response.status_code == 200
    return response.json()


def test_save_gives_an_environment_and_its_expiry(emulator):
    document = saved_environment(emulator)
    assert UUID_RE.match(document["environment"])
    expire = datetime.fromisoformat(document["expire"])
    if emulator.api == 3:
        assert document["expire"].endswith("+00:00")
        now = datetime.now(UTC)
    else:
        assert expire.tzinfo is None
        now = datetime.now(UTC).replace(tzinfo=None)
    assert timedelta(hours=23) < expire - now <= timedelta(days=1)


def test_without_save_there_is_no_environment(emulator):
    document = execute(emulator, {"commands": ["touch a"]}).json()
    assert "environment" not in document
    assert "expire" not in document


def test_download_and_head_a_saved_environment(emulator):
    env = saved_environment(emulator)["environment"]
    response = get(emulator, f"environments/{env}/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/gzip"
    assert response.headers["Content-Disposition"] == f"attachment; filename={env}.tgz"
    assert int(response.headers["Content-Length"]) == len(response.content)
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        assert set(archive.getnames()) == {"answer.txt", "dir", "dir/out.txt"}
        assert archive.extractfile("dir/out.txt").read() == b"hello\n"

    head = requests.head(emulator.url + f"environments/{env}/", timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == response.headers["Content-Length"]
    assert head.headers["Content-Type"] == "application/gzip"


def test_download_a_file_of_a_saved_environment(emulator):
    env = saved_environment(emulator)["environment"]
    response = get(emulator, f"files/{env}/dir/out.txt/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.content == b"hello\n"
    assert int(response.headers["Content-Length"]) == 6
    head = requests.head(emulator.url + f"files/{env}/answer.txt/", timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "3"
    assert head.content == b""


def test_unknown_environment_and_file_are_404_with_the_real_texts(emulator):
    env = saved_environment(emulator)["environment"]
    for method in ("GET", "HEAD"):
        response = requests.request(method, emulator.url + f"environments/{UNKNOWN_ENV}/")
        assert response.status_code == 404
    response = get(emulator, f"environments/{UNKNOWN_ENV}/")
    assert response.text == f"No environment with UUID '{UNKNOWN_ENV}' found"
    assert response.headers["Content-Type"] == HTML
    response = get(emulator, f"files/{UNKNOWN_ENV}/answer.txt/")
    assert response.status_code == 404
    assert response.text == f"No environment with UUID '{UNKNOWN_ENV}' found"
    for missing in ("nope.txt", "dir"):
        response = get(emulator, f"files/{env}/{missing}/")
        assert response.status_code == 404
        assert response.text == f"The file '{missing}' could not be found in environment '{env}'"


def test_an_execute_can_start_from_a_saved_environment(emulator):
    env = saved_environment(emulator)["environment"]
    config = {"commands": ["cat answer.txt dir/out.txt"], "environment": env}
    document = execute(emulator, config).json()
    assert document["execution"][0]["stdout"] == "42\nhello"


def test_an_uploaded_environment_is_merged_over_a_saved_one(emulator):
    env = saved_environment(emulator)["environment"]
    upload = make_tgz({"answer.txt": b"uploaded\n", "new/file.txt": b"new\n"})
    config = {"commands": ["cat answer.txt dir/out.txt new/file.txt"], "environment": env}
    document = execute(emulator, config, environment=upload).json()
    assert document["status"] == 0
    assert document["execution"][0]["stdout"] == "uploaded\nhello\nnew"


def test_an_uploaded_environment_alone(emulator):
    upload = make_tgz({"in.txt": b"\x00\x01binary\xff\n"})
    config = {"commands": ["wc -c < in.txt"], "save": True}
    document = execute(emulator, config, environment=upload).json()
    assert document["execution"][0]["stdout"] == "10"
    saved = get(emulator, f"files/{document['environment']}/in.txt/")
    assert saved.content == b"\x00\x01binary\xff\n"


def test_a_bad_upload_is_refused(emulator):
    response = execute(emulator, {"commands": ["true"]}, environment=b"not a tgz")
    assert response.status_code == 400
    assert response.text.startswith("environment must be a .tgz archive")


def test_an_upload_cannot_write_outside_the_container(emulator, tmp_path):
    escape = tmp_path / "escaped.txt"
    upload = make_tgz({f"../../../../../../../..{escape}": b"x"})
    response = execute(emulator, {"commands": ["true"]}, environment=upload)
    assert response.status_code == 400
    assert not escape.exists()


def test_environments_expire(make_emulator):
    emulator = make_emulator(expiration=0.2)
    env = saved_environment(emulator)["environment"]
    wait_until(lambda: get(emulator, f"environments/{env}/").status_code == 404)


# --- overload and the pool --------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "text"),
    [
        (2, "Sandbox overloaded, retry after a few secondes."),
        (3, "Sandbox overloaded, retry after a few seconds."),
    ],
)
def test_overload_answers_503_with_the_real_text(make_emulator, api, text):
    emulator = make_emulator(api=api, containers=2, overload_wait=0.3)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def one() -> None:
        response = execute(emulator, {"commands": ["sleep 1"]})
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    statuses = sorted(r.status_code for r in responses)
    assert len(statuses) == 6
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 2
    assert statuses.count(503) >= 1
    for response in responses:
        if response.status_code == 503:
            assert response.text == text
            assert response.headers["Content-Type"] == HTML
        else:
            assert response.json()["status"] == 0
    wait_until(lambda: emulator.busy_containers == 0)
    assert execute(emulator, {"commands": ["true"]}).status_code == 200


def test_a_restarting_container_is_not_free(make_emulator):
    emulator = make_emulator(containers=1, restart_delay=60, overload_wait=0.1)
    assert execute(emulator, {"commands": ["true"]}).status_code == 200
    assert emulator.busy_containers == 1
    assert execute(emulator, {"commands": ["true"]}).status_code == 503


def test_no_containers_means_always_overloaded(make_emulator):
    emulator = make_emulator(containers=0, overload_wait=0)
    assert execute(emulator, {"commands": ["true"]}).status_code == 503


# --- faults --------------------------------------------------------------------------


def test_fault_latency_delays_the_real_answer(emulator):
    emulator.set_fault("specifications", Fault(latency=0.3))
    started = time.monotonic()
    response = get(emulator, "specifications/")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert shape(response.json()) == shape(sample(emulator.api, "specifications"))


def test_fault_status_replaces_the_work(emulator, tmp_path):
    emulator.set_fault("execute", Fault(status=500))
    marker = tmp_path / "ran"
    response = execute(emulator, {"commands": [f"touch {shlex.quote(str(marker))}"]})
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["Content-Type"] == HTML
    assert not marker.exists()


def test_fault_status_with_body(emulator):
    emulator.set_fault("libraries", Fault(status=502, body="<h1>Bad Gateway</h1>"))
    response = get(emulator, "libraries/")
    assert response.status_code == 502
    assert response.text == "<h1>Bad Gateway</h1>"


def test_fault_body_bytes_is_sent_verbatim_with_the_endpoint_type(emulator):
    emulator.set_fault("specifications", Fault(body=b'{"containers": {"total": '))
    response = get(emulator, "specifications/")
    assert response.status_code == 200
    assert response.content == b'{"containers": {"total": '
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        response.json()


def test_fault_body_document_is_json_encoded(emulator):
    emulator.set_fault("usages", Fault(body={"cpu": "fast", "container": [1]}))
    response = get(emulator, "usages/")  # also on 2.x: the fault answers before routing
    assert response.json() == {"cpu": "fast", "container": [1]}
    emulator.set_fault("libraries", Fault(body=[1, 2, 3]))
    assert get(emulator, "libraries/").json() == [1, 2, 3]


def test_fault_content_type_keeps_the_real_body(emulator):
    emulator.set_fault("specifications", Fault(content_type="text/plain"))
    response = get(emulator, "specifications/")
    assert response.headers["Content-Type"] == "text/plain"
    assert shape(response.json()) == shape(sample(emulator.api, "specifications"))


def test_fault_drop_closes_without_an_answer(emulator):
    emulator.set_fault("specifications", Fault(drop=True))
    with pytest.raises(requests.ConnectionError):
        get(emulator, "specifications/")
    request = f"GET /specifications/ HTTP/1.1\r\nHost: 127.0.0.1:{emulator.port}\r\n\r\n"
    assert raw_exchange(emulator, request.encode()) == b""


def test_fault_head_body_answers_head_with_the_body_as_djangos_dev_server(emulator):
    emulator.set_fault("environments", Fault(head_body=True))
    request = f"HEAD /environments/{UNKNOWN_ENV}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    head, _, body = raw_exchange(emulator, request.encode()).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert body == f"No environment with UUID '{UNKNOWN_ENV}' found".encode()
    # Only the endpoint given: another one's HEAD still has no body.
    request = f"HEAD /files/{UNKNOWN_ENV}/a.txt/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert raw_exchange(emulator, request.encode()).endswith(b"\r\n\r\n")


def test_fault_truncate_sends_the_full_length_then_part_of_the_body(emulator):
    emulator.set_fault("specifications", Fault(truncate=10))
    request = f"GET /specifications/ HTTP/1.1\r\nHost: 127.0.0.1:{emulator.port}\r\n\r\n"
    received = raw_exchange(emulator, request.encode())
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    assert len(body) == 10
    assert length > 10
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(emulator, "specifications/")


def test_fault_drip_sends_the_body_slowly_but_whole(emulator):
    emulator.set_fault("specifications", Fault(body=b'{"a": 1}', drip=0.05))
    started = time.monotonic()
    response = get(emulator, "specifications/")
    assert time.monotonic() - started >= 7 * 0.05  # 8 bytes, 7 gaps
    assert response.json() == {"a": 1}


def test_fault_on_every_endpoint_and_a_specific_one_wins(emulator):
    emulator.set_fault("*", Fault(status=503))
    emulator.set_fault("libraries", Fault(status=418))
    assert get(emulator, "specifications/").status_code == 503
    assert execute(emulator, {"commands": ["true"]}).status_code == 503
    assert get(emulator, f"environments/{UNKNOWN_ENV}/").status_code == 503
    assert get(emulator, f"files/{UNKNOWN_ENV}/a/").status_code == 503
    assert get(emulator, "libraries/").status_code == 418
    assert get(emulator, "nope/").status_code == 404  # not an endpoint


def test_the_base_url_says_it_is_an_api_and_lists_its_endpoints(emulator):
    # Emulator-only (a real server answers 404): someone opens the URL that
    # `python -m sandbox_emulator` or the demo prints in a browser.
    response = get(emulator, "")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "an HTTP API for programs, not a web page" in response.text
    listed = re.findall(r"^  (GET|POST) +(/\S+)", response.text, re.MULTILINE)
    expected = [("GET", "/specifications/"), ("GET", "/libraries/"), ("POST", "/execute/")]
    if emulator.api == 3:
        expected.insert(1, ("GET", "/usages/"))
    assert listed[: len(expected)] == expected
    # Every path listed without a placeholder answers what it says.
    for method, path in listed:
        if method == "GET" and "<" not in path:
            assert get(emulator, path.lstrip("/")).status_code == 200, path
    assert get(emulator, "usages/").status_code == (200 if emulator.api == 3 else 404)


def test_clear_faults_all_or_one(emulator):
    emulator.set_fault("specifications", Fault(status=500))
    emulator.set_fault("libraries", Fault(status=500))
    emulator.clear_faults("libraries")
    assert get(emulator, "libraries/").status_code == 200
    assert get(emulator, "specifications/").status_code == 500
    assert set(emulator.faults) == {"specifications"}
    emulator.clear_faults()
    assert get(emulator, "specifications/").status_code == 200
    assert emulator.faults == {}


def test_faults_given_at_start(make_emulator):
    emulator = make_emulator(faults={"specifications": Fault(status=504)})
    assert get(emulator, "specifications/").status_code == 504


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"latency": -1}, ValueError, "Fault.latency must be a finite number >= 0"),
        ({"latency": "1"}, TypeError, "Fault.latency must be a number of seconds"),
        ({"status": 99}, ValueError, "Fault.status must be an HTTP status 100..599"),
        ({"status": True}, ValueError, "Fault.status"),
        ({"body": 12}, TypeError, "Fault.body must be bytes, str, dict or list"),
        ({"drop": "yes"}, TypeError, "Fault.drop must be a boolean"),
        ({"head_body": 1}, TypeError, "Fault.head_body must be a boolean"),
        ({"drip": float("inf")}, ValueError, "Fault.drip must be a finite number"),
        ({"truncate": -1}, ValueError, "Fault.truncate must be an integer >= 0"),
        ({"content_type": "a\r\nX-Evil: 1"}, ValueError, "line breaks"),
    ],
)
def test_bad_faults_are_refused(kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        Fault(**kwargs)


def test_set_fault_checks_the_endpoint(emulator_v3):
    with pytest.raises(ValueError, match="unknown endpoint 'usage'"):
        emulator_v3.set_fault("usage", Fault())


@pytest.mark.parametrize(
    ("spec", "endpoint", "fault"),
    [
        ("execute:status=503", "execute", Fault(status=503)),
        ("specifications:latency=0.5", "specifications", Fault(latency=0.5)),
        ("*:drop", "*", Fault(drop=True)),
        ("files:drop=false,truncate=3", "files", Fault(drop=False, truncate=3)),
        ("environments:head_body", "environments", Fault(head_body=True)),
        ("*:head_body=false,latency=1", "*", Fault(head_body=False, latency=1.0)),
        (
            "usages:drip=0.1,content_type=text/plain",
            "usages",
            Fault(drip=0.1, content_type="text/plain"),
        ),
        (
            'libraries:status=200,body={"a": 1, "b": 2}',
            "libraries",
            Fault(status=200, body='{"a": 1, "b": 2}'),
        ),
    ],
)
def test_fault_specs_from_the_command_line(spec, endpoint, fault):
    assert parse_fault_spec(spec) == (endpoint, fault)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("execute", "expected 'endpoint:key=value"),
        ("exec:status=500", "unknown endpoint 'exec'"),
        ("execute:status=abc", "status"),
        ("execute:colour=red", "unknown key 'colour'"),
        ("execute:latency", "'latency' needs a value"),
        ("execute:status=42", "Fault.status must be an HTTP status"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_fault_spec(spec)


def test_control_endpoint_sets_lists_and_clears_faults(emulator):
    control = emulator.url + "_emulator/faults/"
    response = requests.post(
        control, json={"endpoint": "specifications", "status": 500, "body": "boom"}, timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.json()["fault"]["status"] == 500
    assert emulator.faults == {"specifications": Fault(status=500, body="boom")}
    assert get(emulator, "specifications/").text == "boom"
    listed = requests.get(control, timeout=TIMEOUT).json()
    assert listed["specifications"]["body"] == "boom"

    requests.post(control, json={"endpoint": "libraries", "drop": True}, timeout=TIMEOUT)
    requests.delete(control, params={"endpoint": "libraries"}, timeout=TIMEOUT)
    assert set(emulator.faults) == {"specifications"}
    assert requests.delete(control, timeout=TIMEOUT).json() == {}
    assert get(emulator, "specifications/").status_code == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{", "the fault must be JSON"),
        (b"[]", "a fault must be a JSON object"),
        (b'{"status": 500}', "missing field 'endpoint'"),
        (b'{"endpoint": "x"}', "unknown endpoint 'x'"),
        (b'{"endpoint": "execute", "colour": 1}', "unknown fault field 'colour'"),
        (b'{"endpoint": "execute", "latency": -1}', "Fault.latency must be a finite number"),
    ],
)
def test_control_endpoint_refuses_bad_faults(emulator_v3, body, words):
    response = requests.post(emulator_v3.url + "_emulator/faults/", data=body, timeout=TIMEOUT)
    assert response.status_code == 400
    assert words in response.text
    assert emulator_v3.faults == {}


def test_go_down_refuses_connections_and_come_up_reopens_the_same_port(emulator):
    port = emulator.port
    emulator.go_down()
    assert not emulator.is_up
    with pytest.raises(requests.ConnectionError):
        get(emulator, "specifications/")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    emulator.come_up()
    assert emulator.is_up
    assert emulator.port == port
    assert get(emulator, "specifications/").status_code == 200


def test_requests_in_flight_finish_while_down(emulator, tmp_path):
    gate = Gate(emulator, tmp_path)
    wait_until(lambda: emulator.busy_containers == 1)
    emulator.go_down()
    response = gate.open()
    assert response.status_code == 200
    assert response.json()["execution"][0]["stdout"] == "open"
    emulator.go_down()  # already down: nothing to do
    emulator.come_up()
    emulator.come_up()  # already up: nothing to do
    assert get(emulator, "specifications/").status_code == 200


# --- robustness and logging ------------------------------------------------------

GARBAGE = [
    b"\x00\xff\xfe garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /specifications/ HTTP/9.9\r\n\r\n",
    b"POST /execute/ HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /execute/ HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /execute/ HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
    b"POST /execute/ HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort",
    b"POST /execute/ HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
    b"Content-Length: 9\r\n\r\n--x\r\n\xff\xfe\r\n",
    b"POST /execute/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /files/%ff%fe/%00/ HTTP/1.1\r\n\r\n",
    b"GET http://example.com/specifications/ HTTP/1.1\r\n\r\n",
    b"GET //specifications/ HTTP/1.1\r\n\r\n",
    b"BREW /coffee/ HTTP/1.1\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
]


def test_garbage_requests_never_break_the_emulator(emulator, capfd):
    for payload in GARBAGE:
        raw_exchange(emulator, payload)
    for _ in range(3):  # connect and leave, and half a request
        socket.create_connection(("127.0.0.1", emulator.port), timeout=TIMEOUT).close()
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=TIMEOUT) as conn:
        conn.sendall(b"POST /execute/ HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
    assert get(emulator, "specifications/").status_code == 200
    assert execute(emulator, {"commands": ["echo ok"]}).json()["execution"][0]["stdout"] == "ok"
    assert capfd.readouterr().err == ""  # quiet: nothing on stderr


def test_chunked_bodies_are_read(emulator):
    body = json.dumps({"commands": ["echo chunked"]})
    config = "config=" + requests.utils.quote(body)
    chunks = (part.encode() for part in (config[:10], config[10:]))
    response = requests.post(
        emulator.url + "execute/",
        data=chunks,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=TIMEOUT,
    )
    assert response.json()["execution"][0]["stdout"] == "chunked"


def test_requests_are_logged_at_debug_and_nothing_warns(emulator, caplog):
    caplog.set_level("DEBUG", logger="sandbox_emulator")
    get(emulator, "specifications/")
    get(emulator, "nope")
    emulator.set_fault("libraries", Fault(drop=True))
    with pytest.raises(requests.ConnectionError):
        get(emulator, "libraries/")
    records = [r for r in caplog.records if r.name.startswith("sandbox_emulator")]
    requests_logged = [r for r in records if " HTTP/1.1" in r.getMessage()]
    lines = [r.getMessage() for r in requests_logged]
    assert any('"GET /specifications/ HTTP/1.1" 200' in line for line in lines)
    assert any('"GET /nope HTTP/1.1" 404' in line for line in lines)
    # A line per request at info would drown everything else (the demo's URLs).
    assert {r.levelname for r in requests_logged} == {"DEBUG"}
    assert [r for r in caplog.records if r.levelno >= 30] == []


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab-", max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["commands", "environ", "result_path", "save", "environment", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(config=JSON_VALUES)
def test_any_json_config_gets_an_answer_never_a_crash(emulator_v3, config):
    # Command texts come from the alphabet "ab-": harmless when bash runs them.
    response = execute(emulator_v3, config)
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code == 200:
        assert set(response.json()) >= {"status", "execution", "total_time"}


# --- command line ---------------------------------------------------------------


def start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox_emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url_holder: list[str] = []
    reader = threading.Thread(target=lambda: url_holder.append(process.stdout.readline()))
    reader.start()
    reader.join(TIMEOUT)
    if not url_holder or not url_holder[0]:
        process.kill()
        raise AssertionError(f"no URL printed: {process.communicate(timeout=TIMEOUT)}")
    return process, url_holder[0].strip()


def stop_cli(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, err


def test_cli_prints_the_url_and_serves_until_sigterm(tmp_path):
    libraries = tmp_path / "libraries.json"
    libraries.write_text(json.dumps({"libraries": {}, "bin": ["cli"]}))
    process, url = start_cli(
        "--api", "2", "--containers", "1", "--libraries-delay", "0",
        "--libraries", str(libraries), "--fault", "execute:status=418", "--log-level", "debug",
    )  # fmt: skip
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        specifications = requests.get(url + "specifications/", timeout=TIMEOUT).json()
        assert specifications["sandbox_version"] == "2.0.3"
        assert specifications["containers"]["total"] == 1
        assert requests.get(url + "libraries/", timeout=TIMEOUT).json()["bin"] == ["cli"]
        response = requests.post(url + "execute/", files={"config": (None, "{}")}, timeout=TIMEOUT)
        assert response.status_code == 418
        assert requests.get(url + "usages/", timeout=TIMEOUT).status_code == 404
    finally:
        returncode, err = stop_cli(process)
    assert returncode == 0
    # One line per request at debug (at the default info there are none).
    assert re.search(r' DEBUG .*"GET /specifications/ HTTP/1\.1" 200', err), err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--host", "0.0.0.0"], "refusing to listen on non-loopback address '0.0.0.0'"),
        (["--fault", "nope:status=500"], "unknown endpoint 'nope'"),
        (["--usage-delay", "-1"], "expected a finite number >= 0"),
        (["--libraries", "/nonexistent/libraries.json"], "--libraries /nonexistent/libraries.json"),
        (["--api", "4"], "invalid choice"),
    ],
)
def test_cli_refuses_bad_arguments(args, words):
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_emulator", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert words in result.stderr
    assert result.stdout == ""
