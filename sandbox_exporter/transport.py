"""A sandbox's HTTP for the probes and the classic client: aiohttp, every
request bounded by a deadline.

``asyncio.timeout_at`` enforces the deadline around the whole exchange, from
name lookup to the last byte of the body, so a server that stalls, drips or
sends without end cannot stretch it; an answer over the size cap (counted
decoded, so a compressed body that inflates without end too) is refused
while it streams.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from . import content_encoding
from .config import Target
from .errors import (
    SandboxConnectionError,
    SandboxConnectTimeout,
    SandboxError,
    SandboxInvalidResponse,
    SandboxReadTimeout,
    SandboxResponseTooLarge,
    SandboxTLSError,
    error_class_for_status,
    status_text,
)
from .protocol import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ERROR_BODY_BYTES,
    EXCERPT_CHARS,
    EXECUTE_PATH,
    LIBRARIES_PATH,
    SPECIFICATIONS_PATH,
    USAGES_PATH,
    USER_AGENT,
    Secrets,
    check_seconds,
    parse_base_url,
    request_headers,
    seconds_text,
)

# Connections one session keeps open to all its sandboxes together (a request
# waits for one within its deadline). 1024 keeps every probe of 200 slow
# targets in flight at a start, where 256 queued them in waves and 2048 let
# 1000 targets on a few hosts time out (docs/performance.md, B2); well below
# the open-file limit the daemon raises at start.
MAX_CONNECTIONS = 1024


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connection pool, closing its resolver with itself: aiohttp closes
    only a resolver it made, and a lookup c-ares still holds (a name whose server
    never answers) would otherwise call back into a loop already closed."""

    def __init__(self, *, resolver: AbstractResolver, **options: Any) -> None:
        super().__init__(resolver=resolver, **options)
        self._lookups = resolver

    async def close(self, *, abort_ssl: bool = False) -> None:
        await super().close(abort_ssl=abort_ssl)
        await self._lookups.close()


