"""Static checks of everything shipped next to the exporter: alert rules,
Prometheus configs, Grafana dashboards, Dockerfile, compose stack, systemd unit.

Each check uses the real tool where one exists (promtool, hadolint,
systemd-analyze, pip); a missing tool is a failure, not a skip, except
systemd-analyze, which not every machine has (the unit then still gets the
structural checks below).
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract import METRICS, METRICS_BY_NAME, SERIES, TARGET_LABELS

REPO = Path(__file__).resolve().parents[1]
# The exporter's own configuration examples.
CONFIG_DIR = REPO / "config"
# Prometheus' and Alertmanager's files, where a user looks for them.
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS = RULES_DIR / "alerts.yml"
ALERT_TESTS = REPO / "tests" / "rules" / "alerts_test.yml"
SLO_RULES = RULES_DIR / "slo.yml"
SLO_TESTS = REPO / "tests" / "rules" / "slo_test.yml"
# The rule files (names in RULES_DIR), in the order every Prometheus config
# loads them, from rules/ beside itself: RULE_PATHS.
RULE_FILES = ("alerts.yml", "slo.yml")
RULE_PATHS = tuple(f"{RULES_DIR.name}/{name}" for name in RULE_FILES)
PROMETHEUS_CONFIGS = ("prometheus.yml", "prometheus-probe.yml", "prometheus-hashmod.yml")
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
DASHBOARDS = ("sandbox-overview.json", "sandbox-detail.json")
DATASOURCE_PROVISIONING = REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVISIONING = REPO / "grafana" / "provisioning" / "dashboards" / "sandbox.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
SYSTEMD_UNIT = REPO / "deploy" / "sandbox-exporter.service"

EXPORTER_PORT = 9929  # also cli.DEFAULT_PORT; test_default_port_is_shared checks it
CONTAINER_CONFIG = "/etc/sandbox-exporter/config.yml"
SEVERITIES = {"critical", "warning"}
# Grafana built-ins replaced by something PromQL accepts.
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "target": "alpha",
    "datasource": "prometheus",
}
MODERN_PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "state-timeline", "gauge"}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH; the test command installs it (see .ci/run)")
    return path


def run(command: list[str], cwd: Path | None = None, timeout: float = 120) -> str:
    """Runs a command, fails the test with its output when it exits non-zero."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{shlex.join(command)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done.stdout + done.stderr


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules_of(path: Path) -> list[dict[str, Any]]:
    """The recording rules and alerts of a rule file, in evaluation order."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return rules_of(ALERTS)


def slo_rules() -> list[dict[str, Any]]:
    return rules_of(SLO_RULES)


def slo_expressions() -> list[tuple[str, str]]:
    return [
        (f"slo rule {rule.get('record') or rule['alert']}", rule["expr"]) for rule in slo_rules()
    ]


def load_dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / name).read_text())


def data_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data: rows are layout only (collapsed rows hold
    their panels in `panels`)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def substitute_grafana_variables(expr: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise AssertionError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL with variables substituted) for every query of every dashboard."""
    found = []
    for name in DASHBOARDS:
        dashboard = load_dashboard(name)
        for panel in data_panels(dashboard):
            for query in panel.get("targets", []):
                where = f"{name} panel {panel['title']!r} query {query['refId']}"
                found.append((where, substitute_grafana_variables(query["expr"])))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                where = f"{name} annotation {annotation['name']!r}"
                found.append((where, substitute_grafana_variables(annotation["expr"])))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    return [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]


# ------------------------------------------------------------------ contract


GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """Names of the sandbox series an expression selects (label lists of
    by/on/... clauses removed first: `by (sandbox_version)` names a label)."""
    return set(re.findall(r"\b(sandbox_[a-z0-9_]+)\b", GROUPING.sub("", expr)))


def contract_violations(expr: str, extra_labels: frozenset[str] = frozenset()) -> list[str]:
    """Metric names outside the contract, and label names a metric does not have
    (`extra_labels`: labels that recording rules add, e.g. `slo`)."""
    used = metric_names(expr)
    problems = [f"metric {name} is not in the contract" for name in sorted(used - set(SERIES))]
    known_labels = set(TARGET_LABELS) | extra_labels
    for series in used & set(SERIES):
        known_labels |= SERIES[series].labels
        if series.endswith("_bucket"):
            known_labels.add("le")
    for series, matchers in re.findall(r"\b(sandbox_[a-z0-9_]+)\s*\{([^}]*)\}", expr):
        if series not in SERIES:
            continue
        allowed = (
            SERIES[series].labels
            | TARGET_LABELS
            | ({"le"} if series.endswith("_bucket") else set())
        )
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            if label not in allowed:
                problems.append(f"{series} has no label {label!r}")
    for clause in GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in clause.split(","))):
            if label not in known_labels:
                problems.append(f"label {label!r} belongs to none of the metrics used")
    return problems


