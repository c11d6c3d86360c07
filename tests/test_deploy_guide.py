"""docs/deploy.md, followed as written, and its snippets checked by the
programs that read them.

The walk (test_the_guide_runs_top_to_bottom_...) reads the guide in order:
each block marked `<!-- check: KIND; save as PATH -->` is saved there, each
command runs (test_documented_commands.py's rules), the `own-terminal`
programs of step 7 keep running together, and each `receiver-output` block is
waited for at the receiver: the alert fired, then resolved. Its adjustments
are listed above the walk's code.

Each configuration block is also checked on its own: exporter-config with
`sandbox-exporter --config.check`, prometheus-config with `promtool check
config` (the rule files beside it, where the guide puts them),
alertmanager-config with `amtool check-config`, and the Grafana provider by
comparison with the shipped provisioning file. Blocks that repeat a shipped
file must say the same as that file, so the two cannot drift;
test_alerting_e2e.py follows the whole configuration with real servers.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import test_deploy_files as deploy
import yaml
from alertmanager_server import alertmanager_binary
from doc_snippets import Block, Command, fenced_blocks, markdown_commands
from test_documented_commands import (
    INSTALLED,
    PENDING_PATHS,
    Session,
    check_command,
    copy_checkout,
)

from helpers import free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "deploy.md"
KINDS = {
    "exporter-config",
    "prometheus-config",
    "alertmanager-config",
    "grafana-dashboard-provider",
    "webhook-receiver",  # run in the walk through step 7
    "receiver-output",  # what the receiver prints, waited for in that walk
}
# A shell block whose commands each run in a terminal of their own, left
# running (the programs of step 7).
OWN_TERMINAL = "own-terminal"
SHELL = {"sh", "bash", "shell", "console"}


def guide_blocks(kind: str | None = None) -> list[Block]:
    blocks = fenced_blocks(GUIDE.read_text())
    return [b for b in blocks if kind is None or b.check == kind]


def one_block(kind: str, name: str | None = None) -> Block:
    """The block of that kind and name (no name: the one without)."""
    (block,) = [b for b in guide_blocks(kind) if b.name == name]
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
            assert block.check in (None, OWN_TERMINAL), f"docs/deploy.md:{block.line}"
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


@pytest.mark.parametrize("name", ["daemon", "probe", "alert-demo"])
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


# ------------------------------------------------------ top to bottom
#
# The walk: every file the guide says to save, every command (by the rules of
# test_documented_commands.py: system paths mapped into a temporary root,
# daemons started until healthy and stopped, Docker, systemd and Kubernetes
# checked as far as a machine without them allows), and step 7 with its
# programs left running together until the receiver has printed the alert
# firing and then resolved. What differs from a reader's run, and only this:
# - the fixed ports of step 7 are free ports here (STEP_7_PORTS);
# - the password the guide has you type is given on standard input;
# - `alertmanager` is the binary this machine has (Debian's is named
#   prometheus-alertmanager, as the guide says);
# - before Prometheus starts, the `for:` of every alerting rule it loads is
#   ALERT_FOR, and before Alertmanager starts, its group waits are
#   GROUP_WAIT: the guide's 5 minutes and 30 s would make a test of minutes.
#   Scrape and evaluation intervals stay the guide's 5 s.

STEP_7_PORTS = (8000, 9930, 9091, 9095, 5001)
TYPED_PASSWORD = "typed-at-the-terminal\n"
ALERT_FOR = "1s"
GROUP_WAIT = "1s"
# A canary every 5 s, then a scrape, two evaluations and the group wait
# (about 25 s); doubled, and more, for a loaded 2-core machine.
RECEIVER_TIMEOUT_SECONDS = 120.0
READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Step:
    line: int
    kind: str  # "save", "command", "terminal", "expect"
    block: Block | None = None
    command: Command | None = None


def walk_steps() -> list[Step]:
    """The guide's saves, commands, long-running programs and expected
    receiver output, in the order a reader meets them."""
    blocks = guide_blocks()
    terminal_lines: set[int] = set()
    steps: list[Step] = []
    for block in blocks:
        if block.save:
            steps.append(Step(block.line, "save", block=block))
        if block.check == "receiver-output":
            steps.append(Step(block.line, "expect", block=block))
        if block.check == OWN_TERMINAL:
            body = block.text.splitlines()
            terminal_lines.update(range(block.line, block.line + len(body)))
            for offset, line in enumerate(body):
                if line.strip():
                    where = f"docs/deploy.md:{block.line + offset}"
                    steps.append(
                        Step(block.line + offset, "terminal", command=Command(line.strip(), where))
                    )
    for command in markdown_commands(GUIDE, "docs/deploy.md"):
        line = int(command.where.rsplit(":", 1)[1])
        if line not in terminal_lines:
            steps.append(Step(line, "command", command=command))
    return sorted(steps, key=lambda step: step.line)


class Walk:
    """One reader following the guide: a documented-commands session, the
    programs started in terminals of their own, the ports of step 7."""

    def __init__(self, session: Session, directory: Path) -> None:
        self.session = session
        self.directory = directory
        self.ports = {port: free_port() for port in STEP_7_PORTS}
        self.terminals: list[tuple[str, subprocess.Popen, Path]] = []

    def localize(self, text: str) -> str:
        """The guide's text with the fixed ports of step 7 made free ones."""
        for fixed, free in self.ports.items():
            text = re.sub(
                rf'(127\.0\.0\.1:|--port |"127\.0\.0\.1", ){fixed}\b', rf"\g<1>{free}", text
            )
        return text

    def path(self, written: str) -> Path:
        mapped = Path(self.session.map_paths(written))
        return mapped if mapped.is_absolute() else self.session.cwd / mapped

    def save(self, block: Block) -> list[str]:
        target = self.path(block.save)
        if not target.parent.is_dir():
            return [f"docs/deploy.md:{block.line}: saves {block.save} before its directory exists"]
        target.write_text(self.localize(self.session.map_paths(block.text)))
        return []

    def run(self, command: Command) -> list[str]:
        text = self.localize(command.text)
        if "/dev/stdin" in text:
            done = subprocess.run(
                ["bash", "-c", self.session.map_paths(text)],
                cwd=self.session.cwd,
                env=self.session.env,
                input=TYPED_PASSWORD,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode != 0:
                return [f"{command.where}: {text}: {done.stdout}{done.stderr}"]
            return []
        return check_command(self.session, Command(text, command.where))

    def start(self, command: Command) -> list[str]:
        """Start a program as a terminal would, wait until it serves."""
        words = shlex.split(self.localize(self.session.map_paths(command.text)))
        fixed = [p for p in STEP_7_PORTS if re.search(rf"\b{p}\b", " ".join(words))]
        assert fixed == [], f"{command.where}: port {fixed} left as written: extend localize()"
        if words[0] == "alertmanager":
            words[0] = alertmanager_binary()
            self.shorten_group_waits(self.flag(words, "--config.file"))
        elif words[0] == "prometheus":
            self.shorten_for(self.flag(words, "--config.file"))
        log = self.directory / f"terminal-{len(self.terminals)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                words,
                cwd=self.session.cwd,
                env={**self.session.env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.session.processes.append(process)
        self.terminals.append((command.text, process, log))
        address = self.flag(words, "--web.listen-address", default=None)
        program = Path(words[0]).name
        health = "/-/healthy" if program == "sandbox-exporter" else "/-/ready"

        def ready() -> bool:
            if process.poll() is not None:
                return True  # stop waiting: it exited
            if address is None:  # the emulator and the receiver say where they listen
                return bool(log.read_text().strip())
            try:
                return requests.get(f"http://{address}{health}", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout=READY_TIMEOUT_SECONDS, interval=0.2)
        if process.poll() is not None:
            return [f"{command.where}: exited {process.returncode}: {log.read_text()[-1500:]}"]
        return []

    @staticmethod
    def flag(words: list[str], name: str, default: str | None = "") -> str | None:
        for word in words:
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
        if default == "":
            raise AssertionError(f"{words}: no {name}=")
        return default

    def shorten_for(self, config_file: str) -> None:
        config_path = self.path(config_file)
        for rule_file in yaml.safe_load(config_path.read_text())["rule_files"]:
            rules_path = config_path.parent / rule_file
            rules = yaml.safe_load(rules_path.read_text())
            for group in rules["groups"]:
                for rule in group["rules"]:
                    if "alert" in rule:
                        rule["for"] = ALERT_FOR
            rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))

    def shorten_group_waits(self, config_file: str) -> None:
        config_path = self.path(config_file)
        config = yaml.safe_load(config_path.read_text())

        def shorten(route: dict[str, Any]) -> None:
            for key in ("group_wait", "group_interval"):
                if key in route:
                    route[key] = GROUP_WAIT
            for child in route.get("routes", []):
                shorten(child)

        shorten(config["route"])
        config_path.write_text(self.localize(yaml.safe_dump(config, sort_keys=False)))

    def receiver_log(self) -> Path:
        (receiver,) = [b.save for b in guide_blocks("webhook-receiver")]
        (log,) = [log for text, _, log in self.terminals if receiver in text]
        return log

    def expect(self, block: Block) -> list[str]:
        """Wait until the receiver has printed each line of the block. What
        follows ': ' is the alert's summary, the rule files' to word."""
        log = self.receiver_log()
        wanted = [line.split(": ", 1)[0] + ": " for line in block.text.splitlines() if line]

        def printed() -> bool:
            lines = log.read_text().splitlines()
            return all(any(line.startswith(w) for line in lines) for w in wanted)

        try:
            wait_until(printed, timeout=RECEIVER_TIMEOUT_SECONDS, interval=0.5)
        except AssertionError:
            logs = "\n".join(
                f"$ {text}\n{path.read_text()[-1500:]}" for text, _, path in self.terminals
            )
            return [f"docs/deploy.md:{block.line}: the receiver never printed {wanted}\n{logs}"]
        return []


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    cwd, root = tmp_path / "checkout", tmp_path / "root"
    copy_checkout(cwd)
    root.mkdir()
    bin_directory = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_directory + os.pathsep + os.environ.get("PATH", "")}
    session = Session(cwd, root, env, INSTALLED)
    current = Walk(session, tmp_path)
    yield current
    session.close()


