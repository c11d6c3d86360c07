"""The HTML pages an operator reads: the landing page and a page per target.

Pure functions, state in and HTML out, no I/O: the web layer fetches the
state and serves the text (the landing page's in pieces, as they are
written). Each problem is written out as plainly and as specifically as
`--once` reports it (the judgement is `health.judge`), never only in a
tooltip; a message loses only what its row already shows
(`digest.trim_message`), its whole text on hover. The pages work without
JavaScript and under a Content-Security-Policy of `default-src 'none'`: the
strips and sparklines are inline SVG (`charts`). Everything shown comes from
configs and servers, so every piece of text is escaped, and URLs lose any
userinfo before they are shown.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from html import escape
from operator import attrgetter
from urllib.parse import quote, urlsplit, urlunsplit

from . import __version__, charts
from .collector import CHUNK_CHARACTERS
from .config import Target
from .digest import Run, collapse, trim_message
from .health import Problem, Status, TargetVerdict, healthy_summary, judge, probe_outcome
from .probes import CanaryResult, LibrariesReport, ProbeResult
from .state import HistoryEntry, Snapshot, TargetHistory
from .vocabulary import CANARY, LIBRARIES, PROBES, USAGE, counted

#: The interval the "turn on" link offers.
DEFAULT_REFRESH_SECONDS = 10
_MAX_REFRESH_SECONDS = 3600
#: Results per probe drawn in a target page's strips and sparklines, and in
#: the landing page's smaller strips.
STRIP_LENGTH = 40
LANDING_STRIP_LENGTH = 12
# A tooltip quotes a message this long at most: a page with hundreds of
# cells stays small.
_TOOLTIP_MESSAGE = 160

#: Where the "probe now" buttons post (relative, as every link here), and
#: their fields: the target's name, and the refresh the page it returns to keeps.
PROBE_NOW_ACTION = "probe-now"
PROBE_NOW_TARGET = "target"
PROBE_NOW_REFRESH = "refresh"
_PROBE_NOW_FORM = "probe-now"  # the id of the target page's form

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:90em}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.5em 0 .4em}
table{border-collapse:collapse}td,th{padding:.35em .6em;text-align:left;vertical-align:top;
border-bottom:1px solid #d0d7de}th{font-weight:600}th,pre{background:#f6f8fa}
a{color:#0969da}small,.muted,.pending{color:#59636e}small,.detail{font-weight:normal}
.ok{color:#1a7f37}.warn{color:#9a6700}.fail{color:#cf222e}.warn,.fail{font-weight:600}
td.t{white-space:nowrap}ul.problems{margin:0;padding-left:1.1em}ul.problems li{margin:.1em 0}
.badge{display:inline-block;padding:.1em .5em;border-radius:.3em;font-weight:700;color:#fff;
font-size:.85em}.b-OK{background:#1a7f37}.b-WARNING{background:#9a6700}
.b-CRITICAL{background:#cf222e}.b-UNKNOWN,.b-PENDING{background:#6e7781}
pre{padding:.8em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}.bar{margin:.3em 0}
.note{display:block;color:#1f2328;font-weight:normal;margin-top:.15em}
span[title]{text-decoration:underline dotted #8c959f}svg.strip{display:block;margin-top:.25em}
td.chart{padding-top:.5em}
form.now{display:inline;margin:0}.now button,button.now{font:inherit;color:#0969da;border:0;
background:none;padding:0;text-decoration:underline;cursor:pointer}
"""


def parse_refresh(value: str | None) -> int | None:
    """`?refresh=N` as a number of seconds, or None (off) for anything else."""
    if value is None or not value.isdigit():
        return None
    seconds = int(value)
    return seconds if 0 < seconds <= _MAX_REFRESH_SECONDS else None


def target_link(name: str, refresh: int | None = None) -> str:
    """The target page's address, relative to the landing page."""
    return "target?name=" + quote(name, safe="") + _refresh_query(refresh, "&")


def landing(
    snapshot: Snapshot,
    *,
    history: Callable[[str], TargetHistory | None] | None = None,
    now: float | None = None,
    refresh: int | None = None,
) -> str:
    """The landing page whole: `landing_pieces` joined."""
    return "".join(landing_pieces(snapshot, history=history, now=now, refresh=refresh))