def open_session(resolver: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """An HTTP session (one connection pool): the probes of a process share one.

    Called on the loop that will use it. Names are looked up by ``resolver``,
    by default c-ares through aiodns with the system's configuration; a test
    passes one pointed at its own name server.
    """
    return aiohttp.ClientSession(
        connector=_Connector(
            limit=MAX_CONNECTIONS,
            # Lookups are asynchronous: a name whose server never answers
            # holds a pending query, not one of a few shared threads, so it
            # cannot make other targets' lookups wait (docs/reliability.md).
            resolver=resolver if resolver is not None else aiohttp.AsyncResolver(),
        ),
        trace_configs=[_phase_tracing()],
        # A probe's result must not depend on the exporter's environment
        # (proxies, .netrc) nor on cookies another sandbox set.
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": content_encoding.ACCEPTED},
        # Bodies are decoded in Transport._read (content_encoding.py says why).
        auto_decompress=False,
        # Deadlines are ours (asyncio.timeout_at), not aiohttp's defaults.
        timeout=aiohttp.ClientTimeout(total=None),
        response_class=_ClientResponse,
    )


class _ClientResponse(aiohttp.ClientResponse):
    """aiohttp's response, except that the connection of a HEAD is never reused.

    aiohttp returns a HEAD's connection to its pool as soon as the headers
    are in, expecting no body; a server that sends one anyway (Django's
    development server does, with its 404 page) would see it parsed as the
    answer to the next request sent on that connection.
    """

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        if self.method == "HEAD" and connection.protocol is not None:
            connection.protocol.force_close()
        return await super().start(connection)


# Where a request is, as (what a timeout there raises, what it says).
_Phase = tuple[type[SandboxError], str]
_LOOKING_UP: _Phase = (SandboxConnectTimeout, "name lookup not done")
_CONNECTING: _Phase = (SandboxConnectTimeout, "could not connect")
_WAITING: _Phase = (SandboxReadTimeout, "no answer")


class _Progress:
    """How far one request got, to say what the deadline interrupted; aiohttp's
    trace signals move its phase on (it is the request's ``trace_request_ctx``)."""

    def __init__(self) -> None:
        self.phase = _CONNECTING
        # Set once the status line and headers are in; its content grows with the body.
        self.response: Response | None = None
        self.body_bytes = 0
        # After a "cache hit": the host, and the session's hosts being looked up.
        self.host = ""
        self.lookups: set[str] = set()

    def current_phase(self) -> _Phase:
        if self.phase is _LOOKUP_OR_CACHED:
            # A cache hit while the host was being looked up was a wait for it.
            return _LOOKING_UP if self.host in self.lookups else _CONNECTING
        return self.phase


# After a "cache hit": waiting for a lookup in flight, or already connecting.
_LOOKUP_OR_CACHED: _Phase = (SandboxConnectTimeout, "could not connect")


def _phase_tracing() -> aiohttp.TraceConfig:
    """aiohttp's trace signals that move a request's phase, for one session.

    aiohttp looks a host up once for all the requests that want it at the
    same time: the first gets the lookup's start and end signals, the others
    a "cache hit" when they start waiting for it (possibly before the lookup
    has sent its start), as does a request served from the cache, and
    nothing when it ends. So each session keeps the hosts being looked up and
    the requests that had a cache hit on them: such a request was waiting for
    the lookup if its host is still being looked up when the deadline comes,
    and is connecting once the lookup ends. A lookup that fails sends no end
    (its waiters get its error): the host stays listed until its next lookup
    ends, and a cache hit needs a lookup that ended.
    """
    lookups: set[str] = set()
    waiting: dict[str, weakref.WeakSet[_Progress]] = {}

    def progress(context: SimpleNamespace) -> _Progress | None:
        found = context.trace_request_ctx
        return found if isinstance(found, _Progress) else None

    async def lookup_started(_: aiohttp.ClientSession, context: SimpleNamespace, params: Any):
        lookups.add(params.host)
        if (request := progress(context)) is not None:
            request.phase = _LOOKING_UP

    async def cache_hit(_: aiohttp.ClientSession, context: SimpleNamespace, params: Any):
        if (request := progress(context)) is not None:
            request.phase, request.host, request.lookups = _LOOKUP_OR_CACHED, params.host, lookups
            waiting.setdefault(params.host, weakref.WeakSet()).add(request)

    async def lookup_ended(_: aiohttp.ClientSession, context: SimpleNamespace, params: Any):
        lookups.discard(params.host)
        if (request := progress(context)) is not None:
            request.phase = _CONNECTING
        for waiter in waiting.pop(params.host, ()):
            if waiter.phase is _LOOKUP_OR_CACHED:
                waiter.phase = _CONNECTING

    async def connected(_: aiohttp.ClientSession, context: SimpleNamespace, params: Any):
        # The request's headers go out at once on a connection.
        if (request := progress(context)) is not None:
            request.phase = _WAITING

    # Only the signals that move a phase: each registered one costs every
    # request an awaited call (docs/performance.md has the canary's cost).
    tracing = aiohttp.TraceConfig()
    tracing.on_dns_resolvehost_start.append(lookup_started)
    tracing.on_dns_cache_hit.append(cache_hit)
    tracing.on_dns_resolvehost_end.append(lookup_ended)
    tracing.on_connection_create_end.append(connected)
    tracing.on_connection_reuseconn.append(connected)
    tracing.freeze()
    return tracing


class Response:
    """An answer's status, headers and the body read, as exceptions carry it; named as
    in requests (``status_code``, ``content``, ``text``, ``json()``) for classic code."""

    def __init__(self, method: str, url: str, status: int, headers: Mapping[str, str]):
        self.method = method
        self.url = url
        self.status_code = status
        self.headers = headers
        self.content = b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


def ssl_setting(verify: bool | str | os.PathLike[str]) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=`` for ``verify``: True, False, or the path of a CA bundle."""
    if isinstance(verify, bool):
        return verify
    if not isinstance(verify, str | os.PathLike):
        raise TypeError("verify must be True, False or the path of a CA bundle")
    if not os.path.exists(verify):
        raise ValueError(f"verify: CA bundle {os.fspath(verify)!r} does not exist")
    return ssl.create_default_context(cafile=verify)


@dataclass(frozen=True, slots=True)
class Form:
    """An encoded multipart/form-data body. aiohttp's FormData writes each part
    apart, a system call each (five for a canary); this goes out in one."""

    body: bytes
    content_type: str


def execute_form(config: Mapping[str, Any], environment: bytes | None = None) -> Form:
    """The body of ``/execute/``: the JSON ``config`` field, and a .tgz environment."""
    try:
        config_text = json.dumps(config)
    except (TypeError, ValueError) as error:
        raise TypeError(f"config is not JSON serializable: {error}") from None
    fields = [(b'name="config"', b"application/json", config_text.encode())]
    if environment is not None:
        disposition = b'name="environment"; filename="environment.tgz"'
        fields.append((disposition, b"application/gzip", environment))
    # 128 random bits, as aiohttp's boundaries: no body will contain it by chance.
    boundary = secrets.token_hex(16)
    mark = b"--" + boundary.encode()
    parts = [
        b"%s\r\nContent-Disposition: form-data; %s\r\nContent-Type: %s\r\n\r\n%s\r\n"
        % (mark, disposition, kind, content)
        for disposition, kind, content in fields
    ]
    body = b"".join(parts) + mark + b"--\r\n"
    return Form(body, f"multipart/form-data; boundary={boundary}")


class NotAnObject(ValueError):
    """A body that is not a JSON object; the message says why, credentials hidden."""


def decode_object(content: bytes, secrets: Secrets) -> dict[str, Any]:
    """``content`` as a JSON object scrubbed of ``secrets``, or NotAnObject. No I/O
    and no state: a worker process can run it (see offload.py)."""
    try:
        doc = json.loads(content)
    except (ValueError, RecursionError) as error:
        raise NotAnObject(f"answer is not JSON ({error}): {secrets.excerpt(content)!r}") from None
    if not isinstance(doc, dict):
        raise NotAnObject(f"answer is JSON but not an object ({type(doc).__name__})")
    return secrets.scrub(doc)


class Transport:
    """One sandbox server: requests within a deadline, answers under a size cap.

    The options are :class:`sandbox_exporter.client.Sandbox`'s. ``session``
    may be set later, before the first request.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession | None,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        verify: bool | str | os.PathLike[str] = True,
        connect_timeout: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.url, url_auth = parse_base_url(url)
        if auth is not None and url_auth is not None:
            raise ValueError("give credentials either in the URL or as auth=, not both")
        auth = auth if auth is not None else url_auth
        self._headers = request_headers(headers, auth, bearer_token)
        self._secrets = Secrets(self._headers, auth)
        self._ssl = ssl_setting(verify)
        self._connect_timeout = check_seconds("connect_timeout", connect_timeout)
        self._timeouts = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout)
        limit = max_response_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"max_response_bytes must be a positive integer, got {limit!r}")
        self.max_response_bytes = limit
        self.session = session
        #: 2 or 3 once a specifications document said so; None before.
        self.api_version: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @property
    def secrets(self) -> Secrets:
        """Our credentials, as documents and messages are scrubbed of them."""
        return self._secrets

    def json_object(self, response: Response) -> dict[str, Any]:
        """The body as a JSON object, scrubbed of our credentials, or SandboxInvalidResponse."""
        try:
            return decode_object(response.content, self._secrets)
        except NotAnObject as error:
            raise self.failure(SandboxInvalidResponse, response, str(error)) from None

    def response_cap(self, path: str) -> int:
        """The most bytes (decoded) an answer to ``path`` may have."""
        return self.max_response_bytes

    def failure(self, kind: type[SandboxError], response: Response, what: str) -> SandboxError:
        """An exception about the request ``response`` answered, its message redacted."""
        return self._secrets.failure(kind, response.method, response.url, what, response)

    async def get_object(self, path: str, deadline: float | None) -> dict[str, Any]:
        return self.json_object(await self.request("GET", path, deadline))

    async def execute(self, config: Mapping[str, Any], deadline: float | None) -> dict[str, Any]:
        return self.json_object(
            await self.request("POST", EXECUTE_PATH, deadline, execute_form(config))
        )

    async def request(
        self,
        method: str,
        path: str,
        deadline: float | None,
        data: Form | None = None,
        *,
        body: bool = True,
    ) -> Response:
        """One exchange within ``deadline`` (event-loop time; None for none), status < 300.

        With ``body=False`` a successful answer's body is not read (its
        connection is closed instead), as for HEAD.
        """
        assert self.session is not None, "no session to send with"
        url = self.url + path
        budget = None if deadline is None else deadline - asyncio.get_running_loop().time()
        headers = self._headers
        if data is not None:
            # The form's own type, whatever the configured headers say: it names the boundary.
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            headers["Content-Type"] = data.content_type
        if method == "HEAD":
            # Its connection is not reused (see _ClientResponse): the server
            # may close it too.
            headers = {**headers, "Connection": "close"}
        refused_head = False
        progress = _Progress()
        try:
            async with asyncio.timeout_at(deadline):
                async with self.session.request(
                    method,
                    url,
                    data=None if data is None else data.body,
                    headers=headers,
                    ssl=self._ssl,
                    timeout=self._timeouts,
                    allow_redirects=False,
                    trace_request_ctx=progress,
                ) as response:
                    answer = Response(method, url, response.status, response.headers)
                    progress.response = answer
                    if response.status >= 300:
                        await self._read(response, answer, ERROR_BODY_BYTES, progress, cut=True)
                        raise self._status_error(answer)
                    if method == "HEAD" or not body:
                        # The headers are the answer (a HEAD's declare the size
                        # of a body it does not send); a body left unread must
                        # not be taken for the next answer on this connection.
                        response.close()
                        return answer
                    declared, limit = response.content_length or 0, self.response_cap(path)
                    if declared > limit:
                        what = f"answer of {declared} bytes is over the limit of {limit} bytes"
                        raise self.failure(SandboxResponseTooLarge, answer, what)
                    await self._read(response, answer, limit, progress)
                    return answer
        except aiohttp.ConnectionTimeoutError:  # connect_timeout, not the deadline
            kind = SandboxConnectTimeout
            what = f"could not connect within {seconds_text(self._connect_timeout)}"
        except TimeoutError:
            kind, what = _timeout(budget, progress)
        except SandboxError:
            raise
        except (aiohttp.ClientSSLError, ssl.SSLError) as error:
            kind, what = SandboxTLSError, f"TLS failed: {_cause(error, errno_name=False)}"
        except aiohttp.ClientConnectorError as error:
            kind, what = SandboxConnectionError, f"connection failed: {_cause(error)}"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            if progress.response is None:
                kind, what = SandboxConnectionError, "server closed connection without response"
            else:
                kind = SandboxConnectionError
                what = f"connection broken after {progress.body_bytes} bytes of the answer"
        except aiohttp.ClientResponseError as error:
            # aiohttp's C parser (llhttp) refuses any byte after the headers of
            # an answer to HEAD that arrives with them, and the status it had
            # parsed is lost with the error (aiohttp issue #10322; no parser
            # option allows it). requests, curl and browsers ignore such a body.
            refused_head = method == "HEAD" and progress.response is None
            kind, what = SandboxInvalidResponse, f"malformed HTTP answer: {_cause(error)}"
        except (aiohttp.ClientError, OSError, ValueError) as error:
            kind, what = SandboxConnectionError, f"connection failed: {_cause(error)}"
        if refused_head:
            # The same question as a GET whose body is never read.
            return await self.request("GET", path, deadline, body=False)
        raise self._secrets.failure(kind, method, url, what, progress.response)

    def _status_error(self, answer: Response) -> SandboxError:
        """The ``Sandbox<status>`` for an answer >= 300; its page only adds detail."""
        status = answer.status_code
        message = (
            f"Sandbox responded with status {status_text(status)} to {answer.method} {answer.url}"
        )
        excerpt = self._secrets.excerpt(answer.content)
        if excerpt:
            message += f": {excerpt}"
        return error_class_for_status(status)(
            answer, self._secrets.redact(message), status_code=status
        )

    async def _read(
        self,
        response: aiohttp.ClientResponse,
        answer: Response,
        limit: int,
        progress: _Progress,
        cut: bool = False,
    ) -> None:
        """The decoded body into ``answer``; refused (with ``cut``: cut) past ``limit``
        bytes, counted decoded, so that a body that inflates without end is refused
        as it streams; undecodable, refused (with ``cut``: kept as far as it went)."""
        chunks = []
        try:
            decoder = content_encoding.Decoder(response.headers.get("Content-Encoding"))
            async for data in response.content.iter_any():
                chunk = decoder.feed(data, limit - progress.body_bytes)
                progress.body_bytes += len(chunk)
                if progress.body_bytes > limit and not cut:
                    what = f"answer is over the limit of {limit} bytes"
                    raise self.failure(SandboxResponseTooLarge, answer, what)
                chunks.append(chunk)
                if progress.body_bytes > limit:
                    break
            else:
                decoder.end()
        except content_encoding.Undecodable as error:
            if not cut:
                raise self.failure(
                    SandboxInvalidResponse, answer, f"cannot decode the answer: {error}"
                ) from None
        answer.content = b"".join(chunks)


