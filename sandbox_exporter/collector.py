"""Render a state snapshot as Prometheus metric families; no I/O here.

A target's samples are rendered in parts, each a function of a few
immutable inputs (see `target_parts`). A part is rendered once when its
inputs change; a scrape joins the parts of every target into one family per
metric. Samples are made by prometheus_client's own family classes; metric
names, types and help texts come from `metric_names`. One target's bad data
is logged and skipped, never a failed scrape.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

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
from .health import load_ratio
from .metric_names import METRICS, METRICS_BY_NAME
from .probes import LibrariesReport, Load, ProbeResult
from .state import CANARY_BUCKETS, HistogramData, Snapshot, State
from .vocabulary import CANARY, LIBRARIES, POSSIBLE_REASONS, PROBES, SPECIFICATIONS, USAGE

log = logging.getLogger(__name__)

_FAMILY_CLASSES: dict[str, type[Metric]] = {
    "gauge": GaugeMetricFamily,
    "counter": CounterMetricFamily,
    "histogram": HistogramMetricFamily,
}

# One family's samples, as made by its add_metric (immutable named tuples).
Samples = Sequence[Sample]


def new_family(name: str, labels: Sequence[str] | None = None) -> Metric:
    """An empty family of metric `name`; `labels` replaces the declared label names."""
    spec = METRICS_BY_NAME[name]
    return _FAMILY_CLASSES[spec.type](spec.name, spec.help, labels=labels or spec.labels)


class Families:
    """Families filled by the renders of one scrape, each made on first use.

    One family object per metric serves every part: making one per part
    cost as much as the samples themselves. `render` hands out what one
    part added.
    """

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}
        # Family name -> its length when the current render began.
        self._start: dict[str, int] = {}

    def family(self, name: str) -> Metric:
        family = self.by_name.get(name)
        if family is None:
            family = self.by_name[name] = new_family(name)
        if name not in self._start:
            self._start[name] = len(family.samples)
        return family

    def add(self, name: str, labels: Sequence[str], value: float | None) -> None:
        """One sample; none where the value is unknown (None or NaN)."""
        if value is None or value != value:
            return
        self.family(name).add_metric(labels, value)

    def render(self, part: Part) -> tuple[tuple[str, Samples], ...]:
        """Render `part`; the samples it added, by metric name."""
        self._start = {}
        part.render(self, *part.inputs)
        return tuple(
            (name, self.by_name[name].samples[start:]) for name, start in self._start.items()
        )


class Part(NamedTuple):
    """A render function and its inputs: its samples depend on nothing else."""

    render: Callable[..., None]
    inputs: tuple


def _renders_like(old: Part, new: Part) -> bool:
    """True if `new` renders to the same samples as `old`.

    By identity: results, documents and targets are immutable, and a new
    probe run makes new objects even when they are equal (a result's
    equality even ignores its data). Numbers come from the state's dicts,
    the same objects until they change; an equal new number only costs a
    render. The cache holds the old objects, so none of their ids can be
    reused by a new one.
    """
    return (
        old.render is new.render
        and len(old.inputs) == len(new.inputs)
        and all(map(operator.is_, old.inputs, new.inputs))
    )


# A part and the samples it rendered, by metric name.
_Rendered = tuple[Part, tuple[tuple[str, Samples], ...]]


def target_parts(snapshot: Snapshot, target: Target) -> list[Part]:
    """One target's samples as parts, each with what it reads of the snapshot.

    Split where inputs change at different rates: usage results every
    scrape or so, specifications and canaries less often, libraries hourly,
    failure counters rarely. A new series goes into the part whose inputs
    it reads, or into a new part: a render function that read the snapshot
    itself would go stale.
    """
    name = target.name
    results = {probe: snapshot.results.get((name, probe)) for probe in PROBES}
    parts = [Part(_render_info, (target,))]
    for probe in PROBES:
        key = (name, probe)
        last_success, runs = snapshot.last_success.get(key), snapshot.runs.get(key, 0)
        parts.append(Part(_render_runs, (name, probe, results[probe], last_success, runs)))
        failures = [snapshot.failures.get((*key, reason), 0) for reason in POSSIBLE_REASONS[probe]]
        parts.append(Part(_render_failures, (name, probe, *failures)))
    spec_result = results[SPECIFICATIONS]
    parts += [
        Part(_render_specifications, (name, spec_result)),
        Part(_render_usage, (name, results[USAGE], spec_result)),
        Part(_render_libraries, (name, results[LIBRARIES])),
        Part(_render_canaries, (name, results[CANARY])),
    ]
    for canary in target.canaries:
        histogram = snapshot.canary_histograms.get((name, canary.name))
        parts.append(Part(_render_histogram, (name, canary.name, histogram)))
    return parts


def render_target(
    families: Families, snapshot: Snapshot, target: Target, previous: Sequence[_Rendered] = ()
) -> list[_Rendered]:
    """Every part of `target`, rendered, or reused from `previous` where unchanged."""
    parts = target_parts(snapshot, target)
    if len(previous) != len(parts):
        previous = ()
    rendered = []
    for index, part in enumerate(parts):
        if previous and _renders_like(previous[index][0], part):
            rendered.append(previous[index])
        else:
            rendered.append((part, families.render(part)))
    return rendered


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
        # By target name, as of the last scrape; replaced whole by each scrape,
        # so a concurrent scrape never sees half of it.
        self._rendered: dict[str, list[_Rendered]] = {}

    def describe(self) -> list[Metric]:
        # Registration must do no work; the families are only known at scrape time.
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self._state.snapshot()
        if self._targets is not None:
            targets = list(self._targets())
        else:
            targets = list(snapshot.config.targets) if snapshot.config is not None else []
        # Every metric's samples, in the order of the metric table.
        joined: dict[str, list[Sample]] = {spec.name: [] for spec in METRICS}
        families = Families()
        if self._exporter_metrics:
            for name, samples in families.render(Part(render_exporter, (snapshot,))):
                joined[name] += samples
        previous, rendered = self._rendered, {}
        for target in targets:
            try:
                parts = render_target(families, snapshot, target, previous.get(target.name, ()))
            except Exception:
                # Every part is rendered before any is joined: the target is left out whole.
                log.exception("skipping bad data of target %s in this scrape", target.name)
                continue
            rendered[target.name] = parts
            for _, samples_by_name in parts:
                for name, samples in samples_by_name:
                    joined[name] += samples
        self._rendered = rendered
        for name, samples in joined.items():
            if samples:
                # `samples` is the family's public list; add_metric made each one.
                family = new_family(name)
                family.samples += samples
                yield family


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


def _render_info(families: Families, target: Target) -> None:
    # The user labels vary by target: the sample is made by a family of its own.
    info = new_family("sandbox_target_info", ["target", "url", *target.labels])
    info.add_metric([target.name, target.url, *target.labels.values()], 1)
    families.family("sandbox_target_info").samples += info.samples


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
    families.add("sandbox_probe_runs_total", [name, probe], runs)


def _render_failures(families: Families, name: str, probe: str, *counts: int) -> None:
    for reason, count in zip(POSSIBLE_REASONS[probe], counts, strict=True):
        families.add("sandbox_probe_failures_total", [name, probe, reason.value], count)


def _render_specifications(families: Families, name: str, result: ProbeResult | None) -> None:
    if result is not None:
        families.add("sandbox_up", [name], int(result.success))
    spec = _successful_specifications(result)
    if spec is None:
        return
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


def _render_usage(
    families: Families, name: str, result: ProbeResult | None, spec_result: ProbeResult | None
) -> None:
    if result is None or not isinstance(result.data, Load):
        return
    load = result.data
    families.add("sandbox_containers_running", [name], load.containers_running)
    # The pool size and the load are judged once, in health.py, for the
    # pages, --once and the metrics alike.
    ratio = load_ratio({USAGE: result} | ({SPECIFICATIONS: spec_result} if spec_result else {}))
    if ratio is not None:
        families.add("sandbox_load_ratio", [name], ratio)
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


def _render_libraries(families: Families, name: str, result: ProbeResult | None) -> None:
    if result is None or not isinstance(result.data, LibrariesReport):
        return
    report = result.data
    for kind, count in sorted(report.package_counts.items()):
        families.add("sandbox_libraries", [name, kind], count)
    families.add("sandbox_libraries", [name, "bin"], report.bin_count)
    # Every outcome, met or not: the judgement of what a miss means is health.py's.
    for outcome in report.outcomes:
        labels = [name, outcome.kind, outcome.name]
        families.add("sandbox_library_expectation_met", labels, int(outcome.met))
        if outcome.found is not None:
            families.add("sandbox_library_version_info", [*labels, outcome.found], 1)


def _render_canaries(families: Families, name: str, result: ProbeResult | None) -> None:
    # A failed canary probe still carries the canaries' timings.
    if result is None or not isinstance(result.data, tuple):
        return
    for canary in result.data:
        labels = [name, canary.name]
        families.add("sandbox_canary_success", labels, int(canary.success))
        families.add("sandbox_canary_duration_seconds", labels, canary.round_trip_seconds)
        families.add("sandbox_canary_server_duration_seconds", labels, canary.server_seconds)
        families.add("sandbox_canary_wait_seconds", labels, canary.wait_seconds)
        families.add("sandbox_canary_status", labels, canary.status)
        for step, seconds in enumerate(canary.command_seconds):
            families.add("sandbox_canary_command_duration_seconds", [*labels, str(step)], seconds)


def _render_histogram(
    families: Families, name: str, canary: str, histogram: HistogramData | None
) -> None:
    if histogram is None:
        return
    cumulative, buckets = 0, []
    for bound, count in zip((*CANARY_BUCKETS, math.inf), histogram.bucket_counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
    families.family("sandbox_canary_round_trip_seconds").add_metric(
        [name, canary], buckets, histogram.total
    )


def _successful_specifications(spec_result: ProbeResult | None) -> Specifications | None:
    spec = spec_result.data if spec_result is not None and spec_result.success else None
    return spec if isinstance(spec, Specifications) else None
