"""The classic client's HTTP on requests: one pool, a deadline and a size cap per request.

Every wait for the server (connecting, the status line, each read of the
body) is bounded by the request's timeout, and the deadline of the whole
request is checked between reads of the body: a body that drips is cut off at
the deadline, one that stops is cut off at most one timeout later. A server
that drips its status line or headers, a byte just before each timeout, is
not cut off: requests offers no public way to bound that phase as a whole.
The exporter's probes use :mod:`sandbox_exporter.transport` (aiohttp), which
does hold a hard deadline over the whole exchange.

The requests, their headers and how answers are judged are the probes'
transport's too (:mod:`sandbox_exporter.protocol`), so both say the same things.
"""

from __future__ import annotations

import http.client
import io
import os
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3.exceptions

from . import errors
from .protocol import (
    ERROR_BODY_BYTES,
    EXCERPT_CHARS,
    USER_AGENT,
    Secrets,
    check_seconds,
    seconds_text,
)

# Bodies are read in pieces so the deadline and the size cap are checked
# between socket reads instead of after the whole body arrived.
READ_SIZE = 64 * 1024

# urllib3's and http.client's own failures, below requests' wrappers.
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


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


def new_session(
    headers: Mapping[str, str], auth: tuple[str, str] | None, verify: bool | str | os.PathLike[str]
) -> requests.Session:
    """A session sending ``headers`` and basic ``auth``, trusting what ``verify`` says."""
    if isinstance(verify, os.PathLike):
        verify = os.fspath(verify)
    if isinstance(verify, str):
        if not os.path.exists(verify):
            raise ValueError(f"verify: CA bundle {verify!r} does not exist")
    elif not isinstance(verify, bool):
        raise TypeError("verify must be True, False or the path of a CA bundle")
    session = requests.Session()
    # A probe's result must not depend on the environment: no proxies,
    # .netrc or CA variables.
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    # The size cap counts bytes on the wire: no compressed bombs.
    session.headers["Accept-Encoding"] = "identity"
    session.headers.update(headers)
    session.auth = auth
    session.verify = verify
    return session


