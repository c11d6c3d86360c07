"""Render a state snapshot as Prometheus metric families; no I/O here.

The metric names and their help texts are defined once, in `METRICS` below,
from the contract in METRICS.md. Each target is rendered on its own: one
target's bad data is logged and skipped, never a failed scrape.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from . import __version__
from .config import Target
from .documents import Specifications
from .probes import LibrariesReport, Load, ProbeResult
from .state import CANARY_BUCKETS, HistogramData, Snapshot, State
from .vocabulary import CANARY, LIBRARIES, POSSIBLE_REASONS, SPECIFICATIONS, USAGE

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


# For gauges and counters `Families.add` builds the samples itself, exactly
# as the family classes' `add_metric` would (a counter's sample is NAME_total).
_DIRECT_SAMPLES: dict[str, tuple[str, tuple[str, ...]]] = {
    spec.name: (spec.name + "_total" if spec.kind == "counter" else spec.name, spec.labels)
    for spec in METRICS.values()
    if spec.kind in ("gauge", "counter")
}


def _new_sample(name: str, labels: dict[str, str], value: float) -> Sample:
    # Sample(name, labels, value), without the named tuple's Python-level
    # constructor: that was a third of the cost of a sample.
    return _make_tuple(Sample, (name, labels, value, *_SAMPLE_DEFAULTS))


_make_tuple = tuple.__new__
if Sample._fields[:3] != ("name", "labels", "value"):
    raise ImportError(f"unexpected prometheus_client Sample fields {Sample._fields}")
_SAMPLE_DEFAULTS = tuple(Sample._field_defaults[field] for field in Sample._fields[3:])


def new_family(name: str) -> Metric:
    """An empty family object for metric `name`, as declared in `METRICS`."""
    spec = METRICS[name]
    if spec.kind == "counter":
        return CounterMetricFamily(name, spec.help, labels=spec.labels)
    if spec.kind == "histogram":
        return HistogramMetricFamily(name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(name, spec.help, labels=spec.labels)


class Families:
    """Metric families for one render, created on first use, in contract order.

    `add` appends gauge and counter samples without making a family object;
    `family` gives the family object for the other cases, its `samples` the
    very list `add` appends to, so the order holds either way.
    """

    __slots__ = ("_metrics", "_samples")

    def __init__(self) -> None:
        self._samples: dict[str, list[Sample]] = {}
        self._metrics: dict[str, Metric] = {}

    def add(self, name: str, labels: Sequence[str], value: float | None) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        direct = _DIRECT_SAMPLES.get(name)
        if direct is None:
            self.family(name).add_metric(list(labels), value)
            return
        sample_name, label_names = direct
        samples = self._samples.get(name)
        if samples is None:
            samples = self._samples[name] = []
        # Not strict, as in add_metric: the label count is checked by the tests.
        labelled = dict(zip(label_names, labels, strict=False))
        samples.append(_new_sample(sample_name, labelled, value))

    def add_histogram(
        self,
        name: str,
        labels: Sequence[str],
        buckets: Sequence[tuple[str, float]],
        sum_value: float | None,
    ) -> None:
        """The samples HistogramMetricFamily.add_metric makes, made directly."""
        label_names = METRICS[name].labels
        labelled = list(zip(label_names, labels, strict=False))
        samples = self._samples.get(name)
        if samples is None:
            samples = self._samples[name] = []
        bucket_name = name + "_bucket"
        for bound, count in buckets:
            samples.append(_new_sample(bucket_name, dict([*labelled, ("le", bound)]), count))
        # As add_metric: no sum and count when there are negative buckets.
        if float(buckets[0][0]) >= 0 and sum_value is not None:
            samples.append(_new_sample(name + "_count", dict(labelled), buckets[-1][1]))
            samples.append(_new_sample(name + "_sum", dict(labelled), sum_value))

    def family(self, name: str) -> Metric:
        family = self._metrics.get(name)
        if family is None:
            family = self._metrics[name] = new_family(name)
            family.samples = self._samples.setdefault(name, [])
        return family

    def frozen(self) -> tuple[tuple[str, tuple[Sample, ...]], ...]:
        """(family name, samples) in order, without making family objects."""
        return tuple((name, tuple(samples)) for name, samples in self._samples.items())

    def __iter__(self) -> Iterator[Metric]:
        return iter([self.family(name) for name in self._samples])


class SandboxCollector(Collector):
    """Renders a `State`; `targets` limits the render to some targets (for /probe).

    Each target is rendered in parts (see `target_parts`), and a part whose
    inputs are the very objects of the previous scrape is not rendered again:
    its samples are reused. Between two scrapes most results have not
    changed (libraries runs hourly, failures are rare), and making fresh
    samples for them cost about as much, garbage collection included, as
    writing everything out.
    """

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
        # target name -> its parts as rendered by the last scrape; replaced
        # whole at the end of each scrape, so concurrent scrapes never see half.
        self._rendered: dict[str, list[_RenderedPart]] = {}

    def describe(self) -> list[Metric]:
        # Registration must do no work; the families are only known at scrape time.
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self._state.snapshot()
        targets = list(self._targets()) if self._targets is not None else []
        if self._targets is None and snapshot.config is not None:
            targets = list(snapshot.config.targets)
        merged: dict[str, list[Sample]] = {}
        if self._exporter_metrics:
            exporter = Families()
            render_exporter(exporter, snapshot)
            merged.update((name, list(samples)) for name, samples in exporter.frozen())
        with _garbage_collection_paused():
            self._rendered = self._render_targets(snapshot, targets, merged)
        for name, samples in merged.items():
            family = new_family(name)
            family.samples = samples
            yield family

    def _render_targets(
        self, snapshot: Snapshot, targets: list[Target], merged: dict[str, list[Sample]]
    ) -> dict[str, list[_RenderedPart]]:
        """Render (or reuse) every target's parts into `merged`; the parts, by target."""
        previous, rendered = self._rendered, {}
        for target in targets:
            # Render every part first so a failing target leaves no half.
            try:
                parts = _render_parts(snapshot, target, previous.get(target.name, ()))
            except Exception:
                log.exception("skipping bad data of target %s in this scrape", target.name)
                continue
            rendered[target.name] = parts
            for _, _, samples_by_family in parts:
                for name, samples in samples_by_family:
                    kept = merged.get(name)
                    if kept is None:
                        merged[name] = list(samples)
                    else:
                        kept.extend(samples)
        return rendered


