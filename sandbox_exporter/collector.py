"""Render a state snapshot as exposition text; no I/O here.

A scrape writes each sample's line straight from the snapshot, in the
Prometheus text format, whose sample lines OpenMetrics shares: only the
families' HELP and TYPE lines differ, and prometheus_client writes those
(`header`). Nothing is kept between scrapes, so a scrape costs the same
whatever changed and the exporter holds no second copy of its results.
The order of families is the metric table's (`metric_names`), the order of
samples the order they are added in; one target's bad data is logged and
its samples left out, never a failed scrape.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from types import SimpleNamespace

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from . import __version__
from .config import Target
from .documents import Specifications
from .health import load_ratio
from .metric_names import METRICS, METRICS_BY_NAME
from .probes import LibrariesReport, Load, ProbeResult
from .state import CANARY_BUCKETS, HistogramData, Snapshot
from .vocabulary import CANARY, LIBRARIES, POSSIBLE_REASONS, PROBES, SPECIFICATIONS, USAGE

log = logging.getLogger(__name__)

_FAMILY_CLASSES: dict[str, type[Metric]] = {
    "gauge": GaugeMetricFamily,
    "counter": CounterMetricFamily,
    "histogram": HistogramMetricFamily,
}
_OPENMETRICS_END = "# EOF\n"


@functools.cache
def header(name: str, openmetrics: bool) -> str:
    """The HELP and TYPE lines of metric `name`, as prometheus_client writes them."""
    spec = METRICS_BY_NAME[name]
    family = _FAMILY_CLASSES[spec.type](spec.name, spec.help, labels=spec.labels)
    encode = generate_openmetrics if openmetrics else generate_latest
    text = encode(SimpleNamespace(collect=lambda: [family])).decode()
    return text.removesuffix(_OPENMETRICS_END)


def _escaped(value: str) -> str:
    # The exposition formats escape these three in label values.
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


@functools.cache
def _template(sample: str, label_names: tuple[str, ...]) -> str:
    """`sample{a="{0}",b="{1}"} {2}\n`: the line of a sample, labels sorted by
    name as prometheus_client writes them, for `str.format` to fill in with
    the escaped label values, then the value's text."""
    order = sorted(range(len(label_names)), key=label_names.__getitem__)
    pairs = ",".join(f'{label_names[i]}="{{{i}}}"' for i in order)
    value = f"{{{len(label_names)}}}\n"
    return f"{sample}{{{{{pairs}}}}} {value}" if pairs else f"{sample} {value}"


# Each series shape's template, made once: sorting and joining label names per
# sample cost half a scrape. (template, number of labels) by metric name.
_TEMPLATES = {spec.name: (_template(spec.name, spec.labels), len(spec.labels)) for spec in METRICS}
_ORDER = {spec.name: index for index, spec in enumerate(METRICS)}
_BUCKET_BOUNDS = tuple(floatToGoString(bound) for bound in (*CANARY_BUCKETS, math.inf))


def _value(value: float) -> str:
    """A sample value as prometheus_client writes it. Most samples are counts
    and 0/1 flags: an int below a million is its digits and ".0" (from a
    million up, Go's format and so prometheus_client's turn to exponents)."""
    if type(value) is int and -1_000_000 < value < 1_000_000:
        return f"{value}.0"
    return floatToGoString(value)


class Lines:
    """Sample lines by metric name, as the renders below add them."""

    def __init__(self) -> None:
        self.by_name: defaultdict[str, list[str]] = defaultdict(list)

    def add(self, name: str, labels: Sequence[str], value: float | None) -> None:
        """A sample with the metric's declared labels; none where the value is
        unknown (None or NaN)."""
        if value is None or value != value:
            return
        template, count = _TEMPLATES[name]
        if len(labels) != count:
            raise ValueError(f"{name} takes labels {METRICS_BY_NAME[name].labels}, got {labels!r}")
        self.by_name[name].append(template.format(*map(_escaped, labels), _value(value)))

    def add_labelled(self, name: str, labels: Sequence[tuple[str, str]], value: float) -> None:
        """A sample whose label names are given with it (the user's labels)."""
        template = _template(name, tuple(key for key, _ in labels))
        escaped = [_escaped(text) for _, text in labels]
        self.by_name[name].append(template.format(*escaped, _value(value)))

    def add_histogram(self, name: str, labels: Sequence[str], data: HistogramData) -> None:
        names = METRICS_BY_NAME[name].labels
        escaped = [_escaped(text) for text in labels]
        bucket = _template(f"{name}_bucket", (*names, "le"))
        lines = self.by_name[name]
        cumulative = 0
        for le, count in zip(_BUCKET_BOUNDS, data.bucket_counts, strict=True):
            cumulative += count
            lines.append(bucket.format(*escaped, le, _value(cumulative)))
        for suffix, value in (("_count", cumulative), ("_sum", data.total)):
            lines.append(_template(name + suffix, names).format(*escaped, _value(value)))

    def extend(self, other: Lines) -> None:
        for name, lines in other.by_name.items():
            self.by_name[name].extend(lines)

    def text(self, openmetrics: bool = False, *, end: bool = False) -> str:
        """Every family with samples, in the order of the metric table; `end`
        adds OpenMetrics' end marker (when nothing follows in the answer)."""
        parts = []
        for name in sorted(self.by_name, key=_ORDER.__getitem__):
            lines = self.by_name[name]
            if lines:
                parts.append(header(name, openmetrics))
                parts.extend(lines)
        if openmetrics and end:
            parts.append(_OPENMETRICS_END)
        return "".join(parts)


