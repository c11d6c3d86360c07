"""Raw JSON documents of a sandbox server, either generation, turned into typed values.

Everything here is pure: no I/O, no clock. Each ``parse_*`` function checks the
shape strictly and raises :class:`InvalidDocument` naming the JSON path of the
first thing that is wrong, so an operator reading the exporter's log knows
which field of which server answer to look at.

Both generations are normalised to the same units: bytes, hertz, seconds, and
``None`` for "unlimited". See ``docs/design.md`` and ``SANDBOX_API.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .vocabulary import PACKAGE_KINDS

__all__ = [
    "MEMORY_KINDS",
    "CommandExecution",
    "ExecuteResponse",
    "HostSpecs",
    "InvalidDocument",
    "Libraries",
    "Specifications",
    "Usage",
    "detect_api",
    "dpkg_upstream_version",
    "language_versions_from_dpkg",
    "parse_docker_memory",
    "parse_execute_response",
    "parse_libraries",
    "parse_specifications",
    "parse_usage",
]

#: Keys of :attr:`Specifications.container_memory_limits`.
MEMORY_KINDS = ("ram", "swap", "storage")

_MHZ = 1_000_000.0


class InvalidDocument(ValueError):
    """A server document does not have the expected shape.

    ``path`` is the JSON path of the offending value (``""`` for the document
    itself); the message starts with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or 'document'}: {problem}")


# ---------------------------------------------------------------- value types


@dataclass(frozen=True)
class HostSpecs:
    """The machine running the sandbox (3.x only)."""

    cpu_cores: int
    cpu_logical_cores: int
    cpu_freq_min_hz: float
    cpu_freq_max_hz: float
    memory_bytes: int
    swap_bytes: int
    storage_bytes: Mapping[str, int]


@dataclass(frozen=True)
class Specifications:
    """``/specifications/`` of either generation."""

    api: int
    sandbox_version: str
    docker_version: str
    containers_max: int
    containers_running: int | None
    container_cpus: float | None
    container_memory_limits: Mapping[str, int | None]
    container_process_limit: int | None
    execute_timeout_seconds: float | None
    environment_expiration_seconds: float | None
    host: HostSpecs | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Usage:
    """``/usages/`` (3.x only)."""

    containers_running: int
    cpu_usage_ratio: float
    load_ratio: tuple[float, float, float]
    cpu_frequency_hz: float
    memory_used_bytes: int
    swap_used_bytes: int
    storage_used_bytes: Mapping[str, int]
    disk_read_bytes_per_second: Mapping[str, float]
    disk_write_bytes_per_second: Mapping[str, float]
    disk_read_operations_per_second: Mapping[str, float]
    disk_write_operations_per_second: Mapping[str, float]
    network_sent_bytes_per_second: float
    network_received_bytes_per_second: float
    network_sent_packets_per_second: float
    network_received_packets_per_second: float
    processes: int
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Libraries:
    """``/libraries/`` of either generation."""

    languages: Mapping[str, str | None]
    packages: Mapping[str, Mapping[str, str]]
    bin: tuple[str, ...]
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class CommandExecution:
    """One entry of an ``/execute/`` answer's ``execution`` list."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    time: float


@dataclass(frozen=True)
class ExecuteResponse:
    """An ``/execute/`` answer (status 200)."""

    status: int
    execution: tuple[CommandExecution, ...]
    total_time: float
    result: str | None
    environment: str | None
    expire: str | None
    raw: Mapping[str, Any]


# ------------------------------------------------------------ shape checking


def _describe(value: object) -> str:
    """Render a JSON value the way it appeared, short enough for a log line."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key_path(path: str, key: str) -> str:
    # Device names such as "/dev/vda" would make a dotted path unreadable.
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidDocument(path, f"expected an object, got {_describe(value)}")
    return value


def _array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidDocument(path, f"expected an array, got {_describe(value)}")
    return value


def _get(obj: Mapping[str, Any], key: str, path: str) -> tuple[Any, str]:
    """The value at ``obj[key]`` and its path; a missing key is an error."""
    child = _key_path(path, key)
    if key not in obj:
        raise InvalidDocument(child, "required key is missing")
    return obj[key], child