def test_the_walk_covers_the_whole_guide() -> None:
    steps = walk_steps()
    kinds = [step.kind for step in steps]
    # Installed before it is used: the first command installs, and no command
    # runs the exporter before the install.
    commands = [s.command.text for s in steps if s.kind in ("command", "terminal")]
    assert commands[0].startswith("python3 -m venv /opt/sandbox-exporter")
    first_use = next(i for i, c in enumerate(commands) if "sandbox-exporter " in c.split("/")[-1])
    assert any("bin/pip install ." in c for c in commands[:first_use]), commands[:first_use]
    # It ends with the alert received, then resolved.
    assert kinds[-3:] == ["expect", "command", "expect"], kinds[-3:]
    assert steps[-3].block.text.startswith("FIRING ")
    assert steps[-1].block.text.startswith("RESOLVED ")
    assert sum(kind == "terminal" for kind in kinds) == 5
    text = GUIDE.read_text()
    assert all(str(port) in text for port in STEP_7_PORTS), "STEP_7_PORTS went stale"


def test_the_ports_of_step_7_are_replaced_wherever_the_guide_writes_them(tmp_path: Path) -> None:
    walk = Walk(Session(tmp_path, tmp_path, {}, {}), tmp_path)
    written = 'url: http://127.0.0.1:8000/ --port 8000 ADDRESS = ("127.0.0.1", 5001) :9929'
    free = walk.ports
    assert walk.localize(written) == (
        f"url: http://127.0.0.1:{free[8000]}/ --port {free[8000]} "
        f'ADDRESS = ("127.0.0.1", {free[5001]}) :9929'
    )


def test_each_saved_file_is_named_in_the_text_around_it() -> None:
    lines = GUIDE.read_text().splitlines()
    for block in guide_blocks():
        if block.save:
            around = "\n".join(lines[max(0, block.line - 8) : block.line + 1])
            assert f"`{block.save}`" in around, f"docs/deploy.md:{block.line}: {block.save}"


def test_the_receiver_is_python_of_the_standard_library() -> None:
    (block,) = guide_blocks("webhook-receiver")
    tree = ast.parse(block.text)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= set(sys.stdlib_module_names), imported


@pytest.mark.timeout(900)
def test_the_guide_runs_top_to_bottom_to_an_alert_fired_and_resolved(walk: Walk) -> None:
    problems: list[str] = []
    for step in walk_steps():
        if step.kind == "save":
            problems += walk.save(step.block)
        elif step.kind == "command":
            problems += walk.run(step.command)
        elif step.kind == "terminal":
            problems += walk.start(step.command)
        else:
            problems += walk.expect(step.block)
        # A later step needs what an earlier one did: stop at the first problem.
        assert problems == [], "\n".join(problems)
