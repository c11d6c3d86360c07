"""How the exporter connects to a target: credentials and certificate checking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, model_validator

from ..expectations import FrozenDict
from .errors import problem
from .fields import (
    CaFile,
    FrozenMapping,
    HeaderName,
    HeaderValue,
    Secret,
    SecretFromEnvironment,
    SecretFromFile,
    Username,
)
from .section import Section

_INLINE_SECRET = (
    "inline secrets are not allowed (they would sit in a file anyone reading the "
    "configuration sees): put it in a file and use {stem}_file, or name an "
    "environment variable with {stem}_env"
)


def _unique_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    seen: set[str] = set()
    for name in headers:
        if name.lower() in seen:
            raise problem("set twice (header names are case-insensitive)", name)
        seen.add(name.lower())
    return headers


class Auth(Section):
    """Credentials for one target: HTTP basic (username + password) or a bearer token.

    Secrets come from a file (``*_file``, relative to the configuration file)
    or an environment variable (``*_env``), never from the configuration itself.
    """

    refused_keys: ClassVar[Mapping[str, str]] = {
        "password": _INLINE_SECRET.format(stem="password"),
        "bearer_token": _INLINE_SECRET.format(stem="bearer_token"),
        "token": _INLINE_SECRET.format(stem="bearer_token"),
    }

    username: Username | None = None
    """The HTTP basic authentication user name."""
    password_file: SecretFromFile | None = None
    """A file holding the password (one line)."""
    password_env: SecretFromEnvironment | None = None
    """An environment variable holding the password."""
    bearer_token_file: SecretFromFile | None = None
    """A file holding the bearer token (one line)."""
    bearer_token_env: SecretFromEnvironment | None = None
    """An environment variable holding the bearer token."""
    headers: Annotated[
        Mapping[HeaderName, HeaderValue], FrozenMapping, AfterValidator(_unique_headers)
    ] = FrozenDict()
    """Extra HTTP headers sent with every request (never Authorization)."""

    @model_validator(mode="before")
    @classmethod
    def _secrets_pair_up(cls, data: Any) -> Any:
        if not isinstance(data, dict) or any(key in data for key in cls.refused_keys):
            return data  # a refused key is reported alone: pairing advice would only add noise
        for key in ("password_file", "password_env", "bearer_token_file", "bearer_token_env"):
            if key in data and data[key] is None:
                raise problem("missing value", key)
        for stem in ("password", "bearer_token"):
            if f"{stem}_file" in data and f"{stem}_env" in data:
                raise problem(f"set either {stem}_file or {stem}_env, not both", f"{stem}_file")
        has_password = "password_file" in data or "password_env" in data
        has_username = data.get("username") is not None
        if has_password and ("bearer_token_file" in data or "bearer_token_env" in data):
            raise problem(
                "set either a password (basic authentication) or a bearer token, not both"
            )
        if has_password and not has_username:
            raise problem("missing: a password needs a username", "username")
        if has_username and not has_password:
            raise problem(
                "missing: a username needs a password (password_file or password_env)",
                "password_file",
            )
        return data

    @property
    def password(self) -> Secret | None:
        return self.password_file or self.password_env

    @property
    def bearer_token(self) -> Secret | None:
        return self.bearer_token_file or self.bearer_token_env


class TLS(Section):
    """How the server's certificate is checked."""

    ca_file: CaFile = None
    """A PEM bundle to verify the server with (null: the system store)."""
    insecure_skip_verify: bool = False
    """Do not verify the certificate at all (wins over ca_file)."""
