"""The latest probe results, the counters and the canary histograms.

Probes write here, the collector reads a `Snapshot`; nothing else is shared
between the scheduler's threads and the HTTP threads. Results are immutable
values, so a snapshot is a shallow copy taken under the lock: a scrape never
sees half of an update.

For the pages, each target also keeps a short history: its last results
(a fixed-size ring of slim entries kept by column, `--history.limit`), the text of its last
`/probe?debug=true`, and since when each probe's condition has been what it
is. Everything kept is capped, whatever servers send.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .config import Config, Target
from .health import describe_missed, missed_expectations, probe_outcome
from .history_ring import HistoryRing
from .probes import LibrariesReport, ProbeResult
from .vocabulary import POSSIBLE_REASONS, PROBES, Reason

K = TypeVar("K")
V = TypeVar("V")

#: Results kept per target unless `--history.limit` says otherwise (blackbox
#: exporter keeps as many).
DEFAULT_HISTORY_LIMIT = 100
# The client already cuts a server's text to ~200 characters, but a canary
# probe's message joins one per canary; these caps bound a target's memory
# whatever the servers and the configuration hold.
MAX_HISTORY_MESSAGE = 1000
MAX_DEBUG_TEXT = 64 * 1024

# Round trips of a healthy sandbox sit between 10 ms and a second; the tail up
# to the 10 s EXECUTE_TIMEOUT is where queueing for a container shows up.
CANARY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class HistogramData:
    """Per-bucket (not cumulative) counts; the last slot is the +Inf overflow."""

    bucket_counts: tuple[int, ...] = (0,) * (len(CANARY_BUCKETS) + 1)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> HistogramData:
        counts = list(self.bucket_counts)
        counts[bisect.bisect_left(CANARY_BUCKETS, value)] += 1
        return HistogramData(tuple(counts), self.total + value, self.count + 1)


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    successful: bool = False
    last_success_timestamp: float | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One probe run as the target page lists it; no server document kept."""

    probe: str
    started_at: float
    duration_seconds: float
    success: bool
    outcome: str  # "ok", the failure reason, or "N expectations missed"
    message: str
    # A canary probe's round trip per canary (None: no answer came back),
    # for the target page's sparkline; names come from the configuration.
    round_trips: tuple[tuple[str, float | None], ...] = ()

    @classmethod
    def of(cls, result: ProbeResult) -> HistoryEntry:
        message = result.message
        if isinstance(result.data, LibrariesReport):
            missed = missed_expectations(result.data)
            if missed:
                # More specific than the probe's own "missed: language/java".
                message = "missed: " + ", ".join(map(describe_missed, missed))
        return cls(
            probe=result.probe,
            started_at=result.started_at,
            duration_seconds=result.duration_seconds,
            success=result.success,
            outcome=probe_outcome(result),
            # Interned: most messages repeat ("2 of 5 containers busy", "shell:
            # ok in 0.051s"), and a full history holds 100 entries a target.
            message=sys.intern(_cut(message, MAX_HISTORY_MESSAGE)),
            round_trips=tuple(
                (canary.name, canary.round_trip_seconds)
                for canary in (result.data if isinstance(result.data, tuple) else ())
            ),
        )


@dataclass(frozen=True, slots=True)
class DebugRecord:
    """What the last `/probe?debug=true` of a target answered, and when."""

    at: float
    text: str