def landing_pieces(
    snapshot: Snapshot,
    *,
    history: Callable[[str], TargetHistory | None] | None = None,
    now: float | None = None,
    refresh: int | None = None,
    chunk_characters: int = CHUNK_CHARACTERS,
) -> Iterator[str]:
    """Every target, worst first, with each of its problems written out and,
    given `history` (a target's name -> its history), a strip of each probe's
    last results; in pieces: the head and summary, the rows about
    `chunk_characters` at a time, the footer.

    Only the verdicts are made up front: the order and the summary need them
    all. A row, and the history its strips draw, is made when its piece is,
    so what is in hand is a piece, not the whole page (`web.Routes.landing`
    sends each as it comes): at 1,000 targets the page is 1-2 MB. A history
    read after the snapshot may hold a result newer than the row's cells."""
    now = time.time() if now is None else now
    targets = list(snapshot.config.targets) if snapshot.config else []
    verdicts = [(target, _verdict(snapshot, target)) for target in targets]
    # Worst first; never probed sorts between OK and WARNING: unknown, but nothing wrong seen.
    verdicts.sort(key=lambda pair: -(pair[1].status if pair[1].results else 0.5))
    top, bottom = _page_frame("Sandbox Exporter", refresh)
    table_top, table_bottom = _table_frame(("status", "target", "problems", *PROBES, ""))
    yield (
        top
        + "<h1>Sandbox Exporter</h1>\n"
        + _reload_line(snapshot)
        + f'<p class="bar"><a href="metrics">Metrics</a> · <a href="-/healthy">Health</a> · '
        f'<a href="-/ready">Readiness</a> · {_refresh_control("./", refresh, "?")}</p>\n'
        + f"<h2>{escape(_summary([v for _, v in verdicts]))}</h2>\n"
        + table_top
    )
    if not verdicts:
        yield f'<tr><td colspan="{4 + len(PROBES)}">no targets configured</td></tr>'
    rows: list[str] = []
    size = 0
    for index, (target, verdict) in enumerate(verdicts):
        kept = history(target.name) if history else None
        row = _landing_row(snapshot, target, verdict, kept, now, refresh)
        # One row a line: a newline before each but the first.
        row = f"\n{row}" if index else row
        rows.append(row)
        size += len(row)
        if size >= chunk_characters:
            yield "".join(rows)
            rows, size = [], 0
    if rows:
        yield "".join(rows)
    yield (
        table_bottom
        + f'\n<p class="muted">Page made at {_clock(now, now)}. Probe columns: the last result'
        f" of each probe, its age and a strip of its last {LANDING_STRIP_LENGTH} results (oldest"
        " left, counted on hover; the target's page has each one's time and message). A"
        ' problem\'s "since" is when this'
        ' exporter saw it begin; "since at least" when it was already so at this exporter\'s'
        " first probe of it, so it began earlier.</p>" + bottom
    )


def target_page(
    snapshot: Snapshot,
    target: Target,
    history: TargetHistory,
    *,
    now: float | None = None,
    refresh: int | None = None,
) -> str:
    """One target: its problems, the last result of each probe, its recent
    history (newest first) and what its last `/probe?debug=true` showed."""
    now = time.time() if now is None else now
    verdict = _verdict(snapshot, target)
    back = "./" + _refresh_query(refresh, "?")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(target.labels.items()))
    parts = [
        f'<p class="bar"><a href="{escape(back)}">← all targets</a></p>',
        f"<h1>{_badge(verdict)} {escape(target.name)}</h1>",
        f"<p>{escape(shown_url(target.url))}"
        + (f" · labels: {escape(labels)}" if labels else "")
        + f" · {_probe_now_button('probe now (debug)')} · "
        + _refresh_control(target_link(target.name), refresh, "&")
        + "</p>",
        "<h2>Problems</h2>",
        _problems(snapshot, target, verdict, now) or '<p class="ok">none</p>',
        _recent(history, target, now),
        "<h2>Last result of each probe</h2>",
        _latest_table(snapshot, target, now),
        _canaries(verdict.results.get(CANARY), target),
        _expectations(verdict.results.get(LIBRARIES)),
        _history(history, target, now),
        "<h2>Last /probe?debug=true</h2>",
        _debug(history, _probe_now_button("run one now"), now),
        probe_now_form(target.name, refresh, form_id=_PROBE_NOW_FORM),
        f'<p class="muted">Page made at {_clock(now, now)}.</p>',
    ]
    return _page(f"{target.name} · Sandbox Exporter", "\n".join(p for p in parts if p), refresh)


