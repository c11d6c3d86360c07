"""Which view a request reaches: the real server's URL patterns and, per
generation, the methods each view answers."""

from __future__ import annotations

import re

from .answers import HTML, Answer
from .faults import ENDPOINTS

# Emulator-only: the control endpoint for faults (not part of the sandbox API).
CONTROL_PATH = "/_emulator/faults/"

ROUTES = (
    ("specifications", re.compile(r"^/specifications/$")),
    ("usages", re.compile(r"^/usages/$")),
    ("libraries", re.compile(r"^/libraries/$")),
    ("execute", re.compile(r"^/execute/$")),
    ("environments", re.compile(r"^/environments/(?P<env>[^/]+)/$")),
    ("files", re.compile(r"^/files/(?P<env>[^/]+)/(?P<path>.+)/$")),
)
# Methods each view answers, per generation. 3.x class-based views also
# answer OPTIONS (200 with Allow); 2.x function views answer 405 to anything else.
VIEW_METHODS = {
    3: {
        "specifications": ("GET", "HEAD"),
        "usages": ("GET", "HEAD"),
        "libraries": ("GET", "HEAD"),
        "execute": ("POST",),
        "environments": ("GET", "HEAD"),
        "files": ("GET", "HEAD"),
    },
    2: {
        "specifications": ("GET",),
        "libraries": ("GET",),
        "execute": ("POST",),
        "environments": ("GET", "HEAD"),
        "files": ("GET", "HEAD"),
    },
}


def match_route(path: str) -> tuple[str, dict[str, str]] | None:
    """(endpoint, URL parameters) for a path the real server routes, None for its 404 page."""
    for endpoint, pattern in ROUTES:
        match = pattern.match(path)
        if match:
            return endpoint, match.groupdict()
    return None


def endpoint_of(path: str) -> str | None:
    """The endpoint a path belongs to (its first segment), for fault lookups."""
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in ENDPOINTS else None


def method_not_allowed(api: int, method: str, methods: tuple[str, ...]) -> Answer:
    """The answer of generation `api` to a method its view does not take."""
    if api >= 3:
        allow = ", ".join((*methods, "OPTIONS"))
        status = 200 if method == "OPTIONS" else 405
        return Answer(status, b"", HTML, [("Allow", allow)])
    return Answer(
        405,
        f"405 Method Not Allowed : {method}".encode(),
        HTML,
        [("Allow", ", ".join(methods))],
    )