def _string(value: object, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidDocument(path, f"expected a string, got {_describe(value)}")
    if not allow_empty and not value.strip():
        raise InvalidDocument(path, "expected a non-empty string, got ''")
    return value


def _integer(value: object, path: str, minimum: int | None = 0) -> int:
    # bool is an int in Python but never a count in a server document.
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or (minimum is not None and value < minimum)
    ):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise InvalidDocument(path, f"expected an integer{bound}, got {_describe(value)}")
    return value


def _number(
    value: object, path: str, minimum: float | None = 0, maximum: float | None = None
) -> float:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        if minimum is not None and maximum is not None:
            bound = f" between {minimum} and {maximum}"
        elif minimum is not None:
            bound = f" >= {minimum}"
        else:
            bound = ""
        raise InvalidDocument(path, f"expected a finite number{bound}, got {_describe(value)}")
    return float(value)  # type: ignore[arg-type]


def _int_field(obj: Mapping[str, Any], key: str, path: str, minimum: int | None = 0) -> int:
    value, child = _get(obj, key, path)
    return _integer(value, child, minimum)


def _number_field(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    minimum: float | None = 0,
    maximum: float | None = None,
) -> float:
    value, child = _get(obj, key, path)
    return _number(value, child, minimum, maximum)


def _object_field(obj: Mapping[str, Any], key: str, path: str) -> tuple[Mapping[str, Any], str]:
    value, child = _get(obj, key, path)
    return _object(value, child), child


def _string_field(obj: Mapping[str, Any], key: str, path: str) -> str:
    value, child = _get(obj, key, path)
    return _string(value, child)


def _int_per_device(value: object, path: str) -> Mapping[str, int]:
    devices = _object(value, path)
    return MappingProxyType(
        {device: _integer(amount, _key_path(path, device)) for device, amount in devices.items()}
    )


def _number_per_device(value: object, path: str) -> Mapping[str, float]:
    devices = _object(value, path)
    return MappingProxyType(
        {device: _number(amount, _key_path(path, device)) for device, amount in devices.items()}
    )


def _top(doc: object) -> Mapping[str, Any]:
    return _object(doc, "")


# ------------------------------------------------------------ specifications


def detect_api(spec_doc: Mapping[str, Any]) -> int:
    """The server generation (2 or 3) that produced a ``/specifications/`` document."""
    doc = _top(spec_doc)
    if "host" in doc and "container" in doc:
        return 3
    if "containers" in doc:
        return 2
    raise InvalidDocument(
        "",
        "not a specifications document: expected keys 'host' and 'container' (3.x) "
        f"or 'containers' (2.x), got keys {sorted(doc)[:10]!r}",
    )


