"""The classic ``sandbox-api`` client interface, for both server generations.

Code written for the classic package ports by changing one import::

    from sandbox_exporter.client import Sandbox, SandboxError, Sandbox404

On top of the classic interface this client adds what an exporter running
thousands of probes a minute needs: one connection pool per server, a hard
deadline per request (body included), a cap on response sizes, TLS and
credential settings, and one exception class per kind of transport failure,
all under :class:`SandboxError`.
"""

from __future__ import annotations

import contextlib
import enum
import http
import http.client
import io
import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import IO, Any, Generic, TypeVar, overload

import requests
import urllib3.exceptions

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
from .errors import (
    SandboxConnectionError,
    SandboxConnectTimeout,
    SandboxError,
    SandboxInvalidResponse,
    SandboxReadTimeout,
    SandboxResponseTooLarge,
    SandboxTLSError,
    error_class_for_status,
)
from .errors import __all__ as _error_names
from .protocol import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ERROR_BODY_BYTES,
    EXCERPT_CHARS,
    USER_AGENT,
    Secrets,
    check_seconds,
    environment_path,
    execute_config_text,
    parse_base_url,
    request_headers,
    seconds_text,
)

__all__ = ["Sandbox", "SandboxErrCode", "validate", *_error_names]


# Bodies are read in pieces so the deadline and the size cap are checked
# between socket reads instead of after the whole body arrived.
_READ_SIZE = 64 * 1024


class SandboxErrCode(enum.IntEnum):
    """Negative ``status`` values of an ``/execute/`` answer."""

    UNKNOWN = -1
    TIMEOUT = -2
    RESULT_NOT_FOUND = -3
    RESULT_NOT_UTF8 = -4


# ------------------------------------------------------------ config checks


def _command_is_valid(command: object) -> bool:
    if isinstance(command, str):
        return True
    if not isinstance(command, dict):
        return False
    # Anything but these two keys makes the server fail with a 500.
    if set(command) - {"command", "timeout"}:
        return False
    # The server tests isinstance(timeout, (int, float)), which lets true/false through.
    return isinstance(command.get("command"), str) and (
        "timeout" not in command or isinstance(command["timeout"], (int, float))
    )


def validate(config: object) -> tuple[bool, str]:
    """Check an ``/execute/`` config the way the server does, without sending it.

    Returns ``(True, "")`` or ``(False, message)`` with the server's own
    message for the first problem (3.x wording). Whether a referenced
    ``environment`` exists can only be known by the server.
    """
    try:
        # The server sees the JSON text: check what survives the round trip
        # (tuples become lists, keys become strings).
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as error:
        return False, f"config is not JSON serializable: {error}"
    if not isinstance(config, dict):
        return False, f"config must be an object, not {type(config)}"
    if "commands" not in config:
        return False, "Missing field 'commands' in config"
    commands = config["commands"]
    if not isinstance(commands, list):
        return False, f"commands must be a list, not {type(commands)}"
    if "environ" in config and not isinstance(config["environ"], dict):
        return False, f"environ must be an object, not {type(config['environ'])}"
    if not commands:
        return False, "Command list cannot be empty"
    for command in commands:
        if not _command_is_valid(command):
            return False, f"Command badly formatted : '{command}'"
    if "result_path" in config and not isinstance(config["result_path"], str):
        return False, f"result_path must be a string, not {type(config['result_path'])}"
    if "save" in config and not isinstance(config["save"], bool):
        return False, f"save must be a boolean, not {type(config['save'])}"
    return True, ""


# ------------------------------------------------------------ lazy attributes

_SPECIFICATIONS = "specifications"
_LIBRARIES = "libraries"

T = TypeVar("T")


class _Cached(Generic[T]):
    """A classic attribute: fetched with its category on first access, then cached.

    Setting stores a value; deleting forgets it so the next access fetches again.
    """

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


class _Live(_Cached[T]):
    """``containers``: fetched again on every access, as in the classic client."""

    def __get__(self, instance: Sandbox | None, owner: type) -> T | _Cached[T]:  # type: ignore[override]
        if instance is None:
            return self
        return instance._live_containers()  # type: ignore[return-value]


# ---------------------------------------------------------------- the client


