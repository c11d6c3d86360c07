"""What the exporter's answers ask of browsers, and which browser requests it refuses.

Operators open the pages in the browser they use for everything else, often
with basic-auth credentials cached in it, so the answers defend against
what another site could make that browser do:

- render an answer as something it is not (``nosniff`` on every answer);
- run injected markup: the pages need no script, no image, no font, no
  frame, so their policy allows none; escaping (:mod:`.pages`) is the first
  wall, the policy the second;
- frame a page to trick clicks on it (``frame-ancestors 'none'``);
- learn the exporter's addresses and target names from the ``Referer`` of a
  link followed from a page (``same-origin``: no other site gets one);
- submit a form to the exporter with the cached credentials: a request that
  changes something (probe now, reload) is refused when a browser says it
  comes from another site.

No I/O, no HTTP framework: the web layer sets the headers and answers the
refusals (:mod:`.web`).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = [
    "ANSWER_HEADERS",
    "PAGE_HEADERS",
    "PAGE_POLICY",
    "cross_site_refusal",
    "headers_for",
]

# Each directive is what the pages use, nothing more. style-src: the pages
# carry their CSS in one <style> element and may use style attributes, so
# inline styles are allowed, and no stylesheet from anywhere.
# No img-src: an injected <img src="probe?..."> would be a GET the browser
# sends on its own. form-action: "probe now" posts to this server only.
PAGE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

#: On every answer: a body is what its Content-Type says, never sniffed.
ANSWER_HEADERS: Mapping[str, str] = {"X-Content-Type-Options": "nosniff"}

#: On every HTML answer, on top of ``ANSWER_HEADERS``.
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": PAGE_POLICY,
    # frame-ancestors' older spelling, for browsers that predate it.
    "X-Frame-Options": "DENY",
    # Not no-referrer: browsers then send `Origin: null` with the pages' own
    # POSTs (Fetch standard), and a browser without Sec-Fetch-Site could no
    # longer probe now. same-origin sends nothing to any other site either.
    "Referrer-Policy": "same-origin",
}

# Methods a browser sends to read; anything else may change something.
_READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request this server's own page (or the
# operator typing an address) started.
_OWN_SITE = frozenset({"same-origin", "none"})
_SHOWN_HEADER_LENGTH = 100


def headers_for(content_type: str) -> Mapping[str, str]:
    """The headers an answer of `content_type` carries."""
    if content_type == "text/html":
        return {**ANSWER_HEADERS, **PAGE_HEADERS}
    return ANSWER_HEADERS


def cross_site_refusal(method: str, headers: Mapping[str, str], host: str | None) -> str | None:
    """Why a request that may change something is refused, or None to serve it.

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (set by the
    browser itself, so trusted first, and right behind proxies that rewrite
    ``Host``), else ``Origin``, compared with the ``Host`` the request was
    sent to. A request with neither is not a browser's form or script (curl,
    Prometheus' tooling, scripts) and is served: cross-site forgery needs a
    browser, and browsers send ``Origin`` on every POST.
    """
    if method.upper() in _READING_METHODS:
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.strip().lower() in _OWN_SITE:
            return None
        return (
            f"{method} refused: the browser says this request comes from another site "
            f"(Sec-Fetch-Site: {_shown(site)}); only this server's own pages may change "
            "anything here. From a script or a terminal, send no Origin or "
            "Sec-Fetch-Site header."
        )
    origin = headers.get("Origin")
    if origin is None:
        return None
    # Scheme aside, as a TLS-terminating proxy hides it: the host and port
    # are what tell another site apart.
    origin_host = urlsplit(origin.strip()).netloc.lower() if "://" in origin else ""
    if host and origin_host == host.strip().lower():
        return None
    return (
        f"{method} refused: the request comes from {_shown(origin)}, not from this server "
        f"({_shown(host or 'no Host header')}); only this server's own pages may change "
        "anything here. From a script or a terminal, send no Origin header."
    )


def _shown(value: str) -> str:
    """A header value fit for an error message: quoted, and short."""
    if len(value) > _SHOWN_HEADER_LENGTH:
        value = value[:_SHOWN_HEADER_LENGTH] + "..."
    return repr(value)
