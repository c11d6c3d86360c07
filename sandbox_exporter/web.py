"""HTTP routes of the exporter: one WSGI app on one listener."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from . import pages
from .collector import SandboxCollector
from .exporter import Exporter, UnknownTarget
from .vocabulary import PROBES
from .webconfig import BasicAuthMiddleware, WebConfig, tls_classes

log = logging.getLogger(__name__)

# Prometheus sends its scrape timeout; answer a little before it gives up.
SCRAPE_TIMEOUT_OFFSET_SECONDS = 0.5
DEFAULT_PROBE_BUDGET_SECONDS = 10.0
MAX_QUERY_LENGTH = 4096
IDLE_CONNECTION_TIMEOUT_SECONDS = 30.0

StartResponse = Callable[..., Any]


def build_registry(exporter: Exporter) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SandboxCollector(exporter.state))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ExporterApp:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.metrics_app = make_wsgi_app(build_registry(exporter))
        self.started = time.time()

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            route = _ROUTES.get(path)
            if route is None:
                return _text(start_response, "404 Not Found", f"no such page: {path}\n")
            allowed, handler = route
            if method not in allowed:
                return _text(
                    start_response,
                    "405 Method Not Allowed",
                    f"{method} is not allowed here; use {', '.join(allowed)}\n",
                    [("Allow", ", ".join(allowed))],
                )
            return handler(self, environ, start_response)
        except Exception:
            log.exception("error serving %s", path)
            return _text(start_response, "500 Internal Server Error", "internal error\n")

    def metrics(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        return self.metrics_app(environ, start_response)

    def healthy(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        return _text(start_response, "200 OK", "Healthy\n")

    def ready(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if self.exporter.is_ready():
            return _text(start_response, "200 OK", "Ready\n")
        return _text(
            start_response, "503 Service Unavailable", "Not ready: some targets not probed yet\n"
        )

    def reload(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if self.exporter.reload():
            return _text(start_response, "200 OK", "config reloaded\n")
        message = self.exporter.state.snapshot().reload.message
        return _text(start_response, "500 Internal Server Error", f"reload failed: {message}\n")

    def probe(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        query_string = environ.get("QUERY_STRING", "")
        if len(query_string) > MAX_QUERY_LENGTH:
            return _text(start_response, "414 URI Too Long", "query string too long\n")
        query = parse_qs(query_string, keep_blank_values=True)
        requested = query.get("target", [""])[-1]
        if not requested:
            return _text(start_response, "400 Bad Request", "the 'target' parameter is missing\n")
        debug = query.get("debug", ["false"])[-1].lower() in ("1", "true", "yes")
        probes = None
        if "probe" in query:
            probes = [p for p in query["probe"][-1].split(",") if p]
            unknown = sorted(set(probes) - set(PROBES))
            if unknown or not probes:
                return _text(
                    start_response,
                    "400 Bad Request",
                    f"unknown probe {', '.join(unknown) or '(none)'}; "
                    f"choose among {', '.join(PROBES)}\n",
                )
        budget = DEFAULT_PROBE_BUDGET_SECONDS
        header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
        if header:
            try:
                budget = float(header) - SCRAPE_TIMEOUT_OFFSET_SECONDS
            except ValueError:
                return _text(
                    start_response,
                    "400 Bad Request",
                    "X-Prometheus-Scrape-Timeout-Seconds must be a number of seconds\n",
                )
            if not budget > 0 or budget != budget:
                return _text(
                    start_response,
                    "400 Bad Request",
                    "X-Prometheus-Scrape-Timeout-Seconds is too small to probe within\n",
                )
        try:
            outcome = self.exporter.probe_now(requested, budget, probes)
        except UnknownTarget as error:
            return _text(start_response, f"{error.status} {_REASONS[error.status]}", f"{error}\n")

        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            SandboxCollector(
                outcome.state, targets=lambda: [outcome.target], exporter_metrics=False
            )
        )
        if debug:
            lines = [f"Probes of target {outcome.target.name} (budget {budget:.1f}s):", ""]
            for result in outcome.results:
                status = "ok" if result.success else f"FAILED ({result.reason.value})"
                lines.append(
                    f"- {result.probe}: {status} in {result.duration_seconds:.3f}s: "
                    f"{result.message}"
                )
            lines += ["", "Metrics that would have been returned:", ""]
            body = "\n".join(lines).encode() + b"\n" + generate_latest(registry)
            outcome.state.record_debug(outcome.target.name, body.decode())
            return _respond(start_response, "200 OK", body, "text/plain; charset=utf-8")
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT"))
        return _respond(start_response, "200 OK", encoder(registry), content_type)

    def landing(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        refresh = pages.parse_refresh(_query_value(environ, "refresh"))
        page = pages.landing(self.exporter.state.snapshot(), refresh=refresh)
        return _respond(start_response, "200 OK", page.encode(), "text/html; charset=utf-8")

    def target(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        name = _query_value(environ, "name")
        if not name:
            return _text(start_response, "400 Bad Request", "the 'name' parameter is missing\n")
        state = self.exporter.state
        snapshot = state.snapshot()
        target = snapshot.config.target(name) if snapshot.config else None
        if target is None:
            message = f"unknown target {name!r}: not in the configuration\n"
            return _text(start_response, "404 Not Found", message)
        refresh = pages.parse_refresh(_query_value(environ, "refresh"))
        page = pages.target_page(snapshot, target, state.history(name), refresh=refresh)
        return _respond(start_response, "200 OK", page.encode(), "text/html; charset=utf-8")


def _query_value(environ: dict, key: str) -> str | None:
    values = parse_qs(environ.get("QUERY_STRING", "")[:MAX_QUERY_LENGTH]).get(key)
    return values[-1] if values else None


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found"}

_ROUTES: dict[str, tuple[tuple[str, ...], Callable]] = {
    "/": (("GET", "HEAD"), ExporterApp.landing),
    "/target": (("GET", "HEAD"), ExporterApp.target),
    "/metrics": (("GET", "HEAD"), ExporterApp.metrics),
    "/probe": (("GET", "HEAD"), ExporterApp.probe),
    "/-/healthy": (("GET", "HEAD"), ExporterApp.healthy),
    "/-/ready": (("GET", "HEAD"), ExporterApp.ready),
    "/-/reload": (("POST", "PUT"), ExporterApp.reload),
}


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


def _text(
    start_response: StartResponse,
    status: str,
    text: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    return _respond(start_response, status, text.encode(), "text/plain; charset=utf-8", extra)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # Prometheus scrapes many /probe targets at the same moment; the default
    # backlog of 5 made the kernel drop SYNs, costing clients 1 s retries.
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    # Without a timeout, a client that connects and never finishes its
    # request (or sends an HTTP/0.9 line, after which the stdlib waits for
    # headers) holds its thread forever: a few thousand of them and the
    # process runs out of threads. Silence this long drops the connection.
    timeout = IDLE_CONNECTION_TIMEOUT_SECONDS

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, ConnectionError) as error:
            log.debug("dropped the connection of %s: %s", self.address_string(), error)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def parse_listen_address(address: str) -> tuple[str, int]:
    """`[host]:port` as Prometheus' --web.listen-address takes it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {address!r}: expected [host]:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class WebServer:
    """The exporter's listener, served from a background thread."""

    def __init__(self, app: ExporterApp, address: str, web_config: WebConfig | None = None) -> None:
        host, port = parse_listen_address(address)
        server_class = _ThreadingWSGIServer
        if ":" in host:

            class _V6(_ThreadingWSGIServer):
                address_family = socket.AF_INET6

            server_class = _V6
        # --web.config.file: basic auth in front of every route, TLS on the socket.
        served: Callable[..., Iterable[bytes]] = app
        handler_class: type[WSGIRequestHandler] = _QuietHandler
        self.scheme = "http"
        if web_config is not None and web_config.basic_auth_users:
            served = BasicAuthMiddleware(app, web_config.basic_auth_users, "sandbox-exporter")
        if web_config is not None and web_config.tls is not None:
            context = web_config.tls.ssl_context()
            server_class, handler_class = tls_classes(server_class, handler_class, context)
            self.scheme = "https"
        self.server = make_server(host, port, served, server_class, handler_class)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}/"

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
