"""Every command written in the documentation runs as written.

Sources (see doc_snippets.py for what counts as a command): README.md and
docs/*.md; the comments of config/*.yml, deploy/**, docker-compose.yml and
the Dockerfile (and inline code anywhere in config/ and deploy/, e.g. an
alert's description).

Each source file is one session, its commands run in the order a reader
meets them: the working directory is a fresh copy of the checkout, and the
system paths the commands name (/etc, /opt, /var/lib) are mapped into a
temporary root, so `install -D ... /etc/...` really installs, and the next
command finds the file. What the commands need from the machine is there:
`config.yml` in the checkout and `/etc/sandbox-exporter/config.yml` in the
root list one emulated sandbox named `local` (docs/runbooks.md's session also
has an exporter running, the SANDBOX and EXPORTER of its commands).
docs/deploy.md is followed by test_deploy_guide.py instead, with these same
rules and the files it says to save (FOLLOWED_ELSEWHERE). Adjustments, all explicit below:

- placeholders (FILE, <file>, NAME) are given real values, and a synopsis
  (`--api 2|3 --port N ...`) is run as one instance, listed in SYNOPSES;
- a daemon (the exporter, the emulator) is started, must answer its health
  URL, and is stopped; it listens on a free loopback port rather than the
  default one, which another process may hold;
- `python3 -m venv DIR` followed by `DIR/bin/pip install .` runs for real the
  first time in the test run; later pairs reuse that install (a symlink),
  because installing the same checkout again proves nothing new and costs a
  minute;
- `curl` to Prometheus' or Alertmanager's default address is sent to a real
  server of this test, whose log must show that the reload happened;
- `icinga2 daemon ...` reads the root's /etc/icinga2/icinga2.conf and writes
  its state under the root (monitoring_systems.Icinga); that file and
  /etc/nagios4/nagios.cfg are minimal main configurations reading their
  conf.d, as a package installs them.

Commands that cannot run here are listed in NOT_HERE with the reason and
what is checked instead. Every other command runs; one that fails here
fails the test until it is fixed, or added to NOT_HERE with its reason.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import test_deploy_files as deploy
import yaml
from alertmanager_server import AlertmanagerServer
from doc_snippets import Command, comment_commands, fenced_blocks, markdown_commands
from monitoring_systems import Icinga, nagios_main_config
from prometheus_server import PrometheusServer

from helpers import free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT_SECONDS = 120.0
INSTALL_TIMEOUT_SECONDS = 600.0
DAEMON_READY_SECONDS = 60.0
# Mapped into the session's temporary root.
SYSTEM_DIRECTORIES = ("etc", "opt", "var/lib")
PLACEHOLDERS = {r"<file>": "config/minimal.yml", r"\bFILE\b": "config/minimal.yml"}
TARGET_NAME = "local"  # the one target of the sessions' configuration
# Synopses (alternatives a|b, N, ...) and the instance of each that is run.
SYNOPSES = {
    "python -m sandbox_emulator --api 2|3 --port N --containers N ...": (
        "python -m sandbox_emulator --api 3 --port N --containers 2"
    ),
}
# Directories that another branch adds; the path checks accept their absence
# until they exist, and test_pending_paths_are_still_pending makes sure this
# list is emptied once they do.
PENDING_PATHS: tuple[str, ...] = ()


# Files whose commands another test runs, and why.
FOLLOWED_ELSEWHERE = {
    "docs/deploy.md": "test_deploy_guide.py follows it top to bottom: it saves the files the "
    "guide says to save, and keeps the programs of its step 7 running together",
}


def markdown_sources() -> list[str]:
    documents = sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))
    return ["README.md", *(d for d in documents if d not in FOLLOWED_ELSEWHERE)]


def comment_sources() -> list[str]:
    paths = [*sorted((REPO / "config").glob("*.yml")), REPO / "docker-compose.yml"]
    paths += [REPO / "Dockerfile"]
    paths += sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file())
    return [str(p.relative_to(REPO)) for p in paths if p.is_file()]


def commands_of(relative: str) -> list[Command]:
    path = REPO / relative
    if relative.endswith(".md"):
        return markdown_commands(path, relative)
    inline_everywhere = relative.startswith(("config/", "deploy/"))
    return comment_commands(path, relative, inline_everywhere)


SOURCES = [s for s in markdown_sources() + comment_sources() if commands_of(s)]


# ------------------------------------------------------------- not here


@dataclass(frozen=True)
class NotHere:
    pattern: str  # regex searched in the command
    reason: str
    check: Callable[[str], list[str]]  # problems found, [] when all is well


def repository_paths(command: str) -> list[str]:
    """Arguments that name a file of the repository (a top-level entry of
    the checkout, or '.')."""
    found = []
    for word in shlex.split(command, comments=True):
        if word.startswith("-") or ":" in word or word.startswith("/"):
            continue
        head = word.split("/", 1)[0]
        if word == "." or (head and (REPO / head).exists() and head not in ("", ".")):
            found.append(word)
    return found


def paths_exist(command: str) -> list[str]:
    problems = []
    for word in repository_paths(command):
        if (REPO / word).exists():
            continue
        if any(word.rstrip("/").startswith(p) for p in PENDING_PATHS):
            continue
        problems.append(f"names {word}, which is not in the repository")
    return problems


def dockerfile_is_clean(command: str) -> list[str]:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [] if done.returncode == 0 else [f"hadolint: {done.stdout}{done.stderr}"]
    return problems + paths_exist(command)


def compose_file_is_complete(command: str) -> list[str]:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return [] if {"sandbox-exporter", "prometheus"} <= set(services) else ["compose services"]


def unit_can_do_it(command: str) -> list[str]:
    unit = (REPO / "deploy" / "sandbox-exporter.service").read_text()
    problems = paths_exist(command)
    if " reload" in command and "\nExecReload=" not in unit:
        problems.append("the unit has no ExecReload")
    if "sandbox-exporter" in command and "\nExecStart=" not in unit:
        problems.append("the unit has no ExecStart")
    return problems


def kustomization_exists(command: str) -> list[str]:
    problems = paths_exist(command)
    words = shlex.split(command, comments=True)
    if "-k" in words[:-1]:
        directory = REPO / words[words.index("-k") + 1]
        if directory.exists() and not (directory / "kustomization.yaml").is_file():
            problems.append(f"{directory} has no kustomization.yaml")
    return problems


def script_parses(command: str) -> list[str]:
    done = subprocess.run(
        ["bash", "-n", str(REPO / "scripts" / "test")], capture_output=True, text=True, check=False
    )
    return [] if done.returncode == 0 else [done.stderr]


def arguments_parse(command: str) -> list[str]:
    """Runs the command with --help appended: the program exists and accepts
    every argument written before it."""
    words = shlex.split(command, comments=True)
    words[0] = sys.executable if words[0] in ("python", "python3") else words[0]
    done = subprocess.run(
        [*words, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    return [] if done.returncode == 0 else [f"--help: {done.stdout}{done.stderr}"]


NOT_HERE = (
    NotHere(r"^docker compose\b", "needs a Docker engine", compose_file_is_complete),
    NotHere(r"^docker\b", "needs a Docker engine", dockerfile_is_clean),
    NotHere(r"^(systemctl|journalctl)\b", "needs systemd as PID 1", unit_can_do_it),
    NotHere(r"^(kubectl|kustomize)\b", "needs a Kubernetes cluster", kustomization_exists),
    NotHere(r"^\./scripts/test\b", "it is the command that runs this test", script_parses),
    NotHere(
        r"^pip3? install\b",
        "would install into the Python running the tests; installs into a venv run above",
        paths_exist,
    ),
    NotHere(r"^git clone\b", "needs the network", paths_exist),
    NotHere(
        r"^python3? -m pytest\b",
        "runs part of the suite, which the suite runs anyway",
        paths_exist,
    ),
    NotHere(
        r"^python3? (-m benchmarks|benchmarks/soak\.py)\b",
        "a benchmark of one to several minutes on an idle machine",
        arguments_parse,
    ),
)


def not_here(command: str) -> NotHere | None:
    return next((rule for rule in NOT_HERE if re.search(rule.pattern, command)), None)


# --------------------------------------------------------------- session


@dataclass
class Session:
    """One reader following one file: a checkout copy, a temporary root and
    whatever servers the commands talk to."""

    cwd: Path
    root: Path
    env: dict[str, str]
    installed: dict[str, Path]  # shared across sessions: the one real install
    processes: list[subprocess.Popen] = field(default_factory=list)
    servers: list[PrometheusServer | AlertmanagerServer] = field(default_factory=list)
    # This file's own placeholders (regex -> value), set by its PREPARE step.
    placeholders: dict[str, str] = field(default_factory=dict)

    def map_paths(self, command: str) -> str:
        for directory in SYSTEM_DIRECTORIES:
            command = re.sub(rf"(?<![\w.:/-])/{directory}/", f"{self.root}/{directory}/", command)
        return command

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        for server in self.servers:
            server.stop()


def copy_checkout(destination: Path) -> None:
    """The repository's files (tracked and new, not ignored), as a clone has them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def session_config(url: str) -> str:
    return yaml.safe_dump({"targets": [{"name": TARGET_NAME, "url": url}]})