def render(
    snapshot: Snapshot,
    targets: Iterable[Target] | None = None,
    *,
    exporter_metrics: bool = True,
    probes: Collection[str] = PROBES,
) -> Lines:
    """The samples of `targets` (every configured target by default) and,
    unless told otherwise, of the exporter itself; of `probes` only, where
    `/probe?probe=` names some."""
    if targets is None:
        targets = snapshot.config.targets if snapshot.config is not None else ()
    lines = Lines()
    if exporter_metrics:
        render_exporter(lines, snapshot)
    for target in targets:
        own = Lines()
        try:
            render_target(own, snapshot, target, probes)
        except Exception:
            # Rendered apart, joined only when whole: the target is left out whole.
            log.exception("skipping bad data of target %s in this scrape", target.name)
            continue
        if lines.by_name:
            lines.extend(own)
        else:
            lines = own  # the first, or /probe's only target: nothing to copy
    return lines


def render_target(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str] = PROBES
) -> None:
    """A target's info, then each of `probes`: its runs and what its last run found."""
    name = target.name
    results = snapshot.results
    _render_info(lines, target)
    for probe in PROBES:
        if probe not in probes:
            continue
        key = (name, probe)
        _render_runs(
            lines,
            name,
            probe,
            results.get(key),
            snapshot.last_success.get(key),
            snapshot.runs.get(key, 0),
        )
        lines.add("sandbox_probe_skipped_total", [name, probe], snapshot.skips.get(key, 0))
        for reason in POSSIBLE_REASONS[probe]:
            count = snapshot.failures.get((*key, reason), 0)
            lines.add("sandbox_probe_failures_total", [name, probe, reason.value], count)
    spec_result = results.get((name, SPECIFICATIONS))
    if SPECIFICATIONS in probes:
        _render_specifications(lines, name, spec_result)
    if USAGE in probes:
        _render_usage(lines, name, results.get((name, USAGE)), spec_result)
    if LIBRARIES in probes:
        _render_libraries(lines, name, results.get((name, LIBRARIES)))
    if CANARY in probes:
        _render_canaries(lines, name, results.get((name, CANARY)))
        for canary in target.canaries:
            histogram = snapshot.canary_histograms.get((name, canary.name))
            if histogram is not None:
                lines.add_histogram(
                    "sandbox_canary_round_trip_seconds", [name, canary.name], histogram
                )


def render_exporter(lines: Lines, snapshot: Snapshot) -> None:
    lines.add("sandbox_exporter_build_info", [__version__], 1)
    lines.add("sandbox_exporter_config_last_reload_successful", [], int(snapshot.reload.successful))
    lines.add(
        "sandbox_exporter_config_last_reload_success_timestamp_seconds",
        [],
        snapshot.reload.last_success_timestamp,
    )
    count = len(snapshot.config.targets) if snapshot.config is not None else 0
    lines.add("sandbox_exporter_targets", [], count)


def _render_info(lines: Lines, target: Target) -> None:
    # The user labels vary by target: the one metric whose label names do.
    labels = [("target", target.name), ("url", target.url), *target.labels.items()]
    lines.add_labelled("sandbox_target_info", labels, 1)


def _render_runs(
    lines: Lines,
    name: str,
    probe: str,
    result: ProbeResult | None,
    last_success: float | None,
    runs: int,
) -> None:
    if result is not None:
        lines.add("sandbox_probe_success", [name, probe], int(result.success))
        lines.add("sandbox_probe_duration_seconds", [name, probe], result.duration_seconds)
    lines.add("sandbox_probe_last_success_timestamp_seconds", [name, probe], last_success)
    lines.add("sandbox_probe_runs_total", [name, probe], runs)