@dataclass(frozen=True, slots=True)
class TargetHistory:
    entries: tuple[HistoryEntry, ...]  # oldest first
    debug: DebugRecord | None
    limit: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: Config | None
    reload: ReloadStatus
    results: dict[tuple[str, str], ProbeResult]
    last_success: dict[tuple[str, str], float]
    runs: dict[tuple[str, str], int]
    skips: dict[tuple[str, str], int]
    failures: dict[tuple[str, str, Reason], int]
    canary_histograms: dict[tuple[str, str], HistogramData]
    # When each (target, probe)'s condition (ok, a reason, the expectations
    # missed) began; a failure's start, or a recovery's.
    since: dict[tuple[str, str], float] = field(default_factory=dict)
    # The keys whose `since` is this exporter's first result for them: the
    # condition was already so then, and may have begun long before.
    since_first_result: frozenset[tuple[str, str]] = frozenset()
    # Scheduled runs whose time passed before the exporter could start them.
    missed_runs: int = 0

    def result(self, target: str, probe: str) -> ProbeResult | None:
        return self.results.get((target, probe))


@dataclass
class State:
    """Thread-safe store of everything the collector renders."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _config: Config | None = None
    _reload: ReloadStatus = field(default_factory=ReloadStatus)
    _missed_runs: int = 0
    _results: dict[tuple[str, str], ProbeResult] = field(default_factory=dict)
    _last_success: dict[tuple[str, str], float] = field(default_factory=dict)
    _runs: Counter = field(default_factory=Counter)
    _skips: Counter = field(default_factory=Counter)
    _failures: Counter = field(default_factory=Counter)
    _histograms: dict[tuple[str, str], HistogramData] = field(default_factory=dict)
    _history_limit: int = DEFAULT_HISTORY_LIMIT
    _history: dict[str, HistoryRing[HistoryEntry]] = field(default_factory=dict)
    _debug: dict[str, DebugRecord] = field(default_factory=dict)
    _conditions: dict[tuple[str, str], tuple[object, float]] = field(default_factory=dict)
    _first_seen: set[tuple[str, str]] = field(default_factory=set)

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
            canaries = result.data if isinstance(result.data, tuple) else ()
            for canary in canaries:
                observed = canary.observed_seconds
                if observed is None:
                    continue
                hkey = (result.target, canary.name)
                histogram = self._histograms.get(hkey) or HistogramData()
                self._histograms[hkey] = histogram.observe(observed)
            condition = _condition(result)
            previous = self._conditions.get(key)
            if previous is None or previous[0] != condition:
                self._conditions[key] = (condition, result.started_at)
                if previous is None:
                    # Seen on the first result: it may have begun long before.
                    self._first_seen.add(key)
                else:
                    self._first_seen.discard(key)
            if self._history_limit:
                history = self._history.get(result.target)
                if history is None:
                    history = HistoryRing(self._history_limit, HistoryEntry)
                    self._history[result.target] = history
                history.append(HistoryEntry.of(result))

    def count_missed(self, runs: int) -> None:
        """Scheduled runs whose time passed before the exporter could start them."""
        with self._lock:
            self._missed_runs += runs

    def count_skip(self, target: str, probe: str) -> None:
        """A scheduled run of ``probe`` did not start: the previous one was still going."""
        with self._lock:
            if self._config is not None and self._config.target(target) is None:
                return
            self._skips[(target, probe)] += 1

    def latest(self, target: str, probe: str) -> ProbeResult | None:
        with self._lock:
            return self._results.get((target, probe))

    def record_debug(self, target: str, text: str) -> None:
        """Keep what `/probe?debug=true` answered for a configured target."""
        with self._lock:
            if self._config is not None and self._config.target(target) is None:
                return
            self._debug[target] = DebugRecord(time.time(), _cut(text, MAX_DEBUG_TEXT))

    def set_history_limit(self, limit: int) -> None:
        """Keep the last `limit` results per target (0: none); the newest stay."""
        if limit < 0:
            raise ValueError(f"history limit must be 0 or more, not {limit}")
        with self._lock:
            self._history_limit = limit
            # The newest `limit` of each, in a ring of the new size.
            self._history = {
                name: HistoryRing(limit, HistoryEntry, tuple(entries)[-limit:])
                for name, entries in self._history.items()
                if limit
            }

    def history(self, target: str) -> TargetHistory:
        with self._lock:
            return TargetHistory(
                entries=tuple(self._history.get(target, ())),
                debug=self._debug.get(target),
                limit=self._history_limit,
            )

    def set_config(self, config: Config) -> None:
        """Swap in a new config. Data of targets that stay is kept; of a target
        that now talks to another server (`Target.same_server`), only the
        counters: its results, info, history and since-when describe the old
        server, and must never show under the new one's URL."""
        names = {t.name for t in config.targets}
        with self._lock:
            old = self._config
            same = {
                t.name for t in config.targets if old is None or t.same_server(old.target(t.name))
            }
            self._config = config
            self._reload = ReloadStatus(True, time.time(), "")
            self._results = {k: v for k, v in self._results.items() if k[0] in same}
            self._last_success = {k: v for k, v in self._last_success.items() if k[0] in same}
            self._runs = Counter({k: v for k, v in self._runs.items() if k[0] in names})
            self._skips = Counter({k: v for k, v in self._skips.items() if k[0] in names})
            self._failures = Counter({k: v for k, v in self._failures.items() if k[0] in names})
            canaries = {(t.name, c.name) for t in config.targets for c in t.canaries}
            self._histograms = {k: v for k, v in self._histograms.items() if k in canaries}
            self._history = {k: v for k, v in self._history.items() if k in same}
            self._debug = {k: v for k, v in self._debug.items() if k in same}
            self._conditions = {k: v for k, v in self._conditions.items() if k[0] in same}
            self._first_seen = {k for k in self._first_seen if k[0] in same}

    def reload_failed(self, message: str) -> None:
        with self._lock:
            self._reload = ReloadStatus(False, self._reload.last_success_timestamp, message)

    @property
    def config(self) -> Config | None:
        return self._config

    def snapshot(self, target: Target | None = None, probes: Iterable[str] = PROBES) -> Snapshot:
        """Everything, or only what is kept of `target` and its `probes` (as
        `/probe` renders it): copying every target's entries would make each
        `/probe` cost grow with the number of targets. A target's results are
        all kept: the load of a usage result is judged with the pool size of
        the last specifications."""
        keys = result_keys = failure_keys = canary_keys = None
        if target is not None:
            keys = [(target.name, probe) for probe in probes]
            result_keys = [(target.name, probe) for probe in PROBES]
            failure_keys = [(*k, reason) for k in keys for reason in POSSIBLE_REASONS[k[1]]]
            canary_keys = [(target.name, canary.name) for canary in target.canaries]
        with self._lock:
            return Snapshot(
                config=self._config,
                reload=self._reload,
                missed_runs=self._missed_runs,
                results=_copy(self._results, result_keys),
                last_success=_copy(self._last_success, keys),
                runs=_copy(self._runs, keys),
                skips=_copy(self._skips, keys),
                failures=_copy(self._failures, failure_keys),
                canary_histograms=_copy(self._histograms, canary_keys),
                since={key: since for key, (_, since) in _copy(self._conditions, keys).items()},
                since_first_result=frozenset(
                    key
                    for key in (self._first_seen if keys is None else keys)
                    if key in self._first_seen and key in self._conditions
                ),
            )

    def probed_targets(self) -> set[str]:
        with self._lock:
            return {target for target, _ in self._results}


def _condition(result: ProbeResult) -> object:
    """What makes a probe's state change: success, reason, the expectations missed
    (not their versions, nor timings, which move on every run)."""
    missed: tuple[tuple[str, str], ...] = ()
    if isinstance(result.data, LibrariesReport):
        missed = tuple((o.kind, o.name) for o in missed_expectations(result.data))
    return (result.success, result.reason, missed)


def _copy(entries: Mapping[K, V], keys: Iterable[K] | None) -> dict[K, V]:
    """`entries` whole, or the ones of `keys` (as a dict, whatever `entries` is)."""
    if keys is None:
        return dict(entries)
    return {key: entries[key] for key in keys if key in entries}


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters not kept)"
