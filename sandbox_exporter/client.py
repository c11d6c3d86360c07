"""The classic ``sandbox-api`` client interface, for both server generations.

Code written for the classic package ports by changing one import::

    from sandbox_exporter.client import Sandbox, SandboxError, Sandbox404

Its HTTP is the probes' own (:class:`sandbox_exporter.transport.Transport`),
run on one event loop in a background thread (see :class:`Sandbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import IO, Any, ClassVar, Generic, TypeVar, overload

import aiohttp

from .documents import (
    InvalidDocument,
    Libraries,
    Specifications,
    detect_api,
    parse_execute_response,
    parse_libraries,
    parse_specifications,
    parse_usage,
)
from .errors import *  # noqa: F403 -- the classic module exports every Sandbox<code>
from .errors import SandboxInvalidResponse, error_class_for_status
from .errors import __all__ as _error_names
from .execute_config import SandboxErrCode, validate
from .protocol import (
    DEFAULT_MAX_RESPONSE_BYTES,
    EXECUTE_PATH,
    LIBRARIES_PATH,
    SPECIFICATIONS_PATH,
    USAGES_PATH,
    check_seconds,
    environment_path,
)
from .transport import Form, Response, Transport, execute_form, open_session

__all__ = ["Sandbox", "SandboxErrCode", "validate", *_error_names]


_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None  # the one running _loop
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The event loop every Sandbox of the process sends on, in one daemon thread
    started on first use."""
    global _loop, _thread
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="sandbox-client", daemon=True)
            _thread.start()
        return _loop


def _forget_loop() -> None:
    # A forked child has no thread running its parent's loop: it starts its own.
    global _loop, _thread, _loop_lock
    _loop, _thread, _loop_lock = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_loop)