def _render_specifications(lines: Lines, name: str, result: ProbeResult | None) -> None:
    if result is not None:
        lines.add("sandbox_up", [name], int(result.success))
    spec = _successful_specifications(result)
    if spec is None:
        return
    lines.add("sandbox_info", [name, spec.sandbox_version, spec.docker_version, str(spec.api)], 1)
    lines.add("sandbox_containers_max", [name], spec.containers_max)
    lines.add("sandbox_container_cpus", [name], spec.container_cpus)
    for kind, limit in sorted(spec.container_memory_limits.items()):
        lines.add("sandbox_container_memory_limit_bytes", [name, kind], limit)
    lines.add("sandbox_container_process_limit", [name], spec.container_process_limit)
    lines.add("sandbox_execute_timeout_seconds", [name], spec.execute_timeout_seconds)
    lines.add("sandbox_environment_expiration_seconds", [name], spec.environment_expiration_seconds)
    host = spec.host
    if host is not None:
        lines.add("sandbox_host_cpu_cores", [name], host.cpu_cores)
        lines.add("sandbox_host_cpu_logical_cores", [name], host.cpu_logical_cores)
        lines.add("sandbox_host_memory_bytes", [name], host.memory_bytes)
        lines.add("sandbox_host_swap_bytes", [name], host.swap_bytes)
        for device, size in sorted(host.storage_bytes.items()):
            lines.add("sandbox_host_storage_bytes", [name, device], size)


def _render_usage(
    lines: Lines, name: str, result: ProbeResult | None, spec_result: ProbeResult | None
) -> None:
    if result is None or not isinstance(result.data, Load):
        return
    load = result.data
    lines.add("sandbox_containers_running", [name], load.containers_running)
    # The pool size and the load are judged once, in health.py, for the
    # pages, --once and the metrics alike.
    ratio = load_ratio({USAGE: result} | ({SPECIFICATIONS: spec_result} if spec_result else {}))
    if ratio is not None:
        lines.add("sandbox_load_ratio", [name], ratio)
    usage = load.usage
    if usage is None:
        return
    lines.add("sandbox_host_cpu_usage_ratio", [name], usage.cpu_usage_ratio)
    for window, value in zip(("1m", "5m", "15m"), usage.load_ratio, strict=True):
        lines.add("sandbox_host_load_ratio", [name, window], value)
    lines.add("sandbox_host_cpu_frequency_hertz", [name], usage.cpu_frequency_hz)
    lines.add("sandbox_host_memory_used_bytes", [name], usage.memory_used_bytes)
    lines.add("sandbox_host_swap_used_bytes", [name], usage.swap_used_bytes)
    for device, used in sorted(usage.storage_used_bytes.items()):
        lines.add("sandbox_host_storage_used_bytes", [name, device], used)
    per_device = {
        "sandbox_host_disk_read_bytes_per_second": usage.disk_read_bytes_per_second,
        "sandbox_host_disk_write_bytes_per_second": usage.disk_write_bytes_per_second,
        "sandbox_host_disk_read_operations_per_second": usage.disk_read_operations_per_second,
        "sandbox_host_disk_write_operations_per_second": usage.disk_write_operations_per_second,
    }
    for metric, values in per_device.items():
        for device, value in sorted(values.items()):
            lines.add(metric, [name, device], value)
    network = {
        "sandbox_host_network_sent_bytes_per_second": usage.network_sent_bytes_per_second,
        "sandbox_host_network_received_bytes_per_second": usage.network_received_bytes_per_second,
        "sandbox_host_network_sent_packets_per_second": usage.network_sent_packets_per_second,
        "sandbox_host_network_received_packets_per_second": (
            usage.network_received_packets_per_second
        ),
    }
    for metric, value in network.items():
        lines.add(metric, [name], value)
    lines.add("sandbox_host_processes", [name], usage.processes)


def _render_libraries(lines: Lines, name: str, result: ProbeResult | None) -> None:
    if result is None or not isinstance(result.data, LibrariesReport):
        return
    report = result.data
    for kind, count in sorted(report.package_counts.items()):
        lines.add("sandbox_libraries", [name, kind], count)
    lines.add("sandbox_libraries", [name, "bin"], report.bin_count)
    # Every outcome, met or not: the judgement of what a miss means is health.py's.
    for outcome in report.outcomes:
        labels = [name, outcome.kind, outcome.name]
        lines.add("sandbox_library_expectation_met", labels, int(outcome.met))
        if outcome.found is not None:
            lines.add("sandbox_library_version_info", [*labels, outcome.found], 1)


def _render_canaries(lines: Lines, name: str, result: ProbeResult | None) -> None:
    # A failed canary probe still carries the canaries' timings.
    if result is None or not isinstance(result.data, tuple):
        return
    for canary in result.data:
        labels = [name, canary.name]
        lines.add("sandbox_canary_success", labels, int(canary.success))
        lines.add("sandbox_canary_duration_seconds", labels, canary.round_trip_seconds)
        lines.add("sandbox_canary_server_duration_seconds", labels, canary.server_seconds)
        lines.add("sandbox_canary_wait_seconds", labels, canary.wait_seconds)
        lines.add("sandbox_canary_status", labels, canary.status)
        for step, seconds in enumerate(canary.command_seconds):
            lines.add("sandbox_canary_command_duration_seconds", [*labels, str(step)], seconds)


def _successful_specifications(spec_result: ProbeResult | None) -> Specifications | None:
    spec = spec_result.data if spec_result is not None and spec_result.success else None
    return spec if isinstance(spec, Specifications) else None
