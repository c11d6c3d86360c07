"""Dashboards, alert rules and scrape configs against a real Prometheus server.

Emulated sandboxes -> in-process exporter(s) -> Debian's `prometheus` binary,
all on loopback, using the shipped deploy/prometheus/prometheus*.yml with
only the addresses, the sandbox names and the intervals replaced, and the
rule files of deploy/prometheus/rules/ with `for:` shortened. The static checks of the same files
(promtool check rules/config, the metric contract) live in
test_deploy_files.py; this module checks what only a running Prometheus can
tell: that every query finds the series the exporter really exports, with
the labels it really carries, and that each alert fires for the sandbox that
is broken and for no other.

What "returns data" means here:

- a dashboard query returns data when Prometheus answers it without error and
  the answer holds at least one sample with a finite value (a panel of only
  NaN, e.g. a quantile of a histogram that never moved, shows nothing);
  instant queries are run as instant queries, the others as range queries
  over the last seconds, the way Grafana runs them;
- the per-sandbox dashboard is run once per server generation; a query
  returns data for a sandbox exactly when every metric it reads is one that
  generation reports (2.x has no host section and no pids limit, 3.x no
  execute timeout nor environment expiration): an empty panel must be
  explained by the generation, never by a wrong name or label;
- an alert rule is an expression that is empty while all is well, so "data"
  is checked three ways: the whole rule file, loaded into Prometheus, is
  evaluated with health "ok" and no error; every vector selector of every
  rule (e.g. `sandbox_probe_last_success_timestamp_seconds{probe!="libraries"}`)
  selects existing series; a rule of the form `<expression> <comparison>
  <number>` returns data with the comparison stripped; and the alerts that
  the broken sandboxes below must trigger fire, for those sandboxes only.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import test_deploy_files as deploy
import yaml
from harness import RunningExporter
from prometheus_server import PrometheusAPIError, PrometheusServer

from sandbox_emulator import Emulator, Fault

from helpers import free_port, wait_until

# How long a condition may take to show up in Prometheus: a few scrape and
# evaluation rounds of 1 s, with a wide margin for a loaded machine.
SETTLE_TIMEOUT_SECONDS = 45.0
# Alerts wait this long in "pending" before firing (the shipped rules say
# minutes): long enough that one slow probe on a busy test machine cannot
# fire an alert for a healthy sandbox, short enough to keep the test quick.
ALERT_FOR = "2s"
# Grafana's built-in variables, with values that suit 1 s scrapes.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
RANGE_QUERY_SECONDS = 20.0
RANGE_QUERY_STEP_SECONDS = 2.0

# The exporter addresses written in the shipped Prometheus configs.
SHIPPED_EXPORTER = "sandbox-exporter:9929"
SHIPPED_REPLICAS = ("sandbox-exporter-0:9929", "sandbox-exporter-1:9929")


# --------------------------------------------------------------- helpers


def shipped_prometheus_config(
    name: str,
    exporters: Mapping[str, str],
    sandboxes: Sequence[str] | None = None,
    probe_timing: tuple[str, str] = ("3s", "2s"),
) -> dict[str, Any]:
    """deploy/prometheus/<name> with the exporter addresses mapped through `exporters`,
    the listed sandbox names replaced by `sandboxes` (None: kept), and short intervals:
    1 s for /metrics jobs, `probe_timing` (interval, timeout) for /probe jobs.
    Everything else (job names, paths, relabeling) stays as shipped."""
    shipped = yaml.safe_load((deploy.PROMETHEUS_DIR / name).read_text())
    config = copy.deepcopy(shipped)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}

    def exporter_address(address: str) -> str:
        if address not in exporters:
            raise AssertionError(f"{name}: no local exporter given for {address!r}")
        return exporters[address]

    jobs = []
    for shipped_job in shipped["scrape_configs"]:
        # Jobs share blocks through YAML anchors: edit a copy of each.
        job = copy.deepcopy(shipped_job)
        probing = job.get("metrics_path") == "/probe"
        job["scrape_interval"], job["scrape_timeout"] = probe_timing if probing else ("1s", "1s")
        for static in job["static_configs"]:
            listed = static["targets"]
            if all(re.fullmatch(r"[\w.-]+:\d+", entry) for entry in listed):
                static["targets"] = [exporter_address(entry) for entry in listed]
            elif sandboxes is not None:
                static["targets"] = list(sandboxes)
        for rule in job.get("relabel_configs", []):
            if rule.get("target_label") == "__address__" and "replacement" in rule:
                rule["replacement"] = exporter_address(rule["replacement"])
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def alerts_with_short_for() -> str:
    """The shipped alerts.yml with every `for:` set to ALERT_FOR."""
    rules = yaml.safe_load(deploy.ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert "for" in rule, f"{rule['alert']} has no for:"
            rule["for"] = ALERT_FOR
    return yaml.safe_dump(rules, sort_keys=False)


def slo_with_short_for() -> str:
    """The shipped slo.yml with the alerts' `for:` set to ALERT_FOR; the recording
    rules as shipped."""
    rules = yaml.safe_load(deploy.SLO_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = ALERT_FOR
    return yaml.safe_dump(rules, sort_keys=False)


def shipped_rule_files() -> dict[str, str]:
    """The rule files every shipped Prometheus config lists, for PrometheusServer."""
    shortened = {"alerts.yml": alerts_with_short_for(), "slo.yml": slo_with_short_for()}
    assert set(shortened) == set(deploy.RULE_FILES)
    return {path: shortened[Path(path).name] for path in deploy.RULE_PATHS}


def has_finite_value(series: list[dict[str, Any]]) -> bool:
    """True when a query result holds at least one sample that is a number."""
    for one in series:
        points = one["values"] if "values" in one else [one["value"]]
        if any(math.isfinite(float(value)) for _, value in points):
            return True
    return False


def substitute(expr: str, **variables: str) -> str:
    """Grafana's variables replaced as test_deploy_files does, with our values."""
    values = {**GRAFANA_BUILTINS, "datasource": "prometheus", **variables}
    with mock.patch.dict(deploy.GRAFANA_VARIABLES, values, clear=True):
        return deploy.substitute_grafana_variables(expr)