def test_contract_checker_catches_mistakes() -> None:
    # This checker guards every dashboard and alert: prove that it bites.
    assert contract_violations('sandbox_up{target="a"} == 0') == []
    assert contract_violations("sandbox_upp == 0") == ["metric sandbox_upp is not in the contract"]
    assert contract_violations('sandbox_up{probe="canary"}') == ["sandbox_up has no label 'probe'"]
    assert contract_violations("sum by (targt) (sandbox_up)") == [
        "label 'targt' belongs to none of the metrics used"
    ]
    assert (
        contract_violations("sum by (le) (rate(sandbox_canary_round_trip_seconds_bucket[5m]))")
        == []
    )


def test_expressions_use_only_contract_metrics_and_labels() -> None:
    slo_labels = frozenset({"slo", "target"})
    problems = [
        f"{where}: {problem}"
        for where, expr in alert_expressions() + dashboard_expressions()
        for problem in contract_violations(
            expr, slo_labels if "sandbox:slo" in expr else frozenset()
        )
    ] + [
        f"{where}: {problem}"
        for where, expr in slo_expressions()
        for problem in contract_violations(expr, slo_labels)
    ]
    assert problems == []


def test_grafana_target_variables_query_a_contract_metric() -> None:
    for name in DASHBOARDS:
        variable = template_variable(load_dashboard(name), "target")
        metric, label = re.fullmatch(
            r"label_values\((\w+),\s*(\w+)\)", variable["definition"]
        ).groups()
        assert metric in SERIES and label in SERIES[metric].labels, name


def test_alerts_and_dashboards_cover_the_core_metrics() -> None:
    used = " ".join(expr for _, expr in alert_expressions() + dashboard_expressions())
    # What someone on call needs: every metric that says "broken" or "slow".
    for name in (
        "sandbox_up",
        "sandbox_load_ratio",
        "sandbox_canary_success",
        "sandbox_canary_round_trip_seconds_bucket",
        "sandbox_probe_failures_total",
        "sandbox_probe_last_success_timestamp_seconds",
        "sandbox_library_expectation_met",
        "sandbox_library_version_info",
        "sandbox_exporter_config_last_reload_successful",
    ):
        assert re.search(rf"\b{name}\b", used), f"{name} is used by no dashboard or alert"
    assert len(METRICS) == len(METRICS_BY_NAME), "duplicate metric in docs/metrics.md"


# ---------------------------------------------------------------- promtool


@pytest.mark.parametrize(("rules", "unit_tests"), [(ALERTS, ALERT_TESTS), (SLO_RULES, SLO_TESTS)])
def test_rules_pass_promtool_check_and_their_unit_tests(rules: Path, unit_tests: Path) -> None:
    output = run([require_tool("promtool"), "check", "rules", str(rules)])
    assert f"SUCCESS: {len(rules_of(rules))} rules found" in output
    output = run([require_tool("promtool"), "test", "rules", str(unit_tests)], cwd=REPO)
    assert "SUCCESS" in output


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"
    assert (firing | quiet) - names == set(), "tests for alerts that do not exist"


def test_alerts_carry_severity_summary_and_description() -> None:
    required = {
        "SandboxDown",
        "SandboxOverloaded",
        "SandboxCanaryFailing",
        "SandboxCanarySlow",
        "SandboxLibraryExpectationMissed",
        "SandboxProbeStale",
        "SandboxProbeFailing",
        "SandboxExporterDown",
        "SandboxExporterConfigReloadFailed",
    }
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert required <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
        if "target" in " ".join(re.findall(r"\bsandbox_(?!exporter_)\w+", rule["expr"])) or (
            name.startswith("Sandbox") and not name.startswith("SandboxExporter")
        ):
            assert "$labels.target" in rule["annotations"]["summary"], name


def test_sandbox_exporter_down_matches_every_shipped_job() -> None:
    selector = next(r for r in alert_rules() if r["alert"] == "SandboxExporterDown")["expr"]
    job_regex = re.search(r'job=~"([^"]+)"', selector).group(1)
    for config in PROMETHEUS_CONFIGS:
        for job in load_yaml(PROMETHEUS_DIR / config)["scrape_configs"]:
            assert re.fullmatch(job_regex, job["job_name"]), (config, job["job_name"])


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    """promtool check rules parses every expression of a rule file: feed it each
    dashboard query and alert expression as a recording rule."""
    expressions = alert_expressions() + slo_expressions() + dashboard_expressions()
    rules = [
        {"record": f"check:expression_{index}", "expr": expr}
        for index, (_, expr) in enumerate(expressions)
    ]
    legend = "\n".join(
        f"check:expression_{index} = {where}" for index, (where, _) in enumerate(expressions)
    )
    rule_file = tmp_path / "expressions.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    done = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\nwhich is which:\n{legend}"
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_promql_parse_check_catches_a_syntax_error(tmp_path: Path) -> None:
    # Guard for the test above: promtool must reject a broken expression.
    rule_file = tmp_path / "broken.yml"
    broken = {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "sum(rate(x[5m])"}]}]}
    rule_file.write_text(yaml.safe_dump(broken))
    done = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0