class RequestsTransport:
    """One sandbox server over requests, for the classic client (see the module's docstring).

    ``session`` talks to the server at ``base_url``; ``secrets`` are the
    credentials it sends, kept out of every message.
    """

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        secrets: Secrets,
        *,
        timeout: float | None,
        connect_timeout: float | None,
        max_response_bytes: int,
    ) -> None:
        self.base_url = base_url
        self._session = session
        self.secrets = secrets
        self.timeout = timeout
        self._connect_timeout = check_seconds("connect_timeout", connect_timeout)
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes <= 0
        ):
            raise ValueError(
                f"max_response_bytes must be a positive integer, got {max_response_bytes!r}"
            )
        self.max_response_bytes = max_response_bytes

    @property
    def timeout(self) -> float | None:
        """Default deadline of a request, in seconds (None for none)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = check_seconds("timeout", value)

    def close(self) -> None:
        self._session.close()

    def failure(
        self,
        kind: type[errors.SandboxError],
        method: str,
        path: str,
        what: str,
        response: requests.Response | None = None,
    ) -> errors.SandboxError:
        """An exception about a request to ``path``, its message redacted."""
        return self.secrets.failure(kind, method, self.base_url + path, what, response)

    def get_object(
        self, path: str, timeout: float | None = None
    ) -> tuple[requests.Response, dict[str, Any]]:
        """GET a JSON object (scrubbed of our credentials) and the response it came in."""
        response, body = self.request("GET", path, timeout)
        return response, self.json_object("GET", path, body, response)

    def json_object(
        self, method: str, path: str, body: bytes, response: requests.Response
    ) -> dict[str, Any]:
        return self.secrets.json_object(body, method, self.base_url + path, response)

    def request(
        self,
        method: str,
        path: str,
        timeout: float | None = None,
        *,
        files: Mapping[str, Any] | None = None,
    ) -> tuple[requests.Response, bytes]:
        """One exchange within its deadline: (response, body) for a status < 300.

        The response's ``content``, ``text`` and ``json()`` give the body read,
        also on the response an exception carries.
        """
        budget = self._timeout if timeout is None else check_seconds("timeout", timeout)
        deadline = None if budget is None else time.monotonic() + budget
        connect = self._connect_timeout or budget
        if connect is not None and budget is not None:
            connect = min(connect, budget)
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                files=files,
                timeout=(connect, budget),
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.RequestException as error:
            raise self._request_failure(method, path, error, connect, budget) from None
        except _TRANSPORT_ERRORS as error:
            raise self._broken(method, path, "connection failed", error) from None

        if response.status_code >= 300:
            try:
                body = self._read_body(response, method, path, deadline, ERROR_BODY_BYTES, cut=True)
            except errors.SandboxError:
                body = b""  # the status is what matters; the page only adds detail
            url = self.base_url + path
            raise self.secrets.status_error(method, url, response.status_code, body, response)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            response.close()
            raise self.failure(
                errors.SandboxResponseTooLarge,
                method,
                path,
                f"answer of {declared} bytes is over the limit of {self.max_response_bytes} bytes",
                response,
            )
        body = self._read_body(response, method, path, deadline, self.max_response_bytes)
        return response, body

    def _cause(self, error: BaseException) -> str:
        cause = _innermost(error)
        text = str(cause) or type(cause).__name__
        return self.secrets.redact(text)[:EXCERPT_CHARS]

    def _broken(
        self,
        method: str,
        path: str,
        what: str,
        error: BaseException,
        response: requests.Response | None = None,
    ) -> errors.SandboxError:
        return self.failure(
            errors.SandboxConnectionError,
            method,
            path,
            f"{what}: {self._cause(error)}",
            response,
        )

    def _request_failure(
        self,
        method: str,
        path: str,
        error: requests.exceptions.RequestException,
        connect: float | None,
        budget: float | None,
    ) -> errors.SandboxError:
        """What went wrong before the status line and headers were in."""
        exceptions = requests.exceptions
        # Most specific first: SSLError and ConnectTimeout are ConnectionErrors too.
        if isinstance(error, exceptions.SSLError):
            what = f"TLS failed: {self._cause(error)}"
            return self.failure(errors.SandboxTLSError, method, path, what)
        if isinstance(error, exceptions.ConnectTimeout):
            what = f"could not connect within {seconds_text(connect)}"
            return self.failure(errors.SandboxConnectTimeout, method, path, what)
        if isinstance(error, exceptions.ReadTimeout):
            what = f"no answer within {seconds_text(budget)}"
            return self.failure(errors.SandboxReadTimeout, method, path, what)
        if isinstance(error, (exceptions.ConnectionError, exceptions.ChunkedEncodingError)):
            return self._broken(method, path, "connection failed", error)
        if isinstance(error, exceptions.ContentDecodingError):
            what = f"cannot decode: {self._cause(error)}"
            return self.failure(errors.SandboxInvalidResponse, method, path, what)
        what = f"request failed: {self._cause(error)}"
        return self.failure(errors.SandboxError, method, path, what)

    def _read_body(
        self,
        response: requests.Response,
        method: str,
        path: str,
        deadline: float | None,
        limit: int,
        *,
        cut: bool = False,
    ) -> bytes:
        """The decoded body, read in pieces until the deadline; refused (or, with ``cut``,
        cut short) past ``limit`` bytes."""
        raw = response.raw
        # read1 returns what one socket read brought, so a drip is seen
        # between reads; urllib3 1.x has no read1 and waits for a whole piece.
        read = getattr(raw, "read1", raw.read)
        chunks: list[bytes] = []
        size = 0

        def failure(kind: type[errors.SandboxError], what: str) -> errors.SandboxError:
            response.close()
            return self.failure(kind, method, path, what, response)

        def late() -> errors.SandboxError:
            what = f"answer not complete within the deadline ({size} bytes read)"
            return failure(errors.SandboxReadTimeout, what)

        try:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    raise late()
                chunk = read(READ_SIZE, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                chunks.append(chunk)
                if size > limit:
                    if cut:
                        break
                    what = f"answer is over the limit of {limit} bytes"
                    raise failure(errors.SandboxResponseTooLarge, what)
        except errors.SandboxError:
            raise
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise late() from None
        except urllib3.exceptions.SSLError as error:
            raise failure(errors.SandboxTLSError, f"TLS failed: {self._cause(error)}") from None
        except urllib3.exceptions.DecodeError as error:
            what = f"cannot decode the answer: {self._cause(error)}"
            raise failure(errors.SandboxInvalidResponse, what) from None
        except _TRANSPORT_ERRORS as error:
            what = f"connection broken after {size} bytes of the answer: {self._cause(error)}"
            raise failure(errors.SandboxConnectionError, what) from None
        body = b"".join(chunks)
        # Read to its end, the body let urllib3 give the connection back to
        # the pool; cut short, closing closes the connection, never reused
        # with the rest of a body on it.
        response.close()
        # requests' own accessors (.content, .text, .json()) read what we read.
        response.raw = io.BytesIO(body)
        return body
