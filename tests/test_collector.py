"""The collector on hand-built states: a `State` in, the parsed exposition out.

No network: results are built from the recorded documents in tests/fixtures
and recorded into a `State` as the scheduler would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from sandbox_exporter import __version__, collector
from sandbox_exporter.config import Config, Target, parse_config
from sandbox_exporter.documents import (
    Specifications,
    Usage,
    parse_libraries,
    parse_specifications,
    parse_usage,
)
from sandbox_exporter.expectations import check_expectations
from sandbox_exporter.metric_names import METRICS, METRICS_BY_NAME
from sandbox_exporter.probes import CanaryResult, LibrariesReport, Load, ProbeResult
from sandbox_exporter.state import CANARY_BUCKETS, HistogramData, State
from sandbox_exporter.vocabulary import (
    CANARY,
    LIBRARIES,
    POSSIBLE_REASONS,
    PROBES,
    SPECIFICATIONS,
    USAGE,
    Reason,
)

import contract
from helpers import Scrape

FIXTURES = Path(__file__).parent / "fixtures"
NOW = 1_700_000_000.0

# "old" speaks 2.x, "new" 3.x.
CONFIG = """
targets:
  - name: old
    url: http://127.0.0.1:1/
    labels: {site: paris}
    canaries:
      - {name: shell, commands: ["echo $((2+2))"], expect_stdout: "4"}
      - {name: two, commands: ["true", "echo hi"], expect_stdout: "hi"}
    expect:
      languages: {python3: ">=3.7", java: ">=17"}
      packages: {python: {Jinja2: "*"}}
      bin: [gcc, no-such-command]
  - name: new
    url: http://127.0.0.1:2/