def _close_session(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    """Close a Sandbox's session: by close(), once the Sandbox is gone, or at exit."""
    if session.closed or loop is not _loop:  # closed, or its loop died with a fork
        return
    closing = asyncio.run_coroutine_threadsafe(session.close(), loop)
    # The garbage collector may run this on the loop's own thread, which
    # must not wait for itself.
    if threading.current_thread() is not _thread:
        with contextlib.suppress(TimeoutError):
            closing.result(timeout=1)


_SPECIFICATIONS = "specifications"
_LIBRARIES = "libraries"

T = TypeVar("T")
D = TypeVar("D")


class _Cached(Generic[T]):
    """A classic attribute: fetched with its category on first access, then cached."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _Cached[T]: ...
    @overload
    def __get__(self, instance: Sandbox, owner: type) -> T: ...
    def __get__(self, instance: Sandbox | None, owner: type) -> T | _Cached[T]:
        if instance is None:
            return self
        return instance._cached_attribute(self.name, self.category)

    def __set__(self, instance: Sandbox, value: T) -> None:
        instance._values[self.name] = value

    def __delete__(self, instance: Sandbox) -> None:
        instance._values.pop(self.name, None)


def _attribute_names(namespace: Mapping[str, object], category: str) -> tuple[str, ...]:
    """The classic attributes of ``category`` declared in a class body, in their order."""
    return tuple(
        name
        for name, value in namespace.items()
        if isinstance(value, _Cached) and value.category == category
    )


class Sandbox:
    """A sandbox server, 2.x or 3.x (detected from its answers).

    ``timeout`` (seconds, default 60; ``None`` for none) is a hard deadline
    over every request unless a call gives its own: name lookup, connecting,
    TLS, the status line and headers, and the whole body must be done
    within it, however the server drips or stalls. ``connect_timeout``
    optionally bounds getting a connection more tightly.
    ``auth`` is a ``(user, password)`` pair for basic auth (credentials in the
    URL are used the same way), ``bearer_token`` an ``Authorization: Bearer``
    token, ``headers`` extra headers for every request, ``verify`` False, True
    (the system's CA store) or the path of a CA bundle. Answers larger than
    ``max_response_bytes`` (decoded) are refused while they stream. Redirects
    are never followed; proxies and ``.netrc`` from the environment are
    ignored. Credentials are kept out of everything the client gives back:
    exception messages, reprs, and the documents themselves (a server
    echoing the Authorization header into an answer gets ``***``).

    Requests run on one event loop in a daemon thread, shared by every
    Sandbox of the process (a forked child starts its own); each Sandbox has
    its own connection pool there, closed by :meth:`close`, else once the
    Sandbox is garbage collected or the process exits. Interrupting a call
    (Ctrl-C) cancels its request.

    The classic attributes (declared below, their categories listed in
    ``Sandbox._specs`` and ``Sandbox._libs``) are fetched with their category
    on the first access to any of them and cached; ``containers`` is fetched
    on every access. On 3.x, what the server does not report (``environ``,
    ``execute_timeout``, ``expiration``) is None, ``memory`` is in bytes (None
    = unlimited) and the language versions come from the dpkg list.
    """

    __slots__ = ("__weakref__", "_finalizer", "_http", "_loop", "_timeout", "_values")

    sandbox_version: _Cached[str] = _Cached(_SPECIFICATIONS)
    docker_version: _Cached[str] = _Cached(_SPECIFICATIONS)
    containers: _Cached[dict[str, int]] = _Cached(_SPECIFICATIONS)
    memory: _Cached[dict[str, Any]] = _Cached(_SPECIFICATIONS)
    cpu: _Cached[dict[str, Any]] = _Cached(_SPECIFICATIONS)
    environ: _Cached[dict[str, Any] | None] = _Cached(_SPECIFICATIONS)
    execute_timeout: _Cached[float | None] = _Cached(_SPECIFICATIONS)
    expiration: _Cached[float | None] = _Cached(_SPECIFICATIONS)
    python3: _Cached[str | None] = _Cached(_LIBRARIES)
    python2: _Cached[str | None] = _Cached(_LIBRARIES)
    java: _Cached[str | None] = _Cached(_LIBRARIES)
    gcc: _Cached[str | None] = _Cached(_LIBRARIES)
    gpp: _Cached[str | None] = _Cached(_LIBRARIES)
    perl: _Cached[str | None] = _Cached(_LIBRARIES)
    postgres: _Cached[str | None] = _Cached(_LIBRARIES)
    libraries: _Cached[dict[str, dict[str, str]]] = _Cached(_LIBRARIES)
    bin: _Cached[list[str]] = _Cached(_LIBRARIES)

    #: The classic attributes of each category, as the classic package lists them.
    _specs: ClassVar[tuple[str, ...]] = _attribute_names(locals(), _SPECIFICATIONS)
    _libs: ClassVar[tuple[str, ...]] = _attribute_names(locals(), _LIBRARIES)

    def __init__(
        self,
        url: str,
        timeout: float | None = 60,
        *,
        connect_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        verify: bool | str | os.PathLike[str] = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._http = Transport(
            url,
            None,  # opened on the background loop by the first request
            headers=headers,
            auth=auth,
            bearer_token=bearer_token,
            verify=verify,
            connect_timeout=connect_timeout,
            max_response_bytes=max_response_bytes,
        )
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        # Closes the session if the Sandbox is collected unclosed; one at a
        # time, or every reopen would leave a dead session registered.
        self._finalizer: weakref.finalize | None = None
        self._values: dict[str, Any] = {}

    @property
    def url(self) -> str:
        """The server's base URL, ending with '/', without credentials."""
        return self._http.url

    @property
    def timeout(self) -> float | None:
        """Default deadline of a request, in seconds."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = check_seconds("timeout", value)

    @property
    def api_version(self) -> int:
        """2 or 3, detected from ``/specifications/`` (fetched now if never seen)."""
        if self._http.api_version is None:
            self._load_specifications()
        return self._http.api_version  # type: ignore[return-value]

    @property
    def known_api_version(self) -> int | None:
        """The generation detected so far, without any request; None before the first answer."""
        return self._http.api_version

    def __repr__(self) -> str:
        return f"Sandbox({self.url!r}, api_version={self._http.api_version})"

    def close(self) -> None:
        """Close the pooled connections (a later request opens new ones)."""
        if self._finalizer is not None:
            # Called, a finalizer runs once and leaves the registry, letting go of its session.
            self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        timeout: float | None = None,
        data: Form | None = None,
    ) -> Response:
        """One request, run on the background loop and waited for."""
        budget = self._timeout if timeout is None else check_seconds("timeout", timeout)
        future = asyncio.run_coroutine_threadsafe(
            self._on_loop(method, path, budget, data), _background_loop()
        )
        try:
            return future.result()
        except BaseException:
            # Ctrl-C while waiting: the request stops too. (A no-op once done.)
            future.cancel()
            raise

    async def _on_loop(
        self, method: str, path: str, budget: float | None, data: Form | None
    ) -> Response:
        loop = asyncio.get_running_loop()
        session = self._http.session
        # The first request, the first after close(), or the first in a forked child.
        if session is None or session.closed or self._loop is not loop:
            # After close() the previous finalizer has run and let go of its
            # session; in a forked child it keeps the parent's, which it
            # leaves alone (the loop it belongs to is not running here).
            self._loop, self._http.session = loop, open_session()
            self._finalizer = weakref.finalize(self, _close_session, self._http.session, loop)
        deadline = None if budget is None else loop.time() + budget
        return await self._http.request(method, path, deadline, data)

    def _get(self, path: str, timeout: float | None = None) -> dict[str, Any]:
        return self._http.json_object(self._send("GET", path, timeout))

    def _parsed(self, parse: Callable[[Any], D], response: Response) -> tuple[D, dict[str, Any]]:
        """``parse`` of the answer's document, and the document as received;
        a document of the wrong shape is SandboxInvalidResponse."""
        doc = self._http.json_object(response)
        try:
            return parse(doc), doc
        except InvalidDocument as error:
            what = f"unexpected document: {error}"
            raise self._http.failure(SandboxInvalidResponse, response, what) from None

    def fetch_specifications(self, timeout: float | None = None) -> dict[str, Any]:
        """``/specifications/`` as received, never cached (records the generation)."""
        return self._recorded(self._get(SPECIFICATIONS_PATH, timeout))

    def _recorded(self, doc: dict[str, Any]) -> dict[str, Any]:
        # A document of neither shape leaves the generation unknown; the
        # caller's parser says what is wrong with it.
        with contextlib.suppress(InvalidDocument):
            self._http.api_version = detect_api(doc)
        return doc

    def fetch_usages(self, timeout: float | None = None) -> dict[str, Any]:
        """``/usages/`` as received (3.x; a 2.x server answers 404 -> ``Sandbox404``)."""
        return self._get(USAGES_PATH, timeout)

    def fetch_libraries(self, timeout: float | None = None) -> dict[str, Any]:
        """``/libraries/`` as received, never cached. Slow: the server starts a container."""
        return self._get(LIBRARIES_PATH, timeout)

    def _cached_attribute(self, name: str, category: str) -> Any:
        if name == "containers":
            return self._live_containers()  # fetched on every access, as in the classic client
        if name not in self._values:
            if category == _SPECIFICATIONS:
                self._load_specifications()
            else:
                self._load_libraries()
        return self._values[name]

    def _remember(self, values: Mapping[str, Any]) -> None:
        # Values the caller set (or that are still cached) are kept.
        for name, value in values.items():
            self._values.setdefault(name, value)

    def _load_specifications(self) -> tuple[Specifications, dict[str, Any]]:
        # A parsed document keeps only what the exporter uses; the classic
        # attributes are parts of the document as received.
        spec, raw = self._parsed(
            lambda doc: parse_specifications(self._recorded(doc)),
            self._send("GET", SPECIFICATIONS_PATH),
        )
        values = {"sandbox_version": spec.sandbox_version, "docker_version": spec.docker_version}
        if spec.api == 2:
            for name in ("memory", "cpu", "environ", "execute_timeout", "expiration"):
                values[name] = raw[name]
        else:
            values.update(memory=dict(spec.container_memory_limits), cpu=raw["container"]["cpu"])
            values.update(dict.fromkeys(("environ", "execute_timeout", "expiration")))
        self._remember(values)
        return spec, raw

    def _load_libraries(self) -> Libraries:
        libraries, raw = self._parsed(parse_libraries, self._send("GET", LIBRARIES_PATH))
        self._remember({**libraries.languages, "libraries": raw["libraries"], "bin": raw["bin"]})
        return libraries

    def _live_containers(self) -> dict[str, int]:
        spec, raw = self._load_specifications()
        total = spec.containers_max
        if spec.containers_running is not None:
            running = spec.containers_running
            available = raw["containers"]["available"]
        else:
            usage, _ = self._parsed(parse_usage, self._send("GET", USAGES_PATH))
            running = usage.containers_running
            available = max(total - running, 0)
        return {"total": total, "running": running, "available": available}

    def usage(self) -> float:
        """Load of the container pool, 0 (idle) to 1 (every container busy)."""
        containers = self._live_containers()
        if containers["total"] <= 0:
            return 1.0  # no container at all: nothing can run
        return min(containers["running"] / containers["total"], 1.0)

    def download(self, uuid: str, path: str | None = None) -> io.BytesIO:
        """An environment (a .tgz) or, with ``path``, one file inside it."""
        return io.BytesIO(self._send("GET", environment_path(uuid, path)).content)

    def check(self, uuid: str, path: str | None = None) -> int:
        """Size in bytes of an environment or of a file inside it, 0 if it does not exist."""
        try:
            response = self._send("HEAD", environment_path(uuid, path))
        except error_class_for_status(404):
            return 0
        # aiohttp refuses an answer whose Content-Length is not a number.
        return int(response.headers.get("Content-Length", 0))

    def execute(
        self,
        config: Mapping[str, Any],
        environ: bytes | bytearray | memoryview | IO[bytes] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run ``config`` (see :func:`validate`) and return the server's answer.

        ``environ`` is a .tgz (bytes or a binary file object at its start)
        uploaded as the execution's environment.
        """
        if isinstance(environ, (bytes, bytearray, memoryview)):
            environ = bytes(environ)
        elif hasattr(environ, "read"):
            environ = environ.read()
        elif environ is not None:
            raise TypeError(
                "environ must be the bytes of a .tgz or a binary file object, "
                f"got {type(environ).__name__}"
            )
        response = self._send("POST", EXECUTE_PATH, timeout, execute_form(config, environ))
        return self._parsed(parse_execute_response, response)[1]
