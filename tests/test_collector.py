"""The collector on its own: a state in, metric families out, no network."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from sandbox_exporter.collector import SandboxCollector
from sandbox_exporter.config import parse_config
from sandbox_exporter.documents import parse_specifications
from sandbox_exporter.metric_names import METRICS, METRICS_BY_NAME
from sandbox_exporter.probes import ProbeResult
from sandbox_exporter.state import State
from sandbox_exporter.vocabulary import SPECIFICATIONS

import contract
from helpers import Scrape

FIXTURES = Path(__file__).parent / "fixtures"


def specifications_result(target: str, api: int) -> ProbeResult:
    document = json.loads((FIXTURES / f"v{api}" / "specifications.json").read_text())
    return ProbeResult(
        target=target,
        probe=SPECIFICATIONS,
        success=True,
        reason=None,
        started_at=time.time(),
        duration_seconds=0.01,
        message="ok",
        data=parse_specifications(document),
    )


def render(state: State) -> Scrape:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SandboxCollector(state))
    return Scrape(generate_latest(registry).decode())


def test_one_targets_bad_data_never_fails_the_scrape(caplog):
    state = State()
    state.set_config(
        parse_config(
            "targets:\n  - {name: good, url: 'http://127.0.0.1:1/'}\n"
            "  - {name: bad, url: 'http://127.0.0.1:2/'}\n"
        )
    )
    state.record(specifications_result("good", 3))
    broken = specifications_result("bad", 2)
    # A value no parser would produce: rendering it raises inside the collector.
    state.record(
        dataclasses.replace(
            broken, data=dataclasses.replace(broken.data, container_memory_limits=None)
        )
    )
    with caplog.at_level(logging.ERROR, logger="sandbox_exporter.collector"):
        m = render(state)
    assert m.value("sandbox_up", target="good") == 1
    assert m.value("sandbox_containers_max", target="good") == 5
    # The bad target is left out whole, not half-rendered, and the skip is logged.
    assert m.find("sandbox_up", target="bad") == []
    assert m.find("sandbox_target_info", target="bad") == []
    assert m.value("sandbox_exporter_targets") == 2
    assert any("bad" in record.getMessage() for record in caplog.records)


def test_a_scrape_renders_the_same_state_the_same_way():
    state = State()
    state.set_config(parse_config("targets:\n  - {name: a, url: 'http://127.0.0.1:1/'}\n"))
    state.record(specifications_result("a", 2))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SandboxCollector(state))
    first, second = generate_latest(registry), generate_latest(registry)
    assert first == second  # the second scrape reuses the first's parts
    state.record(dataclasses.replace(specifications_result("a", 3)))
    third = Scrape(generate_latest(registry).decode())
    assert third.find("sandbox_info", target="a", api="3")
    assert third.find("sandbox_info", target="a", api="2") == []


def test_the_metric_table_is_the_documented_contract():
    assert len(contract.METRICS) > 40, "docs/metrics.md parsing found too few metrics"
    documented = [(m.name, m.type, m.labels) for m in contract.METRICS]
    declared = [(m.name, m.type, frozenset(m.labels)) for m in METRICS]
    assert declared == documented
    assert len(METRICS_BY_NAME) == len(METRICS), "a metric is declared twice"