def probe_now_form(name: str, refresh: int | None, *, label: str = "", form_id: str = "") -> str:
    """A form that probes target `name` now, as `/probe?debug=true` does, and
    shows the report on its page: with its button (`label`), or empty, with an
    `id` for buttons elsewhere (a form may not sit inside a <p>). It POSTs,
    never a link: a plain GET (a prefetch, a crawler, another site's <img>)
    must not start probes."""
    fields = f'<input type="hidden" name="{PROBE_NOW_TARGET}" value="{escape(name)}">'
    if refresh:
        fields += f'<input type="hidden" name="{PROBE_NOW_REFRESH}" value="{refresh}">'
    button = f'<button type="submit">{escape(label)}</button>' if label else ""
    ident = f' id="{escape(form_id)}"' if form_id else ""
    action = f'method="post" action="{PROBE_NOW_ACTION}"'
    return f'<form{ident} class="now" {action}>{fields}{button}</form>'


def _probe_now_button(label: str) -> str:
    return f'<button class="now" type="submit" form="{_PROBE_NOW_FORM}">{escape(label)}</button>'


def shown_url(url: str) -> str:
    """`url` without any user:password@ part, which must never reach a page."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _verdict(snapshot: Snapshot, target: Target) -> TargetVerdict:
    results = {
        probe: result
        for probe in PROBES
        if (result := snapshot.result(target.name, probe)) is not None
    }
    return judge(target, results)


def _badge(verdict: TargetVerdict) -> str:
    if not verdict.results:
        return '<span class="badge b-PENDING">NOT PROBED YET</span>'
    word = verdict.status.name
    return f'<span class="badge b-{word}">{word}</span>'


def _summary(verdicts: list[TargetVerdict]) -> str:
    if not verdicts:
        return "No targets"
    probed = [v for v in verdicts if v.results]
    counts = {s: sum(1 for v in probed if v.status == s) for s in Status}
    parts = [f"{counts[s]} {s.name.lower()}" for s in sorted(Status, reverse=True) if counts[s]]
    pending = len(verdicts) - len(probed)
    if pending:
        parts.append(f"{pending} not probed yet")
    return f"{', '.join(parts)} of {counted(len(verdicts), 'target')}"


def _landing_row(
    snapshot: Snapshot,
    target: Target,
    verdict: TargetVerdict,
    history: TargetHistory | None,
    now: float,
    refresh: int | None,
) -> str:
    name = target.name
    if not verdict.results:
        problems = '<span class="pending">no probe has run yet</span>'
    elif verdict.problems:
        problems = _problems(snapshot, target, verdict, now)
    else:
        problems = f'<span class="ok">{_message(healthy_summary(verdict) or "ok", target)}</span>'
    entries = _by_probe(history.entries if history else (), LANDING_STRIP_LENGTH)
    cells = []
    for probe in PROBES:
        result = verdict.results.get(probe)
        if result is None:
            cells.append('<td class="pending">not run yet</td>')
            continue
        outcome = probe_outcome(result)
        # The missed expectations are spelt out under "problems"; here a word.
        label = outcome if outcome == "ok" or not result.success else "missed"
        recent = entries.get(probe)
        strip = ""
        if recent:
            kinds = [_outcome_css(e.success, e.outcome) for e in recent]
            strip = charts.compact_strip(kinds, f"{probe}: {_tally(recent)}")
        cells.append(
            f'<td class="{_outcome_css(result.success, outcome)}">{escape(label)} '
            f"<small>{_ago(now - result.started_at)} ago</small>{strip}</td>"
        )
    return (
        f"<tr><td>{_badge(verdict)}</td>"
        f'<td><a href="{escape(target_link(name, refresh))}">{escape(name)}</a><br>'
        f"<small>{escape(shown_url(target.url))}</small></td>"
        f"<td>{problems}</td>{''.join(cells)}"
        f"<td>{probe_now_form(name, refresh, label='probe now')}</td></tr>"
    )


def _problems(snapshot: Snapshot, target: Target, verdict: TargetVerdict, now: float) -> str:
    if not verdict.problems:
        return ""
    items = "".join(
        f'<li class="{_css(p.status)}">{escape(p.summary)}'
        + (f': <span class="detail">{_message(p.detail, target)}</span>' if p.detail else "")
        + f"{_problem_since(snapshot, target.name, p, now)}"
        + (f'<span class="note">{escape(p.note)}</span>' if p.note else "")
        + "</li>"
        for p in verdict.problems
    )
    return f'<ul class="problems">{items}</ul>'


def _problem_since(snapshot: Snapshot, name: str, problem: Problem, now: float) -> str:
    result = snapshot.result(name, problem.probe)
    if result is None:
        return ""
    if problem.probe == USAGE and result.success:
        # A load is a measurement, not a condition that starts and ends.
        return f" <small>— measured {_ago(now - result.started_at)} ago</small>"
    since = _since(snapshot, name, problem.probe, now)
    return f" <small>— {since}</small>" if since else ""


def _since(snapshot: Snapshot, name: str, probe: str, now: float) -> str:
    """Since when the probe's condition holds, as far as this exporter knows:
    a condition already there at its first result began at an unknown time."""
    since = snapshot.since.get((name, probe))
    if since is None:
        return ""
    if (name, probe) in snapshot.since_first_result:
        return f"since at least {_clock(since, now)}, this exporter's first probe"
    return f"since {_clock(since, now)}"


def _latest_table(snapshot: Snapshot, target: Target, now: float) -> str:
    rows = []
    for probe in PROBES:
        result = snapshot.result(target.name, probe)
        if result is None:
            rows.append(
                f'<tr><td>{escape(probe)}</td><td class="pending" colspan="4">not run yet</td></tr>'
            )
            continue
        since = _since(snapshot, target.name, probe, now)
        outcome = probe_outcome(result)
        rows.append(
            f"<tr><td>{escape(probe)}</td>"
            f'<td class="{_outcome_css(result.success, outcome)}">{escape(outcome)}'
            + (f"<br><small>{since}</small>" if since else "")
            + f'</td><td class="t">{_clock(result.started_at, now)}</td>'
            f"<td>{result.duration_seconds:.3f}s</td>"
            f"<td>{_message(result.message, target)}</td></tr>"
        )
    return _table(("probe", "outcome", "time", "duration", "message"), "".join(rows))


def _recent(history: TargetHistory, target: Target, now: float) -> str:
    """A strip of each probe's last results and a sparkline of each canary's
    round trips: how often, and since when, at a glance."""
    entries = _by_probe(history.entries, STRIP_LENGTH)
    if not entries:
        return ""
    rows = []
    for probe in PROBES:
        recent = entries.get(probe)
        if recent:
            strip = _strip(probe, recent, target, now)
            rows.append(
                f'<tr><td>{escape(probe)}</td><td class="chart">{strip}</td>'
                f"<td>{escape(_tally(recent))}</td></tr>"
            )
    section = (
        f"<h2>Recent results</h2>"
        f'<p class="muted">Up to {STRIP_LENGTH} per probe, oldest left; hover a cell for its '
        "time and message.</p>" + _table(("probe", "results", "how often"), "".join(rows))
    )
    canaries = [c.name for c in target.canaries]
    runs = entries.get(CANARY, [])
    lines = "".join(_sparkline_row(name, runs) for name in canaries)
    if lines:
        section += (
            f"<h2>Canary round trips</h2>"
            f'<p class="muted">The last {len(runs)} canary runs, oldest left; a red tick is a '
            "run that measured no round trip (refused, timed out, unreachable).</p>"
            + _table(("canary", "round trip", "last, lowest, highest"), lines)
        )
    return section


def _sparkline_row(name: str, runs: Sequence[HistoryEntry]) -> str:
    values = [dict(e.round_trips)[name] for e in runs if name in dict(e.round_trips)]
    if not values:
        return ""
    measured = [v for v in values if v is not None]
    unanswered = len(values) - len(measured)
    if measured:
        numbers = (
            f"last {_seconds(values[-1]) or 'not measured'}, lowest {_seconds(min(measured))}, "
            f"highest {_seconds(max(measured))}"
        )
    else:
        numbers = "no round trip measured"
    if unanswered:
        numbers += f"; {unanswered} of {len(values)} runs without one"
    label = f"round trips of canary {name}: {numbers}"
    return (
        f'<tr><td>{escape(name)}</td><td class="chart">{charts.sparkline(values, label)}</td>'
        f"<td>{escape(numbers)}</td></tr>"
    )


def _by_probe(entries: Sequence[HistoryEntry], last: int) -> dict[str, list[HistoryEntry]]:
    """Each probe's `last` entries, oldest first."""
    grouped: dict[str, list[HistoryEntry]] = {}
    # Entries are kept in the order they finished, which is nearly the order
    # they started (a `/probe` run can overlap a scheduled one): the newest
    # are at the end, and only the few kept need sorting.
    full = 0
    for entry in reversed(entries):
        recent = grouped.setdefault(entry.probe, [])
        if len(recent) < last:
            recent.append(entry)
            full += len(recent) == last
            if full == len(PROBES):
                break
    for recent in grouped.values():
        recent.sort(key=attrgetter("started_at"))
    return grouped