_DOCKER_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(i?)b?\s*\Z", re.IGNORECASE)
_UNIT_EXPONENT = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_docker_memory(value: str | int, *, path: str = "") -> int | None:
    """Bytes from a Docker memory size; ``None`` means unlimited.

    ``"100m"`` -> ``100_000_000``: decimal units, as the 3.x server converts
    them (``"100mib"`` is binary). ``"host"``, ``"-1"`` and ``-1`` mean
    unlimited.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value == -1:
            return None
        return _integer(value, path)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("host", "-1"):
            return None
        match = _DOCKER_MEMORY.match(text)
        if match:
            amount, unit, binary = match.groups()
            base = 1024 if binary else 1000
            if binary and not unit:
                match = None  # "5ib" is not a size
            else:
                size = float(amount) * base ** _UNIT_EXPONENT[unit.lower()]
                return round(size)
    raise InvalidDocument(
        path,
        f"expected a Docker memory size like '100m', 'host' or '-1', got {_describe(value)}",
    )


def _memory_limits_v2(memory: Mapping[str, Any], path: str) -> Mapping[str, int | None]:
    values = {kind: _get(memory, kind, path) for kind in MEMORY_KINDS}
    ram = parse_docker_memory(values["ram"][0], path=values["ram"][1])
    memswap = parse_docker_memory(values["swap"][0], path=values["swap"][1])
    storage = parse_docker_memory(values["storage"][0], path=values["storage"][1])
    # 2.x reports Docker's memswap (RAM + swap); 3.x reports swap beyond RAM.
    # Docker semantics, which 3.x applies too: memswap unset (0) with a RAM
    # limit allows as much swap as RAM; memswap == RAM means no swap at all.
    if ram is None or memswap is None:
        swap = None
    elif memswap == 0:
        swap = ram
    elif memswap < ram:
        raise InvalidDocument(
            values["swap"][1],
            f"memswap ({memswap} bytes) is smaller than the RAM limit ({ram} bytes)",
        )
    else:
        swap = memswap - ram
    return MappingProxyType({"ram": ram, "swap": swap, "storage": storage})


def _parse_specifications_v2(doc: Mapping[str, Any]) -> Specifications:
    containers, containers_path = _object_field(doc, "containers", "")
    total = _int_field(containers, "total", containers_path)
    running = _int_field(containers, "running", containers_path)
    _int_field(containers, "available", containers_path)
    if running > total:
        raise InvalidDocument(
            _key_path(containers_path, "running"),
            f"expected an integer <= containers.total ({total}), got {running}",
        )
    _object_field(doc, "environ", "")
    cpu, cpu_path = _object_field(doc, "cpu", "")
    cpus = _int_field(cpu, "count", cpu_path)
    for key in ("period", "shares", "quota"):
        _int_field(cpu, key, cpu_path, minimum=-1)
    memory, memory_path = _object_field(doc, "memory", "")
    limits = _memory_limits_v2(memory, memory_path)
    execute_timeout = _number_field(doc, "execute_timeout", "")
    expiration = _number_field(doc, "expiration", "")
    return Specifications(
        api=2,
        sandbox_version=_string_field(doc, "sandbox_version", ""),
        docker_version=_string_field(doc, "docker_version", ""),
        containers_max=total,
        containers_running=running,
        container_cpus=float(cpus),
        container_memory_limits=limits,
        container_process_limit=None,
        execute_timeout_seconds=execute_timeout,
        environment_expiration_seconds=expiration,
        host=None,
        raw=MappingProxyType(dict(doc)),
    )


def _limit_v3(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = _int_field(obj, key, path, minimum=-1)
    return None if value == -1 else value


def _parse_specifications_v3(doc: Mapping[str, Any]) -> Specifications:
    host, host_path = _object_field(doc, "host", "")
    host_cpu, host_cpu_path = _object_field(host, "cpu", host_path)
    host_memory, host_memory_path = _object_field(host, "memory", host_path)
    storage, storage_path = _get(host_memory, "storage", host_memory_path)
    host_specs = HostSpecs(
        cpu_cores=_int_field(host_cpu, "core", host_cpu_path),
        cpu_logical_cores=_int_field(host_cpu, "logical", host_cpu_path),
        cpu_freq_min_hz=_number_field(host_cpu, "freq_min", host_cpu_path) * _MHZ,
        cpu_freq_max_hz=_number_field(host_cpu, "freq_max", host_cpu_path) * _MHZ,
        memory_bytes=_int_field(host_memory, "ram", host_memory_path),
        swap_bytes=_int_field(host_memory, "swap", host_memory_path),
        storage_bytes=_int_per_device(storage, storage_path),
    )

    container, container_path = _object_field(doc, "container", "")
    count = _int_field(container, "count", container_path)
    cpu, cpu_path = _object_field(container, "cpu", container_path)
    cpus = _int_field(cpu, "count", cpu_path)
    for key in ("period", "shares", "quota"):
        _int_field(cpu, key, cpu_path, minimum=-1)
    memory, memory_path = _object_field(container, "memory", container_path)
    limits = MappingProxyType({kind: _limit_v3(memory, kind, memory_path) for kind in MEMORY_KINDS})
    io, io_path = _object_field(container, "io", container_path)
    for key in ("read_iops", "read_bps", "write_iops", "write_bps"):
        # Docker takes these either as {device: rate} or as a list of
        # {"Path", "Rate"}; the exporter does not use them, so only the kind
        # of container is checked.
        value, child = _get(io, key, io_path)
        if not isinstance(value, (Mapping, list)):
            raise InvalidDocument(child, f"expected an object or an array, got {_describe(value)}")
    # Docker treats a pids limit of 0 like -1: unlimited.
    process = _int_field(container, "process", container_path, minimum=-1)
    _string_field(container, "working_dir_device", container_path)
    return Specifications(
        api=3,
        sandbox_version=_string_field(host, "sandbox_version", host_path),
        docker_version=_string_field(host, "docker_version", host_path),
        containers_max=count,
        containers_running=None,
        container_cpus=float(cpus),
        container_memory_limits=limits,
        container_process_limit=process if process > 0 else None,
        execute_timeout_seconds=None,
        environment_expiration_seconds=None,
        host=host_specs,
        raw=MappingProxyType(dict(doc)),
    )


def parse_specifications(doc: object) -> Specifications:
    """A ``/specifications/`` document of either generation."""
    top = _top(doc)
    if detect_api(top) == 3:
        return _parse_specifications_v3(top)
    return _parse_specifications_v2(top)


# --------------------------------------------------------------------- usage


def parse_usage(doc: object) -> Usage:
    """A 3.x ``/usages/`` document."""
    top = _top(doc)
    cpu, cpu_path = _object_field(top, "cpu", "")
    averages, averages_path = _get(cpu, "usage_avg", cpu_path)
    averages = _array(averages, averages_path)
    if len(averages) != 3:
        raise InvalidDocument(
            averages_path,
            f"expected an array of 3 load averages (1m, 5m, 15m), got {len(averages)} items",
        )
    load = tuple(_number(value, f"{averages_path}[{i}]") for i, value in enumerate(averages))

    memory, memory_path = _object_field(top, "memory", "")
    storage, storage_path = _get(memory, "storage", memory_path)
    io, io_path = _object_field(top, "io", "")
    per_device = {
        key: _number_per_device(*_get(io, key, io_path))
        for key in ("read_iops", "read_bps", "write_iops", "write_bps")
    }
    network, network_path = _object_field(top, "network", "")
    return Usage(
        containers_running=_int_field(top, "container", ""),
        cpu_usage_ratio=_number_field(cpu, "usage", cpu_path, maximum=1),
        load_ratio=(load[0], load[1], load[2]),
        cpu_frequency_hz=_number_field(cpu, "frequency", cpu_path) * _MHZ,
        memory_used_bytes=_int_field(memory, "ram", memory_path),
        swap_used_bytes=_int_field(memory, "swap", memory_path),
        storage_used_bytes=_int_per_device(storage, storage_path),
        disk_read_bytes_per_second=per_device["read_bps"],
        disk_write_bytes_per_second=per_device["write_bps"],
        disk_read_operations_per_second=per_device["read_iops"],
        disk_write_operations_per_second=per_device["write_iops"],
        network_sent_bytes_per_second=_number_field(network, "sent_bytes", network_path),
        network_received_bytes_per_second=_number_field(network, "received_bytes", network_path),
        network_sent_packets_per_second=_number_field(network, "sent_packets", network_path),
        network_received_packets_per_second=_number_field(
            network, "received_packets", network_path
        ),
        processes=_int_field(top, "process", ""),
        raw=MappingProxyType(dict(top)),
    )


# ----------------------------------------------------------------- libraries

# The 2.x top-level key for each language; 2.x calls g++ "g++", the classic
# client's attribute (and ours) is "gpp".
_V2_LANGUAGE_KEYS = {
    "python3": "python3",
    "python2": "python2",
    "java": "java",
    "gcc": "gcc",
    "gpp": "g++",
    "perl": "perl",
    "postgres": "postgres",
}

_EPOCH = re.compile(r"\d+:")


def dpkg_upstream_version(version: str) -> str:
    """The upstream part of a Debian version: ``4:8.3.0-1`` -> ``8.3.0``.

    Drops the epoch, the Debian revision, and what follows ``+`` or ``~``
    (build numbers, repack and backport markers): ``11.0.7+10-3~deb10u1`` ->
    ``11.0.7``, ``11+200+deb10u3`` -> ``11``.
    """
    text = version.strip()
    epoch = _EPOCH.match(text)
    if epoch:
        text = text[epoch.end() :]
    if "-" in text:
        text = text.rsplit("-", 1)[0]
    for marker in ("+", "~"):
        text = text.split(marker, 1)[0]
    return text or version.strip()


def _versioned_candidates(packages: Mapping[str, str], pattern: str) -> list[str]:
    """Package names matching ``pattern`` (with ``{n}`` a number), newest number first."""
    regex = re.compile(pattern.replace("{n}", r"(\d+)") + r"\Z")
    found = []
    for name in packages:
        match = regex.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found, reverse=True)]


def language_versions_from_dpkg(system: Mapping[str, str]) -> dict[str, str | None]:
    """Language versions derived from a dpkg package list (3.x ``libraries.system``).

    Keys are :data:`LANGUAGES`; a language whose package is not installed is
    ``None``. Architecture qualifiers (``openjdk-11-jdk:amd64``) are ignored.
    """
    packages: dict[str, str] = {}
    for name, version in system.items():
        packages.setdefault(name.split(":", 1)[0], version)

    def first(*names: str) -> str | None:
        for name in names:
            if name in packages:
                return dpkg_upstream_version(packages[name])
        return None

    java_packages = [
        name
        for flavour in ("jdk", "jdk-headless", "jre", "jre-headless")
        for name in _versioned_candidates(packages, "openjdk-{n}-" + flavour)
    ]
    return {
        "python3": first("python3", "python3-minimal"),
        "python2": first("python2", "python2-minimal", "python2.7"),
        "java": first(*java_packages, "default-jdk", "default-jre"),
        "gcc": first("gcc"),
        "gpp": first("g++"),
        "perl": first("perl", "perl-base"),
        "postgres": first("postgresql", *_versioned_candidates(packages, "postgresql-{n}")),
    }


def _string_map(value: object, path: str) -> Mapping[str, str]:
    entries = _object(value, path)
    for name, version in entries.items():
        _string(version, _key_path(path, name), allow_empty=True)
    return MappingProxyType(dict(entries))


def parse_libraries(doc: object) -> Libraries:
    """A ``/libraries/`` document of either generation.

    A 2.x document carries the language versions at the top level and they
    are used as given; on 3.x they are derived from the dpkg list.
    """
    top = _top(doc)
    libraries, libraries_path = _object_field(top, "libraries", "")
    packages = MappingProxyType(
        {kind: _string_map(*_get(libraries, kind, libraries_path)) for kind in PACKAGE_KINDS}
    )
    bin_value, bin_path = _get(top, "bin", "")
    commands = tuple(
        _string(name, f"{bin_path}[{i}]") for i, name in enumerate(_array(bin_value, bin_path))
    )
    if any(key in top for key in _V2_LANGUAGE_KEYS.values()):
        languages: dict[str, str | None] = {
            language: _string_field(top, key, "") for language, key in _V2_LANGUAGE_KEYS.items()
        }
    else:
        languages = language_versions_from_dpkg(packages["system"])
    return Libraries(
        languages=MappingProxyType(languages),
        packages=packages,
        bin=commands,
        raw=MappingProxyType(dict(top)),
    )


# ------------------------------------------------------------------- execute


def _optional_string(obj: Mapping[str, Any], key: str) -> str | None:
    if key not in obj:
        return None
    return _string(obj[key], key, allow_empty=True)


def parse_execute_response(doc: object) -> ExecuteResponse:
    """The JSON body of a successful ``/execute/`` answer (either generation)."""
    top = _top(doc)
    execution_value, execution_path = _get(top, "execution", "")
    steps = []
    for i, item in enumerate(_array(execution_value, execution_path)):
        path = f"{execution_path}[{i}]"
        step = _object(item, path)
        steps.append(
            CommandExecution(
                command=_string(*_get(step, "command", path), allow_empty=True),
                exit_code=_int_field(step, "exit_code", path, minimum=None),
                stdout=_string(*_get(step, "stdout", path), allow_empty=True),
                stderr=_string(*_get(step, "stderr", path), allow_empty=True),
                time=_number_field(step, "time", path),
            )
        )
    return ExecuteResponse(
        status=_int_field(top, "status", "", minimum=None),
        execution=tuple(steps),
        total_time=_number_field(top, "total_time", ""),
        result=_optional_string(top, "result"),
        environment=_optional_string(top, "environment"),
        expire=_optional_string(top, "expire"),
        raw=MappingProxyType(dict(top)),
    )
