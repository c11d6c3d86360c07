"""The landing page and the target pages: by their HTML on hand-built states,
then as a real headless Chromium renders them from a running exporter."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from browser import HEADLESS_FLAGS, chromium
from harness import ExporterProcess
from PIL import Image, ImageColor

from sandbox_emulator import Emulator, Fault
from sandbox_exporter import charts, pages
from sandbox_exporter.browser_guard import PAGE_POLICY
from sandbox_exporter.cli import main
from sandbox_exporter.config import Target, parse_config
from sandbox_exporter.digest import collapse, trim_message
from sandbox_exporter.documents import parse_libraries, parse_specifications
from sandbox_exporter.expectations import check_expectations
from sandbox_exporter.health import (
    load_ratio,
    missed_expectations,
    pool_size,
    refused_with_free_pool,
)
from sandbox_exporter.probes import CanaryResult, LibrariesReport, Load, ProbeResult
from sandbox_exporter.state import (
    MAX_DEBUG_TEXT,
    MAX_HISTORY_MESSAGE,
    HistoryEntry,
    State,
    TargetHistory,
)
from sandbox_exporter.vocabulary import CANARY, LIBRARIES, SPECIFICATIONS, USAGE, Reason

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_790_000_000.0  # a fixed clock: the pages print times and ages
HOSTILE = "<script>alert(1)</script>\"'&x"
TIMES, DASH = "\N{MULTIPLICATION SIGN}", "\N{EN DASH}"  # as a repeated row shows its count


# ------------------------------------------------------------ reading HTML


class _Reader(HTMLParser):
    """What a person sees: text outside <style>/<title>, blocks apart; and the tables."""

    _BLOCKS = {"p", "li", "td", "th", "tr", "h1", "h2", "br", "pre", "table", "ul", "text"}

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
            if self._cell is not None:
                self._cell.append(" ")
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


def tooltips(page: str) -> list[str]:
    """The title attributes: text a person sees only on hover."""
    return [attrs["title"] or "" for _, attrs in read(page).tags if "title" in attrs]


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


def refused_canary(name: str, at: float = T0, url: str = "http://127.0.0.1:1/") -> ProbeResult:
    """A canary the sandbox answered 503, worded as the transport words it."""
    message = (
        f"Sandbox responded with status 503 Service Unavailable to POST {url}execute/: "
        "Service Unavailable"
    )
    canary = CanaryResult("shell", False, Reason.OVERLOADED, message)
    return result(
        name,
        CANARY,
        at=at,
        success=False,
        reason=Reason.OVERLOADED,
        message=f"shell: {message}",
        data=(canary,),
    )


def answered_canary(name: str, round_trip: float, at: float = T0) -> ProbeResult:
    message = f"ok in {round_trip:.3f}s"
    canary = CanaryResult("shell", True, None, message, round_trip, round_trip / 2, 0)
    return result(name, CANARY, at=at, message=f"shell: {message}", data=(canary,))


def wall(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(timestamp))


def unreachable(name: str, probe: str, at: float = T0) -> ProbeResult:
    message = "GET http://127.0.0.1:9/specifications/: connection failed: Connection refused"
    return result(name, probe, at=at, success=False, reason=Reason.CONNECTION, message=message)


def landing(state: State, **kwargs: object) -> str:
    return pages.landing(
        state.snapshot(),
        history=state.history,
        now=T0 + 5,
        **kwargs,  # type: ignore[arg-type]
    )


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


def test_the_landing_page_comes_in_pieces_each_row_read_as_it_is_written():
    names = ("alpha", "beta", "gamma")
    state = make_state(
        "targets:\n" + "".join(f"  - {{name: {n}, url: 'http://127.0.0.1:1/'}}\n" for n in names)
    )
    for name in names:
        record_healthy(state, name)
    asked: list[str] = []

    def history(name: str) -> TargetHistory:
        asked.append(name)
        return state.history(name)

    snapshot = state.snapshot()
    pieces = pages.landing_pieces(snapshot, history=history, now=T0 + 5, chunk_characters=1)
    head = next(pieces)
    # The head and summary come before any row, and before any history is read.
    assert "3 ok of 3 targets" in visible(head) and head.endswith("<tbody>")
    assert asked == []
    rows = [next(pieces) for _ in names]
    assert asked == list(names)
    assert [row.lstrip("\n").startswith("<tr>") for row in rows] == [True] * len(names)
    (foot,) = pieces
    assert foot.startswith("</tbody></table>") and foot.endswith("</html>\n")
    assert head + "".join(rows) + foot == landing(state)


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
    page = landing(state)
    text = visible(page)
    assert "CRITICAL alpha" in text
    # The target's address is in the row already: the message names the path,
    # its whole text is on hover.
    assert (
        "unreachable (connection): GET /specifications/: connection failed: Connection refused"
        in text
    )
    assert (
        "GET http://127.0.0.1:9/specifications/: connection failed: Connection refused"
        in tooltips(page)
    )
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
            if f.name != "round_trips"
        )
        assert all(
            isinstance(name, str) and isinstance(seconds, float)
            for name, seconds in entry.round_trips
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
    assert ("beta", USAGE) not in state.snapshot().since_first_result
    state.record_debug("gone", "not kept")  # a probe that outlived its target
    assert state.history("gone").debug is None


def test_since_moves_only_when_the_condition_changes():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    state.record(failing_canary("alpha", at=T0))
    state.record(failing_canary("alpha", at=T0 + 10))
    assert state.snapshot().since[("alpha", CANARY)] == T0
    state.record(result("alpha", CANARY, at=T0 + 20))
    assert state.snapshot().since[("alpha", CANARY)] == T0 + 20  # recovered then


# ------------------------------------------- what, since when, how often


def test_since_says_at_least_when_the_condition_was_there_at_the_first_result():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    state.record(failing_canary("alpha", at=T0 - 120))
    state.record(failing_canary("alpha", at=T0 - 60))
    # The exporter's first canary result already failed: the failure began
    # at that time or before, which the page must not pass off as its start.
    alpha = target_of(state, "alpha")
    assert ("alpha", CANARY) in state.snapshot().since_first_result
    assert ("alpha", CANARY) in state.snapshot(alpha).since_first_result
    at_least = f"since at least {wall(T0 - 120)} UTC (2m 5s ago), this exporter's first probe"
    assert f"canary failing (unexpected_output): shell: unexpected stdout '5' — {at_least}" in (
        visible(landing(state))
    )
    latest = table_with(target_page(state, "alpha"), "probe", "outcome", "time")
    assert latest[4][:2] == [CANARY, f"unexpected_output {at_least}"]
    # It recovers and fails again: this exporter saw both begin.
    state.record(result("alpha", CANARY, at=T0 - 30))
    state.record(failing_canary("alpha", at=T0 - 20))
    assert ("alpha", CANARY) not in state.snapshot().since_first_result
    text = visible(landing(state))
    assert f"shell: unexpected stdout '5' — since {wall(T0 - 20)} UTC (25s ago)" in text
    assert "since at least " + wall(T0 - 120) not in text


def test_a_probe_repeating_its_result_is_one_row_with_a_count_and_a_time_span():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    for i in range(6):  # interleaved, as the scheduler runs them
        state.record(refused_canary("alpha", at=T0 - 60 + 10 * i))
        busy = result("alpha", USAGE, at=T0 - 55 + 10 * i, message="1 busy", data=Load(1, 5, None))
        state.record(dataclasses.replace(busy, duration_seconds=0.01 + i / 1000))
    state.record(result("alpha", USAGE, at=T0 - 1, message="2 busy", data=Load(2, 5, None)))
    page = target_page(state, "alpha")
    assert "Last 13 probe results, newest first" in visible(page)
    rows = table_with(page, "time", "probe", "duration", "outcome", "message")[1:]
    assert rows == [
        [f"{wall(T0 - 1)} UTC (6s ago)", USAGE, "0.012s", "ok", "2 busy"],
        [
            f"{TIMES}6 {wall(T0 - 55)}{DASH}{wall(T0 - 5)} UTC (10s ago)",
            USAGE,
            f"0.010{DASH}0.015s",
            "ok",
            "1 busy",
        ],
        [
            f"{TIMES}6 {wall(T0 - 60)}{DASH}{wall(T0 - 10)} UTC (15s ago)",
            CANARY,
            "0.012s",
            "overloaded",
            "shell: POST /execute/ answered 503 Service Unavailable",
        ],
    ]


def test_collapse_joins_only_consecutive_results_of_one_probe():
    def entry(probe: str, at: float, outcome: str = "ok", duration: float = 0.1) -> HistoryEntry:
        return HistoryEntry(probe, at, duration, outcome == "ok", outcome, f"{outcome}!")

    runs = collapse(
        [
            entry(CANARY, 1, duration=0.2),
            entry(USAGE, 2),
            entry(CANARY, 4, "timeout"),
            entry(CANARY, 5),
            entry(CANARY, 6),
            entry(USAGE, 8, "connection"),
            entry(CANARY, 3, duration=0.4),  # finished after later ones had started
        ]
    )
    assert [(r.probe, r.outcome, r.count, r.first_at, r.last_at) for r in runs] == [
        (USAGE, "connection", 1, 8, 8),
        (CANARY, "ok", 2, 5, 6),
        (CANARY, "timeout", 1, 4, 4),
        (CANARY, "ok", 2, 1, 3),  # the usage result between them is another probe's
        (USAGE, "ok", 1, 2, 2),
    ]
    assert (runs[3].shortest, runs[3].longest, runs[3].message) == (0.2, 0.4, "ok!")
    assert collapse([]) == []


def test_a_canary_refused_while_the_pool_had_free_containers_says_so():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    state.record(result("alpha", USAGE, at=T0 - 3, message="0 of 5 busy", data=Load(0, 5, None)))
    state.record(refused_canary("alpha", at=T0))
    note = (
        "the sandbox refused the canary with 503 (no free container) although the usage probe "
        "3s earlier found 0 of 5 containers busy: its count of busy containers is wrong, or the "
        "pool filled up between the two probes"
    )
    for page in (landing(state), target_page(state, "alpha")):
        assert note in visible(page)


def test_the_refused_canary_note_holds_only_when_the_data_disagree():
    refused = refused_canary("a", at=T0)

    def usage(busy: int | None, pool: int | None, at: float = T0 - 1) -> ProbeResult:
        return result("a", USAGE, at=at, data=Load(busy, pool, None))  # type: ignore[arg-type]

    assert "probe 2s later found 1 of 5 containers busy" in refused_with_free_pool(
        {CANARY: refused, USAGE: usage(1, 5, at=T0 + 2)}
    )
    assert "probe at the same time found" in refused_with_free_pool(
        {CANARY: refused, USAGE: usage(1, 5, at=T0)}
    )
    # 3.x: the pool's size is in the specifications.
    spec3 = parse_specifications(json.loads((FIXTURES / "v3/specifications.json").read_text()))
    v3 = {SPECIFICATIONS: result("a", SPECIFICATIONS, data=spec3), USAGE: usage(0, None)}
    assert f"found 0 of {spec3.containers_max} containers" in refused_with_free_pool(
        {**v3, CANARY: refused}
    )
    nothing_to_reconcile = [
        {CANARY: refused, USAGE: usage(5, 5)},  # the pool was full: the 503 fits
        {CANARY: refused, USAGE: unreachable("a", USAGE)},
        {CANARY: refused, USAGE: usage(0, None)},  # pool size unknown
        {CANARY: refused},
        {CANARY: failing_canary("a"), USAGE: usage(0, 5)},  # not a 503
        {USAGE: usage(0, 5)},
    ]
    for results in nothing_to_reconcile:
        assert refused_with_free_pool(results) == "", results


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "shell: Sandbox responded with status 503 Service Unavailable to POST "
            "http://h:8/sb/execute/: Service Unavailable",
            "shell: POST /execute/ answered 503 Service Unavailable",
        ),
        (  # a real page is kept: it says what the status does not
            "Sandbox responded with status 503 Service Unavailable to POST http://h:8/sb/execute/:"
            " Sandbox overloaded, retry after a few seconds.; py: ok in 0.1s",
            "POST /execute/ answered 503 Service Unavailable: Sandbox overloaded, retry after a "
            "few seconds.; py: ok in 0.1s",
        ),
        (
            "Sandbox responded with status 404 Not Found to GET http://h:8/sb/usages/",
            "GET /usages/ answered 404 Not Found",
        ),
        (  # another server's address stays whole
            "GET http://h:80/sb/specifications/: connection failed: Connection refused",
            "GET http://h:80/sb/specifications/: connection failed: Connection refused",
        ),
        ("shell: unexpected stdout '5'", "shell: unexpected stdout '5'"),
    ],
)
def test_messages_lose_what_their_row_already_shows(message: str, shown: str):
    assert trim_message(message, "http://h:8/sb/") == shown


def test_a_trimmed_message_keeps_its_whole_text_on_hover():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    state.record(refused_canary("alpha"))
    whole = (
        "Sandbox responded with status 503 Service Unavailable to POST "
        "http://127.0.0.1:1/execute/: Service Unavailable"
    )
    page = target_page(state, "alpha")
    text = visible(page)
    assert (
        "canary failing (overloaded): shell: POST /execute/ answered 503 Service Unavailable"
        in (text)
    )
    assert "responded with status" not in text and "127.0.0.1:1/execute" not in text
    assert f"shell: {whole}" in tooltips(page) and whole in tooltips(page)


def strips(page: str) -> list[list[tuple[str, str]]]:
    """Each strip's cells as (fill, tooltip), in page order."""
    return [
        re.findall(r'<rect [^>]*fill="(#\w+)"><title>([^<]*)</title></rect>', svg)
        for svg in re.findall(r'<svg class="strip".*?</svg>', page)
    ]