"""
API = {"old": 2, "new": 3}


def fixture(api: int, name: str) -> object:
    return json.loads((FIXTURES / f"v{api}" / f"{name}.json").read_text())


def result(
    target: str,
    probe: str,
    data: object = None,
    *,
    reason: Reason | None = None,
    started_at: float = NOW,
    duration: float = 0.25,
) -> ProbeResult:
    return ProbeResult(target, probe, reason is None, reason, started_at, duration, "", data)


def specifications(api: int) -> Specifications:
    return parse_specifications(fixture(api, "specifications"))


# Every usage number distinct, so that a value landing in the wrong series shows.
USAGE_VALUES = {
    "containers_running": 1,
    "cpu_usage_ratio": 0.11,
    "load_ratio": (0.12, 0.13, 0.14),
    "cpu_frequency_hz": 2.5e9,
    "memory_used_bytes": 1500,
    "swap_used_bytes": 1600,
    "storage_used_bytes": {"/dev/vda": 1700},
    "disk_read_bytes_per_second": {"/dev/vda": 18.0},
    "disk_write_bytes_per_second": {"/dev/vda": 19.0},
    "disk_read_operations_per_second": {"/dev/vda": 20.0},
    "disk_write_operations_per_second": {"/dev/vda": 21.0},
    "network_sent_bytes_per_second": 22.0,
    "network_received_bytes_per_second": 23.0,
    "network_sent_packets_per_second": 24.0,
    "network_received_packets_per_second": 25.0,
    "processes": 26,
}


def usage(**changes: object) -> Usage:
    return parse_usage(fixture(3, "usages")).model_copy(update={**USAGE_VALUES, **changes})


def load(target: str) -> Load:
    if API[target] == 2:
        # 2.x reports the pool size beside the running count.
        return Load(containers_running=2, containers_max=5, usage=None)
    return Load(containers_running=1, containers_max=None, usage=usage())


def libraries_report(target: Target) -> LibrariesReport:
    libraries = parse_libraries(fixture(API[target.name], "libraries"))
    outcomes = check_expectations(
        target.expect, libraries.languages, libraries.packages, libraries.bin
    )
    return LibrariesReport.of(libraries, tuple(outcomes))


def canaries(target: Target, *, round_trip: float = 0.03) -> tuple[CanaryResult, ...]:
    return tuple(
        CanaryResult(
            name=canary.name,
            success=True,
            reason=None,
            message="ok",
            round_trip_seconds=round_trip,
            server_seconds=0.01,
            status=0,
            command_seconds=tuple(0.001 * (step + 1) for step in range(len(canary.commands))),
        )
        for canary in target.canaries
    )


def probe_data(target: Target, probe: str) -> object:
    if probe == SPECIFICATIONS:
        return specifications(API[target.name])
    if probe == USAGE:
        return load(target.name)
    if probe == LIBRARIES:
        return libraries_report(target)
    return canaries(target)


def state_with(config: str = CONFIG) -> tuple[State, Config]:
    state = State()
    parsed = parse_config(config)
    state.set_config(parsed)
    return state, parsed


def populate(state: State, config: Config) -> None:
    for target in config.targets:
        for probe in PROBES:
            state.record(result(target.name, probe, probe_data(target, probe)))


def scrape(state: State, **options) -> Scrape:
    return Scrape(collector.render(state.snapshot(), **options).text())


# ------------------------------------------------------------------ table


def test_the_metric_table_is_the_documented_contract():
    assert len(contract.METRICS) > 40, "docs/metrics.md parsing found too few metrics"
    documented = [(m.name, m.type, m.labels) for m in contract.METRICS]
    declared = [(m.name, m.type, frozenset(m.labels)) for m in METRICS]
    assert declared == documented
    assert len(METRICS_BY_NAME) == len(METRICS), "a metric is declared twice"


# ------------------------------------------------------------------ populated


def assert_matches_the_table(m: Scrape, config: Config) -> None:
    """Every family is declared with its type and help, every sample has its labels."""
    user_labels = {label for target in config.targets for label in target.labels}
    for name, type_ in m.types.items():
        spec = METRICS_BY_NAME.get(name) or METRICS_BY_NAME[f"{name}_total"]
        assert type_ == spec.type, name
        assert m.helps[name] == spec.help, name
    for sample in m.samples:
        spec = contract.SERIES[sample.name]
        labels = set(sample.labels)
        if sample.name.endswith("_bucket"):
            labels.remove("le")
        if sample.name == "sandbox_target_info":
            labels -= user_labels
        assert labels == set(METRICS_BY_NAME[spec.name].labels), sample


def test_a_populated_state():
    state, config = state_with()
    populate(state, config)
    m = scrape(state)
    assert_matches_the_table(m, config)

    assert m.value("sandbox_exporter_build_info", version=__version__) == 1
    assert m.value("sandbox_exporter_targets") == 2
    assert m.value("sandbox_exporter_config_last_reload_successful") == 1
    assert m.value("sandbox_exporter_config_last_reload_success_timestamp_seconds") > NOW
    info = m.find("sandbox_target_info")
    assert [s.labels for s in info] == [
        {"target": "old", "url": "http://127.0.0.1:1/", "site": "paris"},
        {"target": "new", "url": "http://127.0.0.1:2/"},
    ]

    for target in ("old", "new"):
        assert m.value("sandbox_up", target=target) == 1
        for probe in PROBES:
            labels = {"target": target, "probe": probe}
            assert m.value("sandbox_probe_success", **labels) == 1
            assert m.value("sandbox_probe_duration_seconds", **labels) == 0.25
            assert m.value("sandbox_probe_last_success_timestamp_seconds", **labels) == NOW + 0.25
            assert m.value("sandbox_probe_runs_total", **labels) == 1
            # Every possible reason starts at 0, so the first failure is an increase.
            failures = m.find("sandbox_probe_failures_total", **labels)
            assert {s.labels["reason"]: s.value for s in failures} == {
                reason.value: 0 for reason in POSSIBLE_REASONS[probe]
            }

    # Specifications: 2.x has the execute bounds, 3.x the host.
    assert m.value("sandbox_info", target="old", sandbox_version="2.0.3", api="2") == 1
    assert m.value("sandbox_info", target="new", sandbox_version="3.0.3", api="3") == 1
    assert m.value("sandbox_containers_max", target="old") == 5
    assert m.value("sandbox_container_cpus", target="new") == 1
    limits = m.find("sandbox_container_memory_limit_bytes", target="old")
    # The fixture's storage is unlimited: that series is absent.
    assert {s.labels["kind"]: s.value for s in limits} == {"ram": 1e8, "swap": 1e8}
    assert m.find("sandbox_container_process_limit") == []
    assert m.value("sandbox_execute_timeout_seconds", target="old") == 10
    assert m.value("sandbox_environment_expiration_seconds", target="old") == 86400
    assert m.find("sandbox_execute_timeout_seconds", target="new") == []
    assert m.value("sandbox_host_cpu_cores", target="new") == 2
    assert m.value("sandbox_host_memory_bytes", target="new") == 25276063744
    assert m.value("sandbox_host_storage_bytes", target="new", device="/dev/vda") == 270553174016
    assert m.find("sandbox_host_cpu_cores", target="old") == []

    # Load: 2.x reports its pool with the load, 3.x in its specifications.
    assert m.value("sandbox_containers_running", target="old") == 2
    assert m.value("sandbox_load_ratio", target="old") == 2 / 5
    assert m.value("sandbox_containers_running", target="new") == 1
    assert m.value("sandbox_load_ratio", target="new") == 1 / 5
    host = {
        "sandbox_host_cpu_usage_ratio": 0.11,
        "sandbox_host_cpu_frequency_hertz": 2.5e9,
        "sandbox_host_memory_used_bytes": 1500,
        "sandbox_host_swap_used_bytes": 1600,
        "sandbox_host_network_sent_bytes_per_second": 22,
        "sandbox_host_network_received_bytes_per_second": 23,
        "sandbox_host_network_sent_packets_per_second": 24,
        "sandbox_host_network_received_packets_per_second": 25,
        "sandbox_host_processes": 26,
    }
    for name, value in host.items():
        assert m.value(name, target="new") == value, name
        assert m.find(name, target="old") == [], name
    per_device = {
        "sandbox_host_storage_used_bytes": 1700,
        "sandbox_host_disk_read_bytes_per_second": 18,
        "sandbox_host_disk_write_bytes_per_second": 19,
        "sandbox_host_disk_read_operations_per_second": 20,
        "sandbox_host_disk_write_operations_per_second": 21,
    }
    for name, value in per_device.items():
        assert m.value(name, target="new", device="/dev/vda") == value, name
    windows = m.find("sandbox_host_load_ratio", target="new")
    assert {s.labels["window"]: s.value for s in windows} == {"1m": 0.12, "5m": 0.13, "15m": 0.14}

    # Libraries: counts by kind, and only the expectations of the config.
    counts = {s.labels["kind"]: s.value for s in m.find("sandbox_libraries", target="old")}
    assert counts == {"system": 14, "python": 11, "perl": 8, "c": 10, "bin": 17}
    met = m.find("sandbox_library_expectation_met", target="old")
    assert {(s.labels["kind"], s.labels["name"]): s.value for s in met} == {
        ("language", "python3"): 1,
        ("language", "java"): 0,  # 11.0.7 is found but older than required
        ("python", "Jinja2"): 1,
        ("bin", "gcc"): 1,
        ("bin", "no-such-command"): 0,
    }
    versions = m.find("sandbox_library_version_info", target="old")
    assert {(s.labels["name"], s.labels["version"]) for s in versions} == {
        ("python3", "3.7.3"),
        ("java", "openjdk 11.0.7"),
        ("Jinja2", "2.11.2"),
        ("gcc", "present"),
    }
    assert m.find("sandbox_library_expectation_met", target="new") == []
    assert m.value("sandbox_libraries", target="new", kind="bin") == 21

    # Canaries: the gauges of the last run, and the histogram of every run.
    for target, names in (("old", ("shell", "two")), ("new", ("shell",))):
        assert {s.labels["canary"] for s in m.find("sandbox_canary_success", target=target)} == {
            *names
        }
    labels = {"target": "old", "canary": "two"}
    assert m.value("sandbox_canary_success", **labels) == 1
    assert m.value("sandbox_canary_duration_seconds", **labels) == 0.03
    assert m.value("sandbox_canary_server_duration_seconds", **labels) == 0.01
    assert m.value("sandbox_canary_wait_seconds", **labels) == pytest.approx(0.02)
    assert m.value("sandbox_canary_status", **labels) == 0
    steps = m.find("sandbox_canary_command_duration_seconds", **labels)
    assert {s.labels["step"]: s.value for s in steps} == {"0": 0.001, "1": 0.002}
    buckets = m.find("sandbox_canary_round_trip_seconds_bucket", **labels)
    assert [float(s.labels["le"]) for s in buckets] == [*CANARY_BUCKETS, math.inf]
    # One 30 ms round trip: in every bucket from 0.05 up, cumulative.
    assert [s.value for s in buckets] == [float(bound >= 0.03) for bound in CANARY_BUCKETS] + [1]
    assert m.value("sandbox_canary_round_trip_seconds_count", **labels) == 1
    assert m.value("sandbox_canary_round_trip_seconds_sum", **labels) == 0.03


def test_unknown_values_are_absent_not_nan():
    state, _ = state_with()
    state.record(
        result("new", USAGE, Load(1, None, usage(cpu_usage_ratio=math.nan, processes=None)))
    )
    m = scrape(state)
    assert m.find("sandbox_host_cpu_usage_ratio") == []
    assert m.find("sandbox_host_processes") == []
    assert m.value("sandbox_host_memory_used_bytes", target="new") == 1500
    assert not any(math.isnan(s.value) for s in m.samples)


def test_the_openmetrics_format_carries_the_same_samples():
    state, config = state_with()
    populate(state, config)
    lines = collector.render(state.snapshot())
    text = lines.text(openmetrics=True, end=True)
    assert text.endswith("# EOF\n")
    parsed = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in parse_openmetrics(text)
        for s in family.samples
    }
    classic = Scrape(lines.text())
    assert parsed == {(s.name, tuple(sorted(s.labels.items())), s.value) for s in classic.samples}


# ------------------------------------------------------------------ partial


def test_a_partial_state_shows_only_what_ran():
    state, _ = state_with()
    state.record(result("old", SPECIFICATIONS, specifications(2)))
    m = scrape(state)

    assert m.value("sandbox_up", target="old") == 1
    assert m.value("sandbox_containers_max", target="old") == 5
    assert [s.labels["probe"] for s in m.find("sandbox_probe_success")] == [SPECIFICATIONS]
    assert [s.labels["probe"] for s in m.find("sandbox_probe_last_success_timestamp_seconds")] == [
        SPECIFICATIONS
    ]
    # Counters exist from the start, at 0, for every target and probe.
    for target in ("old", "new"):
        for probe in PROBES:
            runs = m.value("sandbox_probe_runs_total", target=target, probe=probe)
            assert runs == int(target == "old" and probe == SPECIFICATIONS)
            failures = m.find("sandbox_probe_failures_total", target=target, probe=probe)
            assert len(failures) == len(POSSIBLE_REASONS[probe])
            assert {s.value for s in failures} == {0}
    # "new" never answered: configured and counted, nothing else.
    assert m.find("sandbox_up", target="new") == []
    assert m.value("sandbox_target_info", target="new") == 1
    for name in (
        "sandbox_containers_running",
        "sandbox_load_ratio",
        "sandbox_libraries",
        "sandbox_library_expectation_met",
        "sandbox_canary_success",
        "sandbox_canary_round_trip_seconds_count",
    ):
        assert m.find(name) == [], name


def test_usage_without_specifications_has_no_load_ratio():
    # 3.x reports its pool size only in /specifications/, which never answered.
    state, _ = state_with()
    state.record(result("new", USAGE, load("new")))
    m = scrape(state)
    assert m.value("sandbox_containers_running", target="new") == 1
    assert m.find("sandbox_load_ratio") == []
    state.record(result("new", SPECIFICATIONS, specifications(3)))
    assert scrape(state).value("sandbox_load_ratio", target="new") == 1 / 5


# ------------------------------------------------------------------ failing


def test_every_failure_reason_is_counted_where_it_belongs():
    state, config = state_with()
    populate(state, config)
    old = config.target("old")
    for probe in PROBES:
        for reason in POSSIBLE_REASONS[probe]:
            data = None
            if probe == CANARY:
                # A failed canary probe still carries the canaries' timings.
                data = tuple(
                    dataclasses.replace(c, success=False, reason=reason, status=-1)
                    for c in canaries(old, round_trip=0.2)
                )
            state.record(result("old", probe, data, reason=reason, started_at=NOW + 60))
    m = scrape(state)

    for probe in PROBES:
        labels = {"target": "old", "probe": probe}
        failures = m.find("sandbox_probe_failures_total", **labels)
        assert {s.labels["reason"]: s.value for s in failures} == {
            reason.value: 1 for reason in POSSIBLE_REASONS[probe]
        }
        assert m.value("sandbox_probe_success", **labels) == 0
        assert m.value("sandbox_probe_runs_total", **labels) == 1 + len(POSSIBLE_REASONS[probe])
        # Still the time of the one success, before the failures.
        assert m.value("sandbox_probe_last_success_timestamp_seconds", **labels) == NOW + 0.25
        other = m.find("sandbox_probe_failures_total", target="new", probe=probe)
        assert {s.value for s in other} == {0}

    # The last specifications run failed: down, and nothing from an old document.
    assert m.value("sandbox_up", target="old") == 0
    assert m.find("sandbox_info", target="old") == []
    assert m.find("sandbox_containers_max", target="old") == []
    assert m.find("sandbox_containers_running", target="old") == []
    assert m.find("sandbox_libraries", target="old") == []
    for canary in ("shell", "two"):
        labels = {"target": "old", "canary": canary}
        assert m.value("sandbox_canary_success", **labels) == 0
        assert m.value("sandbox_canary_status", **labels) == -1
        assert m.value("sandbox_canary_round_trip_seconds_count", **labels) == 1 + len(
            POSSIBLE_REASONS[CANARY]
        )
    # The healthy target is untouched.
    assert m.value("sandbox_up", target="new") == 1


# ------------------------------------------------------------------ reloaded


RELOADED = """
targets:
  - name: old
    url: http://127.0.0.1:1/
    labels: {site: lyon}
  - name: added
    url: http://127.0.0.1:3/
