"""The pages in a browser that also visits other sites (docs/reliability.md,
"Security of the pages"): what every answer tells the browser, that a
request from another site changes nothing, and that no GET starts a probe.

Over real sockets on loopback against an emulator, first with plain HTTP
clients sending what browsers send, then with a real headless Chromium
(`browser.py`): its console is where a Content-Security-Policy violation
shows, and "another site" is a page served from 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from html import escape
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import aiohttp
import bcrypt
import pytest
import requests
from aiohttp import web
from browser import Browser
from harness import RunningExporter
from multidict import CIMultiDictProxy

from sandbox_emulator import Emulator
from sandbox_exporter.config import parse_config
from sandbox_exporter.exporter import Exporter
from sandbox_exporter.web import Routes, build_app
from sandbox_exporter.webconfig import parse_web_config

from helpers import scrape

# A name that would be markup if any page, form field or message failed to escape it.
HOSTILE = "<img src=x onerror=alert(1)>\"'&bad"
TARGET_PAGE = "target?name=" + quote(HOSTILE, safe="")

# The policy written out here, not imported: a weaker one in the code must fail.
POLICY = {
    "default-src": ["'none'"],
    "style-src": ["'unsafe-inline'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
}
PAGE_ONLY = ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy")


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def assert_page_headers(headers: requests.structures.CaseInsensitiveDict | dict) -> None:
    headers = requests.structures.CaseInsensitiveDict(headers)
    assert headers["Content-Type"].startswith("text/html")
    assert directives(headers["Content-Security-Policy"]) == POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"


def assert_answer_headers(headers: requests.structures.CaseInsensitiveDict) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert not headers.get("Content-Type", "").startswith("text/html")
    for name in PAGE_ONLY:
        assert name not in headers, name


def write_config(path: Path, *urls: str) -> Path:
    lines = [f"  - name: {json.dumps(HOSTILE)}\n    url: {json.dumps(urls[0])}\n"]
    lines += [f"  - name: extra{i}\n    url: {json.dumps(url)}\n" for i, url in enumerate(urls[1:])]
    path.write_text("targets:\n" + "".join(lines))
    return path


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator(api=3)


@pytest.fixture
def site(tmp_path: Path, emulator: Emulator) -> Iterator[RunningExporter]:
    """An exporter that probes only when asked: every probe run is one a request started."""
    config = write_config(tmp_path / "config.yml", emulator.url)
    with RunningExporter(config, scheduled=False) as running:
        yield running


def origin_of(site: RunningExporter) -> str:
    return site.url.rstrip("/")


def runs(site: RunningExporter) -> float:
    """How many probes of the target have run, as /metrics counts them."""
    found = scrape(site.url + "metrics").find("sandbox_probe_runs_total", target=HOSTILE)
    return sum(sample.value for sample in found)


def post_probe_now(site: RunningExporter, headers: dict[str, str] | None = None, **fields: str):
    return requests.post(
        site.url + "probe-now",
        data={"target": HOSTILE, **fields},
        headers=headers or {},
        allow_redirects=False,
        timeout=30,
    )


# ---------------------------------------------------------- headers on every answer


def test_the_pages_carry_the_policy(site: RunningExporter) -> None:
    for path in ("", "?refresh=10", TARGET_PAGE, TARGET_PAGE + "&refresh=10"):
        for method in ("GET", "HEAD"):
            response = requests.request(method, site.url + path, timeout=30)
            assert response.status_code == 200, (method, path)
            assert_page_headers(response.headers)


def test_every_other_answer_says_nosniff(site: RunningExporter) -> None:
    probe = "probe?target=" + quote(HOSTILE, safe="")
    answers = [
        ("GET", "metrics", {}, 200),
        ("GET", "metrics", {"Accept-Encoding": "gzip"}, 200),
        ("GET", "metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}, 200),
        ("GET", probe, {}, 200),
        ("GET", probe + "&debug=true", {}, 200),
        ("GET", "probe?target=nope", {}, 404),
        ("GET", "probe", {}, 400),
        ("GET", "target?name=nope", {}, 404),
        ("GET", "target", {}, 400),
        ("GET", "-/healthy", {}, 200),
        ("GET", "-/ready", {}, 200),
        ("GET", "no/such/page", {}, 404),
        ("DELETE", "metrics", {}, 405),
        ("GET", "probe-now", {}, 405),
        ("POST", "-/reload", {}, 200),
        ("POST", "-/reload", {"Origin": "http://evil.example"}, 403),
        ("POST", "probe-now", {"Sec-Fetch-Site": "cross-site"}, 403),
    ]
    for method, path, headers, status in answers:
        response = requests.request(method, site.url + path, headers=headers, timeout=30)
        assert response.status_code == status, (method, path, response.text)
        assert_answer_headers(response.headers)
    redirect = post_probe_now(site)
    assert redirect.status_code == 303
    assert_answer_headers(redirect.headers)
    # An error aiohttp raises itself, past our handlers: a form over the body limit.
    too_big = post_probe_now(site, padding="x" * 70_000)
    assert too_big.status_code == 413
    assert_answer_headers(too_big.headers)


def test_streamed_answers_carry_the_headers_too() -> None:
    # Headers are set as an answer is prepared, so an answer written in
    # pieces (its headers gone out before the handler returns) has them too.
    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "text/html"
        await response.prepare(request)
        await response.write(b"<!DOCTYPE html><title>in pieces</title>")
        return response

    async def fetch() -> CIMultiDictProxy[str]:
        routes = Routes(Exporter(parse_config("targets: []"), scheduled=False))
        app = build_app(routes)
        app.router.add_get("/streamed", streamed)
        runner = web.AppRunner(app)
        await runner.setup()
        listener = web.TCPSite(runner, "127.0.0.1", 0)
        await listener.start()
        try:
            port = runner.addresses[0][1]
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/streamed") as answer,
            ):
                assert answer.status == 200 and "chunked" in answer.headers["Transfer-Encoding"]
                return answer.headers
        finally:
            await runner.cleanup()
            routes.renderer.shutdown()

    assert_page_headers(dict(asyncio.run(fetch())))


def test_refusals_of_basic_auth_say_nosniff_and_come_after_the_origin_check(
    tmp_path: Path, emulator: Emulator
) -> None:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
    web_config = parse_web_config(f"basic_auth_users: {{prometheus: '{hashed}'}}\n")
    config = write_config(tmp_path / "config.yml", emulator.url)
    with RunningExporter(config, scheduled=False, web_config=web_config) as running:
        refused = requests.get(running.url, timeout=30)
        assert refused.status_code == 401
        assert_answer_headers(refused.headers)
        auth = ("prometheus", "secret")
        page = requests.get(running.url, auth=auth, timeout=30)
        assert page.status_code == 200
        assert_page_headers(page.headers)
        # Credentials cached in the browser are exactly what another site
        # would borrow: they do not make its request acceptable.
        evil = {"Origin": "http://evil.example"}
        forged = requests.post(running.url + "-/reload", auth=auth, headers=evil, timeout=30)
        assert forged.status_code == 403 and "evil.example" in forged.text
        assert requests.post(running.url + "-/reload", auth=auth, timeout=30).status_code == 200


# ------------------------------------------------- requests that change something


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # a sandboxed frame, a privacy-stripped origin
        {"Origin": "http://127.0.0.1:1"},  # the same host, another port: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # e.g. Grafana on the same host
        # The browser's own word wins over an Origin that a proxy could have matched.
        {"Sec-Fetch-Site": "cross-site", "Origin": "SELF"},
    ],
    ids=["other-origin", "null-origin", "other-port", "cross-site", "same-site", "fetch-wins"],
)
def test_a_post_from_another_site_is_refused_and_changes_nothing(
    site: RunningExporter, tmp_path: Path, emulator: Emulator, headers: dict[str, str]
) -> None:
    headers = {k: v.replace("SELF", origin_of(site)) for k, v in headers.items()}
    refused = post_probe_now(site, headers)
    assert refused.status_code == 403
    assert refused.text.startswith("POST refused: ")
    assert "only this server's own pages may change anything here" in refused.text
    shown = headers.get("Sec-Fetch-Site") or headers["Origin"]
    assert repr(shown) in refused.text  # says which header made it foreign
    assert runs(site) == 0

    # A new target in the file: a reload that went through would show it.
    assert site.config_path is not None
    write_config(site.config_path, emulator.url, emulator.url)
    for method in ("POST", "PUT"):
        reload = requests.request(method, site.url + "-/reload", headers=headers, timeout=30)
        assert reload.status_code == 403, reload.text
        assert reload.text.startswith(f"{method} refused: ")
    assert "extra0" not in requests.get(site.url, timeout=30).text


def test_a_post_from_the_pages_themselves_is_accepted(site: RunningExporter) -> None:
    own = origin_of(site)
    # A browser without Sec-Fetch-Site (before 2023 in Safari) sends Origin only.
    accepted = post_probe_now(site, {"Origin": own})
    assert accepted.status_code == 303, accepted.text
    assert runs(site) > 0
    for headers in (
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},
        {"Origin": own.upper().replace("HTTP://", "http://"), "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
    ):
        assert post_probe_now(site, headers).status_code == 303, headers


def test_reload_without_origin_works_as_from_curl(site: RunningExporter, emulator: Emulator):
    assert site.config_path is not None
    write_config(site.config_path, emulator.url, emulator.url)
    # What `curl -X POST http://host:9929/-/reload` sends: no Origin, no Sec-Fetch-*.
    answer = requests.post(site.url + "-/reload", headers={"User-Agent": "curl/8.5.0"}, timeout=30)
    assert answer.status_code == 200 and answer.text == "config reloaded\n"
    assert "extra0" in requests.get(site.url, timeout=30).text
    assert requests.put(site.url + "-/reload", timeout=30).status_code == 200


# ------------------------------------------------------ probe now is a POST, only


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[dict[str, str | None]] = []
        self.fields: list[dict[str, str | None]] = []
        self.buttons: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a":
            self.links.append(found.get("href") or "")
        elif tag == "form":
            self.forms.append(found)
        elif tag == "input":
            self.fields.append(found)
        elif tag == "button":
            self.buttons.append(found)


def forms_of(page: str) -> _Forms:
    parser = _Forms()
    parser.feed(page)
    parser.close()
    return parser


def test_the_pages_offer_probe_now_as_a_form_that_posts(site: RunningExporter) -> None:
    for path in ("", TARGET_PAGE):
        page = forms_of(requests.get(site.url + path, timeout=30).text)
        assert not [link for link in page.links if link.startswith("probe")], page.links
        assert page.forms, path
        for form in page.forms:
            assert form["method"] == "post" and form["action"] == "probe-now"
        targets = [f["value"] for f in page.fields if f["name"] == "target"]
        assert targets == [HOSTILE]  # escaped in the HTML, the name itself once parsed
    assert runs(site) == 0  # showing the pages probed nothing


def test_a_get_to_the_forms_action_starts_no_probe(site: RunningExporter) -> None:
    address = site.url + "probe-now?target=" + quote(HOSTILE, safe="")
    for method in ("GET", "HEAD"):
        answer = requests.request(method, address, timeout=30)
        assert answer.status_code == 405
        assert answer.headers["Allow"] == "POST"
    assert requests.get(address, timeout=30).text == "GET is not allowed here; use POST\n"
    assert runs(site) == 0


def test_probe_now_probes_and_returns_to_the_targets_page(site: RunningExporter) -> None:
    answer = post_probe_now(site)
    assert answer.status_code == 303
    assert answer.headers["Location"] == TARGET_PAGE
    assert runs(site) > 0
    page = requests.get(site.url + answer.headers["Location"], timeout=30).text
    assert "Probes of target &lt;img src=x onerror=alert(1)&gt;" in page
    assert "Metrics that would have been returned:" in page
    again = post_probe_now(site, refresh="10")
    assert again.headers["Location"] == TARGET_PAGE + "&refresh=10"


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({}, 400, "the 'target' form field is missing\n"),
        ({"target": ""}, 400, "the 'target' form field is missing\n"),
        ({"target": "nope"}, 404, "unknown target 'nope': not in the configuration\n"),
        # A URL has no page to return to: configured targets only.
        (
            {"target": "http://127.0.0.1:1/"},
            404,
            "unknown target 'http://127.0.0.1:1/': not in the configuration\n",
        ),
    ],
)
def test_probe_now_names_what_is_wrong_with_its_form(
    site: RunningExporter, fields: dict[str, str], status: int, message: str
) -> None:
    answer = requests.post(site.url + "probe-now", data=fields, timeout=30)
    assert (answer.status_code, answer.text) == (status, message)
    assert runs(site) == 0


# ------------------------------------------------------------- a real browser


class OtherSite:
    """Another web site the operator visits, serving `page` at / from `host`."""

    def __init__(self, host: str, page: str, policy: str | None = None) -> None:
        body = page.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if policy is not None:
                    self.send_header("Content-Security-Policy", policy)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> OtherSite:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    parser.close()
    return " ".join("".join(parser.parts).split())


def test_each_page_renders_in_a_browser_without_a_policy_violation(
    site: RunningExporter, tmp_path: Path
) -> None:
    # The target page with a debug report, history and results as well.
    assert post_probe_now(site).status_code == 303
    with Browser(tmp_path / "profile") as browser:
        for path in ("", "?refresh=3600", TARGET_PAGE, TARGET_PAGE + "&refresh=3600"):
            dom = browser.open(site.url + path)
            assert browser.console == [], (path, browser.console)
            page = browser.navigations[-1]
            assert page.url == site.url + path and page.status == 200
            assert_page_headers(page.response_headers)
            text = visible_text(dom)
            assert HOSTILE in text  # the name is text, not markup
            assert browser.evaluate("document.querySelectorAll('img').length") == 0
            assert "probe now" in text
        assert "Probes of target" in text  # the last page: the report shows
        # The styles applied: the inline <style> was not blocked.
        badge = browser.evaluate(
            "getComputedStyle(document.querySelector('.badge')).getPropertyValue('color')"
        )
        assert badge == "rgb(255, 255, 255)"
        button = browser.evaluate(
            "getComputedStyle(document.querySelector('button')).getPropertyValue('cursor')"
        )
        assert button == "pointer"


def test_the_probe_now_buttons_post_from_the_browser(site: RunningExporter, tmp_path: Path) -> None:
    with Browser(tmp_path / "profile") as browser:
        browser.open(site.url)
        assert runs(site) == 0
        dom = browser.press("form.now button")
        post, back = browser.navigations[-2:]
        assert (post.method, post.url, post.status) == ("POST", site.url + "probe-now", 303)
        assert post.headers["Origin"] == origin_of(site)
        assert post.headers["Sec-Fetch-Site"] == "same-origin"
        assert (back.method, back.url, back.status) == ("GET", site.url + TARGET_PAGE, 200)
        assert browser.location == site.url + TARGET_PAGE
        assert runs(site) > 0
        assert f"Probes of target {HOSTILE} (budget 10.0s):" in visible_text(dom)
        # The target page's buttons sit in paragraphs and name their form.
        for button in ("p.bar ~ p button[form]", "h2 + p button[form]"):
            browser.press(button)
            post, back = browser.navigations[-2:]
            assert (post.method, post.status, back.status) == ("POST", 303, 200), button
            assert browser.location == site.url + TARGET_PAGE
        assert browser.console == []


@pytest.mark.parametrize(
    ("host", "fetch_site"), [("127.0.0.2", "cross-site"), ("127.0.0.1", "same-site")]
)
def test_another_sites_form_is_refused_in_the_browser(
    site: RunningExporter, tmp_path: Path, host: str, fetch_site: str
) -> None:
    # What a hostile page needs to start canaries with the operator's browser.
    forged = (
        f'<!DOCTYPE html><form method="post" action="{site.url}probe-now">'
        f'<input type="hidden" name="target" value="{escape(HOSTILE)}">'
        "<button>win a prize</button></form>"
    )
    with OtherSite(host, forged) as other, Browser(tmp_path / "profile") as browser:
        browser.open(other.url)
        dom = browser.press("button")
        post = browser.navigations[-1]
        assert (post.method, post.url, post.status) == ("POST", site.url + "probe-now", 403)
        assert post.headers["Sec-Fetch-Site"] == fetch_site
        assert post.headers["Origin"] == other.url.rstrip("/")
        assert f"(Sec-Fetch-Site: '{fetch_site}')" in visible_text(dom)
    assert runs(site) == 0


def test_another_site_cannot_frame_the_pages(site: RunningExporter, tmp_path: Path) -> None:
    framing = f'<!DOCTYPE html><iframe src="{site.url}"></iframe>'
    with OtherSite("127.0.0.2", framing) as other, Browser(tmp_path / "profile") as browser:
        browser.open(other.url)
        refusals = [line for line in browser.console if "frame-ancestors" in line]
        assert refusals, browser.console


def test_the_violation_check_sees_a_violation(site: RunningExporter, tmp_path: Path) -> None:
    # The same landing page under a policy without the inline styles it needs:
    # the console check above would catch a policy that forgot them.
    page = requests.get(site.url, timeout=30).text
    with (
        OtherSite("127.0.0.2", page, policy="default-src 'none'") as other,
        Browser(tmp_path / "profile") as browser,
    ):
        browser.open(other.url)
        assert browser.policy_violations(), browser.console
