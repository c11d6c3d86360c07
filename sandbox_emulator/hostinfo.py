"""Plausible host numbers for /specifications/ and /usages/, read cheaply from /proc.

The real 3.x server asks psutil; the emulator reads the same kernel files
directly (stdlib only) and falls back to fixed plausible values where a file
is missing (non-Linux, restricted containers).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device
FALLBACK_DEVICE = "/dev/root"
FALLBACK_RAM_BYTES = 8 * 2**30


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes, keyed by the kernel's names (MemTotal, SwapFree, ...)."""
    values: dict[str, int] = {}
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            factor = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[name.strip()] = int(parts[0]) * factor
    return values


def cpu_model_name() -> str:
    for line in (_read_text("/proc/cpuinfo") or "").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and value.strip():
            return value.strip()
    return "Intel(R) Xeon(R) Processor"


def cpu_physical_cores() -> int:
    """Distinct (physical id, core id) pairs; the logical count when unknown."""
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    for line in (_read_text("/proc/cpuinfo") or "").splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "physical id":
            physical = value.strip()
        elif name == "core id":
            core = value.strip()
            cores.add((physical, core))
    return len(cores) or (os.cpu_count() or 1)


def cpu_frequency_mhz() -> float:
    for line in (_read_text("/proc/cpuinfo") or "").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "cpu MHz":
            try:
                return float(value)
            except ValueError:
                break
    return 0.0


def cpu_frequency_bounds_mhz() -> tuple[float, float]:
    """(min, max) from cpufreq, 0.0 where the host does not report them (like psutil)."""
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    bounds = []
    for name in ("cpuinfo_min_freq", "cpuinfo_max_freq"):
        text = _read_text(base + name)
        try:
            bounds.append(int(text.strip()) / 1000.0 if text else 0.0)
        except ValueError:
            bounds.append(0.0)
    return bounds[0], bounds[1]


def mount_device(path: str) -> str:
    """The device of the file system holding `path` (the longest matching mount point)."""
    real = os.path.realpath(path)
    best_device, best_length = FALLBACK_DEVICE, -1
    for line in (_read_text("/proc/self/mounts") or "").splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        device, mount_point = parts[0], parts[1].replace("\\040", " ")
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best_length:
            best_device, best_length = device, len(mount_point)
    return best_device


@dataclass(frozen=True)
class Counters:
    """Cumulative kernel counters, sampled twice to get per-second rates."""

    at: float
    cpu_busy: int
    cpu_total: int
    disk: tuple[int, int, int, int]  # reads, read sectors, writes, written sectors
    network: tuple[int, int, int, int]  # sent bytes, received bytes, sent packets, received packets


def _cpu_times() -> tuple[int, int]:
    text = _read_text("/proc/stat") or ""
    first = text.splitlines()[0].split() if text else []
    if not first or first[0] != "cpu":
        return 0, 0
    numbers = [int(n) for n in first[1:9] if n.isdigit()]
    total = sum(numbers)
    idle = sum(numbers[3:5])  # idle + iowait
    return total - idle, total


def _disk_counters(device: str) -> tuple[int, int, int, int]:
    name = os.path.basename(device)
    for line in (_read_text("/proc/diskstats") or "").splitlines():
        parts = line.split()
        if len(parts) >= 10 and parts[2] == name:
            return int(parts[3]), int(parts[5]), int(parts[7]), int(parts[9])
    return 0, 0, 0, 0


def _network_counters() -> tuple[int, int, int, int]:
    sent_bytes = received_bytes = sent_packets = received_packets = 0
    for line in (_read_text("/proc/net/dev") or "").splitlines()[2:]:
        _, _, numbers = line.partition(":")
        parts = numbers.split()
        if len(parts) >= 10:
            received_bytes += int(parts[0])
            received_packets += int(parts[1])
            sent_bytes += int(parts[8])
            sent_packets += int(parts[9])
    return sent_bytes, received_bytes, sent_packets, received_packets


def sample_counters(device: str) -> Counters:
    busy, total = _cpu_times()
    return Counters(time.monotonic(), busy, total, _disk_counters(device), _network_counters())


