"""Everything the transport raises about a sandbox: one class per kind of failure,
all under :class:`SandboxError`, and one ``Sandbox<code>`` per HTTP status >= 300
(``Sandbox404``...) as the classic ``sandbox-api`` package has them.
"""

from __future__ import annotations

import http
from typing import Any


class SandboxError(Exception):
    """Base of everything raised about a sandbox.

    ``response`` is the HTTP response when its status line and headers
    arrived (a :class:`sandbox_exporter.transport.Response`), else None.
    """

    def __init__(self, message: str = "", response: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class SandboxConnectionError(SandboxError):
    """No connection, or the connection broke: refused, DNS, reset, closed mid-response."""


class SandboxTimeout(SandboxError):
    """The request's deadline passed."""


class SandboxConnectTimeout(SandboxTimeout):
    """No connection could be made before the deadline."""


class SandboxReadTimeout(SandboxTimeout):
    """Connected, but the whole answer did not arrive before the deadline."""


class SandboxTLSError(SandboxError):
    """TLS handshake or certificate verification failed."""


class SandboxInvalidResponse(SandboxError):
    """The answer is not what the API promises: not JSON, not an object, wrong shape."""


class SandboxResponseTooLarge(SandboxInvalidResponse):
    """The answer is larger than the size cap; reading stopped there."""


class SandboxHTTPError(SandboxError):
    """The server answered with a status >= 300 (redirects are never followed)."""

    status: http.HTTPStatus | None = None

    def __init__(
        self, response: Any, message: str | None = None, *, status_code: int | None = None
    ) -> None:
        # A caller without a response object that has a status_code
        # (requests' and ours have) names the code itself.
        if status_code is None:
            status_code = response.status_code
        self.status_code: int = status_code
        if message is None:
            message = f"Sandbox responded with status {status_text(self.status_code)}"
        super().__init__(message, response)


def status_text(code: int) -> str:
    """`404 Not Found`, or the bare number for a status unknown to HTTPStatus."""
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


_STATUS_EXCEPTIONS: dict[int, type[SandboxHTTPError]] = {
    status.value: type(
        f"Sandbox{status.value}",
        (SandboxHTTPError,),
        {"__doc__": f"The sandbox answered {status.value} {status.phrase}.", "status": status},
    )
    for status in http.HTTPStatus
    if status.value >= 300
}
globals().update({cls.__name__: cls for cls in _STATUS_EXCEPTIONS.values()})


def error_class_for_status(code: int) -> type[SandboxHTTPError]:
    """``Sandbox404`` for 404...; a plain :class:`SandboxHTTPError` for an unknown status."""
    return _STATUS_EXCEPTIONS.get(code, SandboxHTTPError)


def status_exceptions(response: Any) -> SandboxHTTPError:
    """The exception matching ``response.status_code`` (``Sandbox404`` for 404...)."""
    return error_class_for_status(response.status_code)(response)


# Every exception class above, the Sandbox<code>s included, and the helpers.
__all__ = [
    name
    for name, value in globals().items()
    if isinstance(value, type) and issubclass(value, SandboxError)
]
__all__ += ["error_class_for_status", "status_exceptions", "status_text"]
