"""Realistic exporter state for the benchmarks, built from the recorded documents.

Every target gets results for all four probes, parsed from the fixture
documents in tests/fixtures (half of the targets speak 2.x, half 3.x), two
canaries with histograms, and a handful of library expectations; some probe
failures are recorded too so the failure counters are not all zero.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sandbox_exporter.config import Config, parse_config
from sandbox_exporter.documents import (
    parse_execute_response,
    parse_libraries,
    parse_specifications,
    parse_usage,
)
from sandbox_exporter.expectations import check_expectations
from sandbox_exporter.probes import CanaryResult, LibrariesReport, Load, ProbeResult
from sandbox_exporter.state import State
from sandbox_exporter.vocabulary import CANARY, LIBRARIES, SPECIFICATIONS, USAGE, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"

# What a course platform typically checks: two canaries and a few toolchains.
TARGET_DEFAULTS = """
defaults:
  canaries:
    - {name: shell, commands: ["echo $((2+2))"], expect_stdout: "4"}
    - {name: python, commands: ["python3 -c 'print(6*7)'"], expect_stdout: "42"}
  expect:
    languages: {python3: ">=3.7", java: ">=11", gcc: ">=8"}
    packages: {python: {numpy: "*"}, system: {bash: "*"}}
    bin: [gcc, javac, no-such-command]
targets:
"""


def _fixture(api: int, name: str) -> object:
    return json.loads((FIXTURES / f"v{api}" / f"{name}.json").read_text())


def build_config(count: int, url_of=None) -> Config:
    """`count` targets named sandbox-0000..., with a couple of user labels each.

    `url_of(index)` gives each target's URL (default: a placeholder that is
    never contacted).
    """
    lines = [TARGET_DEFAULTS]
    for index in range(count):
        url = url_of(index) if url_of else f"http://sandbox-{index:04d}.example.org:7000/"
        site = ("paris", "lyon", "lille")[index % 3]
        lines.append(
            f"  - {{name: sandbox-{index:04d}, url: '{url}', "
            f"labels: {{site: {site}, course: c{index % 17}}}}}\n"
        )
    return parse_config("".join(lines), source="<benchmark>")


class ResultFactory:
    """Parses each fixture once; hands out fresh result objects per target."""

    def __init__(self) -> None:
        self.specifications = {
            api: parse_specifications(_fixture(api, "specifications")) for api in (2, 3)
        }
        self.usage = parse_usage(_fixture(3, "usages"))
        self.libraries = {api: parse_libraries(_fixture(api, "libraries")) for api in (2, 3)}
        self.execute = {
            api: parse_execute_response(_fixture(api, "execute_simple")) for api in (2, 3)
        }

    def results_for(self, target, api: int, now: float) -> list[ProbeResult]:
        spec = self.specifications[api]
        if api == 2:
            load = Load(containers_running=1, containers_max=spec.containers_max, usage=None)
        else:
            load = Load(
                containers_running=self.usage.containers_running,
                containers_max=None,
                usage=self.usage,
            )
        libraries = self.libraries[api]
        outcomes = tuple(
            check_expectations(
                target.expect, libraries.languages, libraries.packages, libraries.bin
            )
        )
        execute = self.execute[api]
        canaries = tuple(
            CanaryResult(
                name=canary.name,
                success=True,
                reason=None,
                message="ok",
                round_trip_seconds=0.012 + 0.001 * position,
                server_seconds=execute.total_time,
                status=execute.status,
                command_seconds=tuple(step.time for step in execute.execution),
            )
            for position, canary in enumerate(target.canaries)
        )
        data = {
            SPECIFICATIONS: spec,
            USAGE: load,
            LIBRARIES: LibrariesReport.of(libraries, outcomes),
            CANARY: canaries,
        }
        return [
            ProbeResult(target.name, probe, True, None, now, 0.01, "ok", data[probe])
            for probe in (SPECIFICATIONS, USAGE, LIBRARIES, CANARY)
        ]


def populated_state(count: int) -> tuple[State, ResultFactory]:
    """A State with `count` targets, every probe run a few times (some failed)."""
    state = State()
    state.set_config(build_config(count))
    return state, populate(state)


def populate(state: State) -> ResultFactory:
    """Every probe of every target of `state`'s configuration run a few times
    (some failed), as `populated_state` has them."""
    config = state.config
    assert config is not None
    factory = ResultFactory()
    now = time.time()
    for index, target in enumerate(config.targets):
        api = 2 if index % 2 == 0 else 3
        if index % 5 == 0:
            # A past failure, so failure counters and last-success differ per target.
            state.record(
                ProbeResult(target.name, CANARY, False, Reason.TIMEOUT, now - 60, 10.0, "timeout")
            )
        for _ in range(3):
            for result in factory.results_for(target, api, now):
                state.record(result)
    return factory


def refresh_all(state: State, factory: ResultFactory) -> None:
    """Replace every result with a fresh object: the worst case for any cache."""
    refresh(state, factory, set(PROBES_IN_ORDER), 1)


def refresh_typical(state: State, factory: ResultFactory, scrape: int) -> None:
    """What changes between two scrapes 15 s apart with the default intervals:
    every usage result (15 s), half of the specifications and canary results
    (30 s), no libraries result (1 h), no failure."""
    refresh(state, factory, {USAGE}, 1)
    refresh(state, factory, {SPECIFICATIONS, CANARY}, 2, offset=scrape % 2)


PROBES_IN_ORDER = (SPECIFICATIONS, USAGE, LIBRARIES, CANARY)


def refresh(
    state: State, factory: ResultFactory, probes: set[str], every: int, offset: int = 0
) -> None:
    """Record fresh results of `probes` for one target in `every`."""
    config = state.config
    assert config is not None
    now = time.time()
    for index, target in enumerate(config.targets):
        if (index + offset) % every:
            continue
        for result in factory.results_for(target, 2 if index % 2 == 0 else 3, now):
            if result.probe in probes:
                state.record(result)
