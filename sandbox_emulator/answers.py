"""What the emulator sends back: an answer, and the real server's stock pages."""

from __future__ import annotations

import http
import json
from dataclasses import dataclass, field
from typing import Any

from .faults import Fault

HTML = "text/html; charset=utf-8"
JSON = "application/json"
# Django's page for an unmatched URL when DEBUG is off.
NOT_FOUND_PAGE = (
    b"<!doctype html>\n"
    b'<html lang="en">\n'
    b"<head>\n"
    b"  <title>Not Found</title>\n"
    b"</head>\n"
    b"<body>\n"
    b"  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    b"</body>\n"
    b"</html>\n"
)
SERVER_ERROR_PAGE = b"<h1>Server Error (500)</h1>"
# What each endpoint's body is when it succeeds: an injected body that
# replaces a success keeps that type.
NATURAL_CONTENT_TYPES = {
    "specifications": JSON,
    "usages": JSON,
    "libraries": JSON,
    "execute": JSON,
    "environments": "application/gzip",
    "files": "application/octet-stream",
}


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str | None = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_answer(document: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(document).encode(), JSON)


def text_answer(status: int, message: str, content_type: str = HTML) -> Answer:
    return Answer(status, message.encode(), content_type)


def fault_answer(fault: Fault, endpoint: str) -> Answer:
    """The answer a fault with a status or a body sends instead of the real one."""
    status = fault.status if fault.status is not None else 200
    if isinstance(fault.body, dict | list):
        return Answer(status, json.dumps(fault.body).encode(), JSON)
    if fault.body is not None:
        body = fault.body.encode() if isinstance(fault.body, str) else fault.body
        content_type = NATURAL_CONTENT_TYPES[endpoint] if status < 400 else HTML
        return Answer(status, body, content_type)
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Injected fault"
    return text_answer(status, phrase)
