"""One run at a time per (target, probe), whoever asks; one meaning of "this
target changed"; the cadence as configured; no run lost without a trace.

Each test runs an exporter in this process against emulated sandboxes on
loopback, and counts what reached the sandbox at the sandbox.
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from harness import RunningExporter

from sandbox_exporter import probes
from sandbox_exporter import runs as run_owner
from sandbox_exporter.config import parse_config
from sandbox_exporter.scheduler import GridTrigger, grid_phase
from sandbox_exporter.vocabulary import CANARY, USAGE

from helpers import Scrape, scrape, wait_until

QUIET = "1h"


def _config(targets: dict[str, str], **defaults: object) -> str:
    """Every probe once at start and then hourly, unless `defaults` says otherwise."""
    base: dict = {
        "intervals": {p: QUIET for p in ("specifications", "usage", "libraries", "canary")},
    }
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return json.dumps(
        {"defaults": base, "targets": [{"name": n, "url": u} for n, u in targets.items()]}
    )


def _canary_every(url: str, interval: float):
    """Target "a" at `url`: its canary every `interval` seconds, the rest hourly."""
    every = f"{interval * 1000:g}ms"
    return parse_config(_config({"a": url}, intervals={CANARY: every}, timeouts={CANARY: every}))


def _sleeping_canary(seconds: float, timeout: str = "5s") -> list[dict]:
    # A command that really holds a container of the emulator for a while.
    return [
        {
            "name": "shell",
            "commands": [f"sleep {seconds:g}; echo $((2+2))"],
            "expect_stdout": "4",
            "timeout": timeout,
        }
    ]


def _probe(exporter: RunningExporter, target: str, probe: str | None = None) -> Scrape:
    params = {"target": target} if probe is None else {"target": target, "probe": probe}
    response = requests.get(exporter.url + "probe", params=params, timeout=20)
    assert response.status_code == 200, response.text
    return Scrape(response.text)


# -- one run at a time per (target, probe) ----------------------------------------


def test_concurrent_probe_requests_share_one_canary_run(make_emulator) -> None:
    """40 scrapes of `probe=canary` at once start one execute on the sandbox, and
    every answer reports that one run."""
    sandbox = make_emulator(api=3, containers=10)
    config = parse_config(_config({"a": sandbox.url}, canaries=_sleeping_canary(0.5)))
    with RunningExporter(config, scheduled=False) as exporter:
        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(lambda _: _probe(exporter, "a", CANARY), range(40)))
        assert sandbox.requests_by_endpoint["execute"] == 1
        for answer in answers:
            assert answer.value("sandbox_probe_runs_total", target="a", probe=CANARY) == 1
            assert answer.value("sandbox_canary_success", target="a", canary="shell") == 1
        # Within canary_min_interval (10 s by default) the last result answers.
        again = _probe(exporter, "a", CANARY)
        assert again.value("sandbox_probe_runs_total", target="a", probe=CANARY) == 1
        assert sandbox.requests_by_endpoint["execute"] == 1


def test_on_demand_canaries_are_spaced_by_canary_min_interval(make_emulator) -> None:
    sandbox = make_emulator(api=3)
    config = parse_config(_config({"a": sandbox.url}, canary_min_interval="1s"))
    with RunningExporter(config, scheduled=False) as exporter:
        _probe(exporter, "a", CANARY)
        _probe(exporter, "a", CANARY)
        assert sandbox.requests_by_endpoint["execute"] == 1
        # Once the interval has passed, the next scrape runs a fresh canary.
        wait_until(
            lambda: (
                _probe(exporter, "a", CANARY).value(
                    "sandbox_probe_runs_total", target="a", probe=CANARY
                )
                == 2
            ),
            timeout=5,
        )
        assert sandbox.requests_by_endpoint["execute"] == 2
        # Specifications take no container: each scrape asks the server.
        before = sandbox.requests_by_endpoint["specifications"]
        _probe(exporter, "a", "specifications")
        _probe(exporter, "a", "specifications")
        assert sandbox.requests_by_endpoint["specifications"] == before + 2


def test_a_probe_request_waits_for_the_scheduled_run_in_flight(make_emulator) -> None:
    sandbox = make_emulator(api=3, containers=4)
    config = parse_config(_config({"a": sandbox.url}, canaries=_sleeping_canary(1.5)))
    with RunningExporter(config) as exporter:
        # The scheduler's first canary holds a container of the sandbox.
        wait_until(lambda: sandbox.busy_containers == 1, timeout=10)
        answer = _probe(exporter, "a", CANARY)
        assert answer.value("sandbox_probe_runs_total", target="a", probe=CANARY) == 1
        assert answer.value("sandbox_canary_success", target="a", canary="shell") == 1
        assert sandbox.requests_by_endpoint["execute"] == 1


def test_a_scheduled_run_finding_one_in_flight_is_skipped_and_counted(
    make_emulator, monkeypatch, caplog
) -> None:
    """With one slot for two targets whose canaries take their whole interval,
    runs wait for the slot past their next fire time: those are skipped,
    counted per target and probe, and logged at debug."""
    monkeypatch.setattr(run_owner, "MAX_SCHEDULED_IN_FLIGHT", 1)
    caplog.set_level(logging.DEBUG, logger="sandbox_exporter.runs")
    sandbox = make_emulator(api=3, containers=4)
    config = _config(
        {"a": sandbox.url, "b": sandbox.url},
        intervals={CANARY: "1s"},
        timeouts={CANARY: "1s"},
        canaries=_sleeping_canary(0.9, timeout="1s"),
    )
    with RunningExporter(parse_config(config)) as exporter:

        def skipped() -> float:
            metrics = scrape(exporter.url + "metrics")
            return sum(
                metrics.value("sandbox_probe_skipped_total", target=t, probe=CANARY)
                for t in ("a", "b")
            )

        wait_until(lambda: skipped() >= 2, timeout=15)
    assert any("skipped canary probe of" in r.getMessage() for r in caplog.records)


def test_a_crashing_probe_records_a_failure_and_logs_its_traceback_once(
    make_emulator, monkeypatch, caplog
) -> None:
    """A bug of ours in a probe fails that probe with reason exporter_error (its
    last success must not stay exported as current), traceback logged once."""
    sandbox = make_emulator(api=3)

    async def broken(transport, target, deadline):
        raise RuntimeError("a bug")

    monkeypatch.setitem(probes._PROBE_FUNCTIONS, USAGE, broken)
    config = parse_config(_config({"a": sandbox.url}, canary_min_interval="1ms"))
    with RunningExporter(config, scheduled=False) as exporter:
        for _ in range(3):
            answer = _probe(exporter, "a", USAGE)
        assert answer.value("sandbox_probe_success", target="a", probe=USAGE) == 0
        assert (
            answer.value(
                "sandbox_probe_failures_total", target="a", probe=USAGE, reason="exporter_error"
            )
            == 3
        )
    tracebacks = [r for r in caplog.records if r.exc_info and "crashed" in r.getMessage()]
    assert len(tracebacks) == 1, caplog.records
    assert sum("crashed again" in r.getMessage() for r in caplog.records) == 2


def test_a_canary_cut_by_its_deadline_counts_in_the_round_trip_histogram(make_emulator):
    sandbox = make_emulator(api=3)
    config = parse_config(
        _config({"a": sandbox.url}, canaries=_sleeping_canary(3, timeout="500ms"))
    )
    with RunningExporter(config, scheduled=False) as exporter:
        answer = _probe(exporter, "a", CANARY)
    assert answer.value("sandbox_canary_success", target="a", canary="shell") == 0
    labels = {"target": "a", "canary": "shell"}
    assert answer.value("sandbox_canary_round_trip_seconds_count", **labels) == 1
    # Observed as taking its deadline: in the 0.5 s bucket's complement.
    assert 0.45 <= answer.value("sandbox_canary_round_trip_seconds_sum", **labels) < 1.5
    assert answer.value("sandbox_canary_round_trip_seconds_bucket", le="0.25", **labels) == 0


# -- one meaning of "this target changed" -------------------------------------------


def _info_versions(metrics: Scrape, target: str) -> set[str]:
    return {s.labels["sandbox_version"] for s in metrics.find("sandbox_info", target=target)}


def test_a_re_pointed_target_never_shows_the_old_servers_numbers(
    tmp_path: Path, make_emulator
) -> None:
    v2, v3 = make_emulator(api=2), make_emulator(api=3)
    path = tmp_path / "config.yml"
    path.write_text(_config({"x": v2.url}))
    with RunningExporter(path) as exporter:
        metrics_url = exporter.url + "metrics"
        wait_until(lambda: _info_versions(scrape(metrics_url), "x") == {"2.0.3"}, timeout=10)
        before = scrape(metrics_url)
        runs_before = before.value("sandbox_probe_runs_total", target="x", probe="specifications")
        assert before.find("sandbox_execute_timeout_seconds", target="x") != []  # 2.x only
        path.write_text(_config({"x": v3.url}))
        assert requests.post(exporter.url + "-/reload", timeout=10).status_code == 200
        # At once: the new URL, and nothing the old server said.
        after = scrape(metrics_url)
        assert after.value("sandbox_target_info", target="x", url=v3.url) == 1
        assert _info_versions(after, "x") <= {"3.0.3"}
        # What only the 2.x server reports is gone at once, whatever has run since.
        assert after.find("sandbox_execute_timeout_seconds", target="x") == []
        assert after.find("sandbox_environment_expiration_seconds", target="x") == []
        page = requests.get(exporter.url + "target", params={"name": "x"}, timeout=10).text
        assert "2.0.3" not in page
        # The probes run again within seconds, against the new server.
        wait_until(lambda: _info_versions(scrape(metrics_url), "x") == {"3.0.3"}, timeout=5)
        final = scrape(metrics_url)
        assert final.find("sandbox_execute_timeout_seconds", target="x") == []
        # Every probe's result is the new server's: each ran since the reload.
        for probe in ("specifications", "usage", "canary"):
            wait_until(
                lambda probe=probe: (
                    scrape(metrics_url).get("sandbox_probe_success", target="x", probe=probe) == 1
                ),
                timeout=5,
            )
        # Counters keep counting.
        assert (
            final.value("sandbox_probe_runs_total", target="x", probe="specifications")
            > runs_before
        )
        wait_until(lambda: v3.requests_by_endpoint["libraries"] >= 1, timeout=5)


def test_a_label_change_keeps_results_and_the_run_in_flight(tmp_path: Path, make_emulator) -> None:
    sandbox = make_emulator(api=3, containers=4)
    path = tmp_path / "config.yml"
    canaries = _sleeping_canary(1.5)
    path.write_text(_config({"x": sandbox.url}, canaries=canaries))
    with RunningExporter(path) as exporter:
        metrics_url = exporter.url + "metrics"
        wait_until(lambda: _info_versions(scrape(metrics_url), "x") == {"3.0.3"}, timeout=10)
        wait_until(lambda: sandbox.busy_containers == 1, timeout=10)
        relabelled = json.loads(_config({"x": sandbox.url}, canaries=canaries))
        relabelled["targets"][0]["labels"] = {"site": "lyon"}
        path.write_text(json.dumps(relabelled))
        assert requests.post(exporter.url + "-/reload", timeout=10).status_code == 200
        after = scrape(metrics_url)
        assert after.value("sandbox_target_info", target="x", url=sandbox.url, site="lyon") == 1
        assert _info_versions(after, "x") == {"3.0.3"}
        # The canary in flight was not cancelled: it ends and is recorded.
        wait_until(
            lambda: (
                scrape(metrics_url).get("sandbox_canary_success", target="x", canary="shell") == 1
            ),
            timeout=5,
        )
        assert sandbox.requests_by_endpoint["execute"] == 1


# -- cadence ------------------------------------------------------------------------


def test_runs_follow_their_grid_without_drift(make_emulator) -> None:
    """Every `interval` on average within 1% (the jittered trigger ran 5% long),
    each run at its (target, probe)'s stable offset in the interval."""
    interval = 0.4
    sandbox = make_emulator(api=3)
    config = _canary_every(sandbox.url, interval)
    with RunningExporter(config) as exporter:
        state = exporter.exporter.state

        def canary_starts() -> list[float]:
            return sorted(e.started_at for e in state.history("a").entries if e.probe == CANARY)

        wait_until(lambda: len(canary_starts()) >= 31, timeout=30)
        starts = canary_starts()
    on_grid = starts[1:]  # the first run falls in the start window, off the grid
    mean_period = (on_grid[-1] - on_grid[0]) / (len(on_grid) - 1)
    assert abs(mean_period - interval) <= interval * 0.01, (mean_period, on_grid)
    phase = grid_phase("a", CANARY) * interval
    late = [((start - phase) % interval) for start in on_grid]
    # Each run within 100 ms after its grid point (a loaded machine's slack).
    assert statistics.median(late) < 0.05 and max(late) < 0.1, late