@dataclass(frozen=True)
class PanelQuery:
    where: str
    expr: str  # as written, with Grafana variables
    instant: bool
    range: bool


def panel_queries(dashboard: str) -> list[PanelQuery]:
    """Every query of every panel; Grafana runs a query as instant, range or both."""
    found = []
    for panel in deploy.data_panels(deploy.load_dashboard(dashboard)):
        for query in panel.get("targets", []):
            instant = bool(query.get("instant", False))
            found.append(
                PanelQuery(
                    where=f"{dashboard} panel {panel['title']!r} query {query['refId']}",
                    expr=query["expr"],
                    instant=instant,
                    range=bool(query.get("range", not instant)),
                )
            )
    return found


def annotation_expressions(dashboard: str) -> list[str]:
    return [
        a["expr"] for a in deploy.load_dashboard(dashboard)["annotations"]["list"] if "expr" in a
    ]


def run_panel_query(prometheus: PrometheusServer, query: PanelQuery, expr: str) -> bool:
    """Runs the query as Grafana would; True when every run returned data."""
    results = []
    if query.instant:
        results.append(has_finite_value(prometheus.query(expr)))
    if query.range:
        end = time.time()
        series = prometheus.query_range(
            expr, end - RANGE_QUERY_SECONDS, end, RANGE_QUERY_STEP_SECONDS
        )
        results.append(has_finite_value(series))
    return all(results)


SELECTOR = re.compile(r"\b(up|sandbox_[a-z0-9_]+)\b\s*(\{[^}]*\})?")


def vector_selectors(expr: str) -> list[str]:
    """`name{matchers}` of every series an expression reads (grouping label
    lists are dropped first: `by (target)` names labels, not series)."""
    return sorted(
        {
            name + (matchers or "")
            for name, matchers in SELECTOR.findall(deploy.GROUPING.sub("", expr))
        }
    )


