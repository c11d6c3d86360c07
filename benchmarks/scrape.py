"""B1: what one scrape of /metrics costs, against prometheus_client's own floor.

Ours: `generate_latest` on a registry holding a `SandboxCollector` over a
populated `State` (what `/metrics` does, minus the socket). The floor:
`generate_latest` on a bare registry whose collector yields the very same
metric families, built once beforehand, so the text is byte for byte the same
and the only difference is the work our collector does per scrape.

Three cases for ours: "steady" (nothing changed since the last scrape, as
when two Prometheus servers scrape the same exporter), "typical" (what the
default intervals change between two scrapes 15 s apart: every usage result,
half of the specifications and canary results) and "churn" (every probe
result replaced since the last scrape, the worst case).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from sandbox_exporter.collector import SandboxCollector

from .common import Report, alternate, median, spread
from .workload import populated_state, refresh_all, refresh_typical

SIZES = (10, 100, 1000)


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


def measure(size: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per render (median-ready lists) for ours (steady, churn) and the floor."""
    state, factory = populated_state(size)
    ours = _registry(SandboxCollector(state))
    families = list(SandboxCollector(state).collect())
    floor = _registry(_Prebuilt(families))
    ours_text, floor_text = generate_latest(ours), generate_latest(floor)
    if ours_text != floor_text:
        raise AssertionError("the floor does not render the same text as the collector")
    # Enough renders per repeat that small sizes are not at the mercy of the timer.
    number = max(1, 400 // size)

    scrapes = iter(range(10**9))

    def timed(registry: CollectorRegistry, change=None):
        def run() -> float:
            total = 0.0
            for _ in range(number):
                if change is not None:
                    change()
                started = time.perf_counter()
                generate_latest(registry)
                total += time.perf_counter() - started
            return total / number

        return run

    generate_latest(ours)  # warm whatever the collector keeps between scrapes
    timings = alternate(
        {
            "steady": timed(ours),
            "typical": timed(ours, lambda: refresh_typical(state, factory, next(scrapes))),
            "churn": timed(ours, lambda: refresh_all(state, factory)),
            "floor": timed(floor),
        },
        repeats,
    )
    timings["samples"] = [float(sum(len(f.samples) for f in families))]
    timings["bytes"] = [float(len(ours_text))]
    return timings


def run(report: Report, quick: bool) -> None:
    per_size = {}
    for size in SIZES:
        repeats = (5 if size < 1000 else 3) if quick else (15 if size < 1000 else 9)
        per_size[size] = measure(size, repeats)
    for size, timings in per_size.items():
        floor = median(timings["floor"])
        samples = int(timings["samples"][0])
        for case in ("steady", "typical", "churn"):
            ours = median(timings[case])
            report.add(
                "B1 scrape",
                f"{size} targets, {case}: render / floor",
                f"{ours / floor:.2f}x",
                "<= 1.3x",
                f"ours {ours * 1e3:.1f} ms ({spread(timings[case])}), floor {floor * 1e3:.1f} ms "
                f"({spread(timings['floor'])}); {samples} samples, "
                f"{timings['bytes'][0] / 1e6:.2f} MB",
            )
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
