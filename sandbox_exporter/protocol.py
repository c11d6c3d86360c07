"""What a sandbox server speaks: the base URL and its credentials, the paths,
the headers, and how our own credentials are kept out of every message and
document (for :mod:`sandbox_exporter.transport`).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from . import __version__
from .errors import SandboxError

SPECIFICATIONS_PATH = "specifications/"
USAGES_PATH = "usages/"
LIBRARIES_PATH = "libraries/"
EXECUTE_PATH = "execute/"

USER_AGENT = f"sandbox-exporter/{__version__}"
DEFAULT_MAX_RESPONSE_BYTES = 16 * 2**20
# An error page only feeds the exception message; no need to read more.
ERROR_BODY_BYTES = 64 * 1024
EXCERPT_CHARS = 200

_USERINFO = re.compile(r"(?<=://)[^/\s]*@")
_CREDENTIAL_HEADER = re.compile(r"auth|cookie|token|secret|key|pass|session|signature", re.I)


def without_userinfo(text: str) -> str:
    """Any URL in ``text`` without its ``user:password@``."""
    return _USERINFO.sub("", text)


def seconds_text(value: float | None) -> str:
    """A deadline as a person would say it: '1 s', '0.25 s', '60 s'. What is left
    of a probe's budget is 0.9999871...: two significant digits say it."""
    if value is None:
        return "the time allowed"
    return f"{value:.0f} s" if value >= 10 else f"{value:.2g} s"


def check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_header_text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain line breaks")
    return value


def parse_base_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the base URL ending with '/', without credentials; the credentials it carried)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    shown = without_userinfo(url)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- parsed only to reject a bad port
    except ValueError as error:
        raise ValueError(f"invalid sandbox URL {shown!r}: {error}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"sandbox URL must start with http:// or https://, got {shown!r}")
    if not parts.hostname:
        raise ValueError(f"sandbox URL has no host: {shown!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"sandbox URL must not have a query or a fragment: {shown!r}")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    url_auth = None
    if userinfo:
        user, _, password = userinfo.partition(":")
        url_auth = (unquote(user), unquote(password))
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme.lower(), hostport, path, "", "")), url_auth


def environment_path(uuid: str, path: str | None) -> str:
    """The path of a saved environment, or of one file inside it."""
    if not isinstance(uuid, str) or not uuid:
        raise TypeError(f"uuid must be a non-empty string, got {uuid!r}")
    if path is None:
        return f"environments/{quote(uuid, safe='')}/"
    if not isinstance(path, str) or not path:
        raise TypeError(f"path must be a non-empty string, got {path!r}")
    return f"files/{quote(uuid, safe='')}/{quote(path.strip('/'), safe='/')}/"


def request_headers(
    headers: Mapping[str, str] | None, auth: tuple[str, str] | None, bearer_token: str | None
) -> dict[str, str]:
    """Checked extra headers, with the Authorization of basic ``auth`` or ``bearer_token``;
    raises on anything unsendable."""
    extra: dict[str, str] = {}
    for name, value in (headers or {}).items():
        extra[check_header_text("header name", name)] = check_header_text(f"header {name!r}", value)
    if auth is not None and bearer_token is not None:
        raise ValueError("give either auth= (basic) or bearer_token=, not both")
    has_authorization = any(name.lower() == "authorization" for name in extra)
    if (auth is not None or bearer_token is not None) and has_authorization:
        raise ValueError("give either an Authorization header or auth=/bearer_token=, not both")
    if auth is not None:
        if not (isinstance(auth, tuple) and len(auth) == 2):
            raise TypeError("auth must be a (username, password) tuple")
        check_header_text("auth username", auth[0])
        check_header_text("auth password", auth[1])
        pair = f"{auth[0]}:{auth[1]}"
        try:
            raw = pair.encode("latin-1")  # what servers have long expected
        except UnicodeEncodeError:
            raw = pair.encode("utf-8")  # RFC 7617's charset="UTF-8"
        extra["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
    if bearer_token is not None:
        check_header_text("bearer_token", bearer_token)
        if not bearer_token.strip():
            raise ValueError("bearer_token must not be empty")
        extra["Authorization"] = f"Bearer {bearer_token}"
    return extra


class Secrets:
    """Our own credentials, kept out of every message and document we hand back.

    Only headers named like credentials count: hiding "https" of
    X-Forwarded-Proto would garble every URL and package name that contains it.
    """

    def __init__(self, headers: Mapping[str, str], auth: tuple[str, str] | None) -> None:
        found = []
        for name, value in headers.items():
            scheme, _, credential = value.partition(" ")
            if name.lower() == "authorization" and scheme.lower() in ("basic", "bearer"):
                # A server echoing headers back would show the credential alone.
                found.append(credential)
                if scheme.lower() == "basic":
                    continue  # the encoded pair hidden, "Basic ***" still says the kind
            if _CREDENTIAL_HEADER.search(name) and len(value) >= 4:
                found.append(value)
        if auth is not None:
            found.append(auth[1])
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = tuple(sorted({s for s in found if s}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        return self._hide(without_userinfo(text))

    def _hide(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def scrub(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A document fresh from ``json.loads``, our credentials in it replaced by ``***``.

        A server (or a proxy) that reflects the Authorization header into a
        document would otherwise hand our credentials to whatever shows its
        values: parse errors, metric labels, canary output. No recursion,
        whatever the nesting.
        """
        if not self._secrets:
            return doc
        pending: list[Any] = [doc]
        while pending:
            node = pending.pop()
            entries = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in list(entries):
                if isinstance(value, str):
                    node[key] = self._hide(value)
                elif isinstance(value, dict | list):
                    pending.append(value)
            if isinstance(node, dict):
                for key in [key for key in node if self._hide(key) != key]:
                    node[self._hide(key)] = node.pop(key)
        return doc

    def failure(
        self, kind: type[SandboxError], method: str, url: str, what: str, response: Any = None
    ) -> SandboxError:
        """An exception whose message says the request and what happened, redacted."""
        return kind(self.redact(f"{method} {url}: {what}"), response)

    def excerpt(self, body: bytes) -> str:
        # Redact before cutting: a cut through a secret would leave its start.
        text = " ".join(body[:ERROR_BODY_BYTES].decode("utf-8", "replace").split())
        return self.redact(text)[:EXCERPT_CHARS]