@contextlib.contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a scrape builds its samples.

    Each sample is a container object that lives until the scrape is written
    out, and the collector's thresholds count such allocations: at 1000
    targets a scrape triggered several full collections, each walking every
    object of the process, which cost more than building the samples.
    Nothing built here forms reference cycles, so only young objects are
    left for the next collection. Global to the process, hence brief; left
    off if it was off before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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


Part = tuple[Callable[..., None], tuple]


def target_parts(snapshot: Snapshot, target: Target) -> list[Part]:
    """One target's series as (render function, its inputs), in output order.

    A part's series depend on nothing but its inputs: the collector reuses
    what a part rendered for as long as its inputs are the very same objects
    (see `_same_inputs`). A new series goes into the part whose inputs it
    reads, or into a new part; reading the snapshot inside a render function
    would go stale.
    """
    name = target.name
    parts: list[Part] = [(_render_info, (target,))]
    results = {}
    for probe in (SPECIFICATIONS, USAGE, LIBRARIES, CANARY):
        key = (name, probe)
        result = results[probe] = snapshot.results.get(key)
        parts.append(
            (
                _render_runs,
                (name, probe, result, snapshot.last_success.get(key), snapshot.runs.get(key, 0)),
            )
        )
        failures = [
            snapshot.failures.get((name, probe, reason), 0) for reason in POSSIBLE_REASONS[probe]
        ]
        parts.append((_render_failures, (name, probe, *failures)))
    spec_result = results[SPECIFICATIONS]
    histograms = [snapshot.canary_histograms.get((name, canary.name)) for canary in target.canaries]
    parts += [
        (_render_specifications_result, (name, spec_result)),
        (_render_usage_result, (name, results[USAGE], spec_result)),
        (_render_libraries_result, (name, results[LIBRARIES])),
        (_render_canary_result, (name, results[CANARY])),
        (_render_histograms, (target, *histograms)),
    ]
    return parts


# (render function, its inputs, the samples it rendered by family)
_RenderedPart = tuple[Callable[..., None], tuple, tuple[tuple[str, tuple[Sample, ...]], ...]]


