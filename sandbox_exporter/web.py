"""HTTP routes of the exporter, served by aiohttp on the event loop.

Connections cost no thread: thousands of clients holding half-sent requests
cost memory only, and a connection that has not sent a complete request
within ``HEADER_DEADLINE_SECONDS`` (or a TLS client that has not finished
its handshake within ``TLS_HANDSHAKE_SECONDS``) is closed. Rendering
``/metrics`` and the landing page is CPU work, done on one worker thread so
the loop keeps serving meanwhile, and sent in pieces as it is rendered;
bcrypt checks of ``--web.config.file`` users run on another. HTTP status
codes live here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from . import collector, pages
from .basic_auth import PasswordCheck, basic_credentials
from .browser_guard import cross_site_refusal, headers_for
from .exporter import Exporter, OnDemandProbe, Refusal, UnknownTarget
from .state import State
from .vocabulary import PROBES
from .webconfig import WebConfig

log = logging.getLogger(__name__)

# Prometheus sends its scrape timeout; answer a little before it gives up.
SCRAPE_TIMEOUT_OFFSET_SECONDS = 0.5
DEFAULT_PROBE_BUDGET_SECONDS = 10.0
MAX_QUERY_LENGTH = 4096
# A client must send its whole request (line and headers) this soon after
# connecting, or after its previous answer on a kept-alive connection.
HEADER_DEADLINE_SECONDS = 5.0
TLS_HANDSHAKE_SECONDS = 5.0
# Prometheus opens many connections at once when it scrapes /probe targets.
LISTEN_BACKLOG = 1024
# A trip to the render thread (/metrics, the landing page) brings back pieces
# for this long, up to this many bytes. A busy loop (thousands of targets'
# probes) takes tens of milliseconds to come back for more: a trip per piece
# made a scrape at 5,000 targets wait on it 800 times. Two trips at most are
# held at a time.
HANDOFF_SECONDS = 0.05
HANDOFF_BYTES = 1024 * 1024
# Writing a batch yields to the loop this often: at 5,000 targets a batch
# written in one go held the loop 30-56 ms.
WRITE_SLICE_SECONDS = 0.005

_REFUSAL_STATUS = {Refusal.NOT_CONFIGURED: 404, Refusal.FORBIDDEN: 403, Refusal.INVALID: 400}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", headers=headers)


def process_registry() -> CollectorRegistry:
    """The metrics of the exporter's own process, served after the sandboxes'."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class Routes:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.process = process_registry()
        # One thread renders: scrapes queue for it instead of taking every core.
        self.renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")

    def _one_target(self, request: web.Request, lines: collector.Lines) -> web.Response:
        """`/probe`'s samples in the format the client accepts, gzipped if it accepts
        that; on the loop, since one target's samples take less than handing them
        to a thread."""
        openmetrics, content_type, zipped = _negotiate(request)
        body = lines.text(openmetrics, end=True).encode()
        headers = {"Content-Type": content_type}
        if zipped:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """The exposition, streamed (`_stream`) from one snapshot."""
        openmetrics, content_type, zipped = _negotiate(request)
        response = web.StreamResponse(headers={"Content-Type": content_type})
        if zipped:
            response.headers["Content-Encoding"] = "gzip"
        pieces = exposition(self.exporter.state, self.process, openmetrics, zipped)
        return await self._stream(request, response, pieces)

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, pieces: Iterator[bytes]
    ) -> web.StreamResponse:
        """`response` with `pieces` as its body, sent as they are rendered: they
        come off the render thread a few at a time and go out as HTTP chunks,
        so an answer holds at most two trips' worth (`HANDOFF_BYTES` each),
        never the whole text, and the loop serves and probes meanwhile. The
        one loop of /metrics and the landing page."""
        loop = asyncio.get_running_loop()
        try:
            # The first trip before the answer begins: a snapshot is taken
            # there, and an error there can still be an error status.
            batch = await loop.run_in_executor(self.renderer, _next_pieces, pieces)
            await response.prepare(request)
            if request.method == hdrs.METH_HEAD:
                # aiohttp would send what is written after the headers even
                # to a HEAD, which a kept-alive client would read as the
                # start of its next answer.
                batch = []
            try:
                while batch:
                    # The next trip renders while this one goes out.
                    coming = loop.run_in_executor(self.renderer, _next_pieces, pieces)
                    slice_ends = loop.time() + WRITE_SLICE_SECONDS
                    for piece in batch:
                        await response.write(piece)
                        if loop.time() >= slice_ends:
                            # Writes beside the render thread share the
                            # interpreter with it: let timers and probes run.
                            await asyncio.sleep(0)
                            slice_ends = loop.time() + WRITE_SLICE_SECONDS
                    batch = await coming
                await response.write_eof()
            except ConnectionError:
                log.debug("the client of %s went away before the end", request.path)
            except Exception:
                # Too late for an error status: cut the answer short, so
                # that the client sees a broken transfer, not a whole answer.
                log.exception("error rendering %s; answer cut short", request.path)
                if request.transport is not None:
                    request.transport.abort()
            return response
        finally:
            # On the render thread, after any trip still under way there.
            with contextlib.suppress(RuntimeError):  # the server is stopping
                self.renderer.submit(pieces.close)

    async def healthy(self, request: web.Request) -> web.StreamResponse:
        return _text(200, "Healthy\n")

    async def ready(self, request: web.Request) -> web.StreamResponse:
        if self.exporter.is_ready():
            return _text(200, "Ready\n")
        return _text(503, "Not ready: some targets not probed yet\n")

    async def reload(self, request: web.Request) -> web.StreamResponse:
        if await self.exporter.reload():
            return _text(200, "config reloaded\n")
        message = self.exporter.state.snapshot().reload.message
        return _text(500, f"reload failed: {message}\n")

    async def probe(self, request: web.Request) -> web.StreamResponse:
        if len(request.query_string) > MAX_QUERY_LENGTH:
            return _text(414, "query string too long\n")
        query = request.query
        requested = query.getall("target", [""])[-1]
        if not requested:
            return _text(400, "the 'target' parameter is missing\n")
        debug = query.getall("debug", ["false"])[-1].lower() in ("1", "true", "yes")
        probes = None
        if "probe" in query:
            probes = [p for p in query.getall("probe")[-1].split(",") if p]
            unknown = sorted(set(probes) - set(PROBES))
            if unknown or not probes:
                return _text(
                    400,
                    f"unknown probe {', '.join(unknown) or '(none)'}; "
                    f"choose among {', '.join(PROBES)}\n",
                )
        budget = DEFAULT_PROBE_BUDGET_SECONDS
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        if header:
            try:
                budget = float(header) - SCRAPE_TIMEOUT_OFFSET_SECONDS
            except ValueError:
                return _text(
                    400, "X-Prometheus-Scrape-Timeout-Seconds must be a number of seconds\n"
                )
            # `not >` also refuses NaN.
            if not budget > 0:
                return _text(
                    400, "X-Prometheus-Scrape-Timeout-Seconds is too small to probe within\n"
                )
            budget = min(budget, 24 * 3600.0)
        try:
            outcome = await self.exporter.probe_now(requested, budget, probes)
        except UnknownTarget as error:
            return _text(_REFUSAL_STATUS[error.refusal], f"{error}\n")
        lines = _probe_lines(outcome, PROBES if probes is None else probes)
        if not debug:
            return self._one_target(request, lines)
        report = _debug_report(outcome, budget, lines.text())
        return web.Response(body=report.encode(), content_type="text/plain", charset="utf-8")

    async def probe_now(self, request: web.Request) -> web.StreamResponse:
        """The pages' "probe now" button: what `/probe?target=NAME&debug=true`
        does, then back to the target's page, where the report shows. A POST,
        so that nothing a plain GET can trigger (a link, a prefetch, an
        injected image) starts probes."""
        form = await request.post()
        name = form.get(pages.PROBE_NOW_TARGET)
        if not isinstance(name, str) or not name:
            return _text(400, f"the {pages.PROBE_NOW_TARGET!r} form field is missing\n")
        state = self.exporter.state
        # Configured targets only: a URL has no page to show its report on.
        if state.config is None or state.config.target(name) is None:
            return _text(404, f"unknown target {name!r}: not in the configuration\n")
        budget = DEFAULT_PROBE_BUDGET_SECONDS
        try:
            outcome = await self.exporter.probe_now(name, budget)
        except UnknownTarget as error:
            return _text(_REFUSAL_STATUS[error.refusal], f"{error}\n")
        _debug_report(outcome, budget, _probe_lines(outcome, PROBES).text())
        refresh = pages.parse_refresh(_form_value(form, pages.PROBE_NOW_REFRESH))
        # 303: the browser shows the page with a GET, and reloading it does not probe again.
        return web.Response(
            status=303,
            text="probed; the report is on the target's page\n",
            headers={"Location": pages.target_link(name, refresh)},
        )

    async def landing(self, request: web.Request) -> web.StreamResponse:
        # Streamed as /metrics is: the page over 1,000 targets is 1-2 MB and
        # takes some 0.1-0.2 s to write, which on the loop would stop every
        # probe's clock meanwhile, and which whole would be held at once.
        refresh = pages.parse_refresh(_query_value(request, "refresh"))
        response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        return await self._stream(request, response, landing_page(self.exporter.state, refresh))

    async def target(self, request: web.Request) -> web.StreamResponse:
        name = _query_value(request, "name")
        if not name:
            return _text(400, "the 'name' parameter is missing\n")
        state = self.exporter.state
        target = state.config.target(name) if state.config else None
        if target is None:
            return _text(404, f"unknown target {name!r}: not in the configuration\n")
        snapshot = state.snapshot(target)
        refresh = pages.parse_refresh(_query_value(request, "refresh"))
        page = pages.target_page(snapshot, target, state.history(name), refresh=refresh)
        return web.Response(text=page, content_type="text/html")


