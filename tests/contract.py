"""The metric contract (../shared/METRICS.md) as data, for tests to import.

One copy for every test: the exporter's output, the dashboards and the alert
rules are all checked against these names and labels.
`tests/test_deploy_files.py` checks that this module still matches METRICS.md
whenever that file is beside the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The contract as shipped with the repository, and the team's shared original
# beside the checkout (present in CI) that it must stay equal to.
METRICS_MD = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
SHARED_METRICS_MD = Path(__file__).resolve().parents[2] / "shared" / "METRICS.md"

PROBES = ("specifications", "usage", "libraries", "canary")
FAILURE_REASONS = (
    "timeout",
    "connection",
    "tls",
    "http_status",
    "overloaded",
    "invalid_response",
    "unexpected_output",
    "execution_error",
)
LIBRARY_KINDS = ("language", "system", "python", "perl", "c", "bin")

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


@dataclass(frozen=True)
class Metric:
    name: str
    type: str  # gauge, counter or histogram
    labels: frozenset[str]

    def series_names(self) -> tuple[str, ...]:
        """Names of the series this metric shows up as in PromQL."""
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _metric(name: str, type_: str, *labels: str) -> Metric:
    return Metric(name, type_, frozenset(labels))


def _per_target(name: str, *labels: str) -> Metric:
    return _metric(name, "gauge", "target", *labels)


METRICS: tuple[Metric, ...] = (
    # Exporter itself
    _metric("sandbox_exporter_build_info", "gauge", "version"),
    _metric("sandbox_exporter_config_last_reload_successful", "gauge"),
    _metric("sandbox_exporter_config_last_reload_success_timestamp_seconds", "gauge"),
    _metric("sandbox_exporter_targets", "gauge"),
    # Per target; sandbox_target_info also carries the config's user labels.
    _per_target("sandbox_target_info", "url"),
    _per_target("sandbox_up"),
    _per_target("sandbox_info", "sandbox_version", "docker_version", "api"),
    _per_target("sandbox_probe_success", "probe"),
    _per_target("sandbox_probe_duration_seconds", "probe"),
    _per_target("sandbox_probe_last_success_timestamp_seconds", "probe"),
    _metric("sandbox_probe_runs_total", "counter", "target", "probe"),
    _metric("sandbox_probe_failures_total", "counter", "target", "probe", "reason"),
    # Capacity and load
    _per_target("sandbox_containers_max"),
    _per_target("sandbox_containers_running"),
    _per_target("sandbox_load_ratio"),
    _per_target("sandbox_host_cpu_usage_ratio"),
    _per_target("sandbox_host_load_ratio", "window"),
    _per_target("sandbox_host_cpu_frequency_hertz"),
    _per_target("sandbox_host_cpu_cores"),
    _per_target("sandbox_host_cpu_logical_cores"),
    _per_target("sandbox_host_memory_bytes"),
    _per_target("sandbox_host_memory_used_bytes"),
    _per_target("sandbox_host_swap_bytes"),
    _per_target("sandbox_host_swap_used_bytes"),
    _per_target("sandbox_host_storage_bytes", "device"),
    _per_target("sandbox_host_storage_used_bytes", "device"),
    _per_target("sandbox_host_disk_read_bytes_per_second", "device"),
    _per_target("sandbox_host_disk_write_bytes_per_second", "device"),
    _per_target("sandbox_host_disk_read_operations_per_second", "device"),
    _per_target("sandbox_host_disk_write_operations_per_second", "device"),
    _per_target("sandbox_host_network_sent_bytes_per_second"),
    _per_target("sandbox_host_network_received_bytes_per_second"),
    _per_target("sandbox_host_network_sent_packets_per_second"),
    _per_target("sandbox_host_network_received_packets_per_second"),
    _per_target("sandbox_host_processes"),
    _per_target("sandbox_container_cpus"),
    _per_target("sandbox_container_memory_limit_bytes", "kind"),
    _per_target("sandbox_container_process_limit"),
    _per_target("sandbox_execute_timeout_seconds"),
    _per_target("sandbox_environment_expiration_seconds"),
    # Canaries
    _per_target("sandbox_canary_success", "canary"),
    _per_target("sandbox_canary_duration_seconds", "canary"),
    _per_target("sandbox_canary_server_duration_seconds", "canary"),
    _per_target("sandbox_canary_wait_seconds", "canary"),
    _per_target("sandbox_canary_status", "canary"),
    _metric("sandbox_canary_round_trip_seconds", "histogram", "target", "canary"),
    # Libraries
    _per_target("sandbox_library_version_info", "kind", "name", "version"),
    _per_target("sandbox_library_expectation_met", "kind", "name"),
    _per_target("sandbox_libraries", "kind"),
)

METRICS_BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}

# Every series name a PromQL expression may use, mapped to its metric.
SERIES: dict[str, Metric] = {
    series: metric for metric in METRICS for series in metric.series_names()
}
