"""The latest probe results, the counters and the canary histograms.

Probes write here, the collector reads a `Snapshot`; nothing else is shared
between the scheduler's threads and the HTTP threads. Results are immutable
values, so a snapshot is a shallow copy taken under the lock: a scrape never
sees half of an update.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .config import Config
from .probes import CanaryResult, ProbeResult
from .vocabulary import Reason

# Round trips of a healthy sandbox sit between 10 ms and a second; the tail up
# to the 10 s EXECUTE_TIMEOUT is where queueing for a container shows up.
CANARY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(frozen=True)
class HistogramData:
    """Per-bucket (not cumulative) counts; the last slot is the +Inf overflow."""

    bucket_counts: tuple[int, ...]
    total: float
    count: int

    @classmethod
    def empty(cls) -> HistogramData:
        return cls((0,) * (len(CANARY_BUCKETS) + 1), 0.0, 0)

    def observe(self, value: float) -> HistogramData:
        counts = list(self.bucket_counts)
        counts[bisect.bisect_left(CANARY_BUCKETS, value)] += 1
        return HistogramData(tuple(counts), self.total + value, self.count + 1)


@dataclass(frozen=True)
class ReloadStatus:
    successful: bool = False
    last_success_timestamp: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Snapshot:
    config: Config | None
    reload: ReloadStatus
    results: dict[tuple[str, str], ProbeResult]
    last_success: dict[tuple[str, str], float]
    runs: dict[tuple[str, str], int]
    failures: dict[tuple[str, str, Reason], int]
    canary_histograms: dict[tuple[str, str], HistogramData]

    def result(self, target: str, probe: str) -> ProbeResult | None:
        return self.results.get((target, probe))


@dataclass
class State:
    """Thread-safe store of everything the collector renders."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _config: Config | None = None
    _reload: ReloadStatus = field(default_factory=ReloadStatus)
    _results: dict[tuple[str, str], ProbeResult] = field(default_factory=dict)
    _last_success: dict[tuple[str, str], float] = field(default_factory=dict)
    _runs: Counter = field(default_factory=Counter)
    _failures: Counter = field(default_factory=Counter)
    _histograms: dict[tuple[str, str], HistogramData] = field(default_factory=dict)

    def record(self, result: ProbeResult) -> None:
        key = (result.target, result.probe)
        with self._lock:
            if self._config is not None and self._config.target(result.target) is None:
                # The target left the config while its probe was running.
                return
            self._results[key] = result
            self._runs[key] += 1
            if result.success:
                self._last_success[key] = result.started_at + result.duration_seconds
            elif result.reason is not None:
                self._failures[(*key, result.reason)] += 1
            for canary in _canaries(result):
                if canary.round_trip_seconds is None:
                    continue
                hkey = (result.target, canary.name)
                histogram = self._histograms.get(hkey) or HistogramData.empty()
                self._histograms[hkey] = histogram.observe(canary.round_trip_seconds)

    def set_config(self, config: Config) -> None:
        """Swap in a new config; data of targets that stay is kept."""
        names = {t.name for t in config.targets}
        with self._lock:
            self._config = config
            self._reload = ReloadStatus(True, time.time(), "")
            self._results = {k: v for k, v in self._results.items() if k[0] in names}
            self._last_success = {k: v for k, v in self._last_success.items() if k[0] in names}
            self._runs = Counter({k: v for k, v in self._runs.items() if k[0] in names})
            self._failures = Counter({k: v for k, v in self._failures.items() if k[0] in names})
            canaries = {(t.name, c.name) for t in config.targets for c in t.canaries}
            self._histograms = {k: v for k, v in self._histograms.items() if k in canaries}

    def reload_failed(self, message: str) -> None:
        with self._lock:
            self._reload = ReloadStatus(False, self._reload.last_success_timestamp, message)

    @property
    def config(self) -> Config | None:
        return self._config

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                config=self._config,
                reload=self._reload,
                results=dict(self._results),
                last_success=dict(self._last_success),
                runs=dict(self._runs),
                failures=dict(self._failures),
                canary_histograms=dict(self._histograms),
            )

    def probed_targets(self) -> set[str]:
        with self._lock:
            return {target for target, _ in self._results}


def _canaries(result: ProbeResult) -> Iterable[CanaryResult]:
    if isinstance(result.data, tuple):
        return result.data
    return ()