def _timeout(budget: float | None, progress: _Progress) -> tuple[type[SandboxError], str]:
    """What a deadline of ``budget`` seconds interrupted."""
    within = seconds_text(None if budget is None else max(budget, 0.0))
    if progress.response is None:
        kind, what = progress.current_phase()
        return kind, f"{what} within {within}"
    what = f"answer not complete within {within} ({progress.body_bytes} bytes read)"
    return SandboxReadTimeout, what


def _cause(error: BaseException, errno_name: bool = True) -> str:
    cause = str(error) or type(error).__name__
    # "[Errno 111] Connect call failed ('127.0.0.1', 80)" says less than the errno's name.
    number = getattr(error, "errno", None)
    if errno_name and isinstance(number, int) and number > 0:
        cause = os.strerror(number)
    return cause[:EXCERPT_CHARS]


# The document each path answers with, to find its size cap.
_DOCUMENT_AT = {
    SPECIFICATIONS_PATH: "specifications",
    USAGES_PATH: "usages",
    LIBRARIES_PATH: "libraries",
    EXECUTE_PATH: "execute",
}


class ProbeTransport(Transport):
    """One configured target, as the probes talk to it."""

    def __init__(self, target: Target, session: aiohttp.ClientSession) -> None:
        auth = target.auth
        password = auth.password.value() if auth.password else ""
        super().__init__(
            target.url,
            session,
            headers=dict(auth.headers),
            auth=(auth.username, password) if auth.username is not None else None,
            bearer_token=auth.bearer_token.value() if auth.bearer_token else None,
            verify=False if target.tls.insecure_skip_verify else target.tls.ca_file or True,
        )
        #: The target's size cap per document (vocabulary.DOCUMENTS).
        self.caps = target.max_response_bytes

    def response_cap(self, path: str) -> int:
        return self.caps[_DOCUMENT_AT[path]]


class Transports:
    """One transport per target, rebuilt when it talks to another server
    (`Target.same_server`): a transport holds its server's URL and credentials."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._known: dict[str, tuple[Target, ProbeTransport]] = {}

    def get(self, target: Target) -> ProbeTransport:
        known = self._known.get(target.name)
        if known is None or not target.same_server(known[0]):
            known = (target, ProbeTransport(target, self._session))
            self._known[target.name] = known
        # A reload may change the caps alone: no new connections for that.
        known[1].caps = target.max_response_bytes
        return known[1]

    def unlisted(self, target: Target) -> ProbeTransport:
        """A transport for a URL that is not a configured target: nothing about it is kept."""
        return ProbeTransport(target, self._session)

    def retain(self, targets: Iterable[Target]) -> None:
        """Forget the transports of targets gone or re-pointed, scheduled or not."""
        current = {target.name: target for target in targets}
        for name, (target, _) in list(self._known.items()):
            if not target.same_server(current.get(name)):
                del self._known[name]