def _strip(
    probe: str,
    entries: Sequence[HistoryEntry],
    target: Target,
    now: float,
    *,
    size: int = 10,
    gap: int = 2,
) -> str:
    url = shown_url(target.url)
    cells = [
        charts.Cell(
            _outcome_css(e.success, e.outcome),
            f"{_wall(e.started_at, now)} UTC: {e.outcome}"
            + (f" — {_cut(trim_message(e.message, url), _TOOLTIP_MESSAGE)}" if e.message else ""),
        )
        for e in entries
    ]
    return charts.strip(cells, f"{probe}: {_tally(entries)}", size=size, gap=gap)


def _tally(entries: Sequence[HistoryEntry]) -> str:
    """E.g. "12 results in 1m 0s: 10 ok, 2 overloaded", "6 results in 50s: all ok"."""
    counts = Counter(e.outcome for e in entries)
    span = entries[-1].started_at - entries[0].started_at
    within = f" in {_ago(span)}" if len(entries) > 1 else ""

    def named(outcome: str) -> str:
        # An outcome can start with its own number: "2 with 1 expectation missed".
        return f"with {outcome}" if outcome[0].isdigit() else outcome

    if len(entries) == 1:
        parts = entries[0].outcome
    elif len(counts) == 1:
        parts = f"all {named(entries[0].outcome)}"
    else:
        parts = ", ".join(f"{n} {named(outcome)}" for outcome, n in counts.most_common())
    return f"{counted(len(entries), 'result')}{within}: {parts}"