def compact_strips(page: str) -> list[tuple[str, list[str]]]:
    """Each compact strip's tooltip and its cells' fills, left to right."""
    found = []
    for title, paths in re.findall(
        r'<svg class="strip"[^>]*><title>([^<]*)</title>(.*?)</svg>', page
    ):
        cells = [
            (int(x), fill)
            for d, fill in re.findall(r'<path d="([^"]*)" fill="(#\w+)"/>', paths)
            for x in re.findall(r"M(\d+) ", d)
        ]
        found.append((title, [fill for _, fill in sorted(cells)]))
    return found


def test_each_probe_has_a_strip_of_its_last_results_and_each_canary_a_sparkline():
    state = make_state("targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n" + CANARY_4)
    for i, round_trip in enumerate([0.010, 0.020, None, 0.015]):
        at = T0 - 40 + 10 * i
        state.record(
            refused_canary("alpha", at)
            if round_trip is None
            else answered_canary("alpha", round_trip, at)
        )
    for i in range(pages.STRIP_LENGTH + 2):
        state.record(result("alpha", USAGE, at=T0 - 100 + i, data=Load(1, 5, None)))
    page = target_page(state, "alpha")
    ok, fail = charts.FILLS["ok"], charts.FILLS["fail"]
    usage_strip, canary_strip = strips(page)
    assert [fill for fill, _ in usage_strip] == [ok] * pages.STRIP_LENGTH  # the newest kept
    assert usage_strip[-1][1] == f"{wall(T0 - 100 + pages.STRIP_LENGTH + 1)} UTC: ok — ok"
    assert canary_strip == [
        (ok, f"{wall(T0 - 40)} UTC: ok — shell: ok in 0.010s"),
        (ok, f"{wall(T0 - 30)} UTC: ok — shell: ok in 0.020s"),
        (
            fail,
            f"{wall(T0 - 20)} UTC: overloaded — shell: POST /execute/ answered 503 Service "
            "Unavailable",
        ),
        (ok, f"{wall(T0 - 10)} UTC: ok — shell: ok in 0.015s"),
    ]
    assert table_with(page, "probe", "results", "how often")[1:] == [
        [USAGE, "", f"{pages.STRIP_LENGTH} results in 39s: all ok"],
        [CANARY, "", "4 results in 30s: 3 ok, 1 overloaded"],
    ]
    # The round trips: a line broken where none was measured, its extremes labelled.
    assert table_with(page, "canary", "round trip")[1:] == [
        [
            "shell",
            "max 0.020s min 0.010s",
            "last 0.015s, lowest 0.010s, highest 0.020s; 1 of 4 runs without one",
        ]
    ]
    spark = re.findall(r'<svg class="spark".*?</svg>', page)
    assert len(spark) == 1
    assert len(re.findall(r"<polyline points=\"[^\"]*\"", spark[0])) == 1  # the first two
    assert spark[0].count(f'fill="{fail}"') == 1  # the refused run's tick
    # The landing page draws the last few of each probe, one tooltip each.
    assert compact_strips(landing(state)) == [
        (f"{USAGE}: 12 results in 11s: all ok", [ok] * pages.LANDING_STRIP_LENGTH),
        (f"{CANARY}: 4 results in 30s: 3 ok, 1 overloaded", [ok, ok, fail, ok]),
    ]


