"""How the exporter connects to a target: credentials and certificate checking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, model_validator

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
from .section import Section, no_default

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
    password_file: SecretFromFile = Field(None, json_schema_extra=no_default)
    """A file holding the password (one line)."""
    password_env: SecretFromEnvironment = Field(None, json_schema_extra=no_default)
    """An environment variable holding the password."""
    bearer_token_file: SecretFromFile = Field(None, json_schema_extra=no_default)
    """A file holding the bearer token (one line)."""
    bearer_token_env: SecretFromEnvironment = Field(None, json_schema_extra=no_default)
    """An environment variable holding the bearer token."""
    headers: Annotated[
        Mapping[HeaderName, HeaderValue], FrozenMapping, AfterValidator(_unique_headers)
    ] = FrozenDict()
    """Extra HTTP headers sent with every request (never Authorization)."""

    @model_validator(mode="before")
    @classmethod
    def _one_source_per_secret(cls, data: Any) -> Any:
        # Checked before the secrets are read: reading both would be pointless.
        for stem in ("password", "bearer_token"):
            if isinstance(data, dict) and f"{stem}_file" in data and f"{stem}_env" in data:
                raise problem(f"set either {stem}_file or {stem}_env, not both", f"{stem}_file")
        return data

    @model_validator(mode="after")
    def _secrets_pair_up(self) -> Auth:
        if self.password and self.bearer_token:
            raise problem(
                "set either a password (basic authentication) or a bearer token, not both"
            )
        if self.password and self.username is None:
            raise problem("missing: a password needs a username", "username")
        if self.username is not None and not self.password:
            raise problem(
                "missing: a username needs a password (password_file or password_env)",
                "password_file",
            )
        return self

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
