"""Render a state snapshot as Prometheus metric families; no I/O here.

The metric names and their help texts are defined once, in `METRICS` below,
from the contract in METRICS.md. Each target is rendered on its own: one
target's bad data is logged and skipped, never a failed scrape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from .config import Target
from .documents import Specifications
from .probes import (
    CANARY,
    LIBRARIES,
    POSSIBLE_REASONS,
    SPECIFICATIONS,
    USAGE,
    LibrariesReport,
    Load,
)
from .state import CANARY_BUCKETS, Snapshot, State

log = logging.getLogger(__name__)

_LAST = "From the last {probe} probe: "


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # gauge, counter or histogram
    help: str
    labels: tuple[str, ...]


def _spec(name: str, kind: str, help_text: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, kind, help_text, labels)


_T = "target"
_SPECS = _LAST.format(probe="specifications")
_USAGE = _LAST.format(probe="usage")
_CANARY = _LAST.format(probe="canary")
_LIBS = _LAST.format(probe="libraries")

METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        _spec("sandbox_exporter_build_info", "gauge", "Exporter version (always 1).", "version"),
        _spec(
            "sandbox_exporter_config_last_reload_successful",
            "gauge",
            "1 if the last (re)load of the configuration file worked.",
        ),
        _spec(
            "sandbox_exporter_config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the configuration was last loaded successfully.",
        ),
        _spec("sandbox_exporter_targets", "gauge", "Number of configured targets."),
        _spec(
            "sandbox_target_info",
            "gauge",
            "Configured target (always 1); user labels live here only, join with group_left.",
        ),
        _spec("sandbox_up", "gauge", _SPECS + "1 if it answered with a usable document.", _T),
        _spec(
            "sandbox_info",
            "gauge",
            _SPECS + "server versions and detected API generation (always 1).",
            _T,
            "sandbox_version",
            "docker_version",
            "api",
        ),
        _spec(
            "sandbox_probe_success", "gauge", "1 if the last run of the probe worked.", _T, "probe"
        ),
        _spec(
            "sandbox_probe_duration_seconds",
            "gauge",
            "Duration of the last run of the probe, as seen by the exporter.",
            _T,
            "probe",
        ),
        _spec(
            "sandbox_probe_last_success_timestamp_seconds",
            "gauge",
            "When the probe last succeeded.",
            _T,
            "probe",
        ),
        _spec("sandbox_probe_runs", "counter", "Probe runs.", _T, "probe"),
        _spec(
            "sandbox_probe_failures",
            "counter",
            "Probe failures by reason.",
            _T,
            "probe",
            "reason",
        ),
        _spec("sandbox_containers_max", "gauge", _SPECS + "container pool size.", _T),
        _spec("sandbox_containers_running", "gauge", _USAGE + "containers in use.", _T),
        _spec("sandbox_load_ratio", "gauge", _USAGE + "containers in use / pool size.", _T),
        _spec("sandbox_host_cpu_usage_ratio", "gauge", _USAGE + "host CPU use, 0..1.", _T),
        _spec("sandbox_host_load_ratio", "gauge", _USAGE + "load average per CPU.", _T, "window"),
        _spec("sandbox_host_cpu_frequency_hertz", "gauge", _USAGE + "current CPU frequency.", _T),
        _spec("sandbox_host_cpu_cores", "gauge", _SPECS + "host physical CPU cores.", _T),
        _spec("sandbox_host_cpu_logical_cores", "gauge", _SPECS + "host logical CPUs.", _T),
        _spec("sandbox_host_memory_bytes", "gauge", _SPECS + "host RAM.", _T),
        _spec("sandbox_host_memory_used_bytes", "gauge", _USAGE + "host RAM in use.", _T),
        _spec("sandbox_host_swap_bytes", "gauge", _SPECS + "host swap.", _T),
        _spec("sandbox_host_swap_used_bytes", "gauge", _USAGE + "host swap in use.", _T),
        _spec("sandbox_host_storage_bytes", "gauge", _SPECS + "partition size.", _T, "device"),
        _spec(
            "sandbox_host_storage_used_bytes",
            "gauge",
            _USAGE + "partition space in use.",
            _T,
            "device",
        ),
        *(
            _spec(
                f"sandbox_host_disk_{direction}_{unit}_per_second",
                "gauge",
                _USAGE + f"disk {direction} {unit.replace('_', ' ')} per second.",
                _T,
                "device",
            )
            for direction in ("read", "write")
            for unit in ("bytes", "operations")
        ),
        *(
            _spec(
                f"sandbox_host_network_{direction}_{unit}_per_second",
                "gauge",
                _USAGE + f"network {unit} {direction} per second.",
                _T,
            )
            for direction in ("sent", "received")
            for unit in ("bytes", "packets")
        ),
        _spec("sandbox_host_processes", "gauge", _USAGE + "processes on the host.", _T),
        _spec("sandbox_container_cpus", "gauge", _SPECS + "CPUs a container may use.", _T),
        _spec(
            "sandbox_container_memory_limit_bytes",
            "gauge",
            _SPECS + "container memory limit; absent where unlimited.",
            _T,
            "kind",
        ),
        _spec(
            "sandbox_container_process_limit",
            "gauge",
            _SPECS + "container pids limit; absent where unlimited.",
            _T,
        ),
        _spec(
            "sandbox_execute_timeout_seconds",
            "gauge",
            _SPECS + "server-side bound of one execute request (2.x).",
            _T,
        ),
        _spec(
            "sandbox_environment_expiration_seconds",
            "gauge",
            _SPECS + "lifetime of a saved environment (2.x).",
            _T,
        ),
        _spec(
            "sandbox_canary_success",
            "gauge",
            _CANARY + "1 if HTTP 200 with the expected status and stdout.",
            _T,
            "canary",
        ),
        _spec(
            "sandbox_canary_duration_seconds",
            "gauge",
            _CANARY + "round trip, exporter side.",
            _T,
            "canary",
        ),
        _spec(
            "sandbox_canary_server_duration_seconds",
            "gauge",
            _CANARY + "total_time reported by the server.",
            _T,
            "canary",
        ),
        _spec(
            "sandbox_canary_wait_seconds",
            "gauge",
            _CANARY + "round trip minus server time: queueing, transfer, HTTP.",
            _T,
            "canary",
        ),
        _spec(
            "sandbox_canary_status",
            "gauge",
            _CANARY + "the response's status (negative: sandbox error code).",
            _T,
            "canary",
        ),
        _spec(
            "sandbox_canary_command_duration_seconds",
            "gauge",
            _CANARY + "time of each command as the server measured it; step is its 0-based index.",
            _T,
            "canary",
            "step",
        ),
        _spec(
            "sandbox_canary_round_trip_seconds",
            "histogram",
            "Every canary round trip, exporter side.",
            _T,
            "canary",
        ),
        _spec(
            "sandbox_library_version_info",
            "gauge",
            _LIBS + "version of each expected library found (always 1).",
            _T,
            "kind",
            "name",
            "version",
        ),
        _spec(
            "sandbox_library_expectation_met",
            "gauge",
            _LIBS + "1 if the expectation of the configuration is met.",
            _T,
            "kind",
            "name",
        ),
        _spec(
            "sandbox_libraries", "gauge", _LIBS + "entries the server listed, by kind.", _T, "kind"
        ),
    )
}


class Families:
    """Metric families for one render, created on first use, in contract order."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, name: str, labels: Sequence[str], value: float | None) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        self.family(name).add_metric(list(labels), value)

    def family(self, name: str) -> Metric:
        family = self._families.get(name)
        if family is None:
            spec = METRICS[name]
            if spec.kind == "counter":
                family = CounterMetricFamily(name, spec.help, labels=spec.labels)
            elif spec.kind == "histogram":
                family = HistogramMetricFamily(name, spec.help, labels=spec.labels)
            else:
                family = GaugeMetricFamily(name, spec.help, labels=spec.labels)
            self._families[name] = family
        return family

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