def _canaries(result: ProbeResult | None, target: Target) -> str:
    if result is None or not isinstance(result.data, tuple) or not result.data:
        return ""
    rows = "".join(_canary_row(c, target) for c in result.data if isinstance(c, CanaryResult))
    headers = ("canary", "outcome", "round trip", "server time", "status", "message")
    return "<h2>Canaries (last run)</h2>" + _table(headers, rows)


def _canary_row(canary: CanaryResult, target: Target) -> str:
    outcome = "ok" if canary.success else canary.reason.value if canary.reason else "failed"
    return (
        f"<tr><td>{escape(canary.name)}</td>"
        f'<td class="{_outcome_css(canary.success, outcome)}">{escape(outcome)}</td>'
        f"<td>{_seconds(canary.round_trip_seconds)}</td><td>{_seconds(canary.server_seconds)}</td>"
        f"<td>{'' if canary.status is None else canary.status}</td>"
        f"<td>{_message(canary.message, target)}</td></tr>"
    )


def _expectations(result: ProbeResult | None) -> str:
    if result is None or not isinstance(result.data, LibrariesReport) or not result.data.outcomes:
        return ""
    rows = "".join(
        f"<tr><td>{escape(o.kind)}</td><td>{escape(o.name)}</td><td>{escape(o.expected)}</td>"
        f"<td>{escape(o.found or 'nothing')}</td>"
        f'<td class="{"ok" if o.met else "warn"}">{"met" if o.met else "MISSED"}</td></tr>'
        for o in result.data.outcomes
    )
    headers = ("kind", "name", "expected", "found", "")
    return "<h2>Expectations (last libraries probe)</h2>" + _table(headers, rows)


def _history(history: TargetHistory, target: Target, now: float) -> str:
    if not history.limit:
        return "<h2>History</h2><p>Not kept (<code>--history.limit=0</code>).</p>"
    title = (
        f"<h2>Last {len(history.entries)} probe results, newest first</h2>"
        f'<p class="muted">Up to {history.limit} are kept (<code>--history.limit</code>). '
        "A probe's repeated result (same outcome and message) is one row: &times;count,"
        " first&ndash;last time.</p>"
    )
    if not history.entries:
        return title + "<p>No probe has run yet.</p>"
    rows = "".join(_history_row(run, target, now) for run in collapse(history.entries))
    return title + _table(("time", "probe", "duration", "outcome", "message"), rows)


