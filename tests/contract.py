"""The metric contract, docs/metrics.md, read as data for tests to import.

The exporter's metric table (`sandbox_exporter.metric_names`), its output,
the dashboards and the alert rules are all checked against these names,
types and labels.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

METRICS_MD = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

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


def parse_metrics_md(text: str) -> list[Metric]:
    """The metrics in the tables of metrics.md, in order.

    Understands the shorthand used there: `sandbox_host_disk_{read,write}_bytes`
    (alternatives before the label braces), `..._packets_per_second` (the
    previous name of the cell with its last words replaced) and
    `{target, url, ...user labels}` (labels after `...` are not fixed names).
    The type is the first word of a `type` column; tables without one list
    gauges.
    """
    found: list[Metric] = []
    type_column = None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if cells[0] == "metric":
            type_column = cells.index("type") if "type" in cells else None
            continue
        type_ = cells[type_column].split()[0] if type_column is not None else "gauge"
        previous: list[str] = []
        for code in re.findall(r"`([^`]+)`", cells[0]):
            match = re.fullmatch(r"((?:\.\.\.)?[a-z0-9_{},]+?)(?:\{([^}]*)\})?", code)
            if not match:
                continue
            name, labels = match.group(1), match.group(2) or ""
            if name.startswith("..."):
                words = name[3:].lstrip("_").split("_")
                names = ["_".join(old.split("_")[: -len(words)] + words) for old in previous]
            elif name.startswith("sandbox_"):
                parts = re.split(r"\{([a-z0-9_]+(?:,[a-z0-9_]+)+)\}", name)
                choices = [
                    [part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)
                ]
                names = ["".join(combo) for combo in itertools.product(*choices)]
            else:
                continue
            label_set = frozenset(
                label.strip()
                for label in labels.split(",")
                if label.strip() and not label.strip().startswith("...")
            )
            found += [Metric(expanded, type_, label_set) for expanded in names]
            previous = names
    return found


METRICS: tuple[Metric, ...] = tuple(parse_metrics_md(METRICS_MD.read_text()))

METRICS_BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}

# Every series name a PromQL expression may use, mapped to its metric.
SERIES: dict[str, Metric] = {
    series: metric for metric in METRICS for series in metric.series_names()
}
