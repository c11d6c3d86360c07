"""documents/: recorded server documents of both generations, and every kind of bad shape."""

from __future__ import annotations

import copy
import gc
import json
import math
import weakref
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sandbox_exporter.documents import (
    InvalidDocument,
    Specifications,
    detect_api,
    parse_execute_response,
    parse_libraries,
    parse_specifications,
    parse_usage,
)
from sandbox_exporter.documents.libraries import dpkg_upstream_version, language_versions_from_dpkg
from sandbox_exporter.documents.specifications import parse_docker_memory
from sandbox_exporter.vocabulary import LANGUAGES

FIXTURES = Path(__file__).parent / "fixtures"


def load(generation: str, name: str) -> Any:
    return json.loads((FIXTURES / generation / f"{name}.json").read_text())


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()


def mutated(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``doc`` with the value at ``path`` replaced (or removed with DELETE)."""
    result = copy.deepcopy(doc)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return result


# ------------------------------------------------------------ specifications


def test_v2_specifications_recorded_sample():
    spec = parse_specifications(load("v2", "specifications"))
    assert spec.api == 2
    assert spec.sandbox_version == "2.0.3"
    assert spec.docker_version == "28.2.2"
    assert spec.containers_max == 5
    assert spec.containers_running == 0
    assert spec.container_cpus == 1.0
    # "100m" RAM, "200m" memswap (RAM + swap), "host" storage
    assert dict(spec.container_memory_limits) == {
        "ram": 100_000_000,
        "swap": 100_000_000,
        "storage": None,
    }
    assert spec.container_process_limit is None
    assert spec.execute_timeout_seconds == 10.0
    assert spec.environment_expiration_seconds == 86400.0
    assert spec.host is None


def test_v2_busy_sample_reports_running_containers():
    spec = parse_specifications(load("v2", "specifications_busy"))
    assert (spec.containers_max, spec.containers_running) == (5, 3)


def test_v3_specifications_recorded_sample():
    spec = parse_specifications(load("v3", "specifications"))
    assert spec.api == 3
    assert spec.sandbox_version == "3.0.3"
    assert spec.docker_version == "28.2.2"
    assert spec.containers_max == 5
    assert spec.containers_running is None  # 3.x: comes from /usages/
    assert spec.container_cpus == 1.0
    assert dict(spec.container_memory_limits) == {
        "ram": 100_000_000,
        "swap": 100_000_000,
        "storage": None,  # -1
    }
    assert spec.container_process_limit is None  # -1
    assert spec.execute_timeout_seconds is None
    assert spec.environment_expiration_seconds is None
    host = spec.host
    assert host is not None
    assert (host.cpu_cores, host.cpu_logical_cores) == (2, 2)
    assert (host.cpu_freq_min_hz, host.cpu_freq_max_hz) == (0.0, 0.0)
    assert host.memory_bytes == 25_276_063_744
    assert host.swap_bytes == 0
    assert dict(host.storage_bytes) == {"/dev/vda": 270_553_174_016}


def test_both_generations_give_the_same_container_limits():
    # The two samples were recorded from servers with the same Docker settings.
    v2 = parse_specifications(load("v2", "specifications"))
    v3 = parse_specifications(load("v3", "specifications"))
    assert v2.container_memory_limits == v3.container_memory_limits
    assert v2.container_cpus == v3.container_cpus
    assert v2.containers_max == v3.containers_max


def test_v3_frequencies_are_converted_from_mhz_to_hz():
    doc = mutated(load("v3", "specifications"), ("host", "cpu", "freq_min"), 800.0)
    doc = mutated(doc, ("host", "cpu", "freq_max"), 3600.5)
    host = parse_specifications(doc).host
    assert host is not None
    assert host.cpu_freq_min_hz == 800_000_000.0
    assert host.cpu_freq_max_hz == 3_600_500_000.0


@pytest.mark.parametrize(
    ("process", "expected"),
    [(-1, None), (0, None), (1, 1), (512, 512)],
)
def test_v3_process_limit(process, expected):
    doc = mutated(load("v3", "specifications"), ("container", "process"), process)
    assert parse_specifications(doc).container_process_limit == expected


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ({"ram": 100, "swap": 0, "storage": 2_000_000_000}, (100, 0, 2_000_000_000)),
        ({"ram": -1, "swap": -1, "storage": -1}, (None, None, None)),
        ({"ram": 0, "swap": 5, "storage": 0}, (0, 5, 0)),
    ],
)
def test_v3_memory_limits(memory, expected):
    doc = mutated(load("v3", "specifications"), ("container", "memory"), memory)
    limits = parse_specifications(doc).container_memory_limits
    assert (limits["ram"], limits["swap"], limits["storage"]) == expected


@pytest.mark.parametrize(
    ("ram", "memswap", "expected_swap"),
    [
        ("100m", "200m", 100_000_000),  # memswap is RAM + swap
        ("100m", "100m", 0),  # memswap == RAM: no swap at all
        ("100m", "0", 100_000_000),  # memswap unset: Docker allows as much swap as RAM
        ("100m", "-1", None),  # unlimited swap
        ("1g", "1.5g", 500_000_000),
        ("host", "host", None),
        ("-1", "-1", None),
    ],
)
def test_v2_swap_is_reported_beyond_ram(ram, memswap, expected_swap):
    doc = mutated(load("v2", "specifications"), ("memory", "ram"), ram)
    doc = mutated(doc, ("memory", "swap"), memswap)
    assert parse_specifications(doc).container_memory_limits["swap"] == expected_swap


def test_v2_storage_limit_in_bytes():
    doc = mutated(load("v2", "specifications"), ("memory", "storage"), "10g")
    assert parse_specifications(doc).container_memory_limits["storage"] == 10_000_000_000


def test_detect_api():
    assert detect_api(load("v2", "specifications")) == 2
    assert detect_api(load("v3", "specifications")) == 3
    with pytest.raises(InvalidDocument, match="not a specifications document") as caught:
        detect_api({"status": 0})
    assert caught.value.path == ""


# One entry per kind of bad shape: (generation, path, bad value, expected path, message part).
BAD_SPECIFICATIONS = [
    (
        "v3",
        ("container", "count"),
        "five",
        "container.count",
        "expected an integer, got 'five'",
    ),
    ("v3", ("container", "count"), DELETE, "container.count", "required key is missing"),
    ("v3", ("container", "count"), None, "container.count", "got null"),
    ("v3", ("container", "count"), -1, "container.count", "expected an integer >= 0, got -1"),
    ("v3", ("container", "count"), True, "container.count", "got true"),
    ("v3", ("container", "count"), 5.5, "container.count", "got 5.5"),
    ("v3", ("container", "count"), "5", "container.count", "got '5'"),
    ("v3", ("container",), [], "container", "expected an object, got an array"),
    ("v3", ("host", "cpu", "freq_max"), math.nan, "host.cpu.freq_max", "got NaN"),
    ("v3", ("host", "cpu", "freq_max"), math.inf, "host.cpu.freq_max", "got Infinity"),
    ("v3", ("host", "cpu", "freq_min"), -1.0, "host.cpu.freq_min", "got -1.0"),
    ("v3", ("host", "cpu", "freq_min"), "800", "host.cpu.freq_min", "got '800'"),
    ("v3", ("host", "cpu", "core"), None, "host.cpu.core", "got null"),
    ("v3", ("host", "cpu", "logical"), False, "host.cpu.logical", "got false"),
    ("v3", ("host", "memory", "ram"), "25G", "host.memory.ram", "got '25G'"),
    ("v3", ("host", "memory", "storage"), 5, "host.memory.storage", "expected an object"),
    (
        "v3",
        ("host", "memory", "storage", "/dev/vda"),
        "big",
        "host.memory.storage['/dev/vda']",
        "got 'big'",
    ),
    ("v3", ("host", "sandbox_version"), 3, "host.sandbox_version", "expected a string, got 3"),
    ("v3", ("host", "docker_version"), "", "host.docker_version", "non-empty string"),
    ("v3", ("host",), DELETE, "", "not a specifications document"),
    ("v3", ("container", "cpu", "count"), DELETE, "container.cpu.count", "missing"),
    ("v3", ("container", "cpu", "quota"), -2, "container.cpu.quota", "integer >= -1"),
    ("v3", ("container", "memory", "ram"), "100m", "container.memory.ram", "got '100m'"),
    ("v3", ("container", "memory", "storage"), -2, "container.memory.storage", "got -2"),
    ("v3", ("container", "process"), -5, "container.process", "got -5"),
    ("v3", ("container", "io", "read_iops"), "x", "container.io.read_iops", "object or an array"),
    ("v3", ("container", "working_dir_device"), None, "container.working_dir_device", "null"),
    ("v2", ("containers", "total"), "5", "containers.total", "got '5'"),
    ("v2", ("containers", "running"), 7, "containers.running", "<= containers.total (5), got 7"),
    ("v2", ("containers", "available"), DELETE, "containers.available", "missing"),
    ("v2", ("containers",), [5, 0, 5], "containers", "expected an object, got an array"),
    ("v2", ("environ",), [], "environ", "expected an object"),
    ("v2", ("cpu", "count"), True, "cpu.count", "got true"),
    ("v2", ("memory", "ram"), "lots", "memory.ram", "Docker memory size"),
    ("v2", ("memory", "ram"), 1.5, "memory.ram", "Docker memory size"),
    ("v2", ("memory", "storage"), None, "memory.storage", "got null"),
    ("v2", ("memory", "swap"), "50m", "memory.swap", "smaller than the RAM limit"),
    ("v2", ("memory", "swap"), DELETE, "memory.swap", "missing"),
    ("v2", ("execute_timeout",), "10", "execute_timeout", "got '10'"),
    ("v2", ("execute_timeout",), math.nan, "execute_timeout", "got NaN"),
    ("v2", ("expiration",), -1, "expiration", "got -1"),
    ("v2", ("sandbox_version",), None, "sandbox_version", "expected a string, got null"),
    ("v2", ("docker_version",), DELETE, "docker_version", "missing"),
]


@pytest.mark.parametrize(
    ("generation", "path", "value", "expected_path", "message"),
    BAD_SPECIFICATIONS,
    ids=[f"{c[0]}:{c[3]}={c[2]!r}" for c in BAD_SPECIFICATIONS],
)
def test_bad_specifications_name_the_path(generation, path, value, expected_path, message):
    doc = mutated(load(generation, "specifications"), path, value)
    with pytest.raises(InvalidDocument) as caught:
        parse_specifications(doc)
    assert caught.value.path == expected_path
    assert str(caught.value).startswith(f"{expected_path or 'document'}: ")
    assert message in str(caught.value)


def test_the_message_format_of_the_design():
    doc = mutated(load("v3", "specifications"), ("container", "count"), "five")
    with pytest.raises(InvalidDocument) as caught:
        parse_specifications(doc)
    assert str(caught.value) == "container.count: expected an integer, got 'five'"


@pytest.mark.parametrize("doc", [None, [], "specifications", 42, {}])
def test_specifications_that_are_not_an_object_of_either_shape(doc):
    with pytest.raises(InvalidDocument) as caught:
        parse_specifications(doc)
    assert caught.value.path == ""
    assert str(caught.value).startswith("document: ")


def test_nan_written_by_a_server_is_rejected():
    # Python's json module accepts the non-standard NaN/Infinity literals.
    text = json.dumps(load("v3", "specifications")).replace('"freq_max": 0.0', '"freq_max": NaN')
    with pytest.raises(InvalidDocument, match=r"host\.cpu\.freq_max: .*got NaN"):
        parse_specifications(json.loads(text))


def test_invalid_document_is_a_value_error():
    assert issubclass(InvalidDocument, ValueError)


# ------------------------------------------------------------- docker memory


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100m", 100_000_000),
        ("100M", 100_000_000),
        ("100mb", 100_000_000),
        ("2k", 2_000),
        ("1g", 1_000_000_000),
        ("1.5g", 1_500_000_000),
        ("2t", 2_000_000_000_000),
        ("512b", 512),
        ("512", 512),
        ("1mib", 1_048_576),
        ("1GiB", 1_073_741_824),
        (" 100m ", 100_000_000),
        ("100 MB", 100_000_000),
        ("0", 0),
        (0, 0),
        (1_048_576, 1_048_576),
        ("host", None),
        ("HOST", None),
        ("-1", None),
        (-1, None),
    ],
)
def test_parse_docker_memory(value, expected):
    assert parse_docker_memory(value) == expected


@pytest.mark.parametrize("value", ["lots", "", "-5", "10x", "5ib", "1e3", -5, True, None, 1.5])
def test_parse_docker_memory_rejects_nonsense(value):
    # A ValueError: the document's parser puts the path in front of it.
    with pytest.raises(ValueError, match=r"^expected a Docker memory size like '100m'"):
        parse_docker_memory(value)


# --------------------------------------------------------------------- usage


def test_v3_usage_recorded_sample():
    usage = parse_usage(load("v3", "usages_busy"))
    assert usage.containers_running == 3
    assert usage.cpu_usage_ratio == 0.053
    assert usage.load_ratio == (0.064697265625, 0.03662109375, 0.01025390625)
    assert usage.cpu_frequency_hz == pytest.approx(2_599_998_000.0)
    assert usage.memory_used_bytes == 171_335_680
    assert usage.swap_used_bytes == 0
    assert dict(usage.storage_used_bytes) == {"/dev/vda": 23_679_741_952}
    assert dict(usage.disk_read_bytes_per_second) == {"/dev/vda": 0.0}
    assert dict(usage.disk_write_operations_per_second) == {"/dev/vda": 0.0}
    assert usage.network_sent_bytes_per_second == 0.0
    assert usage.processes == 80
    assert parse_usage(load("v3", "usages")).containers_running == 0


def test_usage_io_values_are_mapped_to_the_right_fields():
    doc = load("v3", "usages")
    doc["io"] = {
        "read_iops": {"/dev/vda": 1},
        "read_bps": {"/dev/vda": 2},
        "write_iops": {"/dev/vda": 3},
        "write_bps": {"/dev/vda": 4.5},
    }
    doc["network"] = {
        "sent_bytes": 10,
        "received_bytes": 20,
        "sent_packets": 30,
        "received_packets": 40,
    }
    usage = parse_usage(doc)
    assert usage.disk_read_operations_per_second["/dev/vda"] == 1.0
    assert usage.disk_read_bytes_per_second["/dev/vda"] == 2.0
    assert usage.disk_write_operations_per_second["/dev/vda"] == 3.0
    assert usage.disk_write_bytes_per_second["/dev/vda"] == 4.5
    assert (
        usage.network_sent_bytes_per_second,
        usage.network_received_bytes_per_second,
        usage.network_sent_packets_per_second,
        usage.network_received_packets_per_second,
    ) == (10.0, 20.0, 30.0, 40.0)


BAD_USAGES = [
    (("cpu", "usage"), 1.5, "cpu.usage", "expected a number <= 1, got 1.5"),
    (("cpu", "usage"), -0.1, "cpu.usage", "got -0.1"),
    (("cpu", "frequency"), "2.6GHz", "cpu.frequency", "got '2.6GHz'"),
    (("cpu", "usage_avg"), [0.1, 0.2], "cpu.usage_avg", "expected at least 3 items, got 2"),
    (("cpu", "usage_avg"), [0.1] * 4, "cpu.usage_avg", "expected at most 3 items, got 4"),
    (("cpu", "usage_avg", 0), "0.1", "cpu.usage_avg[0]", "expected a number, got '0.1'"),
    (("cpu",), [0.1], "cpu", "expected an object, got an array"),
    (("io",), "none", "io", "expected an object, got 'none'"),
    (("cpu", "usage_avg"), {"1m": 0.1}, "cpu.usage_avg", "expected an array"),
    (("cpu", "usage_avg", 1), "x", "cpu.usage_avg[1]", "got 'x'"),
    (("cpu", "usage_avg", 2), math.inf, "cpu.usage_avg[2]", "got Infinity"),
    (("memory", "ram"), None, "memory.ram", "got null"),
    (("memory", "storage"), [], "memory.storage", "expected an object"),
    (("io", "read_bps", "/dev/vda"), -3, "io.read_bps['/dev/vda']", "got -3"),
    (("io", "write_iops"), DELETE, "io.write_iops", "missing"),
    (("network", "sent_bytes"), math.nan, "network.sent_bytes", "got NaN"),
    (("network",), DELETE, "network", "missing"),
    (("container",), -1, "container", "got -1"),
    (("container",), "3", "container", "got '3'"),
    (("process",), DELETE, "process", "missing"),
    (("process",), True, "process", "got true"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected_path", "message"),
    BAD_USAGES,
    ids=[f"{c[2]}={c[1]!r}" for c in BAD_USAGES],
)
def test_bad_usages_name_the_path(path, value, expected_path, message):
    doc = mutated(load("v3", "usages"), path, value)
    with pytest.raises(InvalidDocument) as caught:
        parse_usage(doc)
    assert caught.value.path == expected_path
    assert message in str(caught.value)


def test_usage_of_a_v2_server_is_not_a_usage_document():
    with pytest.raises(InvalidDocument, match=r"^container: required key is missing$"):
        parse_usage(load("v2", "specifications"))


# ----------------------------------------------------------------- libraries


def test_v2_libraries_use_the_top_level_strings_as_given():
    libraries = parse_libraries(load("v2", "libraries"))
    assert dict(libraries.languages) == {
        "python3": "3.7.3",
        "python2": "2.7.16",
        "java": "openjdk 11.0.7",
        "gcc": "8.3.0",
        "gpp": "8.3.0",
        "perl": "5.28.1",
        "postgres": "11.7",
    }
    assert libraries.packages["python"]["numpy"] == "1.18.3"
    assert libraries.packages["system"]["g++"] == "4:8.3.0-1"
    assert libraries.packages["perl"]["Pod::Usage"] == "?"
    assert libraries.packages["c"]["libssl"] == "1.1"
    assert "python3" in libraries.bin
    assert len(libraries.bin) == 17


def test_v3_libraries_derive_languages_from_dpkg():
    libraries = parse_libraries(load("v3", "libraries"))
    assert dict(libraries.languages) == {
        "python3": "3.7.3",
        "python2": "2.7.16",
        "java": "11.0.7",
        "gcc": "8.3.0",
        "gpp": "8.3.0",
        "perl": "5.28.1",
        "postgres": "11",
    }
    assert set(libraries.packages) == {"system", "python", "perl", "c"}
    assert libraries.packages["python"]["pandas"] == "1.1.5"
    assert libraries.bin[0] == "R"


def test_generations_agree_on_the_languages_both_can_tell():
    v2 = parse_libraries(load("v2", "libraries")).languages
    v3 = parse_libraries(load("v3", "libraries")).languages
    for language in ("python3", "python2", "gcc", "gpp", "perl"):
        assert v2[language] == v3[language], language


@pytest.mark.parametrize(
    ("version", "upstream"),
    [
        ("3.7.3-1", "3.7.3"),
        ("4:8.3.0-1", "8.3.0"),
        ("11.0.7+10-3~deb10u1", "11.0.7"),
        ("11+200+deb10u3", "11"),
        ("5.28.1-6", "5.28.1"),
        ("1:2.20.1-2+deb10u3", "2.20.1"),
        ("8.4.4+dfsg1-3", "8.4.4"),
        ("12.6", "12.6"),
        ("2.0~rc1-1", "2.0"),
        ("1.2-3-4", "1.2-3"),
    ],
)
def test_dpkg_upstream_version(version, upstream):
    assert dpkg_upstream_version(version) == upstream


def test_language_versions_from_dpkg_examples_of_the_design():
    versions = language_versions_from_dpkg(
        {
            "python3": "3.7.3-1",
            "g++": "4:8.3.0-1",
            "openjdk-11-jdk:amd64": "11.0.7+10-3~deb10u1",
            "postgresql": "11+200+deb10u3",
            "perl": "5.28.1-6",
            "python2": "2.7.16-1",
            "gcc": "4:8.3.0-1",
        }
    )
    assert versions == {
        "python3": "3.7.3",
        "python2": "2.7.16",
        "java": "11.0.7",
        "gcc": "8.3.0",
        "gpp": "8.3.0",
        "perl": "5.28.1",
        "postgres": "11",
    }


def test_language_versions_absent_packages_are_none():
    versions = language_versions_from_dpkg({"bash": "5.0-4"})
    assert set(versions) == set(LANGUAGES)
    assert all(version is None for version in versions.values())


def test_language_versions_pick_the_newest_jdk_and_fall_back_to_versioned_packages():
    versions = language_versions_from_dpkg(
        {
            "openjdk-11-jre-headless:amd64": "11.0.7+10-3~deb10u1",
            "openjdk-17-jdk:amd64": "17.0.2+8-1",
            "openjdk-8-jdk": "8u312-b07-1",
            "postgresql-13": "13.4-0+deb11u1",
            "python3-minimal": "3.9.2-3",
        }
    )
    assert versions["java"] == "17.0.2"
    assert versions["postgres"] == "13.4"
    assert versions["python3"] == "3.9.2"


def test_language_versions_a_jre_is_enough():
    versions = language_versions_from_dpkg({"openjdk-11-jre:amd64": "11.0.7+10-3~deb10u1"})
    assert versions["java"] == "11.0.7"


BAD_LIBRARIES = [
    ("v3", ("libraries",), DELETE, "libraries", "missing"),
    ("v3", ("libraries",), [], "libraries", "expected an object"),
    ("v3", ("libraries", "system"), ["bash"], "libraries.system", "expected an object"),
    ("v3", ("libraries", "c"), DELETE, "libraries.c", "missing"),
    ("v3", ("libraries", "python", "numpy"), 1.18, "libraries.python.numpy", "got 1.18"),
    ("v3", ("libraries", "perl", "Data::Dumper"), None, "libraries.perl['Data::Dumper']", "null"),
    ("v3", ("bin",), "bash", "bin", "expected an array"),
    ("v3", ("bin",), DELETE, "bin", "missing"),
    ("v3", ("bin", 0), None, "bin[0]", "expected a string, got null"),
    ("v3", ("bin", 0), 5, "bin[0]", "expected a string, got 5"),
    ("v3", ("bin", 0), " ", "bin[0]", "expected a non-empty string, got ' '"),
    ("v3", ("libraries", "system"), None, "libraries.system", "expected an object, got null"),
    ("v2", ("java",), DELETE, "java", "missing"),
    ("v2", ("g++",), 8, "['g++']", "expected a string, got 8"),
    ("v2", ("python3",), None, "python3", "got null"),
]


@pytest.mark.parametrize(
    ("generation", "path", "value", "expected_path", "message"),
    BAD_LIBRARIES,
    ids=[f"{c[0]}:{c[3]}={c[2]!r}" for c in BAD_LIBRARIES],
)
def test_bad_libraries_name_the_path(generation, path, value, expected_path, message):
    doc = mutated(load(generation, "libraries"), path, value)
    with pytest.raises(InvalidDocument) as caught:
        parse_libraries(doc)
    assert caught.value.path == expected_path
    assert message in str(caught.value)


# ------------------------------------------------------------------- execute

EXECUTE_SAMPLES = sorted(
    (path.parent.name, path.stem)
    for path in FIXTURES.glob("v*/*.json")
    if path.stem.startswith(("execute_", "bad_commands_empty"))
)


@pytest.mark.parametrize(("generation", "name"), EXECUTE_SAMPLES)
def test_every_recorded_execute_answer_parses(generation, name):
    doc = load(generation, name)
    response = parse_execute_response(doc)
    assert response.status == doc["status"]
    assert len(response.execution) == len(doc["execution"])
    assert response.total_time == doc["total_time"]
    for step, raw in zip(response.execution, doc["execution"], strict=True):
        assert (step.command, step.exit_code, step.stdout, step.stderr, step.time) == (
            raw["command"],
            raw["exit_code"],
            raw["stdout"],
            raw["stderr"],
            raw["time"],
        )


@pytest.mark.parametrize("generation", ["v2", "v3"])
def test_execute_answer_optional_fields(generation):
    saved = parse_execute_response(load(generation, "execute_save"))
    assert saved.environment is not None and len(saved.environment) == 36
    assert saved.expire is not None and saved.expire.startswith("2026-11-27T")
    assert saved.result is None
    result = parse_execute_response(load(generation, "execute_result"))
    assert result.result == "hello result"
    assert result.environment is None and result.expire is None
    timeout = parse_execute_response(load(generation, "execute_timeout"))
    assert timeout.status == -2 and timeout.execution[0].exit_code == -2


BAD_EXECUTE = [
    (("status",), "0", "status", "expected an integer, got '0'"),
    (("status",), True, "status", "got true"),
    (("status",), DELETE, "status", "missing"),
    (("execution",), {}, "execution", "expected an array"),
    (("execution", 0), "echo", "execution[0]", "expected an object"),
    (("execution", 0, "exit_code"), DELETE, "execution[0].exit_code", "missing"),
    (("execution", 1, "stdout"), None, "execution[1].stdout", "got null"),
    (("execution", 3, "time"), -0.5, "execution[3].time", "got -0.5"),
    (("execution", 2, "command"), ["echo"], "execution[2].command", "expected a string"),
    (("execution", 0, "exit_code"), "0", "execution[0].exit_code", "expected an integer, got '0'"),
    (("total_time",), math.nan, "total_time", "got NaN"),
    (("total_time",), "0.1", "total_time", "got '0.1'"),
    (("result",), 42, "result", "expected a string, got 42"),
    (("environment",), None, "environment", "got null"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected_path", "message"),
    BAD_EXECUTE,
    ids=[f"{c[2]}={c[1]!r}" for c in BAD_EXECUTE],
)
def test_bad_execute_answers_name_the_path(path, value, expected_path, message):
    doc = mutated(load("v3", "execute_multi"), path, value)
    with pytest.raises(InvalidDocument) as caught:
        parse_execute_response(doc)
    assert caught.value.path == expected_path
    assert message in str(caught.value)


# ---------------------------------------------------------------- immutability


def test_results_are_frozen_and_read_only():
    spec = parse_specifications(load("v3", "specifications"))
    with pytest.raises(ValidationError, match="frozen"):
        spec.containers_max = 7  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.container_memory_limits["ram"] = 1  # type: ignore[index]
    assert spec.host is not None
    with pytest.raises(TypeError):
        spec.host.storage_bytes["/dev/vda"] = 1  # type: ignore[index]
    libraries = parse_libraries(load("v3", "libraries"))
    with pytest.raises(TypeError):
        libraries.languages["java"] = "21"  # type: ignore[index]
    with pytest.raises(TypeError):
        libraries.packages["system"]["bash"] = "6"  # type: ignore[index]


def test_parsing_does_not_change_the_document():
    doc = load("v2", "specifications")
    before = copy.deepcopy(doc)
    parse_specifications(doc)
    assert doc == before


# ------------------------------------------------- what the declared types decide


class _Tracked(dict):
    """A JSON object whose lifetime a test can watch (a plain dict takes no weak reference)."""


@pytest.mark.parametrize(
    ("generation", "name", "parse", "where"),
    [
        ("v2", "specifications", parse_specifications, ()),
        ("v3", "specifications", parse_specifications, ("container",)),
        ("v3", "usages", parse_usage, ("cpu",)),
        ("v3", "libraries", parse_libraries, ()),
        ("v3", "execute_multi", parse_execute_response, ()),
    ],
)
def test_keys_a_server_adds_are_accepted_and_not_kept(generation, name, parse, where):
    doc = load(generation, name)
    parent = doc
    for key in where:
        parent = parent[key]
    added = _Tracked(anything={"a server": ["may", "add"]})
    parent["added_by_a_newer_server"] = added
    parsed = parse(doc)
    assert parsed == parse(load(generation, name))
    gone = weakref.ref(added)
    del doc, parent, added
    gc.collect()
    assert gone() is None, "the parsed document still holds what it does not use"


def test_a_parsed_document_keeps_no_server_object():
    # The exporter holds one parsed document per target: no part of the
    # server's JSON may stay alive through it, used or not.
    doc = load("v3", "specifications")
    tracked = {
        "storage": _Tracked(doc["host"]["memory"]["storage"]),
        "memory": _Tracked(doc["container"]["memory"]),
        "io": _Tracked(doc["container"]["io"]),
    }
    doc["host"]["memory"]["storage"] = tracked["storage"]
    doc["container"]["memory"] = tracked["memory"]
    doc["container"]["io"] = tracked["io"]
    spec = parse_specifications(doc)
    refs = {name: weakref.ref(value) for name, value in tracked.items()}
    del doc, tracked
    gc.collect()
    assert {name for name, ref in refs.items() if ref() is not None} == set()
    assert spec.host is not None and dict(spec.host.storage_bytes) == {"/dev/vda": 270_553_174_016}


def test_what_a_generation_does_not_report_is_never_read_from_the_document():
    doc = load("v3", "specifications")
    doc.update(containers_running=4, execute_timeout_seconds=1.0, api=2)
    spec = parse_specifications(doc)
    assert (spec.api, spec.containers_running, spec.execute_timeout_seconds) == (3, None, None)
    doc = load("v2", "specifications")
    doc.update(host={"cpu": 1}, container_process_limit=5)
    spec = parse_specifications(doc)
    assert (spec.api, spec.host, spec.container_process_limit) == (2, None, None)


def test_both_generations_are_specifications():
    for generation in ("v2", "v3"):
        assert isinstance(parse_specifications(load(generation, "specifications")), Specifications)
    assert not isinstance(parse_usage(load("v3", "usages")), Specifications)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"big": list(range(10_000))}, "got an object"),
        (list(range(10_000)), "got an array"),
        ("x" * 10_000, "got 'xxxxx"),
    ],
)
def test_a_message_never_shows_a_whole_value(value, shown):
    doc = mutated(load("v3", "specifications"), ("container", "count"), value)
    with pytest.raises(InvalidDocument) as caught:
        parse_specifications(doc)
    message = str(caught.value)
    assert message.startswith("container.count: expected an integer, ")
    assert shown in message
    assert len(message) < 120


def test_only_the_first_problem_is_reported():
    doc = mutated(load("v3", "usages"), ("container",), "three")
    doc = mutated(doc, ("process",), None)
    with pytest.raises(InvalidDocument) as caught:
        parse_usage(doc)
    assert str(caught.value) == "container: expected an integer, got 'three'"
