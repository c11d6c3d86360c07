"""Every shipped alert links to its own runbook, and every runbook is whole.

The alerts are those of the rule files (deploy/prometheus/rules/) and of the
Kubernetes PrometheusRule generated from them; the runbooks are the sections
of docs/runbooks.md. scripts/runbooks.py holds the one address they are
published at (RUNBOOK_BASE) and rewrites the URLs from it; these tests check
the files as committed, the script's rewriting and checking on copies, and
the runbooks' PromQL with promtool and against the metric contract.
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
from doc_snippets import fenced_blocks

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "runbooks.py"
PARTS = ["Meaning", "Impact", "Diagnosis", "Mitigation", "Resolution"]


runbooks = load_script(SCRIPT)
RUNBOOKS_TEXT = runbooks.RUNBOOKS.read_text()


def shipped_sources() -> dict[str, Any]:
    """Every shipped file that holds alerting rules, parsed, by its path."""
    paths = [*runbooks.project_rule_files(), runbooks.GENERATOR.OUTPUT]
    return {str(p.relative_to(REPO)): yaml.safe_load(p.read_text()) for p in paths}


def shipped_alerts() -> dict[str, dict[str, Any]]:
    """The alerting rules of the rule files, by alert name."""
    return {
        rule["alert"]: rule
        for path in runbooks.project_rule_files()
        for rule in runbooks.alert_rules(yaml.safe_load(path.read_text()))
    }


def sections(markdown: str) -> dict[str, dict[str, str]]:
    """`## X` sections: {X: {`### Y` subheading: its text}}, code blocks included."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    part = ""
    fenced = False
    for line in markdown.splitlines():
        if re.match(r"^\s*```", line):
            fenced = not fenced
        heading = None if fenced else re.match(r"^(##|###) (.+)$", line)
        if heading and heading.group(1) == "##":
            current = found.setdefault(heading.group(2).strip(), {})
            part = ""
        elif heading and current is not None:
            part = heading.group(2).strip()
            current[part] = ""
        elif current is not None and part:
            current[part] += line + "\n"
    return found


def queries(text: str) -> list[str]:
    """The PromQL queries of the `promql` blocks of `text`, one per
    paragraph of a block."""
    found = []
    for block in fenced_blocks(text):
        if block.language == "promql":
            found += [q.strip() for q in re.split(r"\n\s*\n", block.text) if q.strip()]
    return found


def normalized(expr: str) -> str:
    return " ".join(expr.split())


# ----------------------------------------------------------------- the links


@pytest.mark.parametrize("source", sorted(shipped_sources()))
def test_every_alert_links_its_own_section(source: str) -> None:
    rules = list(runbooks.alert_rules(shipped_sources()[source]))
    assert rules, f"{source}: no alerting rule found"
    level_two = {
        anchor: text for level, text, anchor in runbooks.headings(RUNBOOKS_TEXT) if level == 2
    }
    for rule in rules:
        url = rule["annotations"].get("runbook_url")
        assert url, f"{source}: {rule['alert']} has no runbook_url"
        base, _, anchor = url.partition("#")
        assert base == runbooks.RUNBOOK_BASE, (rule["alert"], url)
        assert level_two.get(anchor) == rule["alert"], (
            f"{source}: {rule['alert']}: #{anchor} is not its section in docs/runbooks.md"
        )


def test_every_shipped_alert_and_prometheusrule_is_counted() -> None:
    # 11 alerts, each in a rule file and in the PrometheusRule: the sources
    # above must not silently lose one.
    counted = [
        rule["alert"]
        for document in shipped_sources().values()
        for rule in runbooks.alert_rules(document)
    ]
    assert sorted(counted) == sorted(list(shipped_alerts()) * 2)
    assert len(shipped_alerts()) >= 11


def test_the_rule_unit_tests_expect_the_same_urls() -> None:
    # promtool compares annotations exactly, so the unit tests name the URLs
    # too; they follow the same one base.
    for path in sorted(runbooks.RULE_TESTS.glob("*.yml")):
        expected = list(runbooks.expected_annotations(yaml.safe_load(path.read_text())))
        assert expected, path
        assert runbooks.problems(path) == []


def test_the_script_finds_everything_in_step() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every runbook_url is in step" in done.stdout


# ------------------------------------------------------------- the runbooks


def test_each_alert_has_one_section_with_every_part() -> None:
    found = sections(RUNBOOKS_TEXT)
    for alert in shipped_alerts():
        assert alert in found, f"docs/runbooks.md has no section `## {alert}`"
        parts = found[alert]
        assert list(parts) == PARTS, f"{alert}: parts {list(parts)}, expected {PARTS}"
        for part, text in parts.items():
            assert len(text.split()) >= 8, f"{alert}: its {part} says nothing"


def test_no_runbook_for_an_alert_that_is_not_shipped() -> None:
    alerts = set(shipped_alerts())
    orphans = [
        name
        for name, parts in sections(RUNBOOKS_TEXT).items()
        if name not in alerts and (re.fullmatch(r"Sandbox\w+", name) or parts)
    ]
    assert orphans == []


