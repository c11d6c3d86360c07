"""``/usages/`` (3.x only): how busy a sandbox's host and container pool are right now."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import Amount, Count, Document, Hertz, Items, ReadOnlyMap, at, validated

#: cpu.usage_avg: the 1, 5 and 15 minute load averages divided by the CPU count.
LoadAverages = Annotated[Items[Amount], Field(min_length=3, max_length=3)]


class Usage(Document):
    """``/usages/`` (3.x only); rates are per second."""

    containers_running: Count = at("container")
    cpu_usage_ratio: Annotated[Amount, Field(le=1)] = at("cpu", "usage")
    load_ratio: LoadAverages = at("cpu", "usage_avg")
    cpu_frequency_hz: Hertz = at("cpu", "frequency")
    memory_used_bytes: Count = at("memory", "ram")
    swap_used_bytes: Count = at("memory", "swap")
    storage_used_bytes: ReadOnlyMap[Count] = at("memory", "storage")
    disk_read_bytes_per_second: ReadOnlyMap[Amount] = at("io", "read_bps")
    disk_write_bytes_per_second: ReadOnlyMap[Amount] = at("io", "write_bps")
    disk_read_operations_per_second: ReadOnlyMap[Amount] = at("io", "read_iops")
    disk_write_operations_per_second: ReadOnlyMap[Amount] = at("io", "write_iops")
    network_sent_bytes_per_second: Amount = at("network", "sent_bytes")
    network_received_bytes_per_second: Amount = at("network", "received_bytes")
    network_sent_packets_per_second: Amount = at("network", "sent_packets")
    network_received_packets_per_second: Amount = at("network", "received_packets")
    processes: Count = at("process")


def parse_usage(doc: object) -> Usage:
    """A 3.x ``/usages/`` document."""
    return validated(Usage, doc)
