"""The probes' HTTP: asyncio and aiohttp, every request bounded by a deadline.

A probe gives each request a deadline on the event loop's clock, and
``asyncio.timeout_at`` enforces it around the whole exchange: name lookup,
connecting, TLS, sending, waiting for the status line and headers, and
reading the body. What the server does cannot stretch it: a server that
never completes the handshake, says nothing, drips its headers or its body a
byte at a time, or sends an endless body is cut off at the deadline, and one
that sends more than the size cap (counted in decoded bytes, so a compressed
body that inflates without end is cut off too) is refused while it streams.

The requests, their headers and how answers are judged are the classic
client's (:mod:`sandbox_exporter.protocol`), so both say the same things.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp

from .config import Target
from .errors import (
    SandboxConnectionError,
    SandboxConnectTimeout,
    SandboxError,
    SandboxInvalidResponse,
    SandboxReadTimeout,
    SandboxResponseTooLarge,
    SandboxTLSError,
)
from .protocol import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ERROR_BODY_BYTES,
    EXCERPT_CHARS,
    EXECUTE_PATH,
    USER_AGENT,
    Secrets,
    execute_config_text,
    parse_base_url,
    request_headers,
    seconds_text,
)

# Connections one session keeps open to all its sandboxes together. A
# request waiting for one waits within its deadline like for anything else.
# A start fires every probe of every target within half a second: 1024
# keeps the ~800 probes of 200 slow targets all in flight (256 queued them
# in waves of a whole latency), while 2048 and more let 1000 targets on a
# few hosts time out (docs/performance.md, B2). Well below the open-file
# limit the daemon raises at start (the hard limit, commonly 524288 or more).
MAX_CONNECTIONS = 1024


def open_session() -> aiohttp.ClientSession:
    """The one HTTP session every probe of a process shares (one connection pool)."""
    tracing = aiohttp.TraceConfig()
    # aiohttp starts creating a connection, then looks the name up within it.
    tracing.on_connection_create_start.append(_phase(_CONNECTING))
    tracing.on_dns_resolvehost_start.append(_phase(_LOOKING_UP))
    tracing.on_dns_resolvehost_end.append(_phase(_CONNECTING))
    tracing.on_request_headers_sent.append(_phase(_WAITING))
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        # A probe's result must not depend on the exporter's environment
        # (proxies, .netrc) nor on cookies another sandbox set.
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
        # Deadlines are ours (asyncio.timeout_at), not aiohttp's defaults.
        timeout=aiohttp.ClientTimeout(total=None),
        trace_configs=[tracing],
    )


# Where a request is, as (what a timeout there raises, what it says).
_Phase = tuple[type[SandboxError], str]
_LOOKING_UP: _Phase = (SandboxConnectTimeout, "name lookup not done")
_CONNECTING: _Phase = (SandboxConnectTimeout, "could not connect")
_WAITING: _Phase = (SandboxReadTimeout, "no answer")


class _Progress:
    """How far one request got, to say what the deadline interrupted."""

    def __init__(self) -> None:
        self.phase = _CONNECTING
        # Set once the status line and headers are in; counts the body since.
        self.body_bytes: int | None = None


def _phase(phase: _Phase):
    async def record(session: object, context: Any, params: object) -> None:
        progress = context.trace_request_ctx
        if isinstance(progress, _Progress):
            progress.phase = phase

    return record


def ssl_setting(target: Target) -> ssl.SSLContext | bool:
    if target.tls.insecure_skip_verify:
        return False
    if target.tls.ca_file:
        return ssl.create_default_context(cafile=target.tls.ca_file)
    return True


class ProbeTransport:
    """One sandbox, as the probes talk to it."""

    def __init__(
        self,
        target: Target,
        session: aiohttp.ClientSession,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.url, url_auth = parse_base_url(target.url)
        auth = url_auth
        if target.auth.username is not None:
            password = target.auth.password.value() if target.auth.password else ""
            auth = (target.auth.username, password)
        bearer = target.auth.bearer_token.value() if target.auth.bearer_token else None
        self._headers = request_headers(dict(target.auth.headers), auth, bearer)
        self._auth = aiohttp.BasicAuth(*auth) if auth is not None else None
        self._secrets = Secrets(self._headers, auth)
        self._ssl = ssl_setting(target)
        self._session = session
        self._limit = max_response_bytes
        #: 2 or 3 once a specifications document said so; None before.
        self.api_version: int | None = None

    def __repr__(self) -> str:
        return f"ProbeTransport({self.url!r})"

    async def get_object(self, path: str, deadline: float) -> dict[str, Any]:
        """GET a JSON object, within ``deadline`` (event-loop time)."""
        body = await self._request("GET", path, deadline)
        return self._secrets.json_object(body, "GET", self.url + path)

    async def execute(self, config: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        """POST ``/execute/`` as the classic client does (multipart ``config`` field)."""
        form = aiohttp.FormData()
        form.add_field("config", execute_config_text(config), content_type="application/json")
        body = await self._request("POST", EXECUTE_PATH, deadline, form)
        return self._secrets.json_object(body, "POST", self.url + EXECUTE_PATH)

    async def _request(
        self, method: str, path: str, deadline: float, data: aiohttp.FormData | None = None
    ) -> bytes:
        url = self.url + path
        loop = asyncio.get_running_loop()
        budget = deadline - loop.time()
        progress = _Progress()
        try:
            async with asyncio.timeout_at(deadline):
                async with self._session.request(
                    method,
                    url,
                    data=data,
                    headers=self._headers,
                    auth=self._auth,
                    ssl=self._ssl,
                    allow_redirects=False,
                    trace_request_ctx=progress,
                ) as response:
                    progress.body_bytes = 0
                    if response.status >= 300:
                        body = await self._read(response, ERROR_BODY_BYTES, progress, cut=True)
                        raise self._secrets.status_error(method, url, response.status, body)
                    declared = response.content_length
                    if declared is not None and declared > self._limit:
                        raise self._secrets.failure(
                            SandboxResponseTooLarge,
                            method,
                            url,
                            f"answer of {declared} bytes is over the limit of {self._limit} bytes",
                        )
                    return await self._read(response, self._limit, progress)
        except TimeoutError:
            raise self._timeout(method, url, budget, progress) from None
        except SandboxError:
            raise
        except (aiohttp.ClientSSLError, ssl.SSLError) as error:
            raise self._failure(SandboxTLSError, method, url, "TLS failed", error) from None
        except aiohttp.ClientConnectorError as error:
            raise self._failure(
                SandboxConnectionError, method, url, "connection failed", error
            ) from None
        except aiohttp.ServerDisconnectedError:
            what = (
                "server closed connection without response"
                if progress.body_bytes is None
                else f"connection broken after {progress.body_bytes} bytes of the answer"
            )
            raise self._secrets.failure(SandboxConnectionError, method, url, what) from None
        except aiohttp.ClientPayloadError as error:
            if "decode" in str(error).lower():
                raise self._failure(
                    SandboxInvalidResponse, method, url, "cannot decode the answer", error
                ) from None
            what = f"connection broken after {progress.body_bytes or 0} bytes of the answer"
            raise self._secrets.failure(SandboxConnectionError, method, url, what) from None
        except aiohttp.ClientResponseError as error:
            raise self._failure(
                SandboxInvalidResponse, method, url, "malformed HTTP answer", error
            ) from None
        except (aiohttp.ClientError, OSError, ValueError) as error:
            raise self._failure(
                SandboxConnectionError, method, url, "connection failed", error
            ) from None

    async def _read(
        self, response: aiohttp.ClientResponse, limit: int, progress: _Progress, cut: bool = False
    ) -> bytes:
        """The decoded body, refused (or, with ``cut``, cut) past ``limit`` bytes."""
        chunks = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            progress.body_bytes = size
            if size > limit:
                if cut:
                    chunks.append(chunk)
                    break
                raise self._secrets.failure(
                    SandboxResponseTooLarge,
                    response.method,
                    str(response.url),
                    f"answer is over the limit of {limit} bytes",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _timeout(self, method: str, url: str, budget: float, progress: _Progress) -> SandboxError:
        within = seconds_text(max(budget, 0.0))
        if progress.body_bytes is None:
            kind, what = progress.phase
            return self._secrets.failure(kind, method, url, f"{what} within {within}")
        return self._secrets.failure(
            SandboxReadTimeout,
            method,
            url,
            f"answer not complete within {within} ({progress.body_bytes} bytes read)",
        )

    def _failure(
        self, kind: type[SandboxError], method: str, url: str, what: str, error: BaseException
    ) -> SandboxError:
        cause = str(error) or type(error).__name__
        # "[Errno 111] Connect call failed ('127.0.0.1', 80)" says less than the errno's name.
        number = getattr(error, "errno", None)
        if kind is not SandboxTLSError and isinstance(number, int) and number > 0:
            cause = os.strerror(number)
        return self._secrets.failure(kind, method, url, f"{what}: {cause[:EXCERPT_CHARS]}")


def _connection_settings(target: Target) -> tuple:
    return (target.url, target.auth, target.tls)


class Transports:
    """One transport per target, rebuilt when its URL, credentials or TLS change."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._known: dict[str, tuple[tuple, ProbeTransport]] = {}

    def get(self, target: Target) -> ProbeTransport:
        settings = _connection_settings(target)
        known = self._known.get(target.name)
        if known is None or known[0] != settings:
            known = (settings, ProbeTransport(target, self._session))
            self._known[target.name] = known
        return known[1]

    def unlisted(self, target: Target) -> ProbeTransport:
        """A transport for a URL that is not a configured target: nothing about it is kept."""
        return ProbeTransport(target, self._session)

    def retain(self, names: set[str]) -> None:
        for name in set(self._known) - names:
            del self._known[name]
