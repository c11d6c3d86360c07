"""B1: what one scrape of /metrics costs, against prometheus_client's own floor.

Ours: `collector.stream` of a populated `State`, as text (or OpenMetrics),
its pieces encoded: what `/metrics` does for the sandboxes' samples, minus
the socket and gzip. The floor: prometheus_client's encoder for that format on
a bare registry whose collector yields the very same metric families (parsed
from our text once beforehand). That is the cheapest way prometheus_client
can render these samples; the text is byte for byte the same (checked).

Three cases for ours (the collector keeps nothing between scrapes, so they
should cost the same; they stay to show it): "steady" (nothing changed since the last scrape, as
when two Prometheus servers scrape the same exporter), "typical" (what the
default intervals change between two scrapes 15 s apart: every usage result,
half of the specifications and canary results) and "churn" (every probe
result replaced since the last scrape, the worst case).

Each render of ours is timed right after one of the floor, and the result is
the median of those paired ratios: load from other processes drifts slowly
enough to hit both sides of a pair alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from sandbox_exporter import collector

from .common import Report, median, spread
from .workload import populated_state, refresh_all, refresh_typical

SIZES = (10, 100, 1000)
GOAL = "<= 1.5x"


class _Prebuilt(Collector):
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)

    def describe(self):
        return []


def _registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def measure(size: int, repeats: int, openmetrics: bool = False) -> dict[str, list[float]]:
    """Seconds per render of the floor and of ours in each case, and ours/floor per pair."""
    state, factory = populated_state(size)

    def ours() -> bytes:
        pieces = collector.stream(state.snapshot(), openmetrics, end=True)
        return b"".join(piece.encode() for piece in pieces)

    ours_text = ours()
    parse = parse_openmetrics if openmetrics else text_string_to_metric_families
    encoder = generate_openmetrics if openmetrics else generate_latest
    families = list(parse(ours_text.decode()))
    floor_registry = _registry(_Prebuilt(families))

    def floor() -> bytes:
        return encoder(floor_registry)

    if floor() != ours_text:
        raise AssertionError("the floor does not render the same text as the collector")
    scrapes = iter(range(10**9))
    changes: dict[str, Callable[[], None] | None] = {
        "steady": None,
        "typical": lambda: refresh_typical(state, factory, next(scrapes)),
        "churn": lambda: refresh_all(state, factory),
    }

    def timed(render: Callable[[], bytes]) -> float:
        started = time.perf_counter()
        render()
        return time.perf_counter() - started

    timings: dict[str, list[float]] = {"floor": []}
    for case in changes:
        timings[case], timings[f"{case} ratio"] = [], []
    # Enough renders that small sizes are not at the mercy of the timer.
    for _ in range(repeats * max(1, 100 // size)):
        for case, change in changes.items():
            if change is not None:
                change()
            floor_seconds, ours_seconds = timed(floor), timed(ours)
            timings["floor"].append(floor_seconds)
            timings[case].append(ours_seconds)
            timings[f"{case} ratio"].append(ours_seconds / floor_seconds)
    timings["samples"] = [float(sum(len(f.samples) for f in families))]
    timings["bytes"] = [float(len(ours_text))]
    return timings


def _row(report: Report, label: str, case: str, timings: dict[str, list[float]]) -> None:
    ratios = timings[f"{case} ratio"]
    report.add(
        "B1 scrape",
        f"{label}, {case}: ours / floor",
        f"{statistics.median(ratios):.2f}x",
        GOAL,
        f"ours {median(timings[case]) * 1e3:.1f} ms ({spread(timings[case])}), floor "
        f"{median(timings['floor']) * 1e3:.1f} ms ({spread(timings['floor'])}); ratio "
        f"quartiles {' / '.join(f'{q:.2f}' for q in statistics.quantiles(ratios, n=4))}; "
        f"{int(timings['samples'][0])} samples, {timings['bytes'][0] / 1e6:.2f} MB",
    )


def run(report: Report, quick: bool) -> None:
    per_size = {}
    for size in SIZES:
        repeats = (5 if size < 1000 else 3) if quick else (25 if size < 1000 else 7)
        per_size[size] = measure(size, repeats)
        for case in ("steady", "typical", "churn"):
            _row(report, f"{size} targets, text", case, per_size[size])
    # Prometheus asks for OpenMetrics first: the other encoder, at the size that matters.
    openmetrics = measure(100, 5 if quick else 25, openmetrics=True)
    for case in ("steady", "typical", "churn"):
        _row(report, "100 targets, OpenMetrics", case, openmetrics)
    small, large = SIZES[-2], SIZES[-1]
    for case in ("steady", "typical", "churn", "floor"):
        per_target = {size: median(per_size[size][case]) / size * 1e6 for size in (small, large)}
        report.add(
            "B1 scrape",
            f"per-target cost growth {small} -> {large} ({case})",
            f"{per_target[large] / per_target[small]:.2f}x",
            "~1.0 (linear)",
            f"{per_target[small]:.0f} -> {per_target[large]:.0f} µs per target",
        )