def _history_row(run: Run, target: Target, now: float) -> str:
    if run.count == 1:
        when = _clock(run.last_at, now)
    else:
        when = f"<b>&times;{run.count}</b> {_span(run.first_at, run.last_at, now)}"
    duration = f"{run.shortest:.3f}s"
    if f"{run.longest:.3f}" != f"{run.shortest:.3f}":
        duration = f"{run.shortest:.3f}&ndash;{run.longest:.3f}s"
    return (
        f'<tr><td class="t">{when}</td><td>{escape(run.probe)}</td><td class="t">{duration}</td>'
        f'<td class="{_outcome_css(run.success, run.outcome)}">{escape(run.outcome)}</td>'
        f"<td>{_message(run.message, target)}</td></tr>"
    )


def _debug(history: TargetHistory, run_button: str, now: float) -> str:
    run = f"{run_button} (probes the target)"
    if history.debug is None:
        return f"<p>None since the exporter started; {run}.</p>"
    at = _clock(history.debug.at, now)
    return f"<p>At {at}; {run}.</p><pre>{escape(history.debug.text)}</pre>"


def _page(title: str, body: str, refresh: int | None) -> str:
    top, bottom = _page_frame(title, refresh)
    return top + body + bottom


def _page_frame(title: str, refresh: int | None) -> tuple[str, str]:
    """What comes before a page's body, and after it."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n",
        f'\n<p class="muted">sandbox-exporter {escape(__version__)}</p>\n</body></html>\n',
    )


def _table(headers: tuple[str, ...], rows: str) -> str:
    top, bottom = _table_frame(headers)
    return top + rows + bottom


def _table_frame(headers: tuple[str, ...]) -> tuple[str, str]:
    """What comes before a table's rows, and after them."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>", "</tbody></table>"


def _reload_line(snapshot: Snapshot) -> str:
    reload = snapshot.reload
    if reload.successful:
        return "<p>Configuration loaded.</p>\n"
    if reload.last_success_timestamp is None:
        return "<p>Configuration: not loaded yet.</p>\n"
    return (
        '<p class="fail">Configuration reload FAILED, running the previous one: '
        f"{escape(reload.message)}</p>\n"
    )


def _refresh_control(base: str, refresh: int | None, joiner: str) -> str:
    if refresh:
        return f'auto-refresh every {refresh}s (<a href="{escape(base)}">turn off</a>)'
    on = escape(base + _refresh_query(DEFAULT_REFRESH_SECONDS, joiner))
    return f'auto-refresh off (<a href="{on}">turn on, every {DEFAULT_REFRESH_SECONDS}s</a>)'


def _refresh_query(refresh: int | None, joiner: str) -> str:
    return f"{joiner}refresh={refresh}" if refresh else ""


def _css(status: Status) -> str:
    return {Status.OK: "ok", Status.WARNING: "warn"}.get(status, "fail")


def _outcome_css(success: bool, outcome: str) -> str:
    return "fail" if not success else "ok" if outcome == "ok" else "warn"


def _message(message: str, target: Target) -> str:
    """`message` as its row shows it: trimmed, the whole text in a tooltip."""
    short = trim_message(message, shown_url(target.url))
    if short == message:
        return escape(message)
    return f'<span title="{escape(message)}">{escape(short)}</span>'


def _clock(timestamp: float, now: float) -> str:
    """UTC wall time, with the date when it is not today's, and how long ago."""
    return f"{_time_element(timestamp, now)} UTC ({_ago(now - timestamp)} ago)"


def _span(first: float, last: float, now: float) -> str:
    """E.g. "19:34:29-19:36:59 UTC (4s ago)" (an en dash): a run's first and last times."""
    return (
        f"{_time_element(first, now)}&ndash;{_time_element(last, now)} UTC ({_ago(now - last)} ago)"
    )


def _time_element(timestamp: float, now: float) -> str:
    moment = time.gmtime(timestamp)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)
    return f'<time datetime="{iso}">{_wall(timestamp, now)}</time>'


def _wall(timestamp: float, now: float) -> str:
    """UTC wall time, with the date when it is not today's."""
    moment = time.gmtime(timestamp)
    today = moment[:3] == time.gmtime(now)[:3]
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S", moment)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes}m {seconds % 60}s" if minutes < 10 else f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h {minutes % 60}m"
    return f"{hours // 24}d {hours % 24}h"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}s"
