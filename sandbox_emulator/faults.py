"""Fault injection: what can go wrong on purpose, per endpoint.

A `Fault` describes how the emulator misbehaves for one endpoint; a
`FaultBoard` holds the current faults and is safe to change while requests are
being answered. The same faults can be given from Python, from the command line
(`--fault 'execute:status=503'`) or over HTTP (`POST /_emulator/faults/`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Endpoint names a fault can be attached to; "*" means every endpoint.
ENDPOINTS = ("specifications", "usages", "libraries", "execute", "environments", "files")
ALL_ENDPOINTS = "*"

FaultBody = bytes | str | dict | list | None
# The fault's fields that are on or off; given bare (`drop`) on the command line.
_FLAGS = ("drop", "head_body")


def _check_seconds(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Fault.{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Fault.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Fault:
    """How one endpoint misbehaves.

    latency: seconds to wait before answering (the real work, if any, happens after).
    status: answer this HTTP status instead of doing the real work (short text body).
    body: answer this body instead of doing the real work: bytes/str sent verbatim,
        dict/list JSON-encoded (for malformed or wrongly shaped documents).
    drop: close the connection without any answer.
    drip: seconds between single bytes of the body (slow drip).
    content_type: replace the Content-Type of the answer.
    truncate: send the headers with the full Content-Length, then only this many
        bytes of the body, then close the connection.
    head_body: answer HEAD with the body too, as the real servers do when run
        on Django's development server (their README's way).
    """

    latency: float = 0.0
    status: int | None = None
    body: FaultBody = None
    drop: bool = False
    drip: float | None = None
    content_type: str | None = None
    truncate: int | None = None
    head_body: bool = False

    def __post_init__(self) -> None:
        _check_seconds("latency", self.latency)
        _check_seconds("drip", self.drip, allow_none=True)
        if self.status is not None and (
            isinstance(self.status, bool)
            or not isinstance(self.status, int)
            or not 100 <= self.status <= 599
        ):
            raise ValueError(f"Fault.status must be an HTTP status 100..599, got {self.status!r}")
        if self.body is not None and not isinstance(self.body, bytes | str | dict | list):
            raise TypeError(
                f"Fault.body must be bytes, str, dict or list, got {type(self.body).__name__}"
            )
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Fault.{name} must be a boolean, got {getattr(self, name)!r}")
        if self.content_type is not None and (
            not isinstance(self.content_type, str) or not self.content_type.strip()
        ):
            raise ValueError(
                f"Fault.content_type must be a non-empty string, got {self.content_type!r}"
            )
        if self.content_type is not None and any(c in self.content_type for c in "\r\n"):
            raise ValueError("Fault.content_type must not contain line breaks")
        if self.truncate is not None and (
            isinstance(self.truncate, bool)
            or not isinstance(self.truncate, int)
            or self.truncate < 0
        ):
            raise ValueError(f"Fault.truncate must be an integer >= 0, got {self.truncate!r}")

    @property
    def replaces_answer(self) -> bool:
        """True when the real work is skipped and a made-up answer is sent."""
        return self.status is not None or self.body is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly view (bytes bodies are shown decoded, lossy)."""
        doc = asdict(self)
        if isinstance(self.body, bytes):
            doc["body"] = self.body.decode("utf-8", errors="replace")
        return doc


_FIELD_NAMES = tuple(f.name for f in fields(Fault))


def check_endpoint(endpoint: object) -> str:
    """Return `endpoint` if it names an endpoint (or "*"), raise ValueError otherwise."""
    if endpoint == ALL_ENDPOINTS or endpoint in ENDPOINTS:
        return endpoint  # type: ignore[return-value]
    raise ValueError(
        f"unknown endpoint {endpoint!r}; expected one of {', '.join(ENDPOINTS)} or '*'"
    )


def fault_from_json(doc: object) -> tuple[str, Fault]:
    """Read `{"endpoint": "execute", "status": 500, ...}` (the control endpoint's body)."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"a fault must be a JSON object, not {type(doc).__name__}")
    if "endpoint" not in doc:
        raise ValueError("missing field 'endpoint'")
    endpoint = check_endpoint(doc["endpoint"])
    unknown = sorted(set(doc) - set(_FIELD_NAMES) - {"endpoint"})
    if unknown:
        raise ValueError(
            f"unknown fault field {unknown[0]!r}; expected some of {', '.join(_FIELD_NAMES)}"
        )
    kwargs = {name: doc[name] for name in _FIELD_NAMES if name in doc}
    for name in ("latency", *_FLAGS):
        if kwargs.get(name) is None:
            kwargs.pop(name, None)
    return endpoint, Fault(**kwargs)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_fault_spec(spec: str) -> tuple[str, Fault]:
    """Read the command-line form `endpoint:key=value[,key=value...]`.

    Keys: latency, status, body, drop, drip, content_type, truncate, head_body.
    `body=` takes the rest of the text (commas included), so it must come last.
    A bare `drop` or `head_body` means `=true`.
    """
    endpoint, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"fault {spec!r}: expected 'endpoint:key=value[,key=value...]'")
    endpoint = check_endpoint(endpoint.strip())
    kwargs: dict[str, Any] = {}
    remaining = rest
    while remaining:
        item, _, after = remaining.partition(",")
        key, has_value, value = item.partition("=")
        key = key.strip()
        if key == "body":
            kwargs["body"] = remaining.partition("=")[2]
            break
        remaining = after
        if not key:
            continue
        if key in _FLAGS and not has_value:
            kwargs[key] = True
            continue
        if not has_value:
            raise ValueError(f"fault {spec!r}: {key!r} needs a value ({key}=...)")
        try:
            if key in ("latency", "drip"):
                kwargs[key] = float(value)
            elif key in ("status", "truncate"):
                kwargs[key] = int(value)
            elif key in _FLAGS:
                kwargs[key] = _parse_bool(value)
            elif key == "content_type":
                kwargs[key] = value
            else:
                raise ValueError(f"unknown key {key!r}; expected some of {', '.join(_FIELD_NAMES)}")
        except ValueError as error:
            raise ValueError(f"fault {spec!r}: {key}: {error}") from None
    try:
        return endpoint, Fault(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"fault {spec!r}: {error}") from None


class FaultBoard:
    """The faults in force, changeable from any thread."""

    def __init__(self, faults: Mapping[str, Fault] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        for endpoint, fault in (faults or {}).items():
            self.set(endpoint, fault)

    def set(self, endpoint: str, fault: Fault) -> None:
        check_endpoint(endpoint)
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        with self._lock:
            self._faults[endpoint] = fault

    def clear(self, endpoint: str | None = None) -> None:
        with self._lock:
            if endpoint is None:
                self._faults.clear()
            else:
                self._faults.pop(check_endpoint(endpoint), None)

    def for_endpoint(self, endpoint: str) -> Fault | None:
        """The fault for this endpoint; a specific one wins over "*"."""
        with self._lock:
            return self._faults.get(endpoint) or self._faults.get(ALL_ENDPOINTS)

    def snapshot(self) -> dict[str, Fault]:
        with self._lock:
            return dict(self._faults)