def _negotiate(request: web.Request) -> tuple[bool, str, bool]:
    """(OpenMetrics?, the Content-Type, gzip?) as the client's Accept headers ask."""
    encoder, content_type = choose_encoder(request.headers.get("Accept"))
    zipped = "gzip" in request.headers.get("Accept-Encoding", "")
    return encoder is not generate_latest, content_type, zipped


def _probe_lines(outcome: OnDemandProbe, probes: Sequence[str]) -> collector.Lines:
    # Only the probes asked for: jobs that split a target's probes between
    # them (`probe=canary` every 15 s, `probe=libraries` hourly) must not
    # each return, and store, the same series.
    return collector.render(
        outcome.state.snapshot(outcome.target, probes),
        [outcome.target],
        exporter_metrics=False,
        probes=probes,
    )


def _debug_report(outcome: OnDemandProbe, budget: float, metrics: str) -> str:
    """What `/probe?debug=true` answers, kept as the target's last debug report."""
    report = [f"Probes of target {outcome.target.name} (budget {budget:.1f}s):", ""]
    for result in outcome.results:
        status = "ok" if result.success else f"FAILED ({result.reason.value})"
        report.append(
            f"- {result.probe}: {status} in {result.duration_seconds:.3f}s: {result.message}"
        )
    report += ["", "Metrics that would have been returned:", "", metrics]
    text = "\n".join(report)
    outcome.state.record_debug(outcome.target.name, text)
    return text