def _same_inputs(old: tuple, new: tuple) -> bool:
    # Identity, not equality: results and targets are immutable, and the
    # numbers come straight from the state's dicts, the same objects until
    # they change. An equal but new number only costs a render; and as the
    # cache holds the old objects, no id can be reused by a new one.
    return len(old) == len(new) and all(map(operator.is_, old, new))


def _render_parts(
    snapshot: Snapshot, target: Target, previous: Sequence[_RenderedPart]
) -> list[_RenderedPart]:
    parts = target_parts(snapshot, target)
    if len(previous) != len(parts):
        previous = [None] * len(parts)  # type: ignore[list-item]
    rendered = []
    for (render, inputs), old in zip(parts, previous, strict=True):
        if old is not None and old[0] is render and _same_inputs(old[1], inputs):
            rendered.append(old)
            continue
        scratch = Families()
        render(scratch, *inputs)
        rendered.append((render, inputs, scratch.frozen()))
    return rendered


def _render_info(families: Families, target: Target) -> None:
    info_labels = {"target": target.name, "url": target.url, **target.labels}
    families.family("sandbox_target_info").add_sample("sandbox_target_info", info_labels, 1)


def _render_runs(
    families: Families,
    name: str,
    probe: str,
    result: ProbeResult | None,
    last_success: float | None,
    runs: int,
) -> None:
    if result is not None:
        families.add("sandbox_probe_success", [name, probe], int(result.success))
        families.add("sandbox_probe_duration_seconds", [name, probe], result.duration_seconds)
    families.add("sandbox_probe_last_success_timestamp_seconds", [name, probe], last_success)
    families.add("sandbox_probe_runs", [name, probe], runs)


def _render_failures(families: Families, name: str, probe: str, *counts: int) -> None:
    for reason, count in zip(POSSIBLE_REASONS[probe], counts, strict=True):
        families.add("sandbox_probe_failures", [name, probe, reason.value], count)


def _successful_specifications(spec_result: ProbeResult | None) -> Specifications | None:
    spec = spec_result.data if spec_result is not None and spec_result.success else None
    return spec if isinstance(spec, Specifications) else None


def _render_specifications_result(
    families: Families, name: str, spec_result: ProbeResult | None
) -> None:
    if spec_result is not None:
        families.add("sandbox_up", [name], int(spec_result.success))
    spec = _successful_specifications(spec_result)
    if spec is not None:
        _render_specifications(families, name, spec)


def _render_usage_result(
    families: Families,
    name: str,
    usage_result: ProbeResult | None,
    spec_result: ProbeResult | None,
) -> None:
    if usage_result is not None and isinstance(usage_result.data, Load):
        pool = usage_result.data.containers_max
        spec = _successful_specifications(spec_result)
        if pool is None and spec is not None:
            pool = spec.containers_max
        _render_load(families, name, usage_result.data, pool)


def _render_libraries_result(
    families: Families, name: str, libraries_result: ProbeResult | None
) -> None:
    if libraries_result is not None and isinstance(libraries_result.data, LibrariesReport):
        _render_libraries(families, name, libraries_result.data)


def _render_canary_result(families: Families, name: str, canary_result: ProbeResult | None) -> None:
    if canary_result is None or not isinstance(canary_result.data, tuple):
        return
    for canary in canary_result.data:
        labels = [name, canary.name]
        families.add("sandbox_canary_success", labels, int(canary.success))
        families.add("sandbox_canary_duration_seconds", labels, canary.round_trip_seconds)
        families.add("sandbox_canary_server_duration_seconds", labels, canary.server_seconds)
        families.add("sandbox_canary_wait_seconds", labels, canary.wait_seconds)
        families.add("sandbox_canary_status", labels, canary.status)
        for step, seconds in enumerate(canary.command_seconds):
            families.add("sandbox_canary_command_duration_seconds", [*labels, str(step)], seconds)


def _render_histograms(
    families: Families, target: Target, *histograms: HistogramData | None
) -> None:
    for canary, histogram in zip(target.canaries, histograms, strict=True):
        if histogram is None:
            continue
        cumulative, buckets = 0, []
        for bound, count in zip((*CANARY_BUCKETS, math.inf), histogram.bucket_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
        families.add_histogram(
            "sandbox_canary_round_trip_seconds",
            [target.name, canary.name],
            buckets,
            histogram.total,
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
