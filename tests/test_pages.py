"""The landing page and the target pages: by their HTML on hand-built states,
then as a real headless Chromium renders them from a running exporter."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import HEADLESS_FLAGS, chromium
from harness import ExporterProcess

from sandbox_emulator import Emulator
from sandbox_exporter import pages
from sandbox_exporter.cli import main
from sandbox_exporter.config import Target, parse_config
from sandbox_exporter.documents import parse_libraries, parse_specifications
from sandbox_exporter.expectations import check_expectations
from sandbox_exporter.health import load_ratio, missed_expectations, pool_size
from sandbox_exporter.probes import CanaryResult, LibrariesReport, Load, ProbeResult
from sandbox_exporter.state import MAX_DEBUG_TEXT, MAX_HISTORY_MESSAGE, State
from sandbox_exporter.vocabulary import CANARY, LIBRARIES, SPECIFICATIONS, USAGE, Reason

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_790_000_000.0  # a fixed clock: the pages print times and ages
HOSTILE = "<script>alert(1)</script>\"'&x"


# ------------------------------------------------------------ reading HTML


class _Reader(HTMLParser):
    """What a person sees: text outside <style>/<title>, blocks apart; and the tables."""

    _BLOCKS = {"p", "li", "td", "th", "tr", "h1", "h2", "br", "pre", "table", "ul"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[list[list[str]]] = []
        self._hidden = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title", "script"):
            self._hidden += 1
        if tag in self._BLOCKS:
            self.text.append(" ")
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script"):
            self._hidden -= 1
        if tag in self._BLOCKS:
            self.text.append(" ")
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)
            if self._cell is not None:
                self._cell.append(data)


def read(page: str) -> _Reader:
    reader = _Reader()
    reader.feed(page)
    reader.close()
    return reader


def visible(page: str) -> str:
    return " ".join("".join(read(page).text).split())


def table_with(page: str, *headers: str) -> list[list[str]]:
    """The rows (header row first) of the table whose headers start with `headers`."""
    for table in read(page).tables:
        if table and tuple(table[0][: len(headers)]) == headers:
            return table
    raise AssertionError(f"no table with headers {headers}")


# ------------------------------------------------------- hand-built states

CANARY_4 = "    canaries:\n      - {name: shell, commands: ['echo 5'], expect_stdout: '4'}\n"


def make_state(body: str) -> State:
    state = State()
    state.set_config(parse_config(body))
    return state


def target_of(state: State, name: str) -> Target:
    assert state.config is not None
    target = state.config.target(name)
    assert target is not None
    return target


def result(
    target: str,
    probe: str,
    *,
    at: float = T0,
    success: bool = True,
    reason: Reason | None = None,
    message: str = "ok",
    data: object = None,
) -> ProbeResult:
    return ProbeResult(target, probe, success, reason, at, 0.012, message, data)  # type: ignore[arg-type]


def healthy_results(target: Target, at: float = T0) -> list[ProbeResult]:
    spec = parse_specifications(json.loads((FIXTURES / "v2/specifications.json").read_text()))
    libraries = parse_libraries(json.loads((FIXTURES / "v2/libraries.json").read_text()))
    outcomes = tuple(
        check_expectations(target.expect, libraries.languages, libraries.packages, libraries.bin)
    )
    canary = CanaryResult("shell", True, None, "ok in 0.010s", 0.01, 0.005, 0, (0.004,))
    return [
        result(target.name, SPECIFICATIONS, at=at, message="sandbox 2.0.3", data=spec),
        result(target.name, USAGE, at=at, message="1 of 5 busy", data=Load(1, 5, None)),
        result(
            target.name,
            LIBRARIES,
            at=at,
            message="43 packages listed",
            data=LibrariesReport.of(libraries, outcomes),
        ),
        result(target.name, CANARY, at=at, message="shell: ok in 0.010s", data=(canary,)),
    ]


def record_healthy(state: State, name: str, at: float = T0) -> None:
    for healthy in healthy_results(target_of(state, name), at):
        state.record(healthy)


def failing_canary(name: str, at: float = T0) -> ProbeResult:
    canary = CanaryResult(
        "shell", False, Reason.UNEXPECTED_OUTPUT, "unexpected stdout '5'", 0.01, 0.005, 0
    )
    return result(
        name,
        CANARY,
        at=at,
        success=False,
        reason=Reason.UNEXPECTED_OUTPUT,
        message="shell: unexpected stdout '5'",
        data=(canary,),
    )


def unreachable(name: str, probe: str, at: float = T0) -> ProbeResult:
    message = "GET http://127.0.0.1:9/specifications/: connection failed: Connection refused"
    return result(name, probe, at=at, success=False, reason=Reason.CONNECTION, message=message)


def landing(state: State, **kwargs: object) -> str:
    return pages.landing(state.snapshot(), now=T0 + 5, **kwargs)  # type: ignore[arg-type]


def target_page(state: State, name: str, **kwargs: object) -> str:
    return pages.target_page(
        state.snapshot(),
        target_of(state, name),
        state.history(name),
        now=T0 + 5,
        **kwargs,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------ page content


def test_a_healthy_target_reads_ok_and_links_to_its_page():
    state = make_state("targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n")
    record_healthy(state, "alpha")
    page = landing(state)
    text = visible(page)
    assert "1 ok of 1 target" in text
    assert "OK alpha" in text and "load 20%" in text
    assert 'href="target?name=alpha"' in page
    assert "missed" not in text and "failing" not in text
    assert "title=" not in page  # nothing hides in a tooltip


def test_a_missed_expectation_says_what_was_expected_and_found():
    state = make_state(
        "targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n"
        "    expect:\n      languages: {java: '>=17', python3: '>=3.7'}\n"
        "      bin: [no-such-command]\n"
    )
    record_healthy(state, "alpha")
    text = visible(landing(state))
    assert "WARNING alpha" in text
    assert (
        "2 expectations missed: language java >=17 (found openjdk 11.0.7), "
        "bin no-such-command present (found nothing)"
    ) in text
    assert "python3" not in text  # met expectations are not problems
    expectations = table_with(target_page(state, "alpha"), "kind", "name", "expected", "found")
    assert ["language", "java", ">=17", "openjdk 11.0.7", "MISSED"] in expectations
    assert ["language", "python3", ">=3.7", "3.7.3", "met"] in expectations
    history = table_with(target_page(state, "alpha"), "time", "probe", "duration", "outcome")
    assert [LIBRARIES, "0.012s", "2 expectations missed"] in [row[1:4] for row in history]
    assert (
        "missed: language java >=17 (found openjdk 11.0.7), bin no-such-command present "
        "(found nothing)"
    ) in [row[4] for row in history]


def test_a_failing_canary_shows_its_name_and_message_and_since_when():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    record_healthy(state, "alpha", at=T0 - 600)
    state.record(failing_canary("alpha", at=T0 - 120))
    state.record(failing_canary("alpha", at=T0 - 60))  # still failing: the start stays
    text = visible(landing(state))
    assert "CRITICAL alpha" in text
    assert "canary failing (unexpected_output): shell: unexpected stdout '5'" in text
    # The failure began 125 s before the page was made, not at its last run.
    since = time.strftime("%H:%M:%S", time.gmtime(T0 - 120))
    assert f"since {since} UTC (2m 5s ago)" in text
    canaries = table_with(target_page(state, "alpha"), "canary", "outcome")
    assert canaries[1][:2] == ["shell", "unexpected_output"]


def test_an_unreachable_target_is_one_problem_with_the_transport_error():
    state = make_state("targets:\n  - {name: alpha, url: 'http://127.0.0.1:9/'}\n")
    for probe in (SPECIFICATIONS, USAGE, LIBRARIES, CANARY):
        state.record(unreachable("alpha", probe))
    text = visible(landing(state))
    assert "CRITICAL alpha" in text
    assert (
        "unreachable (connection): GET http://127.0.0.1:9/specifications/: "
        "connection failed: Connection refused"
    ) in text
    assert text.count("Connection refused") == 1
    # Each probe's cell still names its reason.
    assert text.count("connection 5s ago") == 4


def test_a_target_never_probed_says_so_rather_than_ok():
    state = make_state(
        "targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n"
        "  - {name: beta, url: 'http://127.0.0.1:2/'}\n"
    )
    record_healthy(state, "alpha")
    text = visible(landing(state))
    assert "1 ok, 1 not probed yet of 2 targets" in text
    assert "NOT PROBED YET beta" in text and "no probe has run yet" in text
    page = visible(target_page(state, "beta"))
    assert "NOT PROBED YET beta" in page and page.count("not run yet") == 4
    assert "No probe has run yet." in page and "None since the exporter started" in page


def test_targets_are_listed_worst_first():
    state = make_state(
        "targets:\n  - {name: fine, url: 'http://127.0.0.1:1/'}\n"
        "  - {name: down, url: 'http://127.0.0.1:2/'}\n"
        "  - {name: new, url: 'http://127.0.0.1:3/'}\n"
    )
    record_healthy(state, "fine")
    state.record(unreachable("down", SPECIFICATIONS))
    rows = table_with(landing(state), "status", "target")[1:]
    assert [row[0] for row in rows] == ["CRITICAL", "NOT PROBED YET", "OK"]


def test_a_failed_reload_is_shown_with_its_error():
    state = make_state("targets: []\n")
    state.reload_failed("config.yml:3:1: targets[0].url: missing")
    text = visible(landing(state))
    assert "Configuration reload FAILED, running the previous one: config.yml:3:1" in text
    assert "No targets" in text and "no targets configured" in text


# ---------------------------------------------------------------- escaping


def test_names_messages_and_debug_text_are_escaped():
    state = make_state(f"targets:\n  - name: {json.dumps(HOSTILE)}\n    url: 'http://h:1/'\n")
    hostile_message = "<img src=x onerror=alert(2)> & </td></tr>"
    state.record(
        result(
            HOSTILE,
            SPECIFICATIONS,
            success=False,
            reason=Reason.HTTP_STATUS,
            message=hostile_message,
        )
    )
    state.record_debug(HOSTILE, "</pre><script>alert(3)</script>")
    for page in (landing(state), target_page(state, HOSTILE)):
        tags = [tag for tag, _ in read(page).tags]
        assert "script" not in tags and "img" not in tags
        assert "<script>" not in page and "<img" not in page
        text = visible(page)
        assert HOSTILE in text  # shown as written, as text
        assert hostile_message in text
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in target_page(state, HOSTILE)
    # The link to the target's page carries its name percent-encoded.
    links = [attrs.get("href") for tag, attrs in read(landing(state)).tags if tag == "a"]
    assert "target?name=%3Cscript%3Ealert%281%29%3C%2Fscript%3E%22%27%26x" in links


def test_urls_are_shown_without_userinfo():
    assert pages.shown_url("https://user:s3cret@sandbox:8443/api/") == "https://sandbox:8443/api/"
    assert pages.shown_url("http://sandbox/") == "http://sandbox/"
    # The configuration refuses credentials in URLs; the pages do not rely on it.
    state = make_state("targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n")
    target = target_of(state, "alpha").model_copy(update={"url": "http://bob:s3cret@10.0.0.1/"})
    page = pages.target_page(state.snapshot(), target, state.history("alpha"), now=T0)
    assert "s3cret" not in page and "bob" not in page and "http://10.0.0.1/" in page


# ----------------------------------------------------------------- history


def test_history_is_newest_first_and_bounded():
    state = make_state("targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n")
    state.set_history_limit(5)
    for i in range(8):
        state.record(result("alpha", USAGE, at=T0 - 100 + i, message=f"run {i}"))
    state.record(unreachable("alpha", SPECIFICATIONS, at=T0 - 50))
    rows = table_with(target_page(state, "alpha"), "time", "probe", "duration", "outcome")[1:]
    assert [row[-1] for row in rows] == [
        "GET http://127.0.0.1:9/specifications/: connection failed: Connection refused",
        "run 7",
        "run 6",
        "run 5",
        "run 4",
    ]
    assert rows[0][1:4] == ["specifications", "0.012s", "connection"]
    text = visible(target_page(state, "alpha"))
    assert "Last 5 probe results, newest first" in text and "Up to 5 are kept" in text


def test_history_limit_zero_keeps_nothing_and_shrinking_keeps_the_newest():
    state = make_state("targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n")
    for i in range(4):
        state.record(result("alpha", USAGE, at=T0 + i, message=f"run {i}"))
    state.set_history_limit(2)
    assert [e.message for e in state.history("alpha").entries] == ["run 2", "run 3"]
    state.set_history_limit(0)
    state.record(result("alpha", USAGE, at=T0 + 9))
    assert state.history("alpha").entries == ()
    assert "Not kept (--history.limit=0)" in visible(target_page(state, "alpha"))
    with pytest.raises(ValueError):
        state.set_history_limit(-1)


def test_what_a_target_keeps_is_bounded_whatever_servers_send():
    state = make_state("targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n")
    state.set_history_limit(3)
    huge = "x" * 1_000_000
    for target_result in healthy_results(target_of(state, "alpha")):
        state.record(dataclasses.replace(target_result, message=huge))
    state.record_debug("alpha", huge)
    history = state.history("alpha")
    assert len(history.entries) == 3
    for entry in history.entries:
        assert len(entry.message) < MAX_HISTORY_MESSAGE + 100
        # Entries hold text only: no server document (package lists) is kept.
        assert all(
            isinstance(getattr(entry, f.name), (str, float, int, bool))
            for f in dataclasses.fields(entry)
        )
    assert history.debug is not None and len(history.debug.text) < MAX_DEBUG_TEXT + 100
    assert "characters not kept" in history.debug.text


def test_a_target_leaving_the_config_takes_its_history_and_debug_along():
    state = make_state(
        "targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n"
        "  - {name: beta, url: 'http://127.0.0.1:2/'}\n"
    )
    for name in ("alpha", "beta"):
        state.record(result(name, USAGE))
        state.record_debug(name, f"debug of {name}")
    state.set_config(parse_config("targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n"))
    assert state.history("beta").entries == () and state.history("beta").debug is None
    assert len(state.history("alpha").entries) == 1
    assert state.history("alpha").debug is not None
    assert ("beta", USAGE) not in state.snapshot().since
    state.record_debug("gone", "not kept")  # a probe that outlived its target
    assert state.history("gone").debug is None


def test_since_moves_only_when_the_condition_changes():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    state.record(failing_canary("alpha", at=T0))
    state.record(failing_canary("alpha", at=T0 + 10))
    assert state.snapshot().since[("alpha", CANARY)] == T0
    state.record(result("alpha", CANARY, at=T0 + 20))
    assert state.snapshot().since[("alpha", CANARY)] == T0 + 20  # recovered then


# ----------------------------------------------------------- auto-refresh


def test_auto_refresh_is_optional_and_can_be_turned_off():
    state = make_state("targets:\n  - {name: alpha, url: 'http://127.0.0.1:1/'}\n")
    off = landing(state)
    assert 'http-equiv="refresh"' not in off
    assert 'href="./?refresh=10"' in off
    on = landing(state, refresh=30)
    assert '<meta http-equiv="refresh" content="30">' in on
    assert "auto-refresh every 30s" in visible(on) and 'href="./">turn off' in on
    # Links between the pages keep the refresh on.
    assert 'href="target?name=alpha&amp;refresh=30"' in on
    target_on = target_page(state, "alpha", refresh=30)
    assert 'href="./?refresh=30"' in target_on and 'href="target?name=alpha">turn off' in target_on
    assert 'href="target?name=alpha&amp;refresh=10"' in target_page(state, "alpha")
    for value, expected in [("10", 10), ("0", None), ("-5", None), ("x", None), ("99999", None)]:
        assert pages.parse_refresh(value) == expected
    assert pages.parse_refresh(None) is None


# ------------------------------------------------------------------ health


def test_pool_size_comes_from_usage_on_2x_and_from_specifications_on_3x():
    spec3 = parse_specifications(json.loads((FIXTURES / "v3/specifications.json").read_text()))
    v2 = {USAGE: result("a", USAGE, data=Load(2, 4, None))}
    v3 = {
        SPECIFICATIONS: result("a", SPECIFICATIONS, data=spec3),
        USAGE: result("a", USAGE, data=Load(1, None, None)),
    }
    assert pool_size(v2) == 4 and load_ratio(v2) == 0.5
    assert pool_size(v3) == spec3.containers_max and load_ratio(v3) == 1 / spec3.containers_max
    failed_spec = {**v3, SPECIFICATIONS: unreachable("a", SPECIFICATIONS)}
    assert pool_size(failed_spec) is None and load_ratio(failed_spec) is None
    assert load_ratio({USAGE: result("a", USAGE, data=Load(0, 0, None))}) is None


def test_missed_expectations_are_the_unmet_outcomes():
    state = make_state(
        "targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n"
        "    expect:\n      languages: {java: '>=17', python3: '3.7.*'}\n"
    )
    report = healthy_results(target_of(state, "alpha"))[2].data
    assert isinstance(report, LibrariesReport)
    assert [(o.kind, o.name, o.found) for o in missed_expectations(report)] == [
        ("language", "java", "openjdk 11.0.7")
    ]


# -------------------------------------------- a running exporter, a browser


def dump_dom(url: str, profile: Path) -> str:
    """The DOM as Chromium built it from the page, serialised; the page's
    console must report no Content-Security-Policy violation."""
    done = subprocess.run(
        [
            chromium(),
            *HEADLESS_FLAGS,
            # The console on stderr: where Chromium reports a blocked style.
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<body" in done.stdout, done.stderr[-2000:]
    violations = [line for line in done.stderr.splitlines() if "Content Security Policy" in line]
    assert violations == []
    return done.stdout


BAD = "<img src=x onerror=alert(1)>bad"


@pytest.fixture
def exporter(tmp_path: Path, make_emulator: Callable[..., Emulator]):
    healthy, failing = make_emulator(api=3), make_emulator(api=2)
    config = tmp_path / "config.yml"
    config.write_text(
        "defaults:\n"
        "  intervals: {specifications: 2s, usage: 2s, libraries: 2s, canary: 2s}\n"
        "  timeouts: {specifications: 2s, usage: 2s, libraries: 2s, canary: 2s}\n"
        f"targets:\n  - name: healthy\n    url: {json.dumps(healthy.url)}\n"
        f"  - name: {json.dumps(BAD)}\n    url: {json.dumps(failing.url)}\n"
        "    expect:\n      languages: {java: '>=17'}\n" + CANARY_4
    )
    running = ExporterProcess("-c", str(config), "--history.limit", "3")
    yield running
    code, _, stderr = running.terminate()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_the_pages_in_a_real_browser(exporter: ExporterProcess, tmp_path: Path):
    def both_probed() -> bool:
        text = visible(exporter.get("").text)
        return "not run yet" not in text and "1 critical, 1 ok of 2 targets" in text

    exporter.poll(both_probed)
    dom = dump_dom(exporter.url, tmp_path / "profile-landing")
    text = visible(dom)
    assert "1 critical, 1 ok of 2 targets" in text
    assert f"CRITICAL {BAD}" in text and "OK healthy" in text
    assert "canary failing (unexpected_output): shell: unexpected stdout '5'" in text
    assert "1 expectation missed: language java >=17 (found openjdk 11.0.7)" in text
    tags = read(dom).tags
    assert "img" not in [tag for tag, _ in tags]  # the hostile name stayed text
    link = next(attrs["href"] for tag, attrs in tags if tag == "a" and "bad" in str(attrs))
    assert link == "target?name=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3Ebad"

    debug = exporter.get("probe", params={"target": BAD, "debug": "true"})
    assert debug.status_code == 200 and "FAILED (unexpected_output)" in debug.text
    exporter.poll(lambda: "Last 3 probe results" in visible(exporter.get(link).text))
    dom = dump_dom(exporter.url + link, tmp_path / "profile-target")
    text = visible(dom)
    assert f"CRITICAL {BAD}" in text
    assert "Last 3 probe results, newest first" in text  # --history.limit reached the state
    history = table_with(dom, "time", "probe", "duration", "outcome", "message")[1:]
    assert len(history) == 3
    assert f"Probes of target {BAD} (budget 10.0s):" in text  # the last /probe?debug=true
    assert "canary: FAILED (unexpected_output)" in text


def test_an_unknown_target_page_is_a_clear_404(exporter: ExporterProcess):
    exporter.poll(lambda: exporter.get("-/healthy").ok)
    response = exporter.get("target", params={"name": "nope"})
    assert response.status_code == 404
    assert response.text == "unknown target 'nope': not in the configuration\n"
    missing = exporter.get("target")
    assert missing.status_code == 400 and "'name' parameter is missing" in missing.text


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_history_limit_must_be_a_whole_number(value: str, capsys: pytest.CaptureFixture[str]):
    assert main(["--history.limit", value, "--config.check"]) == 3
    assert "--history.limit" in capsys.readouterr().err
