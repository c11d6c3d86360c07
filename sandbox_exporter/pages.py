"""The HTML pages an operator reads: the landing page and a page per target.

Pure functions, state in and HTML out, no I/O: the web layer fetches the
state and serves the text. Each problem is written out as plainly and as
specifically as `--once` reports it (the judgement is `health.judge`), never
only in a tooltip, and the pages work without JavaScript. Everything shown
comes from configs and servers, so every piece of text is escaped, and URLs
lose any userinfo before they are shown.
"""

from __future__ import annotations

import time
from html import escape
from urllib.parse import quote, urlsplit, urlunsplit

from . import __version__
from .config import Target
from .health import Problem, Status, TargetVerdict, healthy_summary, judge, probe_outcome
from .probes import CanaryResult, LibrariesReport, ProbeResult
from .state import Snapshot, TargetHistory
from .vocabulary import CANARY, LIBRARIES, PROBES, USAGE

#: The interval the "turn on" link offers.
DEFAULT_REFRESH_SECONDS = 10
_MAX_REFRESH_SECONDS = 3600

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


def landing(snapshot: Snapshot, *, now: float | None = None, refresh: int | None = None) -> str:
    """Every target, worst first, with each of its problems written out."""
    now = time.time() if now is None else now
    targets = list(snapshot.config.targets) if snapshot.config else []
    verdicts = [(target, _verdict(snapshot, target)) for target in targets]
    # Worst first; never probed sorts between OK and WARNING: unknown, but nothing wrong seen.
    verdicts.sort(key=lambda pair: -(pair[1].status if pair[1].results else 0.5))
    rows = [_landing_row(snapshot, target, verdict, now, refresh) for target, verdict in verdicts]
    rows = rows or [f'<tr><td colspan="{4 + len(PROBES)}">no targets configured</td></tr>']
    table = _table(("status", "target", "problems", *PROBES, ""), "\n".join(rows))
    body = (
        "<h1>Sandbox Exporter</h1>\n"
        + _reload_line(snapshot)
        + f'<p class="bar"><a href="metrics">Metrics</a> · <a href="-/healthy">Health</a> · '
        f'<a href="-/ready">Readiness</a> · {_refresh_control("./", refresh, "?")}</p>\n'
        + f"<h2>{escape(_summary([v for _, v in verdicts]))}</h2>\n"
        + table
        + f'\n<p class="muted">Page made at {_clock(now, now)}. Probe columns: the last result'
        ' of each probe and its age. A problem\'s "since" is the first result in that'
        " condition that this exporter saw since it started.</p>"
    )
    return _page("Sandbox Exporter", body, refresh)


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
        _problems(snapshot, target.name, verdict, now) or '<p class="ok">none</p>',
        "<h2>Last result of each probe</h2>",
        _latest_table(snapshot, target.name, now),
        _canaries(verdict.results.get(CANARY)),
        _expectations(verdict.results.get(LIBRARIES)),
        _history(history, now),
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
    return f"{', '.join(parts)} of {len(verdicts)} target{'s' * (len(verdicts) > 1)}"


def _landing_row(
    snapshot: Snapshot, target: Target, verdict: TargetVerdict, now: float, refresh: int | None
) -> str:
    name = target.name
    if not verdict.results:
        problems = '<span class="pending">no probe has run yet</span>'
    elif verdict.problems:
        problems = _problems(snapshot, name, verdict, now)
    else:
        problems = f'<span class="ok">{escape(healthy_summary(verdict) or "ok")}</span>'
    cells = []
    for probe in PROBES:
        result = verdict.results.get(probe)
        if result is None:
            cells.append('<td class="pending">not run yet</td>')
            continue
        outcome = probe_outcome(result)
        # The missed expectations are spelt out under "problems"; here a word.
        label = outcome if outcome == "ok" or not result.success else "missed"
        cells.append(
            f'<td class="{_outcome_css(result.success, outcome)}">{escape(label)} '
            f"<small>{_ago(now - result.started_at)} ago</small></td>"
        )
    return (
        f"<tr><td>{_badge(verdict)}</td>"
        f'<td><a href="{escape(target_link(name, refresh))}">{escape(name)}</a><br>'
        f"<small>{escape(shown_url(target.url))}</small></td>"
        f"<td>{problems}</td>{''.join(cells)}"
        f"<td>{probe_now_form(name, refresh, label='probe now')}</td></tr>"
    )


def _problems(snapshot: Snapshot, name: str, verdict: TargetVerdict, now: float) -> str:
    if not verdict.problems:
        return ""
    items = "".join(
        f'<li class="{_css(p.status)}">{escape(p.summary)}'
        + (f': <span class="detail">{escape(p.detail)}</span>' if p.detail else "")
        + f"{_since(snapshot, name, p, now)}</li>"
        for p in verdict.problems
    )
    return f'<ul class="problems">{items}</ul>'


