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


# The root page (emulator-only: a real server answers 404 there) lists the
# endpoints for someone who opened the base URL in a browser.
ROOT_PATH = "/"
_ENDPOINT_USES = {
    "specifications": ("/specifications/", "versions, container pool, host"),
    "usages": ("/usages/", "what the host and the containers use now (about 2 s)"),
    "libraries": ("/libraries/", "installed languages and packages"),
    "execute": ("/execute/", "run commands in a container (multipart form)"),
    "environments": ("/environments/<uuid>/", "a saved environment, as a .tgz"),
    "files": ("/files/<uuid>/<path>/", "one file of a saved environment"),
}


def root_page(api: int, version: str) -> str:
    """What the base URL shows: this is an API, and its endpoints."""
    lines = [
        f"Emulated sandbox server {version} (the {api}.x API): an HTTP API for programs, "
        "not a web page.",
        "",
        "Endpoints:",
    ]
    for endpoint, methods in VIEW_METHODS[api].items():
        path, use = _ENDPOINT_USES[endpoint]
        lines.append(f"  {methods[0]:<5}{path:<24}{use}")
    lines += ["", f"Emulator only: GET, POST, DELETE {CONTROL_PATH} (the faults injected now)."]
    return "\n".join(lines) + "\n"


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
