"""Render a state snapshot as exposition text; no I/O here.

A scrape writes each sample's line straight from the snapshot, in the
Prometheus text format, whose sample lines OpenMetrics shares: only the
families' HELP and TYPE lines differ, and prometheus_client writes those
(`header`; the lines are written by `sample_lines`). Nothing is kept
between scrapes, so a scrape costs the same whatever changed and the
exporter holds no second copy of its results.

The exposition lists each family once, every target's samples of it
together, in the order of the metric table (`metric_names`); within a
family, targets in the order of the configuration. So each family has a
small function that writes one target's samples of it (`_FAMILIES`), and
two ways to run them write the same bytes:

- `stream` goes family by family, each over every target, and hands the
  text out in pieces of about `CHUNK_CHARACTERS`: `/metrics` holds one
  piece at a time, never the whole text, whatever the number of targets.
- `render` goes target by target and keeps the lines (`Lines`): `/probe`'s
  one target, and the tests.

One target's bad data is logged and its samples left out, never a failed
scrape: `render` leaves the target out whole; `stream`, which has already
handed out the families before, leaves it out from the family that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

from . import __version__
from .config import Target
from .documents import Specifications
from .health import load_ratio
from .metric_names import METRICS
from .probes import CanaryResult, LibrariesReport, Load, ProbeResult
from .sample_lines import OPENMETRICS_END, Lines, header
from .state import Snapshot
from .vocabulary import CANARY, LIBRARIES, POSSIBLE_REASONS, PROBES, SPECIFICATIONS, USAGE

log = logging.getLogger(__name__)

#: `stream` hands out the text in pieces of about this many characters (a
#: piece ends at a line's end, so it can be longer by a few hundred lines).
CHUNK_CHARACTERS = 64 * 1024
# Text of a family joined at a time: small beside a piece, large enough that
# joining costs nothing. Counted in characters: a target's failure counts or
# histogram are one block of many lines.
_BATCH_CHARACTERS = 16 * 1024


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
        targets = _targets(snapshot)
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


def stream(
    snapshot: Snapshot,
    openmetrics: bool = False,
    *,
    end: bool = False,
    chunk_characters: int = CHUNK_CHARACTERS,
) -> Iterator[str]:
    """The whole exposition of `snapshot` (every configured target and the
    exporter itself) in pieces of about `chunk_characters`; joined, they are
    `render(snapshot).text(openmetrics, end=end)`, byte for byte."""
    pending: list[str] = []
    size = 0
    current = None
    for name, lines in _batches(snapshot):
        if name != current:
            pending.append(header(name, openmetrics))
            current = name
        text = "".join(lines)
        pending.append(text)
        size += len(text)
        if size >= chunk_characters:
            yield "".join(pending)
            pending, size = [], 0
    if openmetrics and end:
        pending.append(OPENMETRICS_END)
    if pending:
        yield "".join(pending)


def _batches(snapshot: Snapshot) -> Iterator[tuple[str, list[str]]]:
    """(family, some of its lines), in the order of the exposition; never empty."""
    targets = _targets(snapshot)
    own = Lines()
    render_exporter(own, snapshot)
    left_out: set[str] = set()
    for spec in METRICS:
        write = _FAMILIES.get(spec.name)
        if write is None:  # the exporter's own
            if lines := own.by_name.get(spec.name):
                yield spec.name, lines
            continue
        batch = Lines()
        lines = batch.by_name[spec.name]
        size = 0
        for target in targets:
            if target.name in left_out:
                continue
            written = len(lines)
            try:
                write(batch, snapshot, target, PROBES)
            except Exception:
                log.exception(
                    "skipping bad data of target %s in this scrape, from %s on",
                    target.name,
                    spec.name,
                )
                left_out.add(target.name)
                del lines[written:]
                continue
            for index in range(written, len(lines)):
                size += len(lines[index])
            if size >= _BATCH_CHARACTERS:
                yield spec.name, lines
                lines = batch.by_name[spec.name] = []
                size = 0
        if lines:
            yield spec.name, lines


def _targets(snapshot: Snapshot) -> Sequence[Target]:
    return snapshot.config.targets if snapshot.config is not None else ()


def render_target(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str] = PROBES
) -> None:
    """A target's samples of every family, of `probes` only."""
    for write in _FAMILIES.values():
        write(lines, snapshot, target, probes)


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
    lines.add("sandbox_exporter_scheduled_runs_missed_total", [], snapshot.missed_runs)