# ---------------------------------------------------------------- SLO rules

# The multi-window, multi-burn-rate conditions of the SRE workbook:
# (long window, short window, burn rate) -> severity.
BURN_CONDITIONS = {
    "SandboxErrorBudgetFastBurn": ("critical", [("1h", "5m", 14.4), ("6h", "30m", 6.0)]),
    "SandboxErrorBudgetSlowBurn": ("warning", [("1d", "2h", 3.0), ("3d", "6h", 1.0)]),
}
SLOS = ("canary-availability", "canary-latency")


def slo_records(name: str) -> list[dict[str, Any]]:
    return [rule for rule in slo_rules() if rule.get("record") == name]


def test_slo_unit_tests_cover_fast_burn_slow_burn_and_quiet() -> None:
    firing: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for case in load_yaml(SLO_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"]:
                firing.add((check["alertname"], alert["exp_labels"]["slo"]))
            if not check["exp_alerts"]:
                quiet.add(check["alertname"])
    assert set(BURN_CONDITIONS) == quiet
    assert {("SandboxErrorBudgetFastBurn", slo) for slo in SLOS} <= firing
    assert ("SandboxErrorBudgetSlowBurn", "canary-availability") in firing


def test_slo_objectives_and_threshold_are_each_written_once() -> None:
    objectives = slo_records("sandbox:slo_objective:ratio")
    assert sorted(rule["labels"]["slo"] for rule in objectives) == sorted(SLOS)
    for rule in objectives:
        value = float(re.fullmatch(r"vector\(([0-9.]+)\)", rule["expr"]).group(1))
        assert 0.9 <= value < 1, rule
    # No other rule carries a number that could be an objective, and every
    # budget is computed from the recorded objective.
    others = [rule for rule in slo_rules() if rule not in objectives]
    for rule in others:
        assert not re.search(r"\b0\.9\d*\b", rule["expr"]), rule["expr"]
        if "burn_rate" in rule.get("record", "") or "budget" in rule.get("record", ""):
            assert "(1 - sandbox:slo_objective:ratio)" in rule["expr"], rule
    # The latency threshold: one bucket boundary the exporter really exposes,
    # in the one rule that counts slow round trips.
    from sandbox_exporter.state import CANARY_BUCKETS

    thresholds = [(rule, le) for rule in others for le in re.findall(r'le="([^"]+)"', rule["expr"])]
    assert len(thresholds) == 1, thresholds
    ((rule, le),) = thresholds
    assert rule["labels"]["slo"] == "canary-latency"
    assert le in {repr(bound) for bound in CANARY_BUCKETS}


def test_slo_windows_match_their_names() -> None:
    # Twenty rules written the same way: a copy-paste slip would go unseen.
    for rule in slo_rules():
        record = rule.get("record", "")
        match = re.fullmatch(r"sandbox:slo_(errors:ratio_rate|burn_rate:)(\w+)", record)
        if match is None:
            continue
        window = match.group(2)
        windows = set(re.findall(r"\[(\w+)\]", rule["expr"]))
        names = set(re.findall(r"sandbox:slo_\w+:(?:ratio_rate|)(\d+[mhd])\b", rule["expr"]))
        if window == "5m":
            assert windows <= {"5m"} and names <= {"5m"}, record
        else:
            assert windows | names == {window}, record


def test_slo_alerts_follow_the_workbook() -> None:
    alerts = {rule["alert"]: rule for rule in slo_rules() if "alert" in rule}
    assert set(alerts) == set(BURN_CONDITIONS)
    for name, (severity, conditions) in BURN_CONDITIONS.items():
        rule = alerts[name]
        assert rule["labels"]["severity"] == severity
        assert "$labels.target" in rule["annotations"]["summary"]
        assert "$labels.slo" in rule["annotations"]["summary"]
        assert rule["annotations"]["description"].strip()
        expr = " ".join(rule["expr"].split())
        for long, short, rate in conditions:
            wanted = (
                f"(sandbox:slo_burn_rate:{long} > {rate:g} "
                f"and sandbox:slo_burn_rate:{short} > {rate:g})"
            )
            assert wanted in expr, (name, wanted)


# ------------------------------------------------------------ files by kind


def test_files_sit_by_kind() -> None:
    # config/ is what `sandbox-exporter --config.check` accepts; Prometheus'
    # and Alertmanager's files are under deploy/, where a user looks for them.
    exporter_configs = sorted(CONFIG_DIR.glob("*.yml"))
    assert [p.name for p in exporter_configs] == ["example.yml", "minimal.yml"]
    for path in exporter_configs:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox_exporter.cli", "--config.check", "-c", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{path.name}: {done.stdout}{done.stderr}"
    assert sorted(p.name for p in PROMETHEUS_DIR.glob("*.yml")) == sorted(PROMETHEUS_CONFIGS)
    for name in PROMETHEUS_CONFIGS:
        assert "scrape_configs" in load_yaml(PROMETHEUS_DIR / name), name
    assert sorted(p.name for p in RULES_DIR.glob("*.yml")) == sorted(RULE_FILES)
    for name in RULE_FILES:
        assert list(load_yaml(RULES_DIR / name)) == ["groups"], name
    assert sorted(ALERTMANAGER_CONFIG.parent.iterdir()) == [ALERTMANAGER_CONFIG]
    assert {"route", "receivers"} <= set(load_yaml(ALERTMANAGER_CONFIG))


# ------------------------------------------------------- prometheus configs


@pytest.mark.parametrize("name", PROMETHEUS_CONFIGS)
def test_prometheus_config_is_valid_with_rules_beside_it(name: str, tmp_path: Path) -> None:
    # Only the config and its rule files, as docker-compose.yml mounts them:
    # the rule files must be found relative to the config file.
    shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    shutil.copytree(RULES_DIR, tmp_path / RULES_DIR.name)
    output = run([require_tool("promtool"), "check", "config", name], cwd=tmp_path)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in output
    assert load_yaml(PROMETHEUS_DIR / name)["rule_files"] == list(RULE_PATHS)


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d)", text):
        total += int(number) * units[unit]
    assert total > 0, text
    return total


