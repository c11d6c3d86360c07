"""Form bodies the way Django splits them: plain fields (request.POST) and files (request.FILES)."""

from __future__ import annotations

import email.parser
import email.policy
import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qs

logger = logging.getLogger(__name__)


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def parse_form(content_type: str | None, body: bytes) -> Form:
    """Split a multipart/form-data or urlencoded body; anything unreadable gives an empty form.

    As in Django, a part with a filename is a file and never a field, and for a
    repeated name the last value wins (what Django's `.get()` returns).
    """
    form = Form()
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", errors="replace")
        for name, values in parse_qs(text, keep_blank_values=True).items():
            form.fields[name] = values[-1]
    elif media_type == "multipart/form-data":
        try:
            _parse_multipart(content_type or "", body, form)
        except Exception:  # a garbled body is the client's problem, never the emulator's
            logger.debug("unreadable multipart body", exc_info=True)
            return Form()
    return form


def _parse_multipart(content_type: str, body: bytes, form: Form) -> None:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            form.files[str(name)] = payload
        else:
            charset = part.get_content_charset() or "utf-8"
            try:
                form.fields[str(name)] = payload.decode(charset, errors="replace")
            except LookupError:
                form.fields[str(name)] = payload.decode("utf-8", errors="replace")