def process_count() -> int:
    try:
        return sum(1 for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        return 100


def specifications_v3(
    workdir: str, pool_size: int, sandbox_version: str, docker_version: str
) -> dict:
    """The 3.x /specifications/ document: real host numbers, the sample's container limits."""
    memory = meminfo()
    device = mount_device(workdir)
    freq_min, freq_max = cpu_frequency_bounds_mhz()
    return {
        "host": {
            "cpu": {
                "core": cpu_physical_cores(),
                "logical": os.cpu_count() or 1,
                "freq_min": freq_min,
                "freq_max": freq_max,
            },
            "memory": {
                "ram": memory.get("MemTotal", FALLBACK_RAM_BYTES),
                "swap": memory.get("SwapTotal", 0),
                "storage": {device: shutil.disk_usage(workdir).total},
            },
            "docker_version": docker_version,
            "sandbox_version": sandbox_version,
        },
        "container": {
            "count": pool_size,
            "cpu": {"count": 1, "period": 1000, "shares": 1024, "quota": 0},
            # 3.x turns Docker's "100m" RAM / "200m" memswap into decimal bytes, swap beyond RAM.
            "memory": {"ram": 100_000_000, "swap": 100_000_000, "storage": -1},
            "io": {"read_iops": {}, "read_bps": {}, "write_iops": {}, "write_bps": {}},
            "process": -1,
            "working_dir_device": device,
        },
    }


def specifications_v2(
    pool_size: int,
    busy: int,
    execute_timeout: float,
    expiration: int,
    sandbox_version: str,
    docker_version: str,
) -> dict:
    """The 2.x /specifications/ document: flat, with live container counts."""
    return {
        "containers": {"total": pool_size, "running": busy, "available": pool_size - busy},
        "environ": {},
        "cpu": {"count": 1, "period": 1000, "shares": 1024, "quota": 0, "name": cpu_model_name()},
        "memory": {"ram": "100m", "swap": "200m", "storage": "host"},
        "docker_version": docker_version,
        "sandbox_version": sandbox_version,
        "execute_timeout": float(execute_timeout),
        "expiration": expiration,
    }


def usages_v3(
    workdir: str, busy_containers: Callable[[], int], window: float, stopping: threading.Event
) -> dict | None:
    """The 3.x /usages/ document, rates measured over `window` seconds.

    Returns None when `stopping` is set during the window (the emulator is shutting down).
    `busy_containers` is read after the window, like the real server does.
    """
    device = mount_device(workdir)
    before = sample_counters(device)
    if window > 0 and stopping.wait(window):
        return None
    after = sample_counters(device)
    elapsed = after.at - before.at

    def rate(new: int, old: int, factor: int = 1) -> int:
        return int((new - old) * factor / elapsed) if elapsed > 0 else 0

    cpu_total = after.cpu_total - before.cpu_total
    cpu_usage = round((after.cpu_busy - before.cpu_busy) / cpu_total, 3) if cpu_total > 0 else 0.0
    memory = meminfo()
    logical = os.cpu_count() or 1
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    ram_total = memory.get("MemTotal", FALLBACK_RAM_BYTES)
    return {
        "cpu": {
            "frequency": cpu_frequency_mhz(),
            "usage": cpu_usage,
            "usage_avg": [value / logical for value in load],
        },
        "memory": {
            "ram": max(0, ram_total - memory.get("MemAvailable", ram_total)),
            "swap": max(0, memory.get("SwapTotal", 0) - memory.get("SwapFree", 0)),
            "storage": {device: shutil.disk_usage(workdir).used},
        },
        "io": {
            "read_iops": {device: rate(after.disk[0], before.disk[0])},
            "read_bps": {device: rate(after.disk[1], before.disk[1], SECTOR_BYTES)},
            "write_iops": {device: rate(after.disk[2], before.disk[2])},
            "write_bps": {device: rate(after.disk[3], before.disk[3], SECTOR_BYTES)},
        },
        "network": {
            "sent_bytes": rate(after.network[0], before.network[0]),
            "received_bytes": rate(after.network[1], before.network[1]),
            "sent_packets": rate(after.network[2], before.network[2]),
            "received_packets": rate(after.network[3], before.network[3]),
        },
        "process": process_count(),
        "container": busy_containers(),
    }