def _socket_of(raw: urllib3.HTTPResponse) -> socket.socket | None:
    """The socket a streamed response reads from, to shorten its timeout as the deadline nears.

    http.client drops the connection's own reference when the server says
    ``Connection: close`` (the sandbox always does), so look behind the
    response's file object first.
    """
    try:
        sock = raw._fp.fp.raw._sock  # type: ignore[union-attr]
    except AttributeError:
        connection = getattr(raw, "connection", None)
        sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _innermost(error: BaseException) -> BaseException:
    """The root cause behind requests' and urllib3's wrappers."""
    seen = set()
    current = error
    while id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.__cause__ is not None:
            current = current.__cause__
        else:
            # ('Connection aborted.', RemoteDisconnected(...)) and the like
            nested = [arg for arg in current.args if isinstance(arg, BaseException)]
            if not nested:
                break
            current = nested[0]
    return current


class Sandbox:
    """A sandbox server, 2.x or 3.x (detected from its answers).

    ``timeout`` (seconds, default 60; ``None`` for none) bounds every request
    unless a call gives its own: a hard deadline for the whole exchange, body
    included. ``connect_timeout`` optionally bounds connecting more tightly.
    ``auth`` is a ``(user, password)`` pair for basic auth (credentials in the
    URL are used the same way), ``bearer_token`` an ``Authorization: Bearer``
    token, ``headers`` extra headers for every request, ``verify`` False, True
    or the path of a CA bundle. Answers larger than ``max_response_bytes`` are
    refused while they stream. Proxies, ``.netrc`` and CA variables from the
    environment are ignored: a probe's result must not depend on the
    exporter's environment. Credentials are kept out of everything the
    client gives back: exception messages, and the documents themselves (a
    server echoing the Authorization header into an answer gets ``***``).

    Attributes as in the classic client: specifications (``sandbox_version``,
    ``docker_version``, ``containers``, ``memory``, ``cpu``, ``environ``,
    ``execute_timeout``, ``expiration``) and libraries (``python3``,
    ``python2``, ``java``, ``gcc``, ``gpp``, ``perl``, ``postgres``,
    ``libraries``, ``bin``). A category is fetched on the first access to any
    of its attributes and cached; ``containers`` is fetched on every access.
    On 3.x, what the server does not report (``environ``, ``execute_timeout``,
    ``expiration``) is None, ``memory`` is in bytes (None = unlimited) and the
    language versions come from the dpkg list.
    """

    __slots__ = (
        "_api_version",
        "_auth",
        "_base_url",
        "_connect_timeout",
        "_max_response_bytes",
        "_secrets",
        "_session",
        "_timeout",
        "_values",
    )

    sandbox_version: _Cached[str] = _Cached(_SPECIFICATIONS)
    docker_version: _Cached[str] = _Cached(_SPECIFICATIONS)
    containers: _Live[dict[str, int]] = _Live(_SPECIFICATIONS)
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
        self._base_url, url_auth = parse_base_url(url)
        self._timeout = check_seconds("timeout", timeout)
        self._connect_timeout = check_seconds("connect_timeout", connect_timeout)
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes <= 0
        ):
            raise ValueError(
                f"max_response_bytes must be a positive integer, got {max_response_bytes!r}"
            )
        self._max_response_bytes = max_response_bytes
        self._api_version: int | None = None
        self._values: dict[str, Any] = {}

        if auth is not None and url_auth is not None:
            raise ValueError("give credentials either in the URL or as auth=, not both")
        auth = auth if auth is not None else url_auth
        extra_headers = request_headers(headers, auth, bearer_token)
        self._auth = auth

        if isinstance(verify, os.PathLike):
            verify = os.fspath(verify)
        if isinstance(verify, str):
            if not os.path.exists(verify):
                raise ValueError(f"verify: CA bundle {verify!r} does not exist")
        elif not isinstance(verify, bool):
            raise TypeError("verify must be True, False or the path of a CA bundle")
        self._secrets = Secrets(extra_headers, auth)

        session = requests.Session()
        session.trust_env = False
        session.headers["User-Agent"] = USER_AGENT
        # The size cap counts bytes on the wire: no compressed bombs.
        session.headers["Accept-Encoding"] = "identity"
        session.headers.update(extra_headers)
        session.auth = auth
        session.verify = verify
        self._session = session

    # ------------------------------------------------------------- basics

    @property
    def url(self) -> str:
        """The server's base URL, ending with '/', without credentials."""
        return self._base_url

    @property
    def timeout(self) -> float | None:
        """Default deadline of a request, in seconds."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = check_seconds("timeout", value)

    @property
    def max_response_bytes(self) -> int:
        return self._max_response_bytes

    @property
    def api_version(self) -> int:
        """2 or 3, detected from ``/specifications/`` (fetched now if never seen)."""
        if self._api_version is None:
            self._load_specifications()
        return self._api_version  # type: ignore[return-value]

    @property
    def known_api_version(self) -> int | None:
        """The generation detected so far, without any request; None before the first answer."""
        return self._api_version

    def __repr__(self) -> str:
        return f"Sandbox({self._base_url!r}, api_version={self._api_version})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------- transport

    def _redact(self, text: str) -> str:
        return self._secrets.redact(text)

    def _failure(
        self,
        kind: type[SandboxError],
        method: str,
        url: str,
        what: str,
        response: requests.Response | None = None,
    ) -> SandboxError:
        return self._secrets.failure(kind, method, url, what, response)

    def _cause(self, error: BaseException) -> str:
        cause = _innermost(error)
        text = str(cause) or type(cause).__name__
        return self._redact(text)[:EXCERPT_CHARS]

    def _request(
        self,
        method: str,
        path: str,
        timeout: float | None,
        *,
        files: Mapping[str, Any] | None = None,
    ) -> tuple[requests.Response, bytes]:
        """One exchange within its deadline: (response, body) for a status < 300."""
        budget = self._timeout if timeout is None else check_seconds("timeout", timeout)
        deadline = None if budget is None else time.monotonic() + budget
        connect = self._connect_timeout or budget
        if connect is not None and budget is not None:
            connect = min(connect, budget)
        url = self._base_url + path
        try:
            response = self._session.request(
                method,
                url,
                files=files,
                timeout=(connect, budget),
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.SSLError as error:
            raise self._failure(
                SandboxTLSError, method, url, f"TLS failed: {self._cause(error)}"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise self._failure(
                SandboxConnectTimeout,
                method,
                url,
                f"could not connect within {seconds_text(connect)}",
            ) from None
        except requests.exceptions.ReadTimeout:
            raise self._failure(
                SandboxReadTimeout, method, url, f"no answer within {seconds_text(budget)}"
            ) from None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            raise self._failure(
                SandboxConnectionError, method, url, f"connection failed: {self._cause(error)}"
            ) from None
        except requests.exceptions.ContentDecodingError as error:
            raise self._failure(
                SandboxInvalidResponse, method, url, f"cannot decode: {self._cause(error)}"
            ) from None
        # requests' exceptions are OSErrors too: this must come before OSError.
        except requests.exceptions.RequestException as error:
            raise self._failure(
                SandboxError, method, url, f"request failed: {self._cause(error)}"
            ) from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            raise self._failure(
                SandboxConnectionError, method, url, f"connection failed: {self._cause(error)}"
            ) from None

        if response.status_code >= 300:
            try:
                body = self._read_body(
                    response, method, url, deadline, ERROR_BODY_BYTES, truncate=True
                )
            except SandboxError:
                body = b""  # the status is what matters; the page only adds detail
            raise self._secrets.status_error(method, url, response.status_code, body, response)
        body = self._read_body(response, method, url, deadline, self._max_response_bytes)
        return response, body

    def _read_body(
        self,
        response: requests.Response,
        method: str,
        url: str,
        deadline: float | None,
        limit: int,
        *,
        truncate: bool = False,
    ) -> bytes:
        """Stream the body, giving up at the deadline or past ``limit`` bytes."""
        raw = response.raw
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            response.close()
            raise self._failure(
                SandboxResponseTooLarge,
                method,
                url,
                f"answer of {declared} bytes is over the limit of {limit} bytes",
                response,
            )
        sock = _socket_of(raw) if deadline is not None else None
        pooled_timeout = sock.gettimeout() if sock is not None else None
        # urllib3 1.x has no read1(); its read() may wait for several socket reads.
        read = getattr(raw, "read1", raw.read)
        chunks: list[bytes] = []
        size = 0
        complete = True
        try:
            while True:
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._failure(
                            SandboxReadTimeout,
                            method,
                            url,
                            f"answer not complete within the deadline ({size} bytes read)",
                            response,
                        )
                    if sock is not None:
                        # One socket read may not outlive the deadline. (Once the
                        # body is complete the socket may already be closed.)
                        with contextlib.suppress(OSError):
                            sock.settimeout(remaining)
                chunk = read(_READ_SIZE, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    if truncate:
                        chunks.append(chunk)
                        complete = False
                        break
                    raise self._failure(
                        SandboxResponseTooLarge,
                        method,
                        url,
                        f"answer is over the limit of {limit} bytes",
                        response,
                    )
                chunks.append(chunk)
        except SandboxError:
            response.close()
            raise
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            response.close()
            raise self._failure(
                SandboxReadTimeout,
                method,
                url,
                f"answer not complete within the deadline ({size} bytes read)",
                response,
            ) from None
        except urllib3.exceptions.SSLError as error:
            response.close()
            raise self._failure(
                SandboxTLSError, method, url, f"TLS failed: {self._cause(error)}", response
            ) from None
        except urllib3.exceptions.DecodeError as error:
            response.close()
            raise self._failure(
                SandboxInvalidResponse,
                method,
                url,
                f"cannot decode the answer: {self._cause(error)}",
                response,
            ) from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            response.close()
            raise self._failure(
                SandboxConnectionError,
                method,
                url,
                f"connection broken after {size} bytes of the answer: {self._cause(error)}",
                response,
            ) from None
        if sock is not None and complete:
            # The connection may be reused: give it back with the timeout it had.
            with contextlib.suppress(OSError):
                sock.settimeout(pooled_timeout)
        body = b"".join(chunks)
        # Fully read, the connection goes back to the pool; cut short, it is
        # closed, never reused with the rest of a body still on it.
        response._content_consumed = complete
        response.close()
        # Let requests' own accessors (.content, .json()) work on the exception's response.
        response._content = body
        response._content_consumed = True
        return body

    def _get_object(
        self, path: str, timeout: float | None
    ) -> tuple[requests.Response, dict[str, Any]]:
        response, body = self._request("GET", path, timeout)
        return response, self._secrets.json_object(body, "GET", self._base_url + path, response)

    def _invalid(
        self, path: str, error: InvalidDocument, response: requests.Response
    ) -> SandboxError:
        return self._failure(
            SandboxInvalidResponse,
            "GET",
            self._base_url + path,
            f"unexpected document: {error}",
            response,
        )

    # --------------------------------------------------- raw documents

    def fetch_specifications(self, timeout: float | None = None) -> dict[str, Any]:
        """``/specifications/`` as received, never cached (records the generation)."""
        return self._fetch_specifications(timeout)[1]

    def _fetch_specifications(
        self, timeout: float | None
    ) -> tuple[requests.Response, dict[str, Any]]:
        response, doc = self._get_object("specifications/", timeout)
        # A document of neither shape leaves the generation unknown; the
        # caller's parser says what is wrong with it.
        with contextlib.suppress(InvalidDocument):
            self._api_version = detect_api(doc)
        return response, doc

    def fetch_usages(self, timeout: float | None = None) -> dict[str, Any]:
        """``/usages/`` as received (3.x; a 2.x server answers 404 -> ``Sandbox404``)."""
        return self._get_object("usages/", timeout)[1]

    def fetch_libraries(self, timeout: float | None = None) -> dict[str, Any]:
        """``/libraries/`` as received, never cached. Slow: the server starts a container."""
        return self._get_object("libraries/", timeout)[1]

    # ------------------------------------------------ classic attributes

    def _cached_attribute(self, name: str, category: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            pass
        if category == _SPECIFICATIONS:
            self._load_specifications()
        else:
            self._load_libraries()
        return self._values[name]

    def _remember(self, values: Iterable[tuple[str, Any]]) -> None:
        # Values the caller set (or that are still cached) are kept.
        for name, value in values:
            self._values.setdefault(name, value)

    def _load_specifications(self) -> Specifications:
        response, doc = self._fetch_specifications(None)
        try:
            spec = parse_specifications(doc)
        except InvalidDocument as error:
            raise self._invalid("specifications/", error, response) from None
        self._api_version = spec.api
        raw = spec.raw
        if spec.api == 2:
            self._remember(
                [
                    ("sandbox_version", spec.sandbox_version),
                    ("docker_version", spec.docker_version),
                    ("memory", raw["memory"]),
                    ("cpu", raw["cpu"]),
                    ("environ", raw["environ"]),
                    ("execute_timeout", raw["execute_timeout"]),
                    ("expiration", raw["expiration"]),
                ]
            )
        else:
            self._remember(
                [
                    ("sandbox_version", spec.sandbox_version),
                    ("docker_version", spec.docker_version),
                    ("memory", dict(spec.container_memory_limits)),
                    ("cpu", raw["container"]["cpu"]),
                    ("environ", None),
                    ("execute_timeout", None),
                    ("expiration", None),
                ]
            )
        return spec

    def _load_libraries(self) -> Libraries:
        response, doc = self._get_object("libraries/", None)
        try:
            libraries = parse_libraries(doc)
        except InvalidDocument as error:
            raise self._invalid("libraries/", error, response) from None
        self._remember(libraries.languages.items())
        self._remember([("libraries", doc["libraries"]), ("bin", doc["bin"])])
        return libraries

    def _live_containers(self) -> dict[str, int]:
        spec = self._load_specifications()
        total = spec.containers_max
        if spec.containers_running is not None:
            running = spec.containers_running
            available = spec.raw["containers"]["available"]
        else:
            response, doc = self._get_object("usages/", None)
            try:
                usage = parse_usage(doc)
            except InvalidDocument as error:
                raise self._invalid("usages/", error, response) from None
            running = usage.containers_running
            available = max(total - running, 0)
        return {"total": total, "running": running, "available": available}

    def usage(self) -> float:
        """Load of the container pool, 0 (idle) to 1 (every container busy)."""
        containers = self._live_containers()
        if containers["total"] <= 0:
            return 1.0  # no container at all: nothing can run
        return min(containers["running"] / containers["total"], 1.0)

    # ------------------------------------------------ environments, execute

    def download(self, uuid: str, path: str | None = None) -> io.BytesIO:
        """An environment (a .tgz) or, with ``path``, one file inside it."""
        _, body = self._request("GET", environment_path(uuid, path), None)
        return io.BytesIO(body)

    def check(self, uuid: str, path: str | None = None) -> int:
        """Size in bytes of an environment or of a file inside it, 0 if it does not exist."""
        location = environment_path(uuid, path)
        try:
            response, _ = self._request("HEAD", location, None)
        except error_class_for_status(404):
            return 0
        length = response.headers.get("Content-Length")
        if length is None:
            return 0
        if not length.strip().isdigit():
            raise self._failure(
                SandboxInvalidResponse,
                "HEAD",
                self._base_url + location,
                f"Content-Length is not a size: {length[:40]!r}",
                response,
            )
        return int(length)

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
        config_text = execute_config_text(config)
        # (None, text) makes requests send a plain form field, and giving
        # `files` at all makes the body multipart/form-data as the server expects.
        files: dict[str, Any] = {"config": (None, config_text, "application/json")}
        if environ is not None:
            if isinstance(environ, (bytes, bytearray, memoryview)):
                content: bytes | IO[bytes] = bytes(environ)
            elif hasattr(environ, "read"):
                content = environ
            else:
                raise TypeError(
                    "environ must be the bytes of a .tgz or a binary file object, "
                    f"got {type(environ).__name__}"
                )
            files["environment"] = ("environment.tgz", content, "application/gzip")
        path = "execute/"
        response, body = self._request("POST", path, timeout, files=files)
        url = self._base_url + path
        try:
            doc = self._secrets.scrub(json.loads(body))
        except (ValueError, RecursionError) as error:
            raise self._failure(
                SandboxInvalidResponse, "POST", url, f"answer is not JSON ({error})", response
            ) from None
        try:
            parse_execute_response(doc)
        except InvalidDocument as error:
            raise self._failure(
                SandboxInvalidResponse, "POST", url, f"unexpected document: {error}", response
            ) from None
        return doc
