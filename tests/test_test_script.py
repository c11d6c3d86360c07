"""./scripts/test as a user runs it in a checkout of their own.

Its lint step is run here as written (the lines between its `==> ruff` and
`==> pytest` banners), in a copy of the project that holds a scratch file
the way a user's checkout does; the pytest step is the command that runs
this test, so only its arguments are read.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "test"
# Fails ruff check (unused import, two statements on a line) and ruff format.
SCRATCH = "import os, sys\nx=1 ;y = 2\n"


def lint_step() -> str:
    lines = SCRIPT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('echo "==> ruff'))
    end = next(i for i, line in enumerate(lines) if line.startswith('echo "==> pytest'))
    return "\n".join(lines[start:end])


def git(directory: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def project_copy(destination: Path, with_git: bool) -> Path:
    """The project's Python files and its ruff settings, as a clone has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py", "pyproject.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    if with_git:
        git(destination, "init", "-q")
        git(destination, "add", "-A")
    return destination


def run_lint(directory: Path) -> subprocess.CompletedProcess[str]:
    bin_directory = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_directory + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + lint_step()],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("with_git", [True, False], ids=["git checkout", "no git"])
def test_a_scratch_file_of_the_user_does_not_stop_the_lint(tmp_path: Path, with_git: bool) -> None:
    checkout = project_copy(tmp_path, with_git)
    (checkout / "notes.py").write_text(SCRATCH)
    done = run_lint(checkout)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_tracked_file_that_fails_ruff_still_fails_it(tmp_path: Path) -> None:
    # Guard: the lint still looks at the project's files.
    checkout = project_copy(tmp_path, with_git=True)
    (checkout / "tests" / "notes.py").write_text(SCRATCH)
    git(checkout, "add", "tests/notes.py")
    done = run_lint(checkout)
    assert done.returncode != 0
    assert "tests/notes.py" in done.stdout + done.stderr


def test_pytest_prints_the_15_slowest_tests() -> None:
    (command,) = [line for line in SCRIPT.read_text().splitlines() if "-m pytest" in line]
    words = shlex.split(command)
    assert words[words.index("pytest") + 1 :] == ["--durations=15", "$@"]