def _form_value(form: Mapping[str, object], key: str) -> str | None:
    value = form.get(key)
    return value if isinstance(value, str) else None


def exposition(
    state: State, process: CollectorRegistry, openmetrics: bool, zipped: bool
) -> Iterator[bytes]:
    """The bytes of /metrics in pieces of about `collector.CHUNK_CHARACTERS`,
    from one snapshot of `state` taken when the first is asked for, then the
    families of `process` (read then too); gzipped on the way if `zipped`."""
    pieces = collector.stream(state.snapshot(), openmetrics)
    # The process's families come last: the OpenMetrics end marker with them.
    encode = generate_openmetrics if openmetrics else generate_latest
    texts = itertools.chain(pieces, [encode(process).decode()])
    if not zipped:
        yield from (text.encode() for text in texts)
        return
    # One compressor per answer, fed a piece at a time (gzip's framing).
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for text in texts:
        if data := compressor.compress(text.encode()):
            yield data
    yield compressor.flush()


def landing_page(state: State, refresh: int | None) -> Iterator[bytes]:
    """The bytes of the landing page in pieces (`pages.landing_pieces`), from
    one snapshot of `state` taken when the first is asked for; each row's
    history read as its piece is written."""
    pieces = pages.landing_pieces(state.snapshot(), history=state.history, refresh=refresh)
    yield from (piece.encode() for piece in pieces)


