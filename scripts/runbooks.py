#!/usr/bin/env python3
"""Points every alert's runbook_url at its own section of docs/runbooks.md.

    python3 scripts/runbooks.py            # rewrite the project's URLs from RUNBOOK_BASE
    python3 scripts/runbooks.py --check    # exit 1 if one is missing or differs
    python3 scripts/runbooks.py --base URL FILE...   # rewrite installed copies

A rule's runbook_url is RUNBOOK_BASE, `#`, and the GitHub anchor of the
alert's heading in docs/runbooks.md (`## SandboxDown` -> `#sandboxdown`).
Prometheus rule templates could read a global setting only from an external
label (`$externalLabels`), which Prometheus attaches to every series and
alert it sends out, so the full URL is written in each rule, and this script
keeps all of them in step with the one line below: change it, run the script, and the rule files,
the promtool unit tests that expect the annotation and the Kubernetes
PrometheusRule follow.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

# Where docs/runbooks.md is published: the one line to change.
RUNBOOK_BASE = "https://github.com/PremierLangage/sandbox-exporter/blob/main/docs/runbooks.md"

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = REPO / "docs" / "runbooks.md"
RULE_TESTS = REPO / "tests" / "rules"
# The runbook_url line of a rule file or of a promtool test's exp_annotations,
# quoted or not; the anchor is kept, only the address before it changes.
_URL_LINE = re.compile(
    r"^(?P<key>\s*runbook_url:\s*)(?P<quote>[\"']?)"
    r"(?P<base>[^\s\"'#]+)#(?P<anchor>[\w-]+)(?P=quote)(?P<rest>\s*(?:\#.*)?)$"
)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _generator() -> ModuleType:
    """scripts/generate_prometheusrule.py, which knows the rule files and
    writes the PrometheusRule from them."""
    path = Path(__file__).resolve().with_name("generate_prometheusrule.py")
    spec = importlib.util.spec_from_file_location("generate_prometheusrule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading's text: lower case, punctuation
    dropped (hyphens and underscores kept), each space a hyphen."""
    text = re.sub(r"[`*~]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(markdown: str) -> Iterator[tuple[int, str, str]]:
    """(level, text, anchor) of each heading outside code blocks, anchors
    made unique the way GitHub does (`-1`, `-2` on repeats)."""
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match is None:
            continue
        text = match.group(2)
        anchor = github_anchor(text)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        yield len(match.group(1)), text, anchor if count == 0 else f"{anchor}-{count}"


def runbook_url(alert: str, base: str = RUNBOOK_BASE) -> str:
    return f"{base}#{github_anchor(alert)}"


def project_rule_files() -> list[Path]:
    return [REPO / relative for relative in GENERATOR.RULE_FILES]


def project_files() -> list[Path]:
    """Every file of the project that holds runbook URLs and is edited by
    hand (the PrometheusRule is generated from the rule files)."""
    return project_rule_files() + sorted(RULE_TESTS.glob("*.yml"))


def rewrite(text: str, base: str) -> str:
    """`text` with the address of each runbook_url replaced by `base`."""
    lines = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = _URL_LINE.match(body)
        if match:
            quote = match["quote"]
            body = f"{match['key']}{quote}{base}#{match['anchor']}{quote}{match['rest']}"
        lines.append(body + line[len(line.rstrip("\r\n")) :])
    return "".join(lines)


def alert_rules(document: Any) -> Iterator[dict[str, Any]]:
    """The alerting rules of a rule file or of a PrometheusRule."""
    if isinstance(document, dict) and isinstance(document.get("spec"), dict):
        document = document["spec"]
    for group in (document or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule:
                yield rule


def expected_annotations(document: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(alertname, exp_annotations) of each expected alert of a promtool test file."""
    for test in (document or {}).get("tests") or []:
        for case in test.get("alert_rule_test") or []:
            for alert in case.get("exp_alerts") or []:
                yield case["alertname"], alert.get("exp_annotations") or {}


def problems(path: Path, base: str = RUNBOOK_BASE) -> list[str]:
    """Each rule (or expected alert) of `path` whose runbook_url is missing
    or is not `base` followed by its alert's anchor."""
    document = yaml.safe_load(path.read_text())
    found = []
    pairs: Iterable[tuple[str, dict[str, Any]]]
    if isinstance(document, dict) and "tests" in document:
        pairs = expected_annotations(document)
    else:
        pairs = ((r["alert"], r.get("annotations") or {}) for r in alert_rules(document))
    for alert, shown in pairs:
        url = shown.get("runbook_url")
        if url != runbook_url(alert, base):
            found.append(
                f"{path}: {alert}: runbook_url is {url!r}, not {runbook_url(alert, base)!r}"
            )
    return found


def missing_sections(alerts: Iterable[str], markdown: str) -> list[str]:
    """Alerts without a `## <alert name>` section in the runbooks."""
    sections = {anchor for level, text, anchor in headings(markdown) if level == 2}
    return [alert for alert in alerts if github_anchor(alert) not in sections]


def check() -> list[str]:
    found = [p for path in [*project_files(), GENERATOR.OUTPUT] for p in problems(path)]
    alerts = [
        rule["alert"]
        for path in project_rule_files()
        for rule in alert_rules(yaml.safe_load(path.read_text()))
    ]
    found += [
        f"{RUNBOOKS}: no section `## {alert}`"
        for alert in missing_sections(alerts, RUNBOOKS.read_text())
    ]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on a problem, write nothing")
    parser.add_argument("--base", help="the runbooks' address (default: RUNBOOK_BASE)")
    parser.add_argument("files", nargs="*", type=Path, help="rule files (default: the project's)")
    args = parser.parse_args(argv)
    if args.check:
        found = check()
        for problem in found:
            print(problem, file=sys.stderr)
        print(f"{len(found)} problems" if found else "every runbook_url is in step")
        return 1 if found else 0
    base = args.base or RUNBOOK_BASE
    for path in args.files or project_files():
        text = path.read_text()
        new = rewrite(text, base)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path}")
        if not args.files:
            continue
        found = problems(path, base)
        for problem in found:
            print(problem, file=sys.stderr)
        if found:
            return 1
    if not args.files:
        return GENERATOR.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