TOP_LEVEL_COMPARISON = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*[0-9.e+\-*/ ]+$")
NESTING = {"(": 1, "{": 1, "[": 1, ")": -1, "}": -1, "]": -1}


def strip_threshold(expr: str) -> str | None:
    """`X > 0.9` -> `X` when the comparison with a number is the last, outermost
    operation of the expression; None when there is no such comparison."""
    expr = expr.strip()
    match = TOP_LEVEL_COMPARISON.search(expr)
    if match is None:
        return None
    left = expr[: match.start()]
    outermost, depth = [], 0
    for char in left:
        depth += NESTING.get(char, 0)
        if depth < 0:
            return None
        outermost.append(char if depth == 0 else " ")
    # Another comparison or a set operator outside all brackets means the
    # trailing comparison is not what the whole expression ends with.
    if depth != 0 or re.search(r"[=!<>]|\b(?:and|or|unless)\b", "".join(outermost)):
        return None
    return left


def alert_identities(alerts: list[dict[str, Any]], state: str) -> set[tuple[tuple[str, str], ...]]:
    """Alerts in `state` as sorted label pairs, without severity and instance
    (the exporter's address, which changes from run to run)."""
    return {
        tuple(sorted((k, v) for k, v in a["labels"].items() if k not in ("severity", "instance")))
        for a in alerts
        if a["state"] == state
    }


def identity(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


# ------------------------------------------------- mode (a): daemon, /metrics

EXPORTER_CONFIG = """
defaults:
  # Probe often so that rates and the alerts' windows fill within seconds;
  # canaries run real bash in the emulator, so those a little less often.
  intervals: {{specifications: 1s, usage: 1s, libraries: 2s, canary: 2s}}
  expect:
    languages: {{python3: ">=3"}}
    packages: {{python: {{numpy: "1.*"}}}}
    bin: [bash]
targets:
  - name: pl-old
    url: {old}
  - name: pl-new
    url: {new}
  - name: pl-broken
    url: {broken}
    expect:
      bin: [bash, no-such-command]
  - name: pl-gone
    url: {gone}
"""
HEALTHY = ("pl-old", "pl-new")
ALL_TARGETS = ("pl-old", "pl-new", "pl-broken", "pl-gone")
GENERATION = {"pl-old": 2, "pl-new": 3}
PROCESS_LIMIT = 256
# A replica job that nobody runs any more, for SandboxExporterDown.
GONE_JOB = "sandbox-exporter-replica-gone"


def not_reported(generation: int, metric: str) -> bool:
    """Metrics an emulated server of that generation has no data for
    (see /work/shared/SANDBOX_API.md and docs/metrics.md)."""
    if generation == 2:
        return metric.startswith("sandbox_host_") or metric == "sandbox_container_process_limit"
    return metric in ("sandbox_execute_timeout_seconds", "sandbox_environment_expiration_seconds")


@dataclass
class DaemonStack:
    emulators: dict[str, Emulator]
    exporter: RunningExporter
    prometheus: PrometheusServer
    config_text: str


def capped_specifications(emulator: Emulator) -> dict[str, Any]:
    """The emulator's own 3.x specifications with a pids limit: the emulator
    reports "unlimited", and the contract omits the series then."""
    document = requests.get(emulator.url + "specifications/", timeout=10).json()
    document["container"]["process"] = PROCESS_LIMIT
    return document


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, make_module_emulator: Callable[..., Emulator]
) -> Iterator[DaemonStack]:
    directory = tmp_path_factory.mktemp("daemon")
    emulators: dict[str, Emulator] = {}
    exporter = prometheus = None
    try:
        emulators["old"] = make_module_emulator(api=2)
        emulators["new"] = make_module_emulator(api=3)
        emulators["broken"] = make_module_emulator(api=3, faults={"execute": Fault(status=503)})
        emulators["gone"] = make_module_emulator(api=3)
        emulators["new"].set_fault(
            "specifications", Fault(body=capped_specifications(emulators["new"]))
        )
        emulators["gone"].go_down()
        config_text = EXPORTER_CONFIG.format(
            **{name: json.dumps(emulator.url) for name, emulator in emulators.items()}
        )
        config_path = directory / "exporter.yml"
        config_path.write_text(config_text)
        exporter = RunningExporter(config_path)
        config = shipped_prometheus_config("prometheus.yml", {SHIPPED_EXPORTER: exporter.address})
        # Nothing listens there: the replica this job scraped has gone.
        config["scrape_configs"].append(
            {
                "job_name": GONE_JOB,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{free_port()}"]}],
            }
        )
        prometheus = PrometheusServer(config, directory, rule_files=shipped_rule_files()).start()
        stack = DaemonStack(emulators, exporter, prometheus, config_text)
        wait_for_daemon_data(stack)
        yield stack
    finally:
        if prometheus is not None:
            prometheus.stop()
        if exporter is not None:
            exporter.stop()