def _since(snapshot: Snapshot, name: str, problem: Problem, now: float) -> str:
    result = snapshot.result(name, problem.probe)
    if result is None:
        return ""
    if problem.probe == USAGE and result.success:
        # A load is a measurement, not a condition that starts and ends.
        return f" <small>— measured {_ago(now - result.started_at)} ago</small>"
    since = snapshot.since.get((name, problem.probe))
    return "" if since is None else f" <small>— since {_clock(since, now)}</small>"


def _latest_table(snapshot: Snapshot, name: str, now: float) -> str:
    rows = []
    for probe in PROBES:
        result = snapshot.result(name, probe)
        if result is None:
            rows.append(
                f'<tr><td>{escape(probe)}</td><td class="pending" colspan="4">not run yet</td></tr>'
            )
            continue
        since = snapshot.since.get((name, probe))
        outcome = probe_outcome(result)
        rows.append(
            f"<tr><td>{escape(probe)}</td>"
            f'<td class="{_outcome_css(result.success, outcome)}">{escape(outcome)}'
            + (f"<br><small>since {_clock(since, now)}</small>" if since is not None else "")
            + f'</td><td class="t">{_clock(result.started_at, now)}</td>'
            f"<td>{result.duration_seconds:.3f}s</td><td>{escape(result.message)}</td></tr>"
        )
    return _table(("probe", "outcome", "time", "duration", "message"), "".join(rows))


def _canaries(result: ProbeResult | None) -> str:
    if result is None or not isinstance(result.data, tuple) or not result.data:
        return ""
    rows = "".join(_canary_row(c) for c in result.data if isinstance(c, CanaryResult))
    headers = ("canary", "outcome", "round trip", "server time", "status", "message")
    return "<h2>Canaries (last run)</h2>" + _table(headers, rows)


def _canary_row(canary: CanaryResult) -> str:
    outcome = "ok" if canary.success else canary.reason.value if canary.reason else "failed"
    return (
        f"<tr><td>{escape(canary.name)}</td>"
        f'<td class="{_outcome_css(canary.success, outcome)}">{escape(outcome)}</td>'
        f"<td>{_seconds(canary.round_trip_seconds)}</td><td>{_seconds(canary.server_seconds)}</td>"
        f"<td>{'' if canary.status is None else canary.status}</td>"
        f"<td>{escape(canary.message)}</td></tr>"
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


def _history(history: TargetHistory, now: float) -> str:
    if not history.limit:
        return "<h2>History</h2><p>Not kept (<code>--history.limit=0</code>).</p>"
    title = (
        f"<h2>Last {len(history.entries)} probe results, newest first</h2>"
        f'<p class="muted">Up to {history.limit} are kept (<code>--history.limit</code>).</p>'
    )
    if not history.entries:
        return title + "<p>No probe has run yet.</p>"
    # Appended as they finished; a long probe can finish after a later one
    # started, so order by start time (stable for equal times).
    newest_first = sorted(history.entries, key=lambda e: e.started_at, reverse=True)
    rows = "".join(
        f'<tr><td class="t">{_clock(e.started_at, now)}</td><td>{escape(e.probe)}</td>'
        f"<td>{e.duration_seconds:.3f}s</td>"
        f'<td class="{_outcome_css(e.success, e.outcome)}">{escape(e.outcome)}</td>'
        f"<td>{escape(e.message)}</td></tr>"
        for e in newest_first
    )
    return title + _table(("time", "probe", "duration", "outcome", "message"), rows)


def _debug(history: TargetHistory, run_button: str, now: float) -> str:
    run = f"{run_button} (probes the target)"
    if history.debug is None:
        return f"<p>None since the exporter started; {run}.</p>"
    at = _clock(history.debug.at, now)
    return f"<p>At {at}; {run}.</p><pre>{escape(history.debug.text)}</pre>"


def _page(title: str, body: str, refresh: int | None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
        f'<p class="muted">sandbox-exporter {escape(__version__)}</p>\n</body></html>\n'
    )


def _table(headers: tuple[str, ...], rows: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


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


def _clock(timestamp: float, now: float) -> str:
    """UTC wall time, with the date when it is not today's, and how long ago."""
    moment = time.gmtime(timestamp)
    shown = time.strftime(
        "%H:%M:%S" if moment[:3] == time.gmtime(now)[:3] else "%Y-%m-%d %H:%M:%S", moment
    )
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)
    return f'<time datetime="{iso}">{shown} UTC</time> ({_ago(now - timestamp)} ago)'


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