# ------------------------------------------------------------------ the families

# A target's samples of one family: (lines, snapshot, target, probes asked for).
Family = Callable[[Lines, Snapshot, Target, Collection[str]], None]
# Every per-target family by metric name; the exporter's own are not here.
_FAMILIES: dict[str, Family] = {}
# What a family reads from a target's last results, None when there is nothing.
Source = Callable[[Snapshot, Target, Collection[str]], object]


def _family(name: str) -> Callable[[Family], Family]:
    def register(write: Family) -> Family:
        _FAMILIES[name] = write
        return write

    return register


def _gauge(metric: str, source: Source, attribute: str) -> None:
    """One sample a target: `attribute` of what `source` finds."""

    def write(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
        found = source(snapshot, target, probes)
        if found is not None:
            lines.add(metric, [target.name], getattr(found, attribute))

    _FAMILIES[metric] = write


def _per_key(metric: str, source: Source, attribute: str) -> None:
    """One sample per key (device, kind) of the mapping `attribute`, in key order."""

    def write(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
        found = source(snapshot, target, probes)
        if found is not None:
            for key, value in sorted(getattr(found, attribute).items()):
                lines.add(metric, [target.name, key], value)

    _FAMILIES[metric] = write


def _result(
    snapshot: Snapshot, target: Target, probe: str, probes: Collection[str]
) -> ProbeResult | None:
    return snapshot.results.get((target.name, probe)) if probe in probes else None


def _specifications(
    snapshot: Snapshot, target: Target, probes: Collection[str]
) -> Specifications | None:
    return _successful_specifications(_result(snapshot, target, SPECIFICATIONS, probes))


def _host(snapshot: Snapshot, target: Target, probes: Collection[str]) -> object:
    spec = _specifications(snapshot, target, probes)
    return spec.host if spec is not None else None


def _load(snapshot: Snapshot, target: Target, probes: Collection[str]) -> Load | None:
    result = _result(snapshot, target, USAGE, probes)
    return result.data if result is not None and isinstance(result.data, Load) else None


def _host_usage(snapshot: Snapshot, target: Target, probes: Collection[str]) -> object:
    load = _load(snapshot, target, probes)
    return load.usage if load is not None else None


def _libraries(
    snapshot: Snapshot, target: Target, probes: Collection[str]
) -> LibrariesReport | None:
    result = _result(snapshot, target, LIBRARIES, probes)
    data = result.data if result is not None else None
    return data if isinstance(data, LibrariesReport) else None


def _canaries(
    snapshot: Snapshot, target: Target, probes: Collection[str]
) -> tuple[CanaryResult, ...]:
    # A failed canary probe still carries the canaries' timings.
    result = _result(snapshot, target, CANARY, probes)
    data = result.data if result is not None else None
    return data if isinstance(data, tuple) else ()


def _successful_specifications(spec_result: ProbeResult | None) -> Specifications | None:
    spec = spec_result.data if spec_result is not None and spec_result.success else None
    return spec if isinstance(spec, Specifications) else None


def _runs_of(target: Target, probes: Collection[str]) -> list[tuple[str, str]]:
    return [(target.name, probe) for probe in PROBES if probe in probes]


@_family("sandbox_target_info")
def _target_info(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    # The user labels vary by target: the one metric whose label names do.
    labels = [("target", target.name), ("url", target.url), *target.labels.items()]
    lines.add_labelled("sandbox_target_info", labels, 1)


@_family("sandbox_up")
def _up(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    result = _result(snapshot, target, SPECIFICATIONS, probes)
    if result is not None:
        lines.add("sandbox_up", [target.name], int(result.success))


@_family("sandbox_info")
def _server_info(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    spec = _specifications(snapshot, target, probes)
    if spec is not None:
        labels = [target.name, spec.sandbox_version, spec.docker_version, str(spec.api)]
        lines.add("sandbox_info", labels, 1)


@_family("sandbox_probe_success")
def _probe_success(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]
) -> None:
    for key in _runs_of(target, probes):
        result = snapshot.results.get(key)
        if result is not None:
            lines.add("sandbox_probe_success", key, int(result.success))


@_family("sandbox_probe_duration_seconds")
def _probe_duration(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]
) -> None:
    for key in _runs_of(target, probes):
        result = snapshot.results.get(key)
        if result is not None:
            lines.add("sandbox_probe_duration_seconds", key, result.duration_seconds)


@_family("sandbox_probe_last_success_timestamp_seconds")
def _last_success(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]
) -> None:
    for key in _runs_of(target, probes):
        metric = "sandbox_probe_last_success_timestamp_seconds"
        lines.add(metric, key, snapshot.last_success.get(key))


@_family("sandbox_probe_runs_total")
def _runs(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    for key in _runs_of(target, probes):
        lines.add("sandbox_probe_runs_total", key, snapshot.runs.get(key, 0))


@_family("sandbox_probe_skipped_total")
def _skips(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    for key in _runs_of(target, probes):
        lines.add("sandbox_probe_skipped_total", key, snapshot.skips.get(key, 0))


@_family("sandbox_probe_failures_total")
def _failures(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    # Every possible reason from the start, so that the first failure is an increase.
    failures = snapshot.failures
    for name, probe in _runs_of(target, probes):
        counts = [failures.get((name, probe, reason), 0) for reason in POSSIBLE_REASONS[probe]]
        lines.add_failures(name, probe, counts)


for _metric, _attribute in {
    "sandbox_containers_max": "containers_max",
    "sandbox_container_cpus": "container_cpus",
    "sandbox_container_process_limit": "container_process_limit",
    "sandbox_execute_timeout_seconds": "execute_timeout_seconds",
    "sandbox_environment_expiration_seconds": "environment_expiration_seconds",
}.items():
    _gauge(_metric, _specifications, _attribute)
_per_key("sandbox_container_memory_limit_bytes", _specifications, "container_memory_limits")

for _metric, _attribute in {
    "sandbox_host_cpu_cores": "cpu_cores",
    "sandbox_host_cpu_logical_cores": "cpu_logical_cores",
    "sandbox_host_memory_bytes": "memory_bytes",
    "sandbox_host_swap_bytes": "swap_bytes",
}.items():
    _gauge(_metric, _host, _attribute)
_per_key("sandbox_host_storage_bytes", _host, "storage_bytes")

_gauge("sandbox_containers_running", _load, "containers_running")


@_family("sandbox_load_ratio")
def _load_ratio(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    result = _result(snapshot, target, USAGE, probes)
    if result is None or not isinstance(result.data, Load):
        return
    # The pool size and the load are judged once, in health.py, for the
    # pages, --once and the metrics alike; the pool size of the last
    # specifications, whether or not they were asked for.
    spec_result = snapshot.results.get((target.name, SPECIFICATIONS))
    runs = {USAGE: result} | ({SPECIFICATIONS: spec_result} if spec_result else {})
    lines.add("sandbox_load_ratio", [target.name], load_ratio(runs))


for _metric, _attribute in {
    "sandbox_host_cpu_usage_ratio": "cpu_usage_ratio",
    "sandbox_host_cpu_frequency_hertz": "cpu_frequency_hz",
    "sandbox_host_memory_used_bytes": "memory_used_bytes",
    "sandbox_host_swap_used_bytes": "swap_used_bytes",
    "sandbox_host_network_sent_bytes_per_second": "network_sent_bytes_per_second",
    "sandbox_host_network_received_bytes_per_second": "network_received_bytes_per_second",
    "sandbox_host_network_sent_packets_per_second": "network_sent_packets_per_second",
    "sandbox_host_network_received_packets_per_second": "network_received_packets_per_second",
    "sandbox_host_processes": "processes",
}.items():
    _gauge(_metric, _host_usage, _attribute)
for _metric, _attribute in {
    "sandbox_host_storage_used_bytes": "storage_used_bytes",
    "sandbox_host_disk_read_bytes_per_second": "disk_read_bytes_per_second",
    "sandbox_host_disk_write_bytes_per_second": "disk_write_bytes_per_second",
    "sandbox_host_disk_read_operations_per_second": "disk_read_operations_per_second",
    "sandbox_host_disk_write_operations_per_second": "disk_write_operations_per_second",
}.items():
    _per_key(_metric, _host_usage, _attribute)


@_family("sandbox_host_load_ratio")
def _host_load(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    usage = _host_usage(snapshot, target, probes)
    if usage is not None:
        for window, value in zip(("1m", "5m", "15m"), usage.load_ratio, strict=True):
            lines.add("sandbox_host_load_ratio", [target.name, window], value)


@_family("sandbox_libraries")
def _library_counts(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]
) -> None:
    report = _libraries(snapshot, target, probes)
    if report is not None:
        for kind, count in sorted(report.package_counts.items()):
            lines.add("sandbox_libraries", [target.name, kind], count)
        lines.add("sandbox_libraries", [target.name, "bin"], report.bin_count)


@_family("sandbox_library_expectation_met")
def _expectations(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]
) -> None:
    # Every outcome, met or not: the judgement of what a miss means is health.py's.
    report = _libraries(snapshot, target, probes)
    for outcome in report.outcomes if report is not None else ():
        labels = [target.name, outcome.kind, outcome.name]
        lines.add("sandbox_library_expectation_met", labels, int(outcome.met))


@_family("sandbox_library_version_info")
def _versions(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    report = _libraries(snapshot, target, probes)
    for outcome in report.outcomes if report is not None else ():
        if outcome.found is not None:
            labels = [target.name, outcome.kind, outcome.name, outcome.found]
            lines.add("sandbox_library_version_info", labels, 1)


def _canary_gauge(metric: str, value: Callable[[CanaryResult], float | None]) -> None:
    def write(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
        for canary in _canaries(snapshot, target, probes):
            lines.add(metric, [target.name, canary.name], value(canary))

    _FAMILIES[metric] = write


_canary_gauge("sandbox_canary_success", lambda canary: int(canary.success))
_canary_gauge("sandbox_canary_duration_seconds", lambda canary: canary.round_trip_seconds)
_canary_gauge("sandbox_canary_server_duration_seconds", lambda canary: canary.server_seconds)
_canary_gauge("sandbox_canary_wait_seconds", lambda canary: canary.wait_seconds)
_canary_gauge("sandbox_canary_status", lambda canary: canary.status)


@_family("sandbox_canary_command_duration_seconds")
def _command_durations(
    lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]
) -> None:
    for canary in _canaries(snapshot, target, probes):
        for step, seconds in enumerate(canary.command_seconds):
            labels = [target.name, canary.name, str(step)]
            lines.add("sandbox_canary_command_duration_seconds", labels, seconds)


@_family("sandbox_canary_round_trip_seconds")
def _round_trips(lines: Lines, snapshot: Snapshot, target: Target, probes: Collection[str]) -> None:
    if CANARY not in probes:
        return
    for canary in target.canaries:
        histogram = snapshot.canary_histograms.get((target.name, canary.name))
        if histogram is not None:
            name = "sandbox_canary_round_trip_seconds"
            lines.add_histogram(name, target.name, canary.name, histogram)


# The exporter's own families (`render_exporter`) and a function for every
# other: a metric added to the table without one would be left out silently.
_UNWRITTEN = {spec.name for spec in METRICS if not spec.name.startswith("sandbox_exporter_")}
_UNWRITTEN -= set(_FAMILIES)
if _UNWRITTEN:
    raise RuntimeError(f"no function writes the samples of {', '.join(sorted(_UNWRITTEN))}")