def test_grid_times_that_pass_unstarted_are_counted(make_emulator) -> None:
    """An exporter too busy to start its runs on time (here its loop held for
    1.5 s, as thousands of targets' probes hold it) runs each late job once:
    the grid times in between are counted as missed, and none while on time."""
    interval = 0.3
    sandbox = make_emulator(api=3)
    config = _canary_every(sandbox.url, interval)
    missed = "sandbox_exporter_scheduled_runs_missed_total"
    with RunningExporter(config) as exporter:
        state = exporter.exporter.state

        def canaries() -> int:
            return sum(e.probe == CANARY for e in state.history("a").entries)

        wait_until(lambda: canaries() >= 6, timeout=15)
        assert scrape(exporter.url + "metrics").value(missed) == 0
        held = threading.Event()

        def hold_the_loop() -> None:
            held.set()
            time.sleep(1.5)  # the fault: the loop busy, no timer fires meanwhile

        exporter.loop.call_soon_threadsafe(hold_the_loop)
        assert held.wait(5)
        after = canaries()
        wait_until(lambda: canaries() >= after + 3, timeout=15)
        counted = scrape(exporter.url + "metrics").value(missed)
    # 1.5 s held at 0.3 s a run: four or five grid times passed unstarted.
    assert 3 <= counted <= 6, counted


def test_grid_phases_spread_and_stay() -> None:
    phases = [grid_phase(f"sandbox-{n}", CANARY) for n in range(1000)]
    assert phases == [grid_phase(f"sandbox-{n}", CANARY) for n in range(1000)]
    # Spread over the interval like uniform draws: every tenth has its share.
    tenths = [sum(1 for p in phases if k / 10 <= p < (k + 1) / 10) for k in range(10)]
    assert all(60 <= count <= 140 for count in tenths), tenths


@pytest.mark.parametrize("previous_offset", [0.0, 0.3, 1.0, 29.9])
def test_grid_trigger_fires_on_its_grid(previous_offset: float) -> None:
    from datetime import UTC, datetime, timedelta

    trigger = GridTrigger(30.0, 0.25)  # every 30 s at +7.5 s
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = trigger.get_next_fire_time(None, start + timedelta(seconds=previous_offset))
    assert first is not None and (first - start).total_seconds() % 30 == pytest.approx(7.5)
    times = [first]
    for _ in range(100):
        times.append(trigger.get_next_fire_time(times[-1], times[-1]))
    gaps = {round((b - a).total_seconds(), 6) for a, b in itertools.pairwise(times)}
    assert gaps == {30.0}