def wait_for_daemon_data(stack: DaemonStack) -> None:
    """Until Prometheus holds what every test of this mode reads: every target
    seen, canary histograms that moved, library results, a second round of
    counters so that rates exist, and the SLO rules evaluated over them."""
    prometheus = stack.prometheus

    def ready() -> bool:
        up = prometheus.query('up{job="sandbox-exporter"} == 1')
        seen = {s["metric"]["target"] for s in prometheus.query("sandbox_up")}
        moved = {
            s["metric"]["target"]
            for s in prometheus.query("increase(sandbox_canary_round_trip_seconds_count[1m]) > 0")
        }
        libraries = {
            s["metric"]["target"] for s in prometheus.query("sandbox_library_expectation_met")
        }
        rates = {
            s["metric"]["target"]
            for s in prometheus.query(
                'rate(sandbox_probe_runs_total{probe="specifications"}[1m]) > 0'
            )
        }
        # The SLO recording rules have run over those rates (NaN dropped).
        budgets = {s["metric"]["target"] for s in prometheus.query("sandbox:slo_burn_rate:1h >= 0")}
        return (
            len(up) == 1
            and seen == set(ALL_TARGETS)
            and set(HEALTHY) <= budgets
            and set(HEALTHY) <= moved
            and set(HEALTHY) | {"pl-broken"} <= libraries
            and rates == set(ALL_TARGETS)
        )

    wait_until(ready, timeout=SETTLE_TIMEOUT_SECONDS, interval=0.5)


def test_prometheus_scrapes_the_exporter_as_configured(daemon: DaemonStack) -> None:
    jobs = {t["labels"]["job"]: t for t in daemon.prometheus.targets()}
    assert jobs["sandbox-exporter"]["health"] == "up", jobs["sandbox-exporter"]
    assert jobs["sandbox-exporter"]["scrapeUrl"] == daemon.exporter.url + "metrics"
    up = {
        s["metric"]["target"]: float(s["value"][1])
        for s in daemon.prometheus.query('sandbox_up{job="sandbox-exporter"}')
    }
    assert up == {"pl-old": 1, "pl-new": 1, "pl-broken": 1, "pl-gone": 0}
    apis = {
        s["metric"]["target"]: s["metric"]["api"] for s in daemon.prometheus.query("sandbox_info")
    }
    assert apis == {"pl-old": "2", "pl-new": "3", "pl-broken": "3"}


def test_every_overview_query_returns_data_for_all_sandboxes(daemon: DaemonStack) -> None:
    # The overview's $target is multi-value with "All": Grafana sends a regex.
    every_target = "(" + "|".join(ALL_TARGETS) + ")"
    queries = panel_queries("sandbox-overview.json")
    assert len(queries) >= 10
    empty = [
        f"{q.where}: {q.expr}"
        for q in queries
        if not run_panel_query(daemon.prometheus, q, substitute(q.expr, target=every_target))
    ]
    assert empty == [], "queries without data"


