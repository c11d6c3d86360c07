"""Sample lines in the Prometheus text format, whose sample lines OpenMetrics
shares: only the families' HELP and TYPE lines differ, and prometheus_client
writes those (`header`).

Each series shape's line is a template made once and filled in with
`str.format`; a probe's failure counts and a canary histogram are one block
template each. `Lines` gathers a render's lines by metric name; the
collector decides what goes in.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
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

from .metric_names import METRICS, METRICS_BY_NAME
from .state import CANARY_BUCKETS, HistogramData
from .vocabulary import POSSIBLE_REASONS

_FAMILY_CLASSES: dict[str, type[Metric]] = {
    "gauge": GaugeMetricFamily,
    "counter": CounterMetricFamily,
    "histogram": HistogramMetricFamily,
}
OPENMETRICS_END = "# EOF\n"


@functools.cache
def header(name: str, openmetrics: bool) -> str:
    """The HELP and TYPE lines of metric `name`, as prometheus_client writes them."""
    spec = METRICS_BY_NAME[name]
    family = _FAMILY_CLASSES[spec.type](spec.name, spec.help, labels=spec.labels)
    encode = generate_openmetrics if openmetrics else generate_latest
    text = encode(SimpleNamespace(collect=lambda: [family])).decode()
    return text.removesuffix(OPENMETRICS_END)


# Label values repeat (target names above all, once per sample): a cached
# answer costs no Python call. Bounded: values also come from the servers.
@functools.lru_cache(maxsize=8192)
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


def _fixed(text: str) -> str:
    """A label value written into a template as it is: escaped for the
    exposition, its braces doubled for `str.format`."""
    return _escaped(text).replace("{", "{{").replace("}", "}}")


def _block_line(sample: str, labels: dict[str, str], value: str) -> str:
    """One line of a block template: `labels` by name, each value a format
    field or a `_fixed` text; sorted by name as prometheus_client writes them."""
    pairs = ",".join(f'{name}="{labels[name]}"' for name in sorted(labels))
    return f"{sample}{{{{{pairs}}}}} {value}\n"


def _count_field(index: int, counts_as_ints: bool) -> str:
    # A count below a million is its digits and ".0" (`_value`): str.format
    # writes them itself from the int, without a call per value.
    return f"{{{index}}}.0" if counts_as_ints else f"{{{index}}}"


@functools.cache
def _failures_block(probe: str, counts_as_ints: bool) -> str:
    """A probe's failure counts, one line per possible reason: {0} the target
    (escaped), then each reason's count (ints below a million, or their
    `_value` texts). One `str.format` writes the block, instead of a call per
    line: these counts are a quarter of all samples."""
    return "".join(
        _block_line(
            "sandbox_probe_failures_total",
            {"target": "{0}", "probe": _fixed(probe), "reason": _fixed(reason.value)},
            _count_field(index + 1, counts_as_ints),
        )
        for index, reason in enumerate(POSSIBLE_REASONS[probe])
    )


@functools.cache
def _histogram_block(name: str, counts_as_ints: bool) -> str:
    """A histogram of the (target, canary) labels: {0} the target and {1} the
    canary (escaped), then the cumulative bucket counts and the count (ints
    below a million, or their `_value` texts), then the sum's text."""
    labels = {"target": "{0}", "canary": "{1}"}
    lines = [
        _block_line(f"{name}_bucket", {**labels, "le": le}, _count_field(index + 2, counts_as_ints))
        for index, le in enumerate(_BUCKET_BOUNDS)
    ]
    count = len(_BUCKET_BOUNDS) + 2
    lines.append(_block_line(f"{name}_count", labels, _count_field(count, counts_as_ints)))
    lines.append(_block_line(f"{name}_sum", labels, f"{{{count + 1}}}"))
    return "".join(lines)


def _counts(values: list[int]) -> tuple[bool, Iterable[int | str]]:
    """(whether all are ints below a million, what to fill a block's count fields with)."""
    if all(type(v) is int and 0 <= v < 1_000_000 for v in values):
        return True, values
    return False, map(_value, values)


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

    def add_histogram(self, name: str, target: str, canary: str, data: HistogramData) -> None:
        """A canary histogram's buckets, count and sum, as one piece."""
        values = list(itertools.accumulate(data.bucket_counts))
        values.append(values[-1])  # the count: every observation is in +Inf
        as_ints, fields = _counts(values)
        block = _histogram_block(name, as_ints)
        text = block.format(_escaped(target), _escaped(canary), *fields, _value(data.total))
        self.by_name[name].append(text)

    def add_failures(self, target: str, probe: str, counts: list[int]) -> None:
        """A probe's failure counts, one per possible reason in their order, as one piece."""
        as_ints, fields = _counts(counts)
        text = _failures_block(probe, as_ints).format(_escaped(target), *fields)
        self.by_name["sandbox_probe_failures_total"].append(text)

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
            parts.append(OPENMETRICS_END)
        return "".join(parts)
