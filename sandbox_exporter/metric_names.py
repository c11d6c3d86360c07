"""Every metric the exporter serves: name, type, help text and label names.

This is the one list of metric names: the collector renders from it, the
benchmarks and tests import it, and a test keeps it equal to the contract in
docs/metrics.md. Counters are named as PromQL sees them, with `_total`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str  # gauge, counter or histogram
    help: str
    labels: tuple[str, ...]


def _gauge(name: str, help_text: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, "gauge", help_text, labels)


def _last(probe: str) -> str:
    return f"From the last {probe} probe: "


_T = "target"
_SPECS, _USAGE, _CANARY, _LIBS = map(_last, ("specifications", "usage", "canary", "libraries"))

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
    # Per target; the config's user labels are added to sandbox_target_info only.
    _gauge(
        "sandbox_target_info",
        "Configured target (always 1); user labels live here only, join with group_left.",
        _T,
        "url",
    ),
    _gauge("sandbox_up", _SPECS + "1 if it answered with a usable document.", _T),
    _gauge(
        "sandbox_info",
        _SPECS + "server versions and detected API generation (always 1).",
        _T,
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
        "sandbox_probe_failures_total",
        "counter",
        "Probe failures by reason.",
        (_T, "probe", "reason"),
    ),
    # Capacity and load.
    _gauge("sandbox_containers_max", _SPECS + "container pool size.", _T),
    _gauge("sandbox_containers_running", _USAGE + "containers in use.", _T),
    _gauge("sandbox_load_ratio", _USAGE + "containers in use / pool size.", _T),
    _gauge("sandbox_host_cpu_usage_ratio", _USAGE + "host CPU use, 0..1.", _T),
    _gauge("sandbox_host_load_ratio", _USAGE + "load average per CPU.", _T, "window"),
    _gauge("sandbox_host_cpu_frequency_hertz", _USAGE + "current CPU frequency.", _T),
    _gauge("sandbox_host_cpu_cores", _SPECS + "host physical CPU cores.", _T),
    _gauge("sandbox_host_cpu_logical_cores", _SPECS + "host logical CPUs.", _T),
    _gauge("sandbox_host_memory_bytes", _SPECS + "host RAM.", _T),
    _gauge("sandbox_host_memory_used_bytes", _USAGE + "host RAM in use.", _T),
    _gauge("sandbox_host_swap_bytes", _SPECS + "host swap.", _T),
    _gauge("sandbox_host_swap_used_bytes", _USAGE + "host swap in use.", _T),
    _gauge("sandbox_host_storage_bytes", _SPECS + "partition size.", _T, "device"),
    _gauge("sandbox_host_storage_used_bytes", _USAGE + "partition space in use.", _T, "device"),
    *(
        _gauge(
            f"sandbox_host_disk_{direction}_{unit}_per_second",
            _USAGE + f"disk {direction} {unit} per second.",
            _T,
            "device",
        )
        for unit in ("bytes", "operations")
        for direction in ("read", "write")
    ),
    *(
        _gauge(
            f"sandbox_host_network_{direction}_{unit}_per_second",
            _USAGE + f"network {unit} {direction} per second.",
            _T,
        )
        for unit in ("bytes", "packets")
        for direction in ("sent", "received")
    ),
    _gauge("sandbox_host_processes", _USAGE + "processes on the host.", _T),
    _gauge("sandbox_container_cpus", _SPECS + "CPUs a container may use.", _T),
    _gauge(
        "sandbox_container_memory_limit_bytes",
        _SPECS + "container memory limit; absent where unlimited.",
        _T,
        "kind",
    ),
    _gauge(
        "sandbox_container_process_limit",
        _SPECS + "container pids limit; absent where unlimited.",
        _T,
    ),
    _gauge(
        "sandbox_execute_timeout_seconds",
        _SPECS + "server-side bound of one execute request (2.x).",
        _T,
    ),
    _gauge(
        "sandbox_environment_expiration_seconds",
        _SPECS + "lifetime of a saved environment (2.x).",
        _T,
    ),
    # Canaries.
    _gauge(
        "sandbox_canary_success",
        _CANARY + "1 if HTTP 200 with the expected status and stdout.",
        _T,
        "canary",
    ),
    _gauge("sandbox_canary_duration_seconds", _CANARY + "round trip, exporter side.", _T, "canary"),
    _gauge(
        "sandbox_canary_server_duration_seconds",
        _CANARY + "total_time reported by the server.",
        _T,
        "canary",
    ),
    _gauge(
        "sandbox_canary_wait_seconds",
        _CANARY + "round trip minus server time: queueing, transfer, HTTP.",
        _T,
        "canary",
    ),
    _gauge(
        "sandbox_canary_status",
        _CANARY + "the response's status (negative: sandbox error code).",
        _T,
        "canary",
    ),
    _gauge(
        "sandbox_canary_command_duration_seconds",
        _CANARY + "time of each command as the server measured it; step is its 0-based index.",
        _T,
        "canary",
        "step",
    ),
    MetricSpec(
        "sandbox_canary_round_trip_seconds",
        "histogram",
        "Every canary round trip, exporter side.",
        (_T, "canary"),
    ),
    # Libraries.
    _gauge(
        "sandbox_library_version_info",
        _LIBS + "version of each expected library found (always 1).",
        _T,
        "kind",
        "name",
        "version",
    ),
    _gauge(
        "sandbox_library_expectation_met",
        _LIBS + "1 if the expectation of the configuration is met.",
        _T,
        "kind",
        "name",
    ),
    _gauge("sandbox_libraries", _LIBS + "entries the server listed, by kind.", _T, "kind"),
)

METRICS_BY_NAME: dict[str, MetricSpec] = {metric.name: metric for metric in METRICS}
