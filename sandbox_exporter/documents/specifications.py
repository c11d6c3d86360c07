"""``/specifications/`` of either generation: what a sandbox is and how its containers are bounded.

One type per generation, each field saying where its value is in that
generation's document; both have the same attributes, in bytes, hertz and
seconds, with ``None`` for "unlimited" and for what a generation does not
report (a class attribute, never read from the document).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from typing_extensions import TypedDict

from .base import (
    Amount,
    Count,
    Document,
    Hertz,
    InvalidDocument,
    ReadOnlyMap,
    Text,
    at,
    describe,
    read_only,
    validated,
)

_DOCKER_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)(i?)b?")
_UNIT_EXPONENT = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_docker_memory(value: object) -> int | None:
    """Bytes from a Docker memory size; ``None`` means unlimited.

    ``"100m"`` -> ``100_000_000``: decimal units, as the 3.x server converts
    them (``"100mib"`` is binary). ``"host"``, ``"-1"`` and ``-1`` mean
    unlimited. Anything else is a ValueError.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= -1:
        return None if value == -1 else value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("host", "-1"):
            return None
        match = _DOCKER_MEMORY.fullmatch(text)
        if match and not (match[3] and not match[2]):  # "5ib" is not a size
            base = 1024 if match[3] else 1000
            return round(float(match[1]) * base ** _UNIT_EXPONENT[match[2]])
    raise ValueError("expected a Docker memory size like '100m', 'host' or '-1'")


#: Docker's numbers, where -1 means "unlimited" (or "not set").
DockerInt = Annotated[int, Field(strict=True, ge=-1)]
Limit = Annotated[DockerInt, AfterValidator(lambda n: None if n == -1 else n)]
DockerSize = Annotated[int | None, BeforeValidator(parse_docker_memory)]


class DockerCpu(TypedDict):
    """A container's CPU limits; Docker's CFS settings are checked, not kept."""

    count: Count
    period: DockerInt
    shares: DockerInt
    quota: DockerInt


Cpus = Annotated[DockerCpu, AfterValidator(lambda cpu: float(cpu["count"]))]


class HostSpecs(Document):
    """The machine running the sandbox (3.x only)."""

    cpu_cores: Count = at("cpu", "core")
    cpu_logical_cores: Count = at("cpu", "logical")
    cpu_freq_min_hz: Hertz = at("cpu", "freq_min")
    cpu_freq_max_hz: Hertz = at("cpu", "freq_max")
    memory_bytes: Count = at("memory", "ram")
    swap_bytes: Count = at("memory", "swap")
    storage_bytes: ReadOnlyMap[Count] = at("memory", "storage")


class MemoryLimits(TypedDict):
    """3.x ``container.memory``: bytes, swap beyond RAM."""

    ram: Limit
    swap: Limit
    storage: Limit


def _object_or_array(value: object) -> object:
    if not isinstance(value, (Mapping, list)):
        raise ValueError("expected an object or an array")
    return value


ObjectOrArray = Annotated[Any, AfterValidator(_object_or_array)]


class IoLimits(TypedDict):
    """Docker takes each either as {device: rate} or as [{"Path", "Rate"}]."""

    read_iops: ObjectOrArray
    read_bps: ObjectOrArray
    write_iops: ObjectOrArray
    write_bps: ObjectOrArray


#: A value whose shape is checked, then dropped: the exporter does not use it,
#: but nonsense there means the server is broken.
Unused = AfterValidator(lambda value: None)


class SpecificationsV3(Document):
    """3.x: the host, and each container's limits in numbers."""

    api: ClassVar[int] = 3
    sandbox_version: Text = at("host", "sandbox_version")
    docker_version: Text = at("host", "docker_version")
    host: HostSpecs
    containers_max: Count = at("container", "count")
    containers_running: ClassVar[None] = None  # busy containers are in /usages/
    container_cpus: Cpus = at("container", "cpu")
    container_memory_limits: Annotated[MemoryLimits, AfterValidator(read_only)] = at(
        "container", "memory"
    )
    # Docker treats a pids limit of 0 like -1: unlimited.
    container_process_limit: Annotated[
        DockerInt, AfterValidator(lambda n: n if n > 0 else None)
    ] = at("container", "process")
    execute_timeout_seconds: ClassVar[None] = None
    environment_expiration_seconds: ClassVar[None] = None
    io: Annotated[IoLimits, Unused] = at("container", "io")
    working_dir_device: Annotated[Text, Unused] = at("container", "working_dir_device")


class DockerMemory(TypedDict):
    """2.x ``memory``: Docker's own strings; ``swap`` is its memswap (RAM + swap)."""

    ram: DockerSize
    swap: DockerSize
    storage: DockerSize


def _swap_beyond_ram(memory: DockerMemory) -> Mapping[str, int | None]:
    # 3.x reports swap beyond RAM, and applies Docker's rules to get it:
    # memswap unset (0) with a RAM limit allows as much swap as RAM; memswap
    # equal to RAM means no swap at all.
    ram, memswap = memory["ram"], memory["swap"]
    if ram is None or memswap is None:
        swap = None
    elif memswap == 0:
        swap = ram
    elif memswap < ram:
        raise InvalidDocument(
            "memory.swap", f"memswap ({memswap} bytes) is smaller than the RAM limit ({ram} bytes)"
        )
    else:
        swap = memswap - ram
    return read_only({"ram": ram, "swap": swap, "storage": memory["storage"]})


class SpecificationsV2(Document):
    """2.x: the container pool with its live counts, limits in Docker's strings."""

    api: ClassVar[int] = 2
    containers_max: Count = at("containers", "total")
    containers_running: Count = at("containers", "running")
    containers_available: Annotated[Count, Unused] = at("containers", "available")
    environ: Annotated[dict[str, Any], Unused]
    container_cpus: Cpus = at("cpu")
    container_memory_limits: Annotated[DockerMemory, AfterValidator(_swap_beyond_ram)] = at(
        "memory"
    )
    container_process_limit: ClassVar[None] = None
    execute_timeout_seconds: Amount = at("execute_timeout")
    environment_expiration_seconds: Amount = at("expiration")
    sandbox_version: Text
    docker_version: Text
    host: ClassVar[None] = None

    @model_validator(mode="after")
    def _running_within_the_pool(self) -> SpecificationsV2:
        if self.containers_running > self.containers_max:
            raise InvalidDocument(
                "containers.running",
                f"expected an integer <= containers.total ({self.containers_max}), "
                f"got {self.containers_running}",
            )
        return self


#: ``/specifications/`` of either generation; ``isinstance()`` takes it too.
Specifications = SpecificationsV2 | SpecificationsV3


def detect_api(doc: object) -> int:
    """The server generation (2 or 3) that produced a ``/specifications/`` document."""
    if not isinstance(doc, Mapping):
        raise InvalidDocument("", f"expected an object, got {describe(doc)}")
    if "host" in doc and "container" in doc:
        return 3
    if "containers" in doc:
        return 2
    raise InvalidDocument(
        "",
        "not a specifications document: expected keys 'host' and 'container' (3.x) "
        f"or 'containers' (2.x), got keys {sorted(doc)[:10]!r}",
    )


def parse_specifications(doc: object) -> Specifications:
    """A ``/specifications/`` document of either generation."""
    return validated(SpecificationsV3 if detect_api(doc) == 3 else SpecificationsV2, doc)