@pytest.mark.parametrize("name", PROMETHEUS_CONFIGS)
def test_scrape_timeout_is_below_the_interval(name: str) -> None:
    config = load_yaml(PROMETHEUS_DIR / name)
    global_interval = config.get("global", {}).get("scrape_interval", "1m")
    for job in config["scrape_configs"]:
        interval = duration_seconds(job.get("scrape_interval", global_interval))
        timeout = duration_seconds(job.get("scrape_timeout", "10s"))
        assert timeout < interval, job["job_name"]


def discovered_targets(config: str, job: str) -> list[dict[str, str]]:
    """Targets of a job after relabeling, as promtool computes them (dropped ones omitted)."""
    output = subprocess.run(
        # promtool waits (busily) for the whole timeout; static targets are
        # there at once, and the callers check that every one came back.
        [require_tool("promtool"), "check", "service-discovery", "--timeout=2s", config, job],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [entry["labels"] for entry in json.loads(output) if entry["labels"]]


def test_probe_mode_sends_each_name_to_the_exporter_as_target_parameter() -> None:
    job = load_yaml(PROMETHEUS_DIR / "prometheus-probe.yml")["scrape_configs"][0]
    names = job["static_configs"][0]["targets"]
    targets = discovered_targets("prometheus-probe.yml", job["job_name"])
    assert [t["__param_target"] for t in targets] == names
    for labels in targets:
        assert labels["instance"] == labels["__param_target"]
        assert labels["__address__"] == f"sandbox-exporter:{EXPORTER_PORT}"
        assert labels["__metrics_path__"] == "/probe"


def test_hashmod_replicas_share_the_targets_without_overlap() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus-hashmod.yml")
    shards = [job for job in config["scrape_configs"] if job.get("metrics_path") == "/probe"]
    assert len(shards) >= 2
    names = shards[0]["static_configs"][0]["targets"]
    owner: dict[str, int] = {}
    addresses = set()
    for index, shard in enumerate(shards):
        steps = shard["relabel_configs"]
        hashmod = next(step for step in steps if step.get("action") == "hashmod")
        keep = next(step for step in steps if step.get("action") == "keep")
        assert hashmod["modulus"] == len(shards), shard["job_name"]
        assert keep["regex"] == str(index), shard["job_name"]
        assert shard["static_configs"][0]["targets"] == names
        for labels in discovered_targets("prometheus-hashmod.yml", shard["job_name"]):
            name = labels["__param_target"]
            assert name not in owner, f"{name} kept by shards {owner[name]} and {index}"
            owner[name] = index
            assert labels["instance"] == name
            assert labels["__tmp_hash"] == str(index)
            addresses.add((index, labels["__address__"]))
    assert sorted(owner) == sorted(names), "every sandbox must be probed by one replica"
    assert (
        len({address for _, address in addresses})
        == len(addresses)
        == len({index for index, _ in addresses})
    ), "each replica gets its own exporter address"


# ------------------------------------------------------------------ grafana


def template_variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert len(matches) == 1, f"{dashboard['uid']}: variable {name!r}"
    return matches[0]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_is_import_and_provisioning_ready(name: str) -> None:
    text = (DASHBOARD_DIR / name).read_text()
    dashboard = json.loads(text)
    # File provisioning does not resolve import placeholders.
    assert "__inputs" not in dashboard
    assert "${DS_" not in text
    assert dashboard["uid"] and re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None
    datasource = template_variable(dashboard, "datasource")
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    target = template_variable(dashboard, "target")
    assert target["type"] == "query"
    assert target["definition"] == "label_values(sandbox_up, target)"
    assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_has_unit_description_and_the_datasource_variable(name: str) -> None:
    dashboard = load_dashboard(name)
    panels = list(data_panels(dashboard))
    assert panels
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        title = panel["title"]
        assert panel["type"] in MODERN_PANEL_TYPES, title
        assert panel.get("description", "").strip(), f"{title}: no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        for query in panel["targets"]:
            assert query["datasource"]["uid"] == "${datasource}", title
            assert query["expr"].strip(), title


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_follow_the_target_selector(name: str) -> None:
    dashboard = load_dashboard(name)
    multi = template_variable(dashboard, "target")["multi"]
    selector = 'target=~"$target"' if multi else 'target="$target"'
    for panel in data_panels(dashboard):
        for query in panel["targets"]:
            expr = GROUPING.sub("", query["expr"])
            # Each per-sandbox selector must be narrowed to the choice.
            # Raw series (sandbox_...) and the SLO rules' (sandbox:slo_...).
            selectors = re.findall(r"\bsandbox(?:_(?!exporter_)|:)[a-z0-9_:]+(\{[^}]*\})?", expr)
            for found in selectors:
                assert selector in found, f"{panel['title']}: {query['expr']}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    occupied: dict[tuple[int, int], str] = {}
    for panel in load_dashboard(name)["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]


def test_dashboard_uids_are_unique() -> None:
    uids = [load_dashboard(name)["uid"] for name in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_detail_dashboard_shows_canary_quantiles_and_library_table() -> None:
    dashboard = load_dashboard("sandbox-detail.json")
    exprs = [q["expr"] for p in data_panels(dashboard) for q in p["targets"]]
    for quantile in ("0.5", "0.95", "0.99"):
        wanted = (
            f"histogram_quantile({quantile}, sum by (le) (rate("
            'sandbox_canary_round_trip_seconds_bucket{target="$target"}[$__rate_interval])))'
        )
        assert wanted in exprs
    tables = [p for p in data_panels(dashboard) if p["type"] == "table"]
    table_exprs = " ".join(q["expr"] for p in tables for q in p["targets"])
    assert "sandbox_library_expectation_met" in table_exprs
    assert "sandbox_library_version_info" in table_exprs
    titles = " ".join(p["title"].lower() for p in data_panels(dashboard))
    for topic in ("cpu", "memory", "storage", "disk", "network", "probe duration"):
        assert topic in titles, topic


def test_overview_dashboard_covers_every_sandbox() -> None:
    dashboard = load_dashboard("sandbox-overview.json")
    assert template_variable(dashboard, "target")["multi"] is True
    used = " ".join(q["expr"] for p in data_panels(dashboard) for q in p["targets"])
    for name in ("sandbox_up", "sandbox_load_ratio", "sandbox_canary_success"):
        assert name in used
    assert "sandbox_canary_round_trip_seconds_bucket" in used
    assert re.search(r"sum by \([^)]*\breason\b[^)]*\) \(.*sandbox_probe_failures_total", used)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboards_show_the_error_budget_from_the_slo_rules(name: str) -> None:
    recorded = {rule["record"] for rule in slo_rules() if "record" in rule}
    panels = [p for p in data_panels(load_dashboard(name)) if "error budget" in p["title"].lower()]
    exprs = [q["expr"] for p in panels for q in p["targets"]]
    used = {m for expr in exprs for m in re.findall(r"\bsandbox:[a-z0-9_:]+", expr)}
    # Budget remaining and burn rate, read from the rules (the objective is
    # in slo.yml only), every name recorded there.
    assert "sandbox:slo_error_budget_remaining:ratio30d" in used
    assert "sandbox:slo_burn_rate:1h" in used
    assert used <= recorded, used - recorded
    units = {p["title"]: p["fieldConfig"]["defaults"]["unit"] for p in panels}
    assert "percentunit" in units.values(), units


def test_grafana_provisioning_points_at_the_compose_mounts() -> None:
    compose = load_yaml(COMPOSE)
    grafana_mounts = dict(
        mount.split(":")[:2] for mount in compose["services"]["grafana"]["volumes"] if ":" in mount
    )
    provider = load_yaml(DASHBOARD_PROVISIONING)["providers"][0]
    assert provider["type"] == "file"
    assert grafana_mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./grafana/provisioning/dashboards"] == (
        "/etc/grafana/provisioning/dashboards"
    )
    assert grafana_mounts["./grafana/provisioning/datasources"] == (
        "/etc/grafana/provisioning/datasources"
    )
    datasource = load_yaml(DATASOURCE_PROVISIONING)["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True
    published = compose["services"]["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{published}"


# ------------------------------------------------------------------- docker


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    for line in filter(str.strip, logical):
        keyword, _, rest = line.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_dockerignored(relative: str) -> bool:
    ignored = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        candidates = [pattern, pattern.removeprefix("**/")]
        parts = Path(relative).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, c) for p in prefixes for c in candidates):
            ignored = not negate
    return ignored


def test_dockerfile_is_hadolint_clean() -> None:
    run([require_tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])


def test_dockerfile_follows_the_image_conventions() -> None:
    instructions = dockerfile_instructions()
    by_keyword: dict[str, list[str]] = {}
    for keyword, arguments in instructions:
        by_keyword.setdefault(keyword, []).append(arguments)
    (base,) = by_keyword["FROM"]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base
    (user,) = by_keyword["USER"]
    assert user.split(":")[0] not in {"0", "root"}
    assert by_keyword["EXPOSE"] == [str(EXPORTER_PORT)]
    (healthcheck,) = by_keyword["HEALTHCHECK"]
    assert f"127.0.0.1:{EXPORTER_PORT}/-/healthy" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    for keyword in ("ENTRYPOINT", "CMD"):
        (arguments,) = by_keyword[keyword]
        assert isinstance(json.loads(arguments), list), f"{keyword} must use the exec form"
    assert json.loads(by_keyword["ENTRYPOINT"][0]) == ["sandbox-exporter"]
    command = json.loads(by_keyword["CMD"][0])
    assert f"--config.file={CONTAINER_CONFIG}" in command
    assert f"--web.listen-address=:{EXPORTER_PORT}" in command
    installs = [run_ for run_ in by_keyword["RUN"] if "pip install" in run_]
    assert installs and all("--no-cache-dir" in run_ for run_ in installs)


def test_dockerfile_copies_existing_files_the_build_context_keeps() -> None:
    copies = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "COPY"]
    assert copies
    destinations = []
    for arguments in copies:
        *sources, destination = shlex.split(arguments)
        destinations.append(destination)
        for source in sources:
            assert not source.startswith("--"), "COPY flags are not expected here"
            assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
            assert not is_dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    assert CONTAINER_CONFIG in destinations


def test_dockerignore_keeps_secrets_and_vcs_out() -> None:
    for path in (
        ".git/config",
        ".env",
        "tests/test_cli.py",
        "sandbox_exporter/__pycache__/x.pyc",
        # It runs whatever commands it receives: never in the image.
        "sandbox_emulator/server.py",
    ):
        assert is_dockerignored(path), path
    for path in ("pyproject.toml", "README.md", "sandbox_exporter/cli.py", "config/minimal.yml"):
        assert not is_dockerignored(path), path


def replay_dockerfile(root: Path) -> tuple[Path, list[str]]:
    """Runs the Dockerfile's COPY and `pip install` steps into `root` (standing
    for the image's /) with a fresh venv standing for the image's Python.
    Returns the venv and the CMD. Other RUN commands (useradd, rm) are
    system administration that needs no replay to prove the install works."""
    environment = root / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    workdir = "/"
    installs = 0
    command: list[str] = []

    def in_root(container_path: str) -> Path:
        absolute = (
            container_path if container_path.startswith("/") else f"{workdir}/{container_path}"
        )
        return root / absolute.lstrip("/")

    for keyword, arguments in dockerfile_instructions():
        if keyword == "WORKDIR":
            workdir = arguments if arguments.startswith("/") else f"{workdir}/{arguments}"
            in_root(workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = shlex.split(arguments)
            into_directory = destination.endswith("/") or len(sources) > 1
            for source in sources:
                target = in_root(destination)
                if into_directory:
                    target = target / Path(source).name
                target.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / source).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
                    shutil.copytree(REPO / source, target, ignore=ignore)
                else:
                    shutil.copy(REPO / source, target)
        elif keyword == "RUN":
            for step in arguments.split("&&"):
                words = shlex.split(step)
                if words[:2] == ["pip", "install"]:
                    run(
                        [str(python), "-m", "pip", "install", *words[2:]],
                        cwd=in_root(workdir),
                        timeout=600,
                    )
                    installs += 1
        elif keyword == "CMD":
            command = json.loads(arguments)
    assert installs, "the Dockerfile installs nothing with pip"
    return environment, command


@pytest.mark.timeout(660)
def test_dockerfile_install_steps_produce_a_working_exporter(tmp_path: Path) -> None:
    from sandbox_exporter import __version__

    environment, command = replay_dockerfile(tmp_path)
    executable = environment / "bin" / "sandbox-exporter"
    output = run([str(executable), "--version"])
    assert __version__ in output
    # The baked-in config and the image's default flags must be accepted as shipped.
    image_config = tmp_path / CONTAINER_CONFIG.lstrip("/")
    flags = [
        f"--config.file={image_config}" if flag.startswith("--config.file=") else flag
        for flag in command
    ]
    run([str(executable), *flags, "--config.check"])
    # The image ships no emulator (it runs arbitrary commands), and --demo
    # says so in one line. Run outside the checkout, whose sandbox_emulator/
    # would otherwise be importable from the working directory.
    python = environment / "bin" / "python"
    run([str(python), "-c", "import sandbox_exporter.cli"], cwd=tmp_path)
    absent = subprocess.run(
        [str(python), "-c", "import sandbox_emulator"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert absent.returncode != 0 and "No module named 'sandbox_emulator'" in absent.stderr
    demo = subprocess.run(
        [str(executable), "--demo", "--web.listen-address", "127.0.0.1:0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode != 0
    assert demo.stdout == ""
    (message,) = demo.stderr.splitlines()
    assert "--demo needs the sandbox_emulator package" in message


# ------------------------------------------------------------------ compose


def compose_services() -> dict[str, dict[str, Any]]:
    return load_yaml(COMPOSE)["services"]


def test_compose_services_are_complete() -> None:
    services = compose_services()
    assert {"sandbox-exporter", "prometheus", "grafana"} <= set(services)
    assert any("sandbox_emulator" in service.get("entrypoint", []) for service in services.values())
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        if "image" in service and "build" not in service:
            assert re.search(r":v?\d+\.\d+", service["image"]), f"{name}: pin the image tag"


def test_compose_mounts_only_files_of_the_repository() -> None:
    mounts = 0
    named_volumes = set(load_yaml(COMPOSE).get("volumes") or {})
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
                assert (REPO / source).resolve().is_relative_to(REPO), f"{name}: {source}"
                assert volume.endswith(":ro"), f"{name} should mount {source} read-only"
                mounts += 1
            else:
                assert source in named_volumes, f"{name}: undeclared volume {source}"
    assert mounts >= 5


def test_compose_prometheus_loads_the_rules_beside_its_config() -> None:
    prometheus = compose_services()["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    config_path = mounts[f"./{(PROMETHEUS_DIR / 'prometheus.yml').relative_to(REPO)}"]
    assert f"--config.file={config_path}" in prometheus["command"]
    rules_mount = mounts[f"./{RULES_DIR.relative_to(REPO)}"]
    rule_files = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["rule_files"]
    # Resolved in the container as Prometheus resolves them: from the config's directory.
    in_container = [Path(config_path).parent / f for f in rule_files]
    assert in_container == [Path(rules_mount) / name for name in RULE_FILES]


def test_compose_ports_are_consistent() -> None:
    services = compose_services()
    exporter = services["sandbox-exporter"]
    assert f"--web.listen-address=:{EXPORTER_PORT}" in exporter["command"]
    assert exporter["ports"] == [f"127.0.0.1:{EXPORTER_PORT}:{EXPORTER_PORT}"]
    # Prometheus scrapes the exporter by service name on the port it listens on.
    scrape = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == [f"sandbox-exporter:{EXPORTER_PORT}"]
    for name, service in services.items():
        for port in service.get("ports", []):
            host, published, inner = port.split(":")
            # Nothing of the demo is reachable from outside the machine.
            assert host == "127.0.0.1", f"{name} publishes {port}"
            assert published == inner, f"{name}: {port}"


def emulator_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose_services().items()
        if "sandbox_emulator" in service.get("entrypoint", [])
    }


def test_compose_emulators_stay_on_the_private_network() -> None:
    emulators = emulator_services()
    assert emulators
    for name, service in emulators.items():
        # It runs whatever commands it receives: never published on the host.
        assert "ports" not in service, name
        command = service["command"]
        assert "--allow-remote" in command, name
        assert command[command.index("--host") + 1] == "0.0.0.0", name
        # The exporter's image has no emulator: it runs from the checkout,
        # read-only, as an unprivileged user.
        assert "build" not in service, name
        assert service["user"].split(":")[0] not in {"0", "root"}, name
        (mount,) = service["volumes"]
        source, target, mode = mount.split(":")
        assert (source, mode) == ("./sandbox_emulator", "ro"), name
        assert Path(target) == Path(service["working_dir"]) / "sandbox_emulator", name


def test_compose_exporter_config_is_valid_and_targets_the_emulators(tmp_path: Path) -> None:
    compose = load_yaml(COMPOSE)
    exporter = compose["services"]["sandbox-exporter"]
    (mount,) = exporter["configs"]
    assert mount["target"] == CONTAINER_CONFIG
    # Compose turns $$ into $ before the file reaches the container.
    content = compose["configs"][mount["source"]]["content"].replace("$$", "$")
    assert not re.search(r"\$(?!\(\()", content), "unescaped $ would be expanded by compose"
    config_file = tmp_path / "config.yml"
    config_file.write_text(content)
    run([sys.executable, "-m", "sandbox_exporter.cli", "--config.check", "-c", str(config_file)])
    listening = {}
    for name, service in emulator_services().items():
        command = service["command"]
        listening[name] = command[command.index("--port") + 1]
    urls = sorted(target["url"] for target in yaml.safe_load(content)["targets"])
    assert urls == sorted(f"http://{name}:{port}/" for name, port in listening.items())


def test_default_port_is_shared() -> None:
    from sandbox_exporter import cli

    # The Dockerfile, compose stack, unit and Prometheus configs all say 9929.
    assert cli.DEFAULT_PORT == EXPORTER_PORT


# ------------------------------------------------------------------ systemd


def systemd_unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case sensitive
    text = re.sub(r"\\\n\s*", " ", SYSTEMD_UNIT.read_text())  # join continuation lines
    parser.read_string(text)
    return parser


def test_systemd_unit_is_hardened() -> None:
    unit = systemd_unit()
    service = unit["Service"]
    expected = {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    # configparser keeps only the last of repeated keys: read those as text.
    text = SYSTEMD_UNIT.read_text()
    assert re.search(r"^SystemCallFilter=@system-service$", text, re.MULTILINE)
    # Secrets go through systemd credentials (documented, commented out until used).
    assert re.search(r"^#?LoadCredential=\S+:/etc/sandbox-exporter/", text, re.MULTILINE)
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].endswith("/sandbox-exporter")
    assert f"--config.file={CONTAINER_CONFIG}" in exec_start
    assert f"--web.listen-address=:{EXPORTER_PORT}" in exec_start
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def unit_with_installed_binary(directory: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here:
    systemd-analyze verify rejects a missing binary."""
    binary = shutil.which("sandbox-exporter") or sys.executable
    text = SYSTEMD_UNIT.read_text().replace("/opt/sandbox-exporter/bin/sandbox-exporter", binary)
    path = directory / SYSTEMD_UNIT.name
    path.write_text(text)
    return path


def test_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed; test_systemd_unit_is_hardened still ran")
    unit = unit_with_installed_binary(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys and bad values are only warnings (exit 0): fail on any output.
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), (
        done.stdout + done.stderr
    )
    # Exposure 0 (locked down) .. 10 (unsafe); ours rates about 1.1.
    run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)])


# ------------------------------------------------------ example's dummy files


def test_the_example_config_names_only_shipped_dummy_files() -> None:
    # config/example.yml passes --config.check as shipped (its header's
    # command is run by test_documented_commands.py); what it reads must be
    # recognisably fake, and the CA a real certificate nobody can sign with.
    import ssl

    example = load_yaml(CONFIG_DIR / "example.yml")
    named = sorted(
        value
        for target in example["targets"]
        for section in (target.get("auth", {}), target.get("tls", {}))
        for key, value in section.items()
        if key.endswith("_file") and value
    )
    assert named == sorted(
        [
            "certs/private-ca.pem",
            "secrets/lyon.token",
            "secrets/marseille.password",
            "secrets/paris.password",
        ]
    )
    for relative in named:
        assert (CONFIG_DIR / relative).is_file(), relative
        if relative.startswith("secrets/"):
            assert "example-only-not-a-real" in (CONFIG_DIR / relative).read_text()
    context = ssl.create_default_context(cafile=str(CONFIG_DIR / "certs" / "private-ca.pem"))
    (certificate,) = context.get_ca_certs()
    subject = " ".join(value for pair in certificate["subject"] for _, value in pair)
    assert "do not trust" in subject
    assert not list(CONFIG_DIR.rglob("*.key")), "a private key must never be shipped"