@pytest.mark.parametrize("target", HEALTHY)
def test_every_detail_query_returns_data_where_the_generation_reports_it(
    daemon: DaemonStack, target: str
) -> None:
    generation = GENERATION[target]
    queries = panel_queries("sandbox-detail.json")
    assert len(queries) >= 30
    problems = []
    for query in queries:
        expr = substitute(query.expr, target=target)
        absent = sorted(m for m in deploy.metric_names(expr) if not_reported(generation, m))
        returned = run_panel_query(daemon.prometheus, query, expr)
        if returned and absent:
            problems.append(
                f"{query.where}: data although {absent} are not reported by {generation}.x"
            )
        if not returned and not absent:
            problems.append(f"{query.where}: no data: {expr}")
    assert problems == []


def test_generation_excuses_cover_only_generation_specific_series(daemon: DaemonStack) -> None:
    # Guards the test above: "that generation does not report it" excuses a
    # few named series only, and the pids limit, which the emulators call
    # unlimited, really reaches Prometheus from the capped 3.x document.
    metrics = {m for q in panel_queries("sandbox-detail.json") for m in deploy.metric_names(q.expr)}
    assert {m for m in metrics if not_reported(2, m)} >= {
        "sandbox_host_memory_bytes",
        "sandbox_container_process_limit",
    }
    assert {m for m in metrics if not_reported(3, m)} == {
        "sandbox_execute_timeout_seconds",
        "sandbox_environment_expiration_seconds",
    }
    limit = daemon.prometheus.query('sandbox_container_process_limit{target="pl-new"}')
    assert [float(s["value"][1]) for s in limit] == [PROCESS_LIMIT]


def assert_every_rule_evaluates(prometheus: PrometheusServer) -> None:
    """Every rule of alerts.yml and slo.yml is loaded, has been evaluated, and
    without error."""
    expected = {rule["alert"] for rule in deploy.alert_rules()} | {
        rule.get("record") or rule["alert"] for rule in deploy.slo_rules()
    }

    def evaluated() -> list[dict[str, Any]]:
        rules = [r for g in prometheus.rule_groups() for r in g["rules"]]
        return rules if all(r["health"] != "unknown" for r in rules) else []

    rules = wait_until(evaluated, timeout=SETTLE_TIMEOUT_SECONDS, interval=0.5)
    assert {r["name"] for r in rules} == expected
    broken = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert broken == []
    alerting = [r for r in rules if r["type"] == "alerting"]
    assert all(r["duration"] == deploy.duration_seconds(ALERT_FOR) for r in alerting), (
        "the shortened for: did not load"
    )


def test_every_alert_rule_is_evaluated_without_error(daemon: DaemonStack) -> None:
    assert_every_rule_evaluates(daemon.prometheus)


def test_every_alert_expression_reads_series_that_exist(daemon: DaemonStack) -> None:
    problems = []
    stripped = 0
    for rule in deploy.alert_rules():
        name, expr = rule["alert"], rule["expr"]
        try:
            daemon.prometheus.query(expr)
        except PrometheusAPIError as error:
            problems.append(f"{name}: {error}")
            continue
        selectors = vector_selectors(expr)
        if not selectors:
            problems.append(f"{name}: no series selected in {expr!r}")
        for selector in selectors:
            if not daemon.prometheus.query(selector):
                problems.append(f"{name}: {selector} selects nothing")
        left = strip_threshold(expr)
        if left is not None:
            stripped += 1
            if not has_finite_value(daemon.prometheus.query(left)):
                problems.append(f"{name}: {left!r} (threshold removed) returns no data")
    assert problems == []
    # Guard: the stripping must engage, most rules are that simple.
    assert stripped * 2 >= len(deploy.alert_rules()), "thresholds were stripped from few rules"


def test_strip_threshold_only_strips_the_outermost_comparison() -> None:
    assert strip_threshold("sandbox_up == 0") == "sandbox_up"
    assert strip_threshold("avg_over_time(x[10m]) > 0.9") == "avg_over_time(x[10m])"
    assert strip_threshold("(a > 1) or (b > 4 * 3600)") is None
    assert strip_threshold("(a / b\n  > 0.5\n)") is None
    assert strip_threshold("sum(x)") is None
    assert strip_threshold('x{probe!="libraries"} > 1') == 'x{probe!="libraries"}'
    assert strip_threshold("a > 0 and b > 5") is None
    assert strip_threshold("a or b == 0") is None
    assert vector_selectors('sum by (target) (rate(sandbox_x{a="1"}[5m])) / up') == [
        'sandbox_x{a="1"}',
        "up",
    ]


