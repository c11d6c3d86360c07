"""``/specifications/`` of either generation: what a sandbox is and how its containers are bounded.

2.x reports the container pool and Docker's own memory strings; 3.x reports
the host and the container limits in numbers. Both become one
:class:`Specifications`, in bytes, hertz and seconds, with ``None`` for
"unlimited" and for what a generation does not report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .shape import (
    MHZ,
    InvalidDocument,
    as_integer,
    describe,
    document,
    frozen,
    int_field,
    key_path,
    member,
    number_field,
    object_field,
    per_device,
    string_field,
)

#: Keys of :attr:`Specifications.container_memory_limits`.
MEMORY_KINDS = ("ram", "swap", "storage")


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


def detect_api(spec_doc: Mapping[str, Any]) -> int:
    """The server generation (2 or 3) that produced a ``/specifications/`` document."""
    doc = document(spec_doc)
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
        return as_integer(value, path)
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
        f"expected a Docker memory size like '100m', 'host' or '-1', got {describe(value)}",
    )


def _memory_limits_v2(memory: Mapping[str, Any], path: str) -> Mapping[str, int | None]:
    values = {kind: member(memory, kind, path) for kind in MEMORY_KINDS}
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


def _container_cpus(container: Mapping[str, Any], path: str) -> float:
    """The CPUs of a container; Docker's period, shares and quota are checked, not kept."""
    cpu, cpu_path = object_field(container, "cpu", path)
    cpus = int_field(cpu, "count", cpu_path)
    for key in ("period", "shares", "quota"):
        int_field(cpu, key, cpu_path, minimum=-1)
    return float(cpus)


def _parse_specifications_v2(doc: Mapping[str, Any]) -> Specifications:
    containers, containers_path = object_field(doc, "containers", "")
    total = int_field(containers, "total", containers_path)
    running = int_field(containers, "running", containers_path)
    int_field(containers, "available", containers_path)
    if running > total:
        raise InvalidDocument(
            key_path(containers_path, "running"),
            f"expected an integer <= containers.total ({total}), got {running}",
        )
    object_field(doc, "environ", "")
    cpus = _container_cpus(doc, "")
    memory, memory_path = object_field(doc, "memory", "")
    limits = _memory_limits_v2(memory, memory_path)
    execute_timeout = number_field(doc, "execute_timeout", "")
    expiration = number_field(doc, "expiration", "")
    return Specifications(
        api=2,
        sandbox_version=string_field(doc, "sandbox_version", ""),
        docker_version=string_field(doc, "docker_version", ""),
        containers_max=total,
        containers_running=running,
        container_cpus=cpus,
        container_memory_limits=limits,
        container_process_limit=None,
        execute_timeout_seconds=execute_timeout,
        environment_expiration_seconds=expiration,
        host=None,
        raw=frozen(doc),
    )


def _limit_v3(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = int_field(obj, key, path, minimum=-1)
    return None if value == -1 else value


def _host_v3(host: Mapping[str, Any], host_path: str) -> HostSpecs:
    cpu, cpu_path = object_field(host, "cpu", host_path)
    memory, memory_path = object_field(host, "memory", host_path)
    storage = member(memory, "storage", memory_path)
    return HostSpecs(
        cpu_cores=int_field(cpu, "core", cpu_path),
        cpu_logical_cores=int_field(cpu, "logical", cpu_path),
        cpu_freq_min_hz=number_field(cpu, "freq_min", cpu_path) * MHZ,
        cpu_freq_max_hz=number_field(cpu, "freq_max", cpu_path) * MHZ,
        memory_bytes=int_field(memory, "ram", memory_path),
        swap_bytes=int_field(memory, "swap", memory_path),
        storage_bytes=per_device(*storage, as_integer),
    )


def _parse_specifications_v3(doc: Mapping[str, Any]) -> Specifications:
    host, host_path = object_field(doc, "host", "")
    host_specs = _host_v3(host, host_path)
    container, container_path = object_field(doc, "container", "")
    count = int_field(container, "count", container_path)
    cpus = _container_cpus(container, container_path)
    memory, memory_path = object_field(container, "memory", container_path)
    limits = MappingProxyType({kind: _limit_v3(memory, kind, memory_path) for kind in MEMORY_KINDS})
    io, io_path = object_field(container, "io", container_path)
    for key in ("read_iops", "read_bps", "write_iops", "write_bps"):
        # Docker takes these either as {device: rate} or as a list of
        # {"Path", "Rate"}; the exporter does not use them, so only the kind
        # of container is checked.
        value, child = member(io, key, io_path)
        if not isinstance(value, (Mapping, list)):
            raise InvalidDocument(child, f"expected an object or an array, got {describe(value)}")
    # Docker treats a pids limit of 0 like -1: unlimited.
    process = int_field(container, "process", container_path, minimum=-1)
    string_field(container, "working_dir_device", container_path)
    return Specifications(
        api=3,
        sandbox_version=string_field(host, "sandbox_version", host_path),
        docker_version=string_field(host, "docker_version", host_path),
        containers_max=count,
        containers_running=None,
        container_cpus=cpus,
        container_memory_limits=limits,
        container_process_limit=process if process > 0 else None,
        execute_timeout_seconds=None,
        environment_expiration_seconds=None,
        host=host_specs,
        raw=frozen(doc),
    )


def parse_specifications(doc: object) -> Specifications:
    """A ``/specifications/`` document of either generation."""
    top = document(doc)
    if detect_api(top) == 3:
        return _parse_specifications_v3(top)
    return _parse_specifications_v2(top)