"""


def test_a_reload_drops_removed_targets_and_keeps_counters_of_those_that_stay():
    state, config = state_with()
    populate(state, config)
    state.record(result("old", USAGE, reason=Reason.TIMEOUT))
    before = scrape(state)
    assert before.value("sandbox_up", target="new") == 1

    state.set_config(parse_config(RELOADED))
    m = scrape(state)
    assert m.value("sandbox_exporter_targets") == 2
    assert {s.labels["target"] for s in m.samples if "target" in s.labels} == {"old", "added"}
    # The label change shows; the old labels are gone.
    assert [s.labels for s in m.find("sandbox_target_info", target="old")] == [
        {"target": "old", "url": "http://127.0.0.1:1/", "site": "lyon"}
    ]
    # Counters and results of the target that stays are kept.
    assert m.value("sandbox_probe_runs_total", target="old", probe=USAGE) == 2
    assert m.value("sandbox_probe_failures_total", target="old", probe=USAGE, reason="timeout") == 1
    assert m.value("sandbox_up", target="old") == 1
    # Its canaries are now the default one: the histograms of removed canaries go.
    assert m.find("sandbox_canary_round_trip_seconds_count", target="old", canary="two") == []
    # The added target starts from nothing.
    assert m.value("sandbox_probe_runs_total", target="added", probe=SPECIFICATIONS) == 0
    assert m.find("sandbox_up", target="added") == []


# ------------------------------------------------------------------ bad data


def test_one_targets_bad_data_never_fails_the_scrape(caplog):
    state, config = state_with()
    populate(state, config)
    # A value no parser would produce: rendering it raises inside the collector.
    broken = specifications(2).model_copy(update={"container_memory_limits": None})
    state.record(result("old", SPECIFICATIONS, broken))
    with caplog.at_level(logging.ERROR, logger="sandbox_exporter.collector"):
        m = scrape(state)
    assert m.value("sandbox_up", target="new") == 1
    assert m.value("sandbox_containers_max", target="new") == 5
    # The bad target is left out whole, not half-rendered, and the skip is logged.
    assert {s.labels.get("target") for s in m.samples} == {None, "new"}
    assert m.value("sandbox_exporter_targets") == 2
    assert any("old" in record.getMessage() for record in caplog.records)
    # Good data again: the target is back.
    state.record(result("old", SPECIFICATIONS, specifications(2)))
    assert scrape(state).value("sandbox_containers_max", target="old") == 5


def test_a_streamed_scrape_leaves_bad_data_out_from_the_family_that_fails(caplog):
    """A stream has already handed out the families before: the bad target's
    samples are left out from the failing family on, the others are whole."""
    state, config = state_with()
    populate(state, config)
    broken = specifications(2).model_copy(update={"container_memory_limits": None})
    state.record(result("old", SPECIFICATIONS, broken))
    snapshot = state.snapshot()
    with caplog.at_level(logging.ERROR, logger="sandbox_exporter.collector"):
        m = Scrape("".join(collector.stream(snapshot, chunk_characters=100)))
    logged = [r.getMessage() for r in caplog.records if "old" in r.getMessage()]
    assert len(logged) == 1 and "sandbox_container_memory_limit_bytes" in logged[0]
    whole = scrape(state)
    assert [s for s in m.samples if s.labels.get("target") != "old"] == [
        s for s in whole.samples if s.labels.get("target") != "old"
    ]
    order = {spec.name: index for index, spec in enumerate(METRICS)}

    def family(sample_name: str) -> int:
        if sample_name in order:
            return order[sample_name]
        for suffix in ("_bucket", "_count", "_sum"):
            if sample_name.removesuffix(suffix) in order:
                return order[sample_name.removesuffix(suffix)]
        raise AssertionError(f"{sample_name} is in no family of the table")

    failing = order["sandbox_container_memory_limit_bytes"]
    # What "old" would show with good data, recorded the same way.
    good_state, _ = state_with()
    populate(good_state, config)
    good_state.record(result("old", SPECIFICATIONS, specifications(2)))
    good = [s for s in scrape(good_state).samples if s.labels.get("target") == "old"]
    streamed = [s for s in m.samples if s.labels.get("target") == "old"]
    assert streamed == [s for s in good if family(s.name) < failing]
    assert any(family(s.name) > failing for s in good), "nothing after the failing family"
    assert m.value("sandbox_up", target="old") == 1


# ------------------------------------------------------------------ fidelity

TRICKY = """
targets:
  - name: old
    url: http://127.0.0.1:1/
    labels: {site: 'a "quoted" \\\\ value', zone: "line\\nbreak"}
  - name: added
    url: http://127.0.0.1:3/