INSTALLED: dict[str, Path] = {}


@pytest.fixture
def session(tmp_path: Path, make_emulator) -> Iterator[Session]:
    cwd, root = tmp_path / "checkout", tmp_path / "root"
    copy_checkout(cwd)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    config = session_config(make_emulator(api=3).url)
    (cwd / "config.yml").write_text(config)
    (root / "etc" / "sandbox-exporter").mkdir(parents=True)
    (root / "etc" / "sandbox-exporter" / "config.yml").write_text(config)
    bin_directory = str(Path(sys.executable).parent)
    # /usr/sbin for icinga2 and nagios4, which a user's PATH may not hold.
    path = os.pathsep.join([bin_directory, os.environ.get("PATH", ""), "/usr/sbin"])
    env = {**os.environ, "PATH": path}
    current = Session(cwd, root, env, INSTALLED)
    yield current
    current.close()


def prepare_monitoring_guide(session: Session) -> None:
    """What a machine with Icinga 2 and Nagios has before docs/monitoring-plugins.md
    (their main configurations, reading conf.d), and the host each of them
    gets in conf.d from the guide's blocks, which the reader writes by hand."""
    icinga = session.root / "etc" / "icinga2"
    (icinga / "conf.d").mkdir(parents=True)
    # As the package's icinga2.conf and constants.conf have it, less the
    # features and zones, which are not about checks.
    (icinga / "icinga2.conf").write_text(
        'const PluginDir = "/usr/lib/nagios/plugins"\n'
        'include <itl>\ninclude <plugins>\ninclude_recursive "conf.d"\n'
    )
    nagios = session.root / "etc" / "nagios4"
    (nagios / "conf.d").mkdir(parents=True)
    nagios_main_config(nagios, object_dirs=[nagios / "conf.d"])
    blocks = fenced_blocks((REPO / "docs" / "monitoring-plugins.md").read_text())
    (icinga_host,) = [b for b in blocks if b.check == "icinga2-host"]
    (nagios_host,) = [b for b in blocks if b.check == "nagios-host"]
    (icinga / "conf.d" / "sandboxes.conf").write_text(icinga_host.text)
    (nagios / "conf.d" / "sandboxes.cfg").write_text(nagios_host.text)