def _next_pieces(pieces: Iterator[bytes]) -> list[bytes]:
    """What one trip to the render thread brings back: the next pieces, until
    `HANDOFF_SECONDS` have passed or `HANDOFF_BYTES` are rendered; none at
    the end."""
    batch: list[bytes] = []
    size = 0
    until = time.monotonic() + HANDOFF_SECONDS
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= HANDOFF_BYTES or time.monotonic() >= until:
            break
    return batch


def _query_value(request: web.Request, key: str) -> str | None:
    if len(request.query_string) > MAX_QUERY_LENGTH:
        return None
    values = request.query.getall(key, [])
    return values[-1] if values else None


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Our own plain-text answers for aiohttp's errors, and no traceback to clients."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as error:
        allowed = ", ".join(sorted(error.allowed_methods))
        return _text(405, f"{request.method} is not allowed here; use {allowed}\n", Allow=allowed)
    except web.HTTPNotFound:
        return _text(404, f"no such page: {request.path}\n")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("error serving %s", request.path)
        return _text(500, "internal error\n")


@web.middleware
async def _same_site(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Another site's form or script may not change anything here (see browser_guard)."""
    refusal = cross_site_refusal(request.method, request.headers, request.host)
    if refusal is None:
        return await handler(request)
    log.debug("refused %s %s: %s", request.method, request.path, refusal)
    return _text(403, refusal + "\n")


async def _answer_headers(request: web.Request, response: web.StreamResponse) -> None:
    # A signal rather than a middleware: it also reaches streamed answers
    # and the answers aiohttp makes of raised HTTP errors.
    response.headers.update(headers_for(response.content_type))


def _basic_auth(check: PasswordCheck, worker: ThreadPoolExecutor):
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        accepted = False
        if credentials is not None:
            accepted = check.known(*credentials)
            if accepted is None:
                loop = asyncio.get_running_loop()
                accepted = await loop.run_in_executor(worker, check.check, *credentials)
        if accepted:
            return await handler(request)
        log.debug("refused %s %s: missing or wrong credentials", request.method, request.path)
        return _text(
            401,
            "Unauthorized\n",
            **{"WWW-Authenticate": 'Basic realm="sandbox-exporter", charset="UTF-8"'},
        )

    return guard


def build_app(routes: Routes, web_config: WebConfig | None = None) -> web.Application:
    # Cross-site refusals before the password check: no bcrypt work for them.
    middlewares = [_errors, _same_site]
    if web_config is not None and web_config.basic_auth_users:
        # bcrypt on one thread: a burst of bad passwords cannot take every core.
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")
        middlewares.append(_basic_auth(PasswordCheck(web_config.basic_auth_users), worker))
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app.on_response_prepare.append(_answer_headers)
    app.router.add_get("/", routes.landing)
    app.router.add_get("/target", routes.target)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/probe", routes.probe)
    app.router.add_post("/" + pages.PROBE_NOW_ACTION, routes.probe_now)
    app.router.add_get("/-/healthy", routes.healthy)
    app.router.add_get("/-/ready", routes.ready)
    app.router.add_post("/-/reload", routes.reload)
    app.router.add_put("/-/reload", routes.reload)
    return app


def parse_listen_address(address: str) -> tuple[str, int]:
    """`[host]:port` as Prometheus' --web.listen-address takes it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {address!r}: expected [host]:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class WebServer:
    """The exporter's listener on the running loop."""

    def __init__(
        self, exporter: Exporter, address: str, web_config: WebConfig | None = None
    ) -> None:
        self.host, self.port = parse_listen_address(address)
        self.routes = Routes(exporter)
        self.app = build_app(self.routes, web_config)
        self.tls = web_config.tls.ssl_context() if web_config and web_config.tls else None
        self.scheme = "https" if self.tls is not None else "http"
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> WebServer:
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            # aiohttp closes a connection whose request is not complete when
            # this passes, at the start and between kept-alive requests.
            keepalive_timeout=HEADER_DEADLINE_SECONDS,
            shutdown_timeout=0.5,
        )
        await self._runner.setup()
        # aiohttp's low-level server is a protocol factory; creating the
        # listener ourselves lets us bound the TLS handshake as well.
        self._server = await asyncio.get_running_loop().create_server(
            self._runner.server,
            self.host,
            self.port,
            ssl=self.tls,
            ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS if self.tls else None,
            backlog=LISTEN_BACKLOG,
            reuse_address=True,
        )
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}/"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.routes.renderer.shutdown(wait=False, cancel_futures=True)