def test_each_meaning_quotes_its_rules_expression() -> None:
    found = sections(RUNBOOKS_TEXT)
    for alert, rule in shipped_alerts().items():
        quoted = [normalized(q) for q in queries(found[alert]["Meaning"])]
        assert normalized(rule["expr"]) in quoted, f"{alert}: its Meaning does not quote the rule"


def test_each_diagnosis_gives_queries_and_a_look_at_the_sandbox() -> None:
    found = sections(RUNBOOKS_TEXT)
    for alert in shipped_alerts():
        diagnosis = found[alert]["Diagnosis"]
        assert queries(diagnosis), f"{alert}: its Diagnosis has no PromQL"
        if alert.startswith("SandboxExporter"):
            continue
        # A sandbox's alert: its target page, and something that asks the
        # sandbox now (--once, /probe, its own endpoints), here or in the
        # runbook it refers to.
        prose = normalized(diagnosis)
        assert "target page" in prose, f"{alert}: no target page"
        asks = re.search(r"--once|/probe\?|SANDBOX/|(as in|diagnosis of) Sandbox\w+", prose)
        assert asks, f"{alert}: nothing asks the sandbox now"


def test_every_query_of_the_runbooks_is_valid_promql(tmp_path: Path) -> None:
    found = queries(RUNBOOKS_TEXT)
    assert len(found) > 30
    rules = {
        "groups": [
            {
                "name": "runbook-queries",
                "rules": [{"record": f"runbook:query_{i}", "expr": q} for i, q in enumerate(found)],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [deploy.require_tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(found)} rules found" in done.stdout


def test_every_query_uses_contract_metrics_and_recorded_series() -> None:
    recorded = {
        rule["record"]
        for path in runbooks.project_rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    problems = []
    for query in queries(RUNBOOKS_TEXT):
        extra = frozenset({"slo", "target"}) if "sandbox:" in query else frozenset()
        problems += [f"{query}: {p}" for p in deploy.contract_violations(query, extra)]
        problems += [
            f"{query}: {name} is recorded by no rule"
            for name in re.findall(r"\bsandbox:[a-z0-9_:]+", query)
            if name not in recorded
        ]
    assert problems == []


def test_the_contract_check_of_the_queries_bites() -> None:
    # Guard: a label the metric does not have is caught.
    query = 'sum by (canary) (sandbox_probe_failures_total{probe="canary"})'
    assert deploy.contract_violations(query) != []


# ------------------------------------------------------------ the one line


def test_the_base_is_written_once_in_the_documentation() -> None:
    # The runbooks show the line to change as it is in the script.
    assert f'RUNBOOK_BASE = "{runbooks.RUNBOOK_BASE}"' in RUNBOOKS_TEXT
    assert SCRIPT.read_text().count(runbooks.RUNBOOK_BASE) == 1


def test_a_new_base_rewrites_every_url_and_only_the_urls(tmp_path: Path) -> None:
    new_base = "https://wiki.example.org/sandbox/runbooks.html"
    for path in runbooks.project_files():
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        assert runbooks.problems(copy, new_base) != [], "guard: the old base is reported"
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--base", new_base, str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert runbooks.problems(copy, new_base) == []
        before, after = path.read_text().splitlines(), copy.read_text().splitlines()
        changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert changed, path
        for old, new in changed:
            assert old.replace(runbooks.RUNBOOK_BASE, new_base) == new


def test_a_missing_or_wrong_url_is_reported(tmp_path: Path) -> None:
    source = runbooks.project_rule_files()[0]
    lines = source.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if "runbook_url:" in line)
    missing = tmp_path / "missing.yml"
    missing.write_text("".join(lines[:first] + lines[first + 1 :]))
    (problem,) = runbooks.problems(missing)
    assert "runbook_url is None" in problem
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(source.read_text().replace("#sandboxdown", "#sandboxup"))
    (problem,) = runbooks.problems(wrong)
    assert "SandboxDown" in problem and "#sandboxup" in problem
    assert runbooks.missing_sections(["SandboxDown", "SandboxGone"], RUNBOOKS_TEXT) == [
        "SandboxGone"
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("SandboxDown", "sandboxdown"),
        ("Where the links point", "where-the-links-point"),
        ("`--once` and exit codes", "--once-and-exit-codes"),
        ("What's [new](x.md)?", "whats-new"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_github_anchors(heading: str, anchor: str) -> None:
    assert runbooks.github_anchor(heading) == anchor


def test_repeated_headings_get_numbered_anchors_and_code_is_skipped() -> None:
    text = "## A\n### Meaning\n```sh\n# not a heading\n```\n## B\n### Meaning\n### Meaning\n"
    assert [anchor for _, _, anchor in runbooks.headings(text)] == [
        "a",
        "meaning",
        "b",
        "meaning-1",
        "meaning-2",
    ]


def test_links_into_the_runbooks_reach_a_heading() -> None:
    anchors = {anchor for _, _, anchor in runbooks.headings(RUNBOOKS_TEXT)}
    markdown = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    links = [
        (path.name, anchor)
        for path in markdown
        for anchor in re.findall(r"runbooks\.md#([\w-]+)", path.read_text())
    ]
    assert ("README.md", "where-the-links-point") in links
    assert [link for link in links if link[1] not in anchors] == []
