"""What the documentation tells people to type or copy, read from the files
themselves so that the tests check the very text a reader sees.

- `fenced_blocks(text)`: the fenced code blocks of a Markdown file, with the
  `<!-- check: KIND [NAME][; save as PATH] -->` comment written just before a
  block (the way docs/deploy.md says how each of its snippets is checked, and
  where the reader saves it);
- `commands(path)`: the shell commands of a file: every line of the shell
  code blocks and inline code that starts with a program name in Markdown;
  in configuration files, comment lines indented three spaces or more after
  the `#` that start with a program name, and inline code anywhere.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
# First words that make a line or an inline code span a command. A path to
# an executable counts by its last part when it is in a bin/ directory.
PROGRAMS = frozenset(
    {
        "sandbox-exporter",
        "python",
        "python3",
        "pip",
        "promtool",
        "amtool",
        "docker",
        "systemctl",
        "journalctl",
        "kubectl",
        "kustomize",
        "curl",
        "install",
        "cp",
        "git",
        "hadolint",
        "icinga2",
        "nagios4",
        "./scripts/test",
    }
)
FENCE = re.compile(r"^(\s*)```\s*([\w-]*)\s*$")
CHECK_COMMENT = re.compile(
    r"^\s*<!--\s*check:\s*([\w-]+)(?:\s+([\w-]+))?(?:\s*;\s*save as\s+(\S+))?\s*-->\s*$"
)
INLINE_CODE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # of the opening fence, 1-based
    check: str | None  # KIND of the check comment before it
    name: str | None  # its optional NAME
    save: str | None = None  # where the reader saves it (PATH), if the comment says


@dataclass(frozen=True)
class Command:
    text: str
    where: str  # path:line


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, language = opening.group(1), opening.group(2)
        check = name = save = None
        previous = index - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        if previous >= 0 and (marker := CHECK_COMMENT.match(lines[previous])):
            check, name, save = marker.groups()
        body: list[str] = []
        index += 1
        while index < len(lines) and not re.match(r"^\s*```\s*$", lines[index]):
            body.append(lines[index].removeprefix(indent))
            index += 1
        start = index - len(body)
        blocks.append(Block(language, "\n".join(body) + "\n", start, check, name, save))
        index += 1
    return blocks


def program_of(command: str) -> str | None:
    """The program a command line starts with, if it is one we know."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words:
        return None
    first = words[0]
    if "/bin/" in first:
        first = first.rsplit("/", 1)[1]
    return first if first in PROGRAMS else None


def is_command(text: str) -> bool:
    """A known program with at least one argument: `sandbox-exporter` alone
    names the program, `sandbox-exporter --once` tells you to run it."""
    return program_of(text) is not None and len(text.split()) > 1


def _joined(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines ending in a backslash joined with the next ones."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in lines:
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
        if line.endswith("\\"):
            pending = (number, line[:-1].rstrip())
            continue
        pending = None
        joined.append((number, line))
    if pending is not None:
        joined.append(pending)
    return joined


def markdown_commands(path: Path, relative: str) -> list[Command]:
    text = path.read_text()
    found: list[Command] = []
    in_fence: set[int] = set()
    for block in fenced_blocks(text):
        body = block.text.splitlines()
        in_fence.update(range(block.line - 1, block.line + len(body) + 1))
        if block.language not in SHELL_LANGUAGES:
            continue
        numbered = [(block.line + offset, line) for offset, line in enumerate(body)]
        for number, line in _joined(numbered):
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                found.append(Command(line, f"{relative}:{number}"))
    for number, line in enumerate(text.splitlines(), start=1):
        if number in in_fence:
            continue
        for code in INLINE_CODE.findall(line):
            if is_command(code):
                found.append(Command(code.strip(), f"{relative}:{number}"))
    return sorted(found, key=lambda c: int(c.where.rsplit(":", 1)[1]))


def comment_commands(path: Path, relative: str, inline_everywhere: bool) -> list[Command]:
    """Commands in `#` comments (and, with `inline_everywhere`, in inline
    code on any line, e.g. an alert's description)."""
    found: list[Command] = []
    comment_lines: list[tuple[int, str]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        comment = re.match(r"^\s*#(\s*)(.*)$", line)
        if comment and len(comment.group(1)) >= 3:
            comment_lines.append((number, comment.group(2)))
        if comment or inline_everywhere:
            for code in INLINE_CODE.findall(line):
                if is_command(code):
                    found.append(Command(code.strip(), f"{relative}:{number}"))
    for number, line in _joined(comment_lines):
        # A trailing "# ..." explains the command; bash would ignore it too.
        if program_of(line) is not None:
            found.append(Command(line.strip(), f"{relative}:{number}"))
    return sorted(found, key=lambda c: int(c.where.rsplit(":", 1)[1]))
