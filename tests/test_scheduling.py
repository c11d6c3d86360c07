"""A reload keeps the scheduler: unchanged jobs keep their cadence, and no
two runs of the same (target, probe) ever overlap, reload or not."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import requests
from harness import RunningExporter

from sandbox_emulator import Fault
from sandbox_exporter import runs as run_owner
from sandbox_exporter import scheduler
from sandbox_exporter.config import parse_config
from sandbox_exporter.vocabulary import CANARY

from helpers import wait_until

INTERVAL = 3.0
CANARY_SECONDS = 2.0  # how long the sandbox takes to answer a canary


def _config(urls: dict[str, str]) -> str:
    quiet = "1h"
    return json.dumps(
        {
            "defaults": {
                "intervals": {
                    "specifications": quiet,
                    "usage": quiet,
                    "libraries": quiet,
                    "canary": f"{INTERVAL:g}s",
                },
                "timeouts": {"canary": f"{INTERVAL - 0.1:g}s"},
            },
            "targets": [{"name": name, "url": url} for name, url in urls.items()],
        }
    )


def test_a_reload_keeps_cadence_and_never_overlaps_runs(tmp_path: Path, make_emulator) -> None:
    slow = make_emulator(api=3, faults={"execute": Fault(latency=CANARY_SECONDS)})
    other = make_emulator(api=3)
    path = tmp_path / "config.yml"
    path.write_text(_config({"a": slow.url}))
    with RunningExporter(path) as exporter:
        state = exporter.exporter.state

        def canary_runs() -> list:
            runs = [e for e in state.history("a").entries if e.probe == CANARY]
            return sorted(runs, key=lambda e: e.started_at)

        wait_until(lambda: len(canary_runs()) >= 1, timeout=30)
        first = canary_runs()[0]
        # Reload (adding a target, changing nothing of "a") while a's second
        # run is in flight: it started about INTERVAL after the first.
        time.sleep(max(0.0, first.started_at + INTERVAL + 1.0 - time.time()))
        path.write_text(_config({"a": slow.url, "b": other.url}))
        assert requests.post(exporter.url + "-/reload", timeout=10).status_code == 200
        wait_until(lambda: len(canary_runs()) >= 5, timeout=60)
        runs = canary_runs()
    for index, (previous, run) in enumerate(itertools.pairwise(runs)):
        # Never two at once...
        assert run.started_at >= previous.started_at + previous.duration_seconds - 0.05, runs
        # ...and the cadence went on as before the reload: on its grid, every
        # INTERVAL exactly, once the first run (off the grid) is behind.
        least = INTERVAL / 2 if index == 0 else INTERVAL
        assert run.started_at - previous.started_at >= least - 0.1, runs
    assert all(run.success for run in runs), runs


def test_scheduled_runs_in_flight_are_bounded_and_their_wait_is_not_their_duration(
    make_emulator, monkeypatch
) -> None:
    """A start makes every probe due at once; only MAX_SCHEDULED_IN_FLIGHT run together,
    and the time the others waited for a slot is neither their deadline's
    nor their reported duration's."""
    monkeypatch.setattr(run_owner, "MAX_SCHEDULED_IN_FLIGHT", 2)
    latency = 0.4
    emulator = make_emulator(api=3, containers=10, faults={"*": Fault(latency=latency)})
    names = [f"t{index}" for index in range(4)]
    config = json.loads(_config({name: emulator.url for name in names}))
    config["defaults"]["intervals"]["canary"] = "1h"
    config["defaults"]["timeouts"] = {"canary": "5s"}
    with RunningExporter(parse_config(json.dumps(config))) as exporter:
        state = exporter.exporter.state
        wait_until(lambda: all(len(state.history(n).entries) == 4 for n in names), timeout=60)
        runs = [entry for name in names for entry in state.history(name).entries]
    assert all(run.success for run in runs), runs
    # 16 probes (20 requests of `latency` s), two at a time: the last waited
    # about 4 s for its slot, and none reports it (a run is at most two
    # requests; a second of slack for a loaded machine).
    assert max(run.duration_seconds for run in runs) < 2 * latency + 1.0, runs
    events = sorted(
        [(run.started_at, 1) for run in runs]
        + [(run.started_at + run.duration_seconds - 0.01, -1) for run in runs]
    )
    in_flight = list(itertools.accumulate(change for _, change in events))
    assert max(in_flight) == 2, events


def test_many_first_runs_are_spread_over_a_longer_start(make_emulator, monkeypatch) -> None:
    """First runs start at most FIRST_RUNS_PER_SECOND on average: a start over
    many targets is spread over first runs / that rate, not half a second."""
    monkeypatch.setattr(scheduler, "FIRST_RUNS_PER_SECOND", 12.0)
    emulator = make_emulator(api=3, containers=10)
    names = [f"t{index}" for index in range(6)]
    config = json.loads(_config({name: emulator.url for name in names}))
    config["defaults"]["intervals"]["canary"] = "1h"
    # 24 first runs at 12 a second: spread over 2 s, where 0.5 s is the least.
    assert scheduler.first_run_window(24, 3600) == 2.0
    assert scheduler.first_run_window(2, 3600) == 0.5
    with RunningExporter(parse_config(json.dumps(config))) as exporter:
        state = exporter.exporter.state
        wait_until(lambda: all(len(state.history(n).entries) == 4 for n in names), timeout=60)
        starts = sorted(entry.started_at for n in names for entry in state.history(n).entries)
    # 24 uniform draws over 2 s: their span is under 1 s about once in 10^6.
    assert 1.0 < starts[-1] - starts[0] < 2.0 + 1.0, starts