def test_broken_sandboxes_fire_their_alerts_and_healthy_ones_stay_quiet(
    daemon: DaemonStack,
) -> None:
    job = "sandbox-exporter"
    expected = {
        # pl-broken answers 503 to every /execute/: canaries fail as overloaded.
        identity(alertname="SandboxCanaryFailing", job=job, target="pl-broken", canary="shell"),
        identity(
            alertname="SandboxProbeFailing",
            job=job,
            target="pl-broken",
            probe="canary",
            reason="overloaded",
        ),
        # ... and its configuration expects a command that is nowhere.
        identity(
            alertname="SandboxLibraryExpectationMissed",
            job=job,
            target="pl-broken",
            kind="bin",
            name="no-such-command",
        ),
        # pl-gone refuses connections: it pages once, as down; its failing
        # canary and probes are implied and stay quiet.
        identity(alertname="SandboxDown", job=job, target="pl-gone"),
        # A replica that is not running any more.
        identity(alertname="SandboxExporterDown", job=GONE_JOB),
        # Every canary probe of both fails: the availability budget burns
        # at 200 times the allowed rate, which pages and opens a ticket
        # (Alertmanager's inhibit rule in deploy/alertmanager/alertmanager.yml keeps the
        # ticket and the budget page of pl-gone quiet behind SandboxDown).
        *(
            identity(alertname=alert, job=job, target=target, slo="canary-availability")
            for alert in ("SandboxErrorBudgetFastBurn", "SandboxErrorBudgetSlowBurn")
            for target in ("pl-broken", "pl-gone")
        ),
    }

    def all_expected_firing() -> list[dict[str, Any]]:
        alerts = daemon.prometheus.alerts()
        return alerts if expected <= alert_identities(alerts, "firing") else []

    alerts = wait_until(all_expected_firing, timeout=SETTLE_TIMEOUT_SECONDS, interval=0.5)
    firing = alert_identities(alerts, "firing")
    assert firing - expected == set(), "alerts firing that should not"
    # The exporter scrape itself is fine: only the gone replica is down.
    exporter_down = [a for a in alerts if a["labels"]["alertname"] == "SandboxExporterDown"]
    assert [a["labels"]["job"] for a in exporter_down] == [GONE_JOB]