def test_how_often_counts_outcomes_that_start_with_a_number():
    state = make_state(
        "targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n"
        "    expect: {bin: [no-such-command]}\n"
    )
    record_healthy(state, "alpha", at=T0 - 20)
    record_healthy(state, "alpha", at=T0 - 10)
    rows = table_with(target_page(state, "alpha"), "probe", "results", "how often")[1:]
    assert rows[2] == [LIBRARIES, "", "2 results in 10s: all with 1 expectation missed"]
    state.record(healthy_results(target_of(state, "alpha"), at=T0)[0])
    rows = table_with(target_page(state, "alpha"), "probe", "results", "how often")[1:]
    assert rows[0] == [SPECIFICATIONS, "", "3 results in 20s: all ok"]


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


def screenshot(url: str, profile: Path, size: tuple[int, int] = (1200, 1600)) -> Image.Image:
    """The page as Chromium paints it, one image pixel per CSS pixel."""
    path = profile.with_suffix(".png")
    done = subprocess.run(
        [
            chromium(),
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={path}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and path.exists(), done.stderr[-2000:]
    with Image.open(path) as image:
        return image.convert("RGB")


def painted_cells(image: Image.Image, area: int) -> dict[str, float]:
    """How many strip cells of `area` pixels each outcome's colour covers.
    The cells' fills are used nowhere else on the pages, text included."""
    counts = {rgb: n for n, rgb in image.getcolors(maxcolors=image.width * image.height)}
    return {
        kind: counts.get(ImageColor.getrgb(fill), 0) / area for kind, fill in charts.FILLS.items()
    }


class StrictPolicyServer:
    """Serves fixed pages with the Content-Security-Policy the exporter's web
    config sets, so the browser enforces it on what the pages draw."""

    POLICY = PAGE_POLICY

    def __init__(self, pages_by_path: dict[str, str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages_by_path.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Security-Policy", StrictPolicyServer.POLICY)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def test_the_strips_render_under_a_strict_content_security_policy(tmp_path: Path):
    state = make_state(
        "targets:\n  - name: alpha\n    url: 'http://127.0.0.1:1/'\n"
        "    expect: {bin: [no-such-command]}\n" + CANARY_4
    )
    record_healthy(state, "alpha", at=T0 - 100)  # ok but libraries, which miss one
    for i in range(5):
        state.record(result("alpha", USAGE, at=T0 - 90 + i, data=Load(1, 5, None)))
    for i in range(3):
        state.record(failing_canary("alpha", at=T0 - 80 + i))
    # The control: a script that would paint a 10 by 20 cell, which the policy stops.
    control = (
        '<!DOCTYPE html><div id="c" style="width:10px;height:20px"></div><script>'
        f'document.getElementById("c").style.background="{charts.FILLS["fail"]}"</script>'
    )
    server = StrictPolicyServer(
        {"/": landing(state), "/alpha": target_page(state, "alpha"), "/control": control}
    )
    try:
        target_cells = painted_cells(screenshot(server.url + "/alpha", tmp_path / "alpha"), 200)
        landing_cells = painted_cells(screenshot(server.url + "/", tmp_path / "landing"), 98)
        control_cells = painted_cells(screenshot(server.url + "/control", tmp_path / "ctl"), 200)
    finally:
        server.stop()
    assert control_cells["fail"] == 0  # the browser did enforce the policy
    # One cell per result, 10 px by 20 on a target's page, 7 by 14 on the
    # landing page: ok are specifications 1, usage 6 and canary 1.
    expected = {"ok": 8, "warn": 1, "fail": 3}
    assert {kind: round(n, 2) for kind, n in target_cells.items()} == expected
    assert {kind: round(n, 2) for kind, n in landing_cells.items()} == expected


BAD = "<img src=x onerror=alert(1)>bad"


@pytest.fixture
def exporter(tmp_path: Path, make_emulator: Callable[..., Emulator]):
    healthy, failing = make_emulator(api=3), make_emulator(api=2)
    # Its pool answers every execute 503 while its usage counts no container busy.
    refusing = make_emulator(api=3, faults={"execute": Fault(status=503)})
    config = tmp_path / "config.yml"
    config.write_text(
        "defaults:\n"
        "  intervals: {specifications: 2s, usage: 2s, libraries: 2s, canary: 2s}\n"
        "  timeouts: {specifications: 2s, usage: 2s, libraries: 2s, canary: 2s}\n"
        f"targets:\n  - name: healthy\n    url: {json.dumps(healthy.url)}\n"
        f"  - name: {json.dumps(BAD)}\n    url: {json.dumps(failing.url)}\n"
        "    expect:\n      languages: {java: '>=17'}\n" + CANARY_4 + "  - name: refusing\n"
        f"    url: {json.dumps(refusing.url)}\n"
        "    canaries:\n      - {name: shell, commands: ['echo 4'], expect_stdout: '4'}\n"
    )
    running = ExporterProcess("-c", str(config), "--history.limit", "12")
    yield running
    code, _, stderr = running.terminate()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_the_pages_in_a_real_browser(exporter: ExporterProcess, tmp_path: Path):
    def row_strips(page: str, name: str) -> list[tuple[str, list[str]]]:
        row = next(row for row in page.split("<tr>") if f'href="target?name={name}"' in row)
        return compact_strips(row)

    def drawn() -> bool:
        page = exporter.get("").text
        return (
            "not run yet" not in visible(page)
            and "2 critical, 1 ok of 3 targets" in visible(page)
            and len(row_strips(page, "healthy")) == 4
            and len(row_strips(page, "refusing")[-1][1]) >= 2  # its canary's, the last
            # The failing canary's too: the screenshot below counts both strips'.
            and len(row_strips(page, quote(BAD, safe=""))[-1][1]) >= 2
        )

    exporter.poll(drawn)
    dom = dump_dom(exporter.url, tmp_path / "profile-landing")
    text = visible(dom)
    assert "2 critical, 1 ok of 3 targets" in text
    assert f"CRITICAL {BAD}" in text and "OK healthy" in text and "CRITICAL refusing" in text
    assert "canary failing (unexpected_output): shell: unexpected stdout '5'" in text
    assert "1 expectation missed: language java >=17 (found openjdk 11.0.7)" in text
    # The transport's own wording of a 503, trimmed to what the row lacks,
    # and what reconciles it with the usage probe.
    assert (
        "canary failing (overloaded): shell: POST /execute/ answered 503 Service Unavailable"
        in (text)
    )
    assert re.search(
        r"the sandbox refused the canary with 503 \(no free container\) although the usage "
        r"probe (\d+s earlier|\d+s later|at the same time) found 0 of 3 containers busy",
        text,
    ), text
    # Strips drawn: every probe of the healthy target, the refused canaries.
    landing_cells = painted_cells(screenshot(exporter.url, tmp_path / "shot-landing"), 98)
    assert landing_cells["ok"] >= 4 * 2 and landing_cells["fail"] >= 2 * 2, landing_cells
    tags = read(dom).tags
    assert "img" not in [tag for tag, _ in tags]  # the hostile name stayed text
    link = next(attrs["href"] for tag, attrs in tags if tag == "a" and "bad" in str(attrs))
    assert link == "target?name=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3Ebad"

    debug = exporter.get("probe", params={"target": BAD, "debug": "true"})
    assert debug.status_code == 200 and "FAILED (unexpected_output)" in debug.text
    exporter.poll(lambda: "Last 12 probe results" in visible(exporter.get(link).text))
    dom = dump_dom(exporter.url + link, tmp_path / "profile-target")
    text = visible(dom)
    assert f"CRITICAL {BAD}" in text
    assert "Last 12 probe results, newest first" in text  # --history.limit reached the state
    history = table_with(dom, "time", "probe", "duration", "outcome", "message")[1:]
    counts = [int(m[1]) if (m := re.match(TIMES + r"(\d+) ", row[0])) else 1 for row in history]
    assert sum(counts) == 12 and len(history) < 12  # its repeated results are one row each
    assert f"Probes of target {BAD} (budget 10.0s):" in text  # the last /probe?debug=true
    assert "canary: FAILED (unexpected_output)" in text
    # Its page draws each probe's last results: the failing canary's in red.
    target_cells = painted_cells(screenshot(exporter.url + link, tmp_path / "shot-target"), 200)
    assert target_cells["fail"] >= 1 and target_cells["ok"] + target_cells["warn"] >= 1


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
