"""docs/deploy.md's snippets, checked by the programs that read them.

Each configuration block of the guide is preceded by `<!-- check: KIND -->`;
the block is written to a file as a reader would and checked:
exporter-config with `sandbox-exporter --config.check`, prometheus-config
with `promtool check config` (the rule files beside it, where the guide puts
them), alertmanager-config with `amtool check-config`, and the Grafana
provider by comparison with the shipped provisioning file. Blocks that
repeat a shipped file must say the same as that file, so the two cannot
drift. The shell blocks are run by test_documented_commands.py, and
test_alerting_e2e.py follows the whole configuration with real servers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import test_deploy_files as deploy
import yaml
from doc_snippets import Block, fenced_blocks
from test_documented_commands import PENDING_PATHS

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "deploy.md"
KINDS = {
    "exporter-config",
    "prometheus-config",
    "alertmanager-config",
    "grafana-dashboard-provider",
}
SHELL = {"sh", "bash", "shell", "console"}


def guide_blocks(kind: str | None = None, name: str | None = None) -> list[Block]:
    blocks = fenced_blocks(GUIDE.read_text())
    return [
        b for b in blocks if (kind is None or b.check == kind) and (name is None or b.name == name)
    ]


def one_block(kind: str, name: str | None = None) -> Block:
    (block,) = guide_blocks(kind, name)
    return block


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: ./scripts/test installs it")
    return path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_configuration_block_says_how_it_is_checked() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        if block.language in SHELL:
            continue
        assert block.check in KINDS, f"docs/deploy.md:{block.line}: no <!-- check: ... -->"
    kinds = {b.check for b in blocks}
    assert kinds >= KINDS


def secret_files(config: Any) -> list[str]:
    """The relative *_file paths a configuration names."""
    found: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            if key.endswith("_file") and isinstance(value, str):
                found.append(value)
            else:
                found += secret_files(value)
    elif isinstance(config, list):
        for item in config:
            found += secret_files(item)
    return found


def test_the_exporter_configuration_passes_config_check(tmp_path: Path) -> None:
    block = one_block("exporter-config")
    config_path = tmp_path / "config.yml"
    config_path.write_text(block.text)
    secrets = secret_files(yaml.safe_load(block.text))
    assert secrets, "the guide shows how a password is read from a file"
    for relative in secrets:
        assert not Path(relative).is_absolute(), relative
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("dummy\n")
    command = [sys.executable, "-m", "sandbox_exporter.cli", "--config.check", "-c", "config.yml"]
    done = run(command, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Guard: the same check rejects it without the password file.
    for relative in secrets:
        (tmp_path / relative).unlink()
    assert run(command, tmp_path).returncode != 0


def check_prometheus_config(block: Block, directory: Path) -> dict[str, Any]:
    """Writes the block as prometheus.yml with the shipped rule files where
    its rule_files say, runs promtool check config, returns the parsed block."""
    config = yaml.safe_load(block.text)
    for rule_file in config.get("rule_files", []):
        assert Path(rule_file).name in deploy.RULE_FILES, rule_file
        (directory / rule_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(deploy.RULES_DIR / Path(rule_file).name, directory / rule_file)
    (directory / "prometheus.yml").write_text(block.text)
    done = run([tool("promtool"), "check", "config", "prometheus.yml"], directory)
    assert done.returncode == 0, done.stdout + done.stderr
    if config.get("rule_files"):
        assert f"SUCCESS: {len(deploy.RULE_FILES)} rule files found" in done.stdout
    return config


@pytest.mark.parametrize("name", ["daemon", "probe"])
def test_the_scrape_configs_pass_promtool_with_both_rule_files(name: str, tmp_path: Path) -> None:
    config = check_prometheus_config(one_block("prometheus-config", name), tmp_path)
    assert [Path(f).name for f in config["rule_files"]] == list(deploy.RULE_FILES)
    down = next(r for r in deploy.alert_rules() if r["alert"] == "SandboxExporterDown")
    job_regex = re.search(r'job=~"([^"]+)"', down["expr"]).group(1)
    for job in config["scrape_configs"]:
        assert re.fullmatch(job_regex, job["job_name"]), job["job_name"]


def test_the_probe_mode_is_the_shipped_one_with_your_names() -> None:
    guide = yaml.safe_load(one_block("prometheus-config", "probe").text)["scrape_configs"]
    shipped = yaml.safe_load((deploy.PROMETHEUS_DIR / "prometheus-probe.yml").read_text())
    shipped_jobs = {job["job_name"]: job for job in shipped["scrape_configs"]}
    for job in guide:
        reference = shipped_jobs[job["job_name"]]
        for key in ("metrics_path", "scrape_interval", "scrape_timeout", "metric_relabel_configs"):
            assert job.get(key) == reference.get(key), (job["job_name"], key)
        relabel = [dict(r) for r in job.get("relabel_configs", [])]
        expected = [dict(r) for r in reference.get("relabel_configs", [])]
        for rules in (relabel, expected):
            for rule in rules:
                if rule.get("target_label") == "__address__":
                    rule["replacement"] = "EXPORTER"
        assert relabel == expected, job["job_name"]


def test_the_alerting_block_passes_promtool(tmp_path: Path) -> None:
    config = check_prometheus_config(one_block("prometheus-config", "alerting"), tmp_path)
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"][0]["targets"][0].endswith(":9093")


def test_the_alertmanager_configuration_passes_amtool_and_is_the_shipped_one(
    tmp_path: Path,
) -> None:
    block = one_block("alertmanager-config")
    (tmp_path / "alertmanager.yml").write_text(block.text)
    done = run([tool("amtool"), "check-config", "alertmanager.yml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = deploy.ALERTMANAGER_CONFIG
    assert yaml.safe_load(block.text) == yaml.safe_load(shipped.read_text())
    done = run([tool("amtool"), "check-config", str(shipped)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_amtool_rejects_a_broken_route(tmp_path: Path) -> None:
    # Guard for the test above: a receiver that does not exist must fail.
    config = yaml.safe_load(one_block("alertmanager-config").text)
    config["route"]["routes"][0]["receiver"] = "nobody"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    assert run([tool("amtool"), "check-config", "alertmanager.yml"], tmp_path).returncode != 0


def test_the_alertmanager_routes_match_the_rules() -> None:
    config = yaml.safe_load(deploy.ALERTMANAGER_CONFIG.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    (sandbox_route,) = config["route"]["routes"]
    assert sandbox_route["receiver"] in receivers
    assert set(sandbox_route["group_by"]) >= {"alertname", "target"}
    alert_names = [r["alert"] for r in deploy.alert_rules()] + [
        r["alert"] for r in deploy.slo_rules() if "alert" in r
    ]
    pattern = re.search(r'alertname=~"([^"]+)"', sandbox_route["matchers"][0]).group(1)
    assert all(re.fullmatch(pattern, name) for name in alert_names)
    (critical,) = sandbox_route["routes"]
    assert critical["matchers"] == ['severity="critical"']
    assert critical["receiver"] in receivers and critical["receiver"] != sandbox_route["receiver"]
    # The inhibit rules name alerts that exist.
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            value = re.fullmatch(r'alertname(=~|=)"([^"]+)"', matcher).group(2)
            assert any(re.fullmatch(value, name) for name in alert_names), matcher


def test_the_grafana_provider_is_the_shipped_one() -> None:
    guide = yaml.safe_load(one_block("grafana-dashboard-provider").text)
    shipped = yaml.safe_load(deploy.DASHBOARD_PROVISIONING.read_text())
    assert guide["apiVersion"] == shipped["apiVersion"]
    (provider,) = guide["providers"]
    (reference,) = shipped["providers"]
    for key, value in provider.items():
        if key == "options":
            assert value.items() <= reference["options"].items()
        else:
            assert reference[key] == value, key
    # The guide's install command copies the dashboards where it points.
    commands = " ".join(b.text for b in guide_blocks() if b.language in SHELL)
    assert f"-t {provider['options']['path']} grafana/dashboards/" in commands


# ------------------------------------------------------------ references


def named_files(path: Path) -> list[str]:
    """Relative links, and inline code that reads as a path into the repository."""
    text = path.read_text()
    names = [
        link for link in re.findall(r"\]\(([^)#\s]+)", text) if not re.match(r"^[a-z]+:", link)
    ]
    top_level = {p.name for p in REPO.iterdir()}
    for code in re.findall(r"`([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]*)`", text):
        if code.split("/", 1)[0] in top_level | {".."}:
            names.append(code)
    return names


def markdown_files() -> list[str]:
    paths = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [str(path.relative_to(REPO)) for path in paths]


@pytest.mark.parametrize("relative", markdown_files())
def test_documents_name_only_files_of_the_repository(relative: str) -> None:
    path = REPO / relative
    missing = []
    for name in named_files(path):
        base = path.parent if name.startswith(".") or relative != "README.md" else REPO
        candidates = [(base / name).resolve(), (REPO / name).resolve()]
        found = any(c.exists() and c.is_relative_to(REPO) for c in candidates)
        # Another branch brings these; see test_pending_paths_are_still_pending.
        pending = any(name.rstrip("/").endswith(p) for p in PENDING_PATHS)
        if not found and not pending:
            missing.append(name)
    assert missing == []