@pytest.mark.parametrize("path", ["metrics", *(f"probe?target={t}" for t in ALL_TARGETS)])
def test_exporter_output_passes_promtool_check_metrics(daemon: DaemonStack, path: str) -> None:
    response = requests.get(daemon.exporter.url + path, timeout=30)
    response.raise_for_status()
    assert "sandbox_probe_success" in response.text
    done = subprocess.run(
        [deploy.require_tool("promtool"), "check", "metrics"],
        input=response.text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_promtool_check_metrics_does_complain_about_bad_names() -> None:
    # Guard for the test above: the linter must speak up on a naming mistake.
    bad = (
        "# HELP sandbox_load_percent Load.\n"
        "# TYPE sandbox_load_percent counter\n"
        "sandbox_load_percent 1\n"
    )
    done = subprocess.run(
        [deploy.require_tool("promtool"), "check", "metrics"],
        input=bad,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "sandbox_load_percent" in done.stdout + done.stderr


def test_config_reloads_show_on_the_dashboards_and_a_bad_one_fires_its_alert(
    daemon: DaemonStack,
) -> None:
    # Runs last of this mode: it changes the exporter's reload state.
    prometheus = daemon.prometheus
    annotations = sorted(
        {expr for name in deploy.DASHBOARDS for expr in annotation_expressions(name)}
    )
    assert annotations, "the dashboards mark config reloads with an annotation"
    for expr in annotations:
        assert prometheus.query(expr) == [], f"{expr} marks a reload that did not happen"

    reload_url = daemon.exporter.url + "-/reload"
    assert requests.post(reload_url, timeout=30).status_code == 200
    for expr in annotations:
        wait_until(lambda expr=expr: prometheus.query(expr), timeout=SETTLE_TIMEOUT_SECONDS)

    def reload_alerts() -> list[dict[str, Any]]:
        return [
            a
            for a in prometheus.alerts()
            if a["labels"]["alertname"] == "SandboxExporterConfigReloadFailed"
        ]

    assert reload_alerts() == []
    config_path = daemon.exporter.config_path
    try:
        config_path.write_text("targets: not a list\n")
        response = requests.post(reload_url, timeout=30)
        assert response.status_code == 500 and "targets" in response.text
        firing = wait_until(
            lambda: [a for a in reload_alerts() if a["state"] == "firing"],
            timeout=SETTLE_TIMEOUT_SECONDS,
            interval=0.5,
        )
        assert [a["labels"]["instance"] for a in firing] == [daemon.exporter.address]
    finally:
        config_path.write_text(daemon.config_text)
        assert requests.post(reload_url, timeout=30).status_code == 200


# ----------------------------------------- mode (b): /probe?target=NAME

PROBE_JOB = "sandbox-exporter-probe"
USAGE_LATENCY_SECONDS = 5.0
# Prometheus gives each /probe scrape this long; the exporter hears it through
# X-Prometheus-Scrape-Timeout-Seconds and must answer before it.
PROBE_SCRAPE = ("3s", "2s")


def listed_sandboxes(config_name: str) -> list[str]:
    """The sandbox names a shipped config lists (its first /probe job's)."""
    config = yaml.safe_load((deploy.PROMETHEUS_DIR / config_name).read_text())
    job = next(j for j in config["scrape_configs"] if j.get("metrics_path") == "/probe")
    return [name for static in job["static_configs"] for name in static["targets"]]


def exporter_config(urls: Mapping[str, str]) -> str:
    return yaml.safe_dump({"targets": [{"name": n, "url": u} for n, u in urls.items()]})


@pytest.fixture
def exporters() -> Iterator[Callable[[Path], RunningExporter]]:
    started: list[RunningExporter] = []

    def start(config_path: Path) -> RunningExporter:
        # /probe deployments run with --no-scheduler, as the shipped configs say.
        exporter = RunningExporter(config_path, scheduled=False)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def test_probe_mode_stores_each_sandbox_under_its_name_within_the_scrape_timeout(
    tmp_path: Path, make_emulator, exporters
) -> None:
    names = listed_sandboxes("prometheus-probe.yml")
    assert len(names) >= 2
    slow, healthy = names[0], names[1:]
    urls = {slow: make_emulator(api=3, faults={"usages": Fault(latency=USAGE_LATENCY_SECONDS)}).url}
    for index, name in enumerate(healthy):
        urls[name] = make_emulator(api=3 if index % 2 else 2).url
    config_path = tmp_path / "exporter.yml"
    config_path.write_text(exporter_config(urls))
    exporter = exporters(config_path)
    config = shipped_prometheus_config(
        "prometheus-probe.yml", {SHIPPED_EXPORTER: exporter.address}, probe_timing=PROBE_SCRAPE
    )
    rules = shipped_rule_files()
    with PrometheusServer(config, tmp_path, rule_files=rules) as prometheus:

        def scraped_fine() -> set[str]:
            return {
                s["metric"]["instance"] for s in prometheus.query(f'up{{job="{PROBE_JOB}"}} == 1')
            }

        wait_until(lambda: scraped_fine() == set(names), timeout=SETTLE_TIMEOUT_SECONDS)
        # The slow sandbox's /usages/ outlasts the scrape timeout: the
        # exporter gave up on it in time (reason timeout, nothing else
        # would produce one here) and still answered the scrape.
        timeouts = (
            f'sandbox_probe_failures_total{{job="{PROBE_JOB}", probe="usage", reason="timeout"}}'
            " > 0"
        )
        timed_out = wait_until(lambda: prometheus.query(timeouts), timeout=SETTLE_TIMEOUT_SECONDS)
        assert {s["metric"]["target"] for s in timed_out} == {slow}

        success = prometheus.query(f'sandbox_probe_success{{job="{PROBE_JOB}"}}')
        assert {s["metric"]["instance"] for s in success} == set(names)
        mismatched = [
            s["metric"] for s in success if s["metric"]["instance"] != s["metric"]["target"]
        ]
        assert mismatched == []
        by_probe = {
            (s["metric"]["target"], s["metric"]["probe"]): float(s["value"][1]) for s in success
        }
        for name in names:
            assert by_probe[(name, "specifications")] == 1, name
            assert by_probe[(name, "canary")] == 1, name
        # The exporter's /metrics job keeps only the exporter's own series.
        stored = prometheus.query(
            'count by (__name__) ({job="sandbox-exporter", __name__=~"sandbox_.+"})'
        )
        names_stored = {s["metric"]["__name__"] for s in stored}
        assert names_stored and all(n.startswith("sandbox_exporter_") for n in names_stored), (
            names_stored
        )
        # The rules read per-sandbox series keyed by instance here: still fine.
        assert_every_rule_evaluates(prometheus)


# ------------------------------------ mode (c): replicas sharing by hashmod


def test_hashmod_gives_each_sandbox_to_exactly_one_replica(
    tmp_path: Path, make_emulator, exporters
) -> None:
    names = listed_sandboxes("prometheus-hashmod.yml")
    assert len(names) >= 4
    generations = [make_emulator(api=2).url, make_emulator(api=3).url]
    config_path = tmp_path / "exporter.yml"
    config_path.write_text(
        exporter_config({name: generations[i % 2] for i, name in enumerate(names)})
    )
    replicas = [exporters(config_path) for _ in SHIPPED_REPLICAS]
    config = shipped_prometheus_config(
        "prometheus-hashmod.yml",
        {shipped: r.address for shipped, r in zip(SHIPPED_REPLICAS, replicas, strict=True)},
        probe_timing=PROBE_SCRAPE,
    )
    shard_jobs = [
        j["job_name"] for j in config["scrape_configs"] if j.get("metrics_path") == "/probe"
    ]
    assert len(shard_jobs) == len(replicas)
    rules = shipped_rule_files()
    with PrometheusServer(config, tmp_path, rule_files=rules) as prometheus:
        shard_selector = f'job=~"{"|".join(shard_jobs)}"'

        def scraped() -> list[dict[str, Any]]:
            found = prometheus.query(f"sandbox_up{{{shard_selector}}}")
            return found if {s["metric"]["instance"] for s in found} == set(names) else []

        up = wait_until(scraped, timeout=SETTLE_TIMEOUT_SECONDS)
        jobs_of: dict[str, set[str]] = {}
        for series in up:
            jobs_of.setdefault(series["metric"]["instance"], set()).add(series["metric"]["job"])
        assert all(len(jobs) == 1 for jobs in jobs_of.values()), jobs_of

        # Relabeling sent each sandbox to its replica's address, and each job
        # dropped the sandboxes of the other replica.
        active = [t for t in prometheus.targets() if t["labels"]["job"] in shard_jobs]
        assert sorted(t["labels"]["instance"] for t in active) == sorted(names)
        for target in active:
            replica = replicas[shard_jobs.index(target["labels"]["job"])]
            assert target["scrapeUrl"].startswith(replica.url + "probe?"), target
            assert f"target={target['labels']['instance']}" in target["scrapeUrl"], target
        shares = {
            job: {t["labels"]["instance"] for t in active if t["labels"]["job"] == job}
            for job in shard_jobs
        }
        assert all(shares.values()), f"one replica got nothing: {shares}"
        dropped = [
            t for t in prometheus.targets("dropped") if t["discoveredLabels"]["job"] in shard_jobs
        ]
        assert len(dropped) == len(names) * (len(shard_jobs) - 1)
        assert_every_rule_evaluates(prometheus)