def prepare_runbooks(session: Session) -> None:
    """What a reader of docs/runbooks.md has: the rule files installed as
    docs/deploy.md installs them, a running exporter (EXPORTER) watching the
    session's emulated sandbox (SANDBOX, the target `local`)."""
    rules = session.root / "etc" / "prometheus" / "sandbox-exporter"
    rules.mkdir(parents=True)
    for name in deploy.RULE_FILES:
        shutil.copy(deploy.RULES_DIR / name, rules / name)
    config = session.root / "etc" / "sandbox-exporter" / "config.yml"
    (target,) = yaml.safe_load(config.read_text())["targets"]
    port = free_port()
    exporter = str(Path(sys.executable).parent / "sandbox-exporter")
    log = (session.cwd / "runbooks-exporter.log").open("wb")
    process = subprocess.Popen(
        [exporter, "-c", str(config), f"--web.listen-address=127.0.0.1:{port}"],
        cwd=session.cwd,
        env=session.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    session.processes.append(process)

    def healthy() -> bool:
        assert process.poll() is None, "the exporter exited"
        try:
            return requests.get(f"http://127.0.0.1:{port}/-/healthy", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(healthy, timeout=DAEMON_READY_SECONDS, interval=0.2)
    session.placeholders = {
        r"\bSANDBOX\b": target["url"].rstrip("/"),
        r"\bEXPORTER\b": f"127.0.0.1:{port}",
    }


# Files whose session needs something prepared first (source -> how).
PREPARE: dict[str, Callable[[Session], None]] = {
    "docs/monitoring-plugins.md": prepare_monitoring_guide,
    "docs/runbooks.md": prepare_runbooks,
}


# -------------------------------------------------------------- running


def run(session: Session, command: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> str | None:
    """None when the command exits 0, its output otherwise."""
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=session.cwd,
        env=session.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode == 0:
        return None
    return f"exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}"


def is_daemon(words: list[str]) -> bool:
    program = words[0].rsplit("/", 1)[-1]
    if program == "sandbox-exporter":
        one_shot = {"--config.check", "--once", "--version", "-h", "--help"}
        return not one_shot & set(words)
    return words[:3] in (
        ["python", "-m", "sandbox_emulator"],
        ["python3", "-m", "sandbox_emulator"],
    )


def run_daemon(session: Session, words: list[str]) -> str | None:
    """Start it on a free loopback port, wait for its health URL, stop it."""
    port = free_port()
    if words[0].rsplit("/", 1)[-1] == "sandbox-exporter":
        if "-c" not in words and "--config.file" not in words and "--demo" not in words:
            words += ["-c", f"{session.root}/etc/sandbox-exporter/config.yml"]
        words += [f"--web.listen-address=127.0.0.1:{port}"]
        health = f"http://127.0.0.1:{port}/-/healthy"
    else:
        words = [sys.executable, *words[1:]]
        if "--port" in words:
            words[words.index("--port") + 1] = str(port)
        else:
            words += ["--port", str(port)]
        health = f"http://127.0.0.1:{port}/specifications/"
    if words[0] == "sandbox-exporter":
        words[0] = str(Path(sys.executable).parent / "sandbox-exporter")
    elif not Path(words[0]).is_absolute() and "/" in words[0]:
        words[0] = str(session.cwd / words[0])
    log = session.cwd / f"daemon-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            words, cwd=session.cwd, env=session.env, stdout=output, stderr=subprocess.STDOUT
        )
    session.processes.append(process)

    def healthy() -> bool:
        if process.poll() is not None:
            return True  # stop waiting: it exited
        try:
            return requests.get(health, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, timeout=DAEMON_READY_SECONDS, interval=0.2)
    if process.poll() is not None:
        return f"exited {process.returncode}: {log.read_text()[-1500:]}"
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return "did not stop on SIGTERM within 15 s"
    return None


VENV = re.compile(r"^python3? -m venv (\S+)$")
PIP_INSTALL = re.compile(r"^(\S+)/bin/pip install \.$")


def run_venv(session: Session, directory: str) -> str | None:
    target = session.cwd / directory
    if "venv" in session.installed:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(session.installed["venv"], target_is_directory=True)
        return None
    return run(session, f"python3 -m venv {shlex.quote(str(target))}")


def run_pip_install(session: Session, directory: str) -> str | None:
    venv = session.cwd / directory
    if venv.is_symlink():
        # The install this symlink points at ran for real: check it works.
        return run(session, f"{shlex.quote(str(venv))}/bin/sandbox-exporter --version")
    problem = run(
        session, f"{shlex.quote(str(venv))}/bin/pip install -q .", timeout=INSTALL_TIMEOUT_SECONDS
    )
    if problem is None:
        session.installed["venv"] = venv.resolve()
    return problem


def with_server(session: Session, command: str) -> str | None:
    """curl to Prometheus (9090) or Alertmanager (9093): a real one of ours,
    whose log must then show a second (re)load of its configuration."""
    if "localhost:9090" in command:
        directory = session.cwd / "prometheus-server"
        directory.mkdir()
        config_dir = session.root / "etc" / "prometheus"
        config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
        rules = {
            str(p.relative_to(config_dir)): p.read_text()
            for p in config_dir.rglob("*.yml")
            if p.name != "prometheus.yml"
        }
        server: PrometheusServer | AlertmanagerServer = PrometheusServer(
            config, directory, rule_files=rules, extra_args=["--web.enable-lifecycle"]
        )
        address, loaded = "localhost:9090", "Completed loading of configuration file"
    else:
        directory = session.cwd / "alertmanager-server"
        directory.mkdir()
        # The reader's own file, where the guide installs it; else the shipped one.
        installed = session.root / "etc" / "alertmanager" / "alertmanager.yml"
        shipped = session.cwd / "deploy" / "alertmanager" / "alertmanager.yml"
        path = installed if installed.is_file() else shipped
        config = yaml.safe_load(path.read_text())
        server = AlertmanagerServer(config, directory)
        address, loaded = "localhost:9093", "Completed loading of configuration file"
    server.start()
    session.servers.append(server)
    problem = run(session, command.replace(address, server.url.removeprefix("http://")))
    if problem is not None:
        return problem
    try:
        wait_until(lambda: server.log_tail().count(loaded) >= 2, timeout=15, interval=0.2)
    except AssertionError:
        return f"the server did not reload: {server.log_tail()[-1500:]}"
    return None


def run_icinga(session: Session, arguments: list[str]) -> str | None:
    """`icinga2 daemon ARGUMENTS` on the root's configuration, its state under the root."""
    icinga = Icinga(
        session.root / "var" / "lib" / "icinga2", session.root / "etc" / "icinga2" / "icinga2.conf"
    )
    quoted = " ".join(map(shlex.quote, [icinga.binary, *icinga.arguments(), *arguments]))
    return run(session, quoted)


def substitute_placeholders(command: str, extra: dict[str, str]) -> str:
    for pattern, value in {**PLACEHOLDERS, **extra}.items():
        command = re.sub(pattern, value, command)
    return re.sub(r"\bNAME\b", TARGET_NAME, command)


def run_one(session: Session, command: str) -> str | None:
    """Runs one command (no &&) as the rules above say; a problem or None."""
    command = substitute_placeholders(SYNOPSES.get(command, command), session.placeholders)
    mapped = session.map_paths(command)
    if match := VENV.match(command):
        return run_venv(session, session.map_paths(match.group(1)))
    if match := PIP_INSTALL.match(command):
        return run_pip_install(session, session.map_paths(match.group(1)))
    if re.search(r"\blocalhost:(9090|9093)\b", command):
        return with_server(session, mapped)
    words = shlex.split(mapped, comments=True)
    if words[:2] == ["icinga2", "daemon"]:
        return run_icinga(session, words[2:])
    if is_daemon(words):
        return run_daemon(session, words)
    if words[0].rsplit("/", 1)[-1] == "sandbox-exporter" and not {
        "-c",
        "--config.file",
        "--url",
        "--version",
    } & set(words):
        # The built-in default path, inside the temporary root.
        mapped += f" -c {session.root}/etc/sandbox-exporter/config.yml"
    return run(session, mapped)


def check_command(session: Session, command: Command) -> list[str]:
    problems = []
    for part in (p.strip() for p in command.text.split("&&")):
        rule = not_here(part)
        if rule is not None:
            problems += [f"{command.where}: {part}: {p}" for p in rule.check(part)]
            continue
        problem = run_one(session, part)
        if problem is not None:
            return [*problems, f"{command.where}: {part}: {problem}"]
    return problems


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("source", SOURCES)
def test_every_command_of_the_file_runs_as_written(session: Session, source: str) -> None:
    if source in PREPARE:
        PREPARE[source](session)
    problems: list[str] = []
    for command in commands_of(source):
        problems += check_command(session, command)
    assert problems == []


def test_commands_that_cannot_run_here_are_listed_with_their_reason() -> None:
    # The inventory a reviewer reads: every command not run, and why.
    skipped = {}
    for source in SOURCES:
        for command in commands_of(source):
            for part in command.text.split("&&"):
                rule = not_here(part.strip())
                if rule is not None:
                    skipped[f"{command.where}: {part.strip()}"] = rule.reason
    assert skipped, "nothing is classified as not runnable: the rules are unused"
    assert all(reason for reason in skipped.values())
    assert any(re.match(r"^docker\b", k.split(": ", 1)[1]) for k in skipped)


def test_the_extraction_finds_the_commands_people_copy() -> None:
    # Guards the extraction itself: the README's first command, a command in
    # a YAML comment, one in an alert's description and a continued line.
    readme = [c.text for c in commands_of("README.md")]
    assert readme[0].startswith("python3 -m venv .venv && ")
    assert "sandbox-exporter --config.check -c config/example.yml" in [
        c.text for c in commands_of("config/example.yml")
    ]
    assert "sandbox-exporter --config.check -c <file>" in [
        c.text for c in commands_of("deploy/prometheus/rules/alerts.yml")
    ]
    unit = [c.text for c in commands_of("deploy/sandbox-exporter.service")]
    assert "/opt/sandbox-exporter/bin/pip install ." in unit
    assert not any("pip install sandbox-exporter" in c for c in unit), "it is not on PyPI"


def test_a_failing_command_is_reported(session: Session) -> None:
    # Guard: the runner must not swallow a failure.
    broken = Command("sandbox-exporter --config.check -c does-not-exist.yml", "here:1")
    assert check_command(session, broken) != []
    rules = Command("promtool check rules deploy/prometheus/rules/slo.yml", "here:2")
    assert check_command(session, rules) == []


def test_pending_paths_are_still_pending() -> None:
    # Once another branch brings them, the allowance must go.
    arrived = [p for p in PENDING_PATHS if (REPO / p).exists()]
    assert arrived == [], f"{arrived} exist now: remove them from PENDING_PATHS"