class SandboxCollector(Collector):
    """Renders a `State`; `targets` limits the render to some targets (for /probe)."""

    def __init__(
        self,
        state: State,
        *,
        targets: Callable[[], Iterable[Target]] | None = None,
        exporter_metrics: bool = True,
    ) -> None:
        self._state = state
        self._targets = targets
        self._exporter_metrics = exporter_metrics

    def describe(self) -> list[Metric]:
        # Registration must do no work; the families are only known at scrape time.
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self._state.snapshot()
        families = Families()
        targets = list(self._targets()) if self._targets is not None else []
        if self._targets is None and snapshot.config is not None:
            targets = list(snapshot.config.targets)
        if self._exporter_metrics:
            render_exporter(families, snapshot)
        for target in targets:
            # Render into a scratch set first so a failing target leaves no half.
            scratch = Families()
            try:
                render_target(scratch, snapshot, target)
            except Exception:
                log.exception("skipping bad data of target %s in this scrape", target.name)
                continue
            for family in scratch:
                merged = families.family(family.name)
                merged.samples.extend(family.samples)
        yield from families


def render_exporter(families: Families, snapshot: Snapshot) -> None:
    families.add("sandbox_exporter_build_info", [__version__], 1)
    families.add(
        "sandbox_exporter_config_last_reload_successful", [], int(snapshot.reload.successful)
    )
    families.add(
        "sandbox_exporter_config_last_reload_success_timestamp_seconds",
        [],
        snapshot.reload.last_success_timestamp,
    )
    count = len(snapshot.config.targets) if snapshot.config is not None else 0
    families.add("sandbox_exporter_targets", [], count)