"""


def reencoded(text: str, openmetrics_format: bool) -> str:
    """`text` parsed by prometheus_client and written again by it."""
    if openmetrics_format:
        families = list(parse_openmetrics(text))
        encode = openmetrics.generate_latest
    else:
        families = list(text_string_to_metric_families(text))
        encode = generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Prebuilt(families))
    return encode(registry).decode()


class Prebuilt:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def test_label_values_are_escaped():
    state, config = state_with(TRICKY)
    labels = config.target("old").labels
    assert "\\" in labels["site"] and "\n" in labels["zone"]
    (info,) = scrape(state).find("sandbox_target_info", target="old")
    assert info.labels == {"target": "old", "url": "http://127.0.0.1:1/", **labels}


def test_the_text_is_what_prometheus_client_writes_for_the_same_samples():
    """Through a long random run of probe results, failures and reloads (label
    values that need escaping included), each scrape, in both formats, is byte
    for byte what prometheus_client writes for the samples it parses from it."""
    rng = random.Random(20261201)
    state, config = state_with()
    configs = [config, parse_config(RELOADED), parse_config(TRICKY)]
    for step in range(150):
        current = state.config
        assert current is not None
        choice = rng.random()
        if choice < 0.05:
            state.set_config(rng.choice(configs))
        elif choice < 0.1:
            state.reload_failed("bad file")
        else:
            target = rng.choice(current.targets)
            probe = rng.choice(PROBES)
            if rng.random() < 0.3:
                reason = rng.choice(POSSIBLE_REASONS[probe])
                state.record(result(target.name, probe, reason=reason, started_at=NOW + step))
            else:
                data = probe_data(target, probe) if target.name in API else None
                if probe == CANARY:
                    data = canaries(target, round_trip=rng.choice((0.004, 0.3, 40.0)))
                state.record(result(target.name, probe, data, started_at=NOW + step))
        if rng.random() < 0.5:
            snapshot = state.snapshot()
            lines = collector.render(snapshot)
            for openmetrics_format in (False, True):
                text = lines.text(openmetrics_format, end=True)
                assert text == reencoded(text, openmetrics_format), (step, openmetrics_format)
                # /metrics streams the same bytes, in pieces of any size.
                size = rng.choice((1, 100, 5000, collector.CHUNK_CHARACTERS))
                pieces = list(
                    collector.stream(snapshot, openmetrics_format, end=True, chunk_characters=size)
                )
                assert "".join(pieces) == text, (step, openmetrics_format, size)
                assert all(piece.endswith("\n") for piece in pieces), step
            # /probe renders a target from a snapshot of that target only.
            for target in current.targets:
                alone = collector.render(state.snapshot(target), [target], exporter_metrics=False)
                whole = collector.render(state.snapshot(), [target], exporter_metrics=False)
                assert alone.text() == whole.text(), (step, target.name)
                # `/probe?probe=...`: that part of the target's series, no other.
                some = rng.sample(PROBES, rng.randint(1, len(PROBES)))
                part = collector.render(
                    state.snapshot(target, some), [target], exporter_metrics=False, probes=some
                ).text()
                assert set(part.splitlines()) <= set(whole.text().splitlines()), step
                labelled = {s.labels.get("probe") for s in Scrape(part).samples} - {None}
                assert labelled <= set(some), (step, some)


@pytest.mark.parametrize("big", [999_999, 1_000_000, 12_345_678])
def test_counts_of_a_million_and_more_are_written_as_prometheus_client_writes_them(big):
    """A block of counts (failures, histogram buckets) takes the shortcut for
    ints below a million; from a million up, Go's format writes exponents."""
    lines = collector.Lines()
    counts = [big if index % 2 else index for index in range(len(POSSIBLE_REASONS[CANARY]))]
    lines.add_failures('we"ird', CANARY, counts)
    buckets = (big, *range(len(CANARY_BUCKETS)))
    histogram = HistogramData(buckets, total=big * 0.25, count=sum(buckets))
    lines.add_histogram("sandbox_canary_round_trip_seconds", 'we"ird', "shell", histogram)
    for openmetrics_format in (False, True):
        text = lines.text(openmetrics_format, end=True)
        assert text == reencoded(text, openmetrics_format), openmetrics_format
    parsed = Scrape(lines.text())
    for reason, count in zip(POSSIBLE_REASONS[CANARY], counts, strict=True):
        (sample,) = parsed.find("sandbox_probe_failures_total", reason=reason.value)
        assert sample.value == count and sample.labels["target"] == 'we"ird'
    (inf,) = parsed.find("sandbox_canary_round_trip_seconds_bucket", le="+Inf")
    assert inf.value == sum(buckets)


