"""``/usages/`` (3.x only): how busy a sandbox's host and container pool are right now."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .shape import (
    MHZ,
    InvalidDocument,
    as_array,
    as_integer,
    as_number,
    document,
    frozen,
    int_field,
    member,
    number_field,
    object_field,
    per_device,
)


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


def parse_usage(doc: object) -> Usage:
    """A 3.x ``/usages/`` document."""
    top = document(doc)
    cpu, cpu_path = object_field(top, "cpu", "")
    averages, averages_path = member(cpu, "usage_avg", cpu_path)
    averages = as_array(averages, averages_path)
    if len(averages) != 3:
        raise InvalidDocument(
            averages_path,
            f"expected an array of 3 load averages (1m, 5m, 15m), got {len(averages)} items",
        )
    load = tuple(as_number(value, f"{averages_path}[{i}]") for i, value in enumerate(averages))

    memory, memory_path = object_field(top, "memory", "")
    storage = member(memory, "storage", memory_path)
    io, io_path = object_field(top, "io", "")
    rates = {
        key: per_device(*member(io, key, io_path), as_number)
        for key in ("read_iops", "read_bps", "write_iops", "write_bps")
    }
    network, network_path = object_field(top, "network", "")
    return Usage(
        containers_running=int_field(top, "container", ""),
        cpu_usage_ratio=number_field(cpu, "usage", cpu_path, maximum=1),
        load_ratio=(load[0], load[1], load[2]),
        cpu_frequency_hz=number_field(cpu, "frequency", cpu_path) * MHZ,
        memory_used_bytes=int_field(memory, "ram", memory_path),
        swap_used_bytes=int_field(memory, "swap", memory_path),
        storage_used_bytes=per_device(*storage, as_integer),
        disk_read_bytes_per_second=rates["read_bps"],
        disk_write_bytes_per_second=rates["write_bps"],
        disk_read_operations_per_second=rates["read_iops"],
        disk_write_operations_per_second=rates["write_iops"],
        network_sent_bytes_per_second=number_field(network, "sent_bytes", network_path),
        network_received_bytes_per_second=number_field(network, "received_bytes", network_path),
        network_sent_packets_per_second=number_field(network, "sent_packets", network_path),
        network_received_packets_per_second=number_field(network, "received_packets", network_path),
        processes=int_field(top, "process", ""),
        raw=frozen(top),
    )
