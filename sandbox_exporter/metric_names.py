"""Every metric the exporter serves: name, type, help text and label names.

This is the one list of metric names: the collector renders from it, the
benchmarks and tests import it, and a test keeps it equal to the contract in
docs/metrics.md. Counters are named as PromQL sees them, with `_total`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str  # gauge, counter or histogram
    help: str
    labels: tuple[str, ...]


def _gauge(name: str, help_text: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, "gauge", help_text, labels)


def _last(probe: str, *first_labels: str) -> Callable[..., MetricSpec]:
    """A maker of per-target gauges read from the last run of `probe`."""

    def gauge(name: str, help_text: str, *labels: str) -> MetricSpec:
        help_text = f"From the last {probe} probe: {help_text}"
        return _gauge(name, help_text, _T, *first_labels, *labels)

    return gauge


_T = "target"
_spec, _usage = map(_last, ("specifications", "usage"))
# Every canary gauge is per canary too, every library gauge per kind of package.
_canary, _libs = _last("canary", "canary"), _last("libraries", "kind")

#: In the order of docs/metrics.md, which is the order of the exposition.
METRICS: tuple[MetricSpec, ...] = (
    # The exporter itself.
    _gauge("sandbox_exporter_build_info", "Exporter version (always 1).", "version"),
    _gauge(
        "sandbox_exporter_config_last_reload_successful",
        "1 if the last (re)load of the configuration file worked.",
    ),
    _gauge(
        "sandbox_exporter_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully.",
    ),
    _gauge("sandbox_exporter_targets", "Number of configured targets."),
    MetricSpec(
        "sandbox_exporter_scheduled_runs_missed_total",
        "counter",
        "Scheduled probe runs whose time passed before the exporter could start them "
        "(too busy: each late job runs once for all its missed times).",
        (),
    ),
    # Per target; the config's user labels are added to sandbox_target_info only.
    _gauge(
        "sandbox_target_info",
        "Configured target (always 1); user labels live here only, join with group_left.",
        _T,
        "url",
    ),
    _spec("sandbox_up", "1 if it answered with a usable document."),
    _spec(
        "sandbox_info",
        "server versions and detected API generation (always 1).",
        "sandbox_version",
        "docker_version",
        "api",
    ),
    _gauge("sandbox_probe_success", "1 if the last run of the probe worked.", _T, "probe"),
    _gauge(
        "sandbox_probe_duration_seconds",
        "Duration of the last run of the probe, as seen by the exporter.",
        _T,
        "probe",
    ),
    _gauge(
        "sandbox_probe_last_success_timestamp_seconds",
        "When the probe last succeeded.",
        _T,
        "probe",
    ),
    MetricSpec("sandbox_probe_runs_total", "counter", "Probe runs.", (_T, "probe")),
    MetricSpec(
        "sandbox_probe_skipped_total",
        "counter",
        "Scheduled runs not started because the previous run was still going.",
        (_T, "probe"),
    ),
    MetricSpec(
        "sandbox_probe_failures_total",
        "counter",
        "Probe failures by reason.",
        (_T, "probe", "reason"),
    ),
    # Capacity and load.
    _spec("sandbox_containers_max", "container pool size."),
    _usage("sandbox_containers_running", "containers in use."),
    _usage("sandbox_load_ratio", "containers in use / pool size."),
    _usage("sandbox_host_cpu_usage_ratio", "host CPU use, 0..1."),
    _usage("sandbox_host_load_ratio", "load average per CPU.", "window"),
    _usage("sandbox_host_cpu_frequency_hertz", "current CPU frequency."),
    _spec("sandbox_host_cpu_cores", "host physical CPU cores."),
    _spec("sandbox_host_cpu_logical_cores", "host logical CPUs."),
    _spec("sandbox_host_memory_bytes", "host RAM."),
    _usage("sandbox_host_memory_used_bytes", "host RAM in use."),
    _spec("sandbox_host_swap_bytes", "host swap."),
    _usage("sandbox_host_swap_used_bytes", "host swap in use."),
    _spec("sandbox_host_storage_bytes", "partition size.", "device"),
    _usage("sandbox_host_storage_used_bytes", "partition space in use.", "device"),
    *(
        _usage(
            f"sandbox_host_disk_{direction}_{unit}_per_second",
            f"disk {direction} {unit} per second.",
            "device",
        )
        for unit in ("bytes", "operations")
        for direction in ("read", "write")
    ),
    *(
        _usage(
            f"sandbox_host_network_{direction}_{unit}_per_second",
            f"network {unit} {direction} per second.",
        )
        for unit in ("bytes", "packets")
        for direction in ("sent", "received")
    ),
    _usage("sandbox_host_processes", "processes on the host."),
    _spec("sandbox_container_cpus", "CPUs a container may use."),
    _spec(
        "sandbox_container_memory_limit_bytes",
        "container memory limit; absent where unlimited.",
        "kind",
    ),
    _spec("sandbox_container_process_limit", "container pids limit; absent where unlimited."),
    _spec("sandbox_execute_timeout_seconds", "server-side bound of one execute request (2.x)."),
    _spec("sandbox_environment_expiration_seconds", "lifetime of a saved environment (2.x)."),
    # Canaries.
    _canary("sandbox_canary_success", "1 if HTTP 200 with the expected status and stdout."),
    _canary("sandbox_canary_duration_seconds", "round trip, exporter side."),
    _canary("sandbox_canary_server_duration_seconds", "total_time reported by the server."),
    _canary(
        "sandbox_canary_wait_seconds", "round trip minus server time: queueing, transfer, HTTP."
    ),
    _canary("sandbox_canary_status", "the response's status (negative: sandbox error code)."),
    _canary(
        "sandbox_canary_command_duration_seconds",
        "time of each command as the server measured it; step is its 0-based index.",
        "step",
    ),
    MetricSpec(
        "sandbox_canary_round_trip_seconds",
        "histogram",
        "Every canary round trip, exporter side.",
        (_T, "canary"),
    ),
    # Libraries.
    _libs(
        "sandbox_library_version_info",
        "version of each expected library found (always 1).",
        "name",
        "version",
    ),
    _libs(
        "sandbox_library_expectation_met",
        "1 if the expectation of the configuration is met.",
        "name",
    ),
    _libs("sandbox_libraries", "entries the server listed, by kind."),
)

METRICS_BY_NAME: dict[str, MetricSpec] = {metric.name: metric for metric in METRICS}