def render_target(families: Families, snapshot: Snapshot, target: Target) -> None:
    name = target.name
    info = families.family("sandbox_target_info")
    info_labels = {"target": name, "url": target.url, **target.labels}
    info.add_sample("sandbox_target_info", info_labels, 1)

    for probe in (SPECIFICATIONS, USAGE, LIBRARIES, CANARY):
        key = (name, probe)
        result = snapshot.results.get(key)
        if result is not None:
            families.add("sandbox_probe_success", [name, probe], int(result.success))
            families.add("sandbox_probe_duration_seconds", [name, probe], result.duration_seconds)
        families.add(
            "sandbox_probe_last_success_timestamp_seconds",
            [name, probe],
            snapshot.last_success.get(key),
        )
        families.add("sandbox_probe_runs", [name, probe], snapshot.runs.get(key, 0))
        for reason in POSSIBLE_REASONS[probe]:
            count = snapshot.failures.get((name, probe, reason), 0)
            families.add("sandbox_probe_failures", [name, probe, reason.value], count)

    spec_result = snapshot.results.get((name, SPECIFICATIONS))
    spec = spec_result.data if spec_result is not None and spec_result.success else None
    if spec_result is not None:
        families.add("sandbox_up", [name], int(spec_result.success))
    if isinstance(spec, Specifications):
        _render_specifications(families, name, spec)

    usage_result = snapshot.results.get((name, USAGE))
    if usage_result is not None and isinstance(usage_result.data, Load):
        pool = usage_result.data.containers_max
        if pool is None and isinstance(spec, Specifications):
            pool = spec.containers_max
        _render_load(families, name, usage_result.data, pool)

    libraries_result = snapshot.results.get((name, LIBRARIES))
    if libraries_result is not None and isinstance(libraries_result.data, LibrariesReport):
        _render_libraries(families, name, libraries_result.data)

    canary_result = snapshot.results.get((name, CANARY))
    if canary_result is not None and isinstance(canary_result.data, tuple):
        for canary in canary_result.data:
            labels = [name, canary.name]
            families.add("sandbox_canary_success", labels, int(canary.success))
            families.add("sandbox_canary_duration_seconds", labels, canary.round_trip_seconds)
            families.add("sandbox_canary_server_duration_seconds", labels, canary.server_seconds)
            families.add("sandbox_canary_wait_seconds", labels, canary.wait_seconds)
            families.add("sandbox_canary_status", labels, canary.status)
            for step, seconds in enumerate(canary.command_seconds):
                families.add(
                    "sandbox_canary_command_duration_seconds", [*labels, str(step)], seconds
                )
    for canary in target.canaries:
        histogram = snapshot.canary_histograms.get((name, canary.name))
        if histogram is None:
            continue
        cumulative, buckets = 0, []
        for bound, count in zip((*CANARY_BUCKETS, math.inf), histogram.bucket_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
        families.family("sandbox_canary_round_trip_seconds").add_metric(
            [name, canary.name], buckets, histogram.total
        )


def _render_specifications(families: Families, name: str, spec: Specifications) -> None:
    families.add(
        "sandbox_info", [name, spec.sandbox_version, spec.docker_version, str(spec.api)], 1
    )
    families.add("sandbox_containers_max", [name], spec.containers_max)
    families.add("sandbox_container_cpus", [name], spec.container_cpus)
    for kind, limit in sorted(spec.container_memory_limits.items()):
        families.add("sandbox_container_memory_limit_bytes", [name, kind], limit)
    families.add("sandbox_container_process_limit", [name], spec.container_process_limit)
    families.add("sandbox_execute_timeout_seconds", [name], spec.execute_timeout_seconds)
    families.add(
        "sandbox_environment_expiration_seconds", [name], spec.environment_expiration_seconds
    )
    host = spec.host
    if host is not None:
        families.add("sandbox_host_cpu_cores", [name], host.cpu_cores)
        families.add("sandbox_host_cpu_logical_cores", [name], host.cpu_logical_cores)
        families.add("sandbox_host_memory_bytes", [name], host.memory_bytes)
        families.add("sandbox_host_swap_bytes", [name], host.swap_bytes)
        for device, size in sorted(host.storage_bytes.items()):
            families.add("sandbox_host_storage_bytes", [name, device], size)


def _render_load(families: Families, name: str, load: Load, pool: int | None) -> None:
    families.add("sandbox_containers_running", [name], load.containers_running)
    if pool:
        families.add("sandbox_load_ratio", [name], load.containers_running / pool)
    usage = load.usage
    if usage is None:
        return
    families.add("sandbox_host_cpu_usage_ratio", [name], usage.cpu_usage_ratio)
    for window, value in zip(("1m", "5m", "15m"), usage.load_ratio, strict=True):
        families.add("sandbox_host_load_ratio", [name, window], value)
    families.add("sandbox_host_cpu_frequency_hertz", [name], usage.cpu_frequency_hz)
    families.add("sandbox_host_memory_used_bytes", [name], usage.memory_used_bytes)
    families.add("sandbox_host_swap_used_bytes", [name], usage.swap_used_bytes)
    for device, used in sorted(usage.storage_used_bytes.items()):
        families.add("sandbox_host_storage_used_bytes", [name, device], used)
    per_device = {
        "sandbox_host_disk_read_bytes_per_second": usage.disk_read_bytes_per_second,
        "sandbox_host_disk_write_bytes_per_second": usage.disk_write_bytes_per_second,
        "sandbox_host_disk_read_operations_per_second": usage.disk_read_operations_per_second,
        "sandbox_host_disk_write_operations_per_second": usage.disk_write_operations_per_second,
    }
    for metric, values in per_device.items():
        for device, value in sorted(values.items()):
            families.add(metric, [name, device], value)
    network = {
        "sandbox_host_network_sent_bytes_per_second": usage.network_sent_bytes_per_second,
        "sandbox_host_network_received_bytes_per_second": usage.network_received_bytes_per_second,
        "sandbox_host_network_sent_packets_per_second": usage.network_sent_packets_per_second,
        "sandbox_host_network_received_packets_per_second": (
            usage.network_received_packets_per_second
        ),
    }
    for metric, value in network.items():
        families.add(metric, [name], value)
    families.add("sandbox_host_processes", [name], usage.processes)


def _render_libraries(families: Families, name: str, report: LibrariesReport) -> None:
    for kind, packages in sorted(report.libraries.packages.items()):
        families.add("sandbox_libraries", [name, kind], len(packages))
    families.add("sandbox_libraries", [name, "bin"], len(report.libraries.bin))
    for outcome in report.outcomes:
        families.add(
            "sandbox_library_expectation_met", [name, outcome.kind, outcome.name], int(outcome.met)
        )
        if outcome.found is not None:
            families.add(
                "sandbox_library_version_info",
                [name, outcome.kind, outcome.name, outcome.found],
                1,
            )