def test_probe_endpoint_renders_one_target_without_exporter_metrics():
    state, config = state_with()
    populate(state, config)
    m = scrape(state, targets=[config.target("new")], exporter_metrics=False)
    assert {s.labels.get("target") for s in m.samples} == {"new"}
    assert not any(s.name.startswith("sandbox_exporter_") for s in m.samples)
    assert m.value("sandbox_up", target="new") == 1


def test_concurrent_scrapes_each_see_every_series_once():
    """Scrapes in several threads while probes record: none may see a series
    twice or lose one (each renders its own snapshot)."""
    state, config = state_with()
    populate(state, config)
    problems: list[str] = []
    stop = threading.Event()

    def record() -> None:
        step = 0
        while not stop.is_set() and step < 200_000:
            target = config.targets[step % 2]
            probe = PROBES[step % len(PROBES)]
            state.record(result(target.name, probe, probe_data(target, probe)))
            step += 1

    def scrape_repeatedly() -> None:
        for _ in range(25):
            m = scrape(state)
            series = [(s.name, tuple(sorted(s.labels.items()))) for s in m.samples]
            if len(series) != len(set(series)):
                problems.append("a series appeared twice")
            if {s.labels["target"] for s in m.find("sandbox_up")} != {"old", "new"}:
                problems.append("a target's sandbox_up is missing")

    writer = threading.Thread(target=record)
    readers = [threading.Thread(target=scrape_repeatedly) for _ in range(3)]
    writer.start()
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60)
    stop.set()
    writer.join(timeout=60)
    assert not any(thread.is_alive() for thread in [writer, *readers])
    assert problems == []
