"""TLS and basic authentication for the exporter's own endpoints (`--web.config.file`).

The file has the shape of the web configuration of Prometheus'
exporter-toolkit, so one file can serve every exporter on a host::

    tls_server_config:
      cert_file: server.crt            # relative paths: to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, see CLIENT_AUTH_TYPES
      client_ca_file: clients-ca.pem                 # needed to verify client certificates
      min_version: TLS12                             # optional, TLS10..TLS13
      max_version: TLS13
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':\\n'

The types below are the file's schema, validated like the main configuration
(:mod:`.config`): every problem at once, with its key path and line. Like the
toolkit, basic auth guards every path, `/-/healthy` included. Keys of the
toolkit that this exporter does not implement (inline `cert`/`key`, cipher
suites, `http_server_config`, `rate_limit`...) are errors, never silently
ignored. The file is read once at start-up.

Password hashes are treated as secrets: no message, log line or repr shows
them.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from .config.fields import FrozenMapping, ReadableFile, Username
from .config.models import Section
from .config.problems import ConfigError, describe, problem, problems_of, render
from .config.yamlfile import load_yaml_with_positions, read_text
from .expectations import FrozenDict

__all__ = [
    "CLIENT_AUTH_TYPES",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]

# The toolkit's names (Go's tls.ClientAuthType) -> what Python's ssl can do.
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_NOT_IMPLEMENTED = "exporter-toolkit option not supported by sandbox-exporter"
# $2a$, $2b$, $2x$ or $2y$, a two-digit cost, 22 characters of salt and 31 of hash.
_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")


class WebConfigError(ConfigError):
    """The web configuration file is not valid; ``errors`` names each bad key."""


def _verified(client_auth_type: object) -> object:
    # Go can ask for a client certificate without verifying it; Python's ssl
    # module cannot, and the toolkit itself calls these insecure.
    if client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
        raise problem(
            f"{client_auth_type} (a client certificate accepted without verification) is not "
            "supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with "
            "client_ca_file"
        )
    return client_auth_type


ClientAuthType = Annotated[
    Literal[tuple(CLIENT_AUTH_TYPES)],  # type: ignore[valid-type]
    BeforeValidator(_verified),
]
TLSVersion = Literal[tuple(TLS_VERSIONS)]  # type: ignore[valid-type]


def _bcrypt_hash(value: object) -> str:
    # Never show the value: it may be a hash, or a password pasted by mistake.
    if not isinstance(value, str):
        raise problem(f"expected a bcrypt hash (a string), got {describe(value, show=False)}")
    match = _BCRYPT_HASH.fullmatch(value.strip())
    if match is None:
        raise problem(
            "not a bcrypt hash (expected $2y$<cost>$ and 53 characters, as "
            "`htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints); the value is not shown"
        )
    if not 4 <= int(match.group(1)) <= 31:
        raise problem("bcrypt cost must be between 04 and 31")
    return value.strip()


BcryptHash = Annotated[str, PlainValidator(_bcrypt_hash, json_schema_input_type=str)]


class TLSServerConfig(Section):
    """Where the certificate and key are, and whether clients must show one."""

    refused_keys = dict.fromkeys(
        [
            "cert",
            "key",
            "client_ca",
            "client_allowed_sans",
            "cipher_suites",
            "prefer_server_cipher_suites",
            "curve_preferences",
        ],
        _NOT_IMPLEMENTED,
    )

    cert_file: ReadableFile
    """The server's certificate chain (PEM), needed to serve TLS."""
    key_file: ReadableFile
    """The certificate's private key (PEM), needed to serve TLS."""
    client_auth_type: ClientAuthType = "NoClientCert"
    """Whether clients must show a certificate signed by client_ca_file."""
    client_ca_file: ReadableFile | None = None
    """The CA bundle (PEM) that client certificates are verified against."""
    min_version: TLSVersion = "TLS12"
    """The oldest TLS version accepted."""
    max_version: TLSVersion = "TLS13"
    """The newest TLS version accepted."""

    @model_validator(mode="after")
    def _usable(self) -> TLSServerConfig:
        verifies = self.client_auth_type != "NoClientCert"
        if verifies and self.client_ca_file is None:
            raise problem(
                f"required with client_auth_type {self.client_auth_type}, "
                "to verify client certificates against",
                "client_ca_file",
            )
        if not verifies and self.client_ca_file is not None:
            # The toolkit refuses this too: a CA that nothing uses is a mistake.
            raise problem(
                "given but client_auth_type is NoClientCert; set client_auth_type: "
                "RequireAndVerifyClientCert to check client certificates",
                "client_ca_file",
            )
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise problem(f"{self.min_version} is above max_version", "min_version")
        try:
            # Load it now: a bad certificate must stop the start, not the first scrape.
            self.ssl_context()
        except (ssl.SSLError, OSError, ValueError) as error:
            raise problem(f"cannot use cert_file, key_file or client_ca_file: {error}") from None
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context; raises ``ssl.SSLError``/``OSError`` on bad files."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        context.load_cert_chain(self.cert_file, self.key_file)
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
        return context


class WebConfig(Section):
    """The web configuration file. No TLS and no users means plain, open HTTP."""

    refused_keys = dict.fromkeys(("http_server_config", "rate_limit"), _NOT_IMPLEMENTED)

    tls: TLSServerConfig | None = Field(None, alias="tls_server_config")
    """Serve HTTPS (null: plain HTTP)."""
    # Kept out of the repr so that a hash never reaches a log.
    basic_auth_users: Annotated[Mapping[Username, BcryptHash], FrozenMapping] = Field(
        FrozenDict(), repr=False
    )
    """User names and their bcrypt hashes; when given, every path asks for one."""

    _source: str = PrivateAttr(default="<string>")

    @property
    def source(self) -> str:
        """Where this configuration came from (a file name or ``<string>``)."""
        return self._source


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and check the web configuration file; raises :class:`WebConfigError`."""
    file_path = Path(path)
    try:
        text = read_text(file_path, "web configuration file")
    except ConfigError as error:
        raise WebConfigError(error.errors, error.source) from None
    return parse_web_config(text, source=str(file_path), base_dir=file_path.absolute().parent)


def parse_web_config(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> WebConfig:
    """Check web configuration ``text``; relative paths resolve against ``base_dir``
    (default: the current directory). Raises :class:`WebConfigError` listing every problem."""
    try:
        document, positions = load_yaml_with_positions(text, source)
    except ConfigError as error:
        raise WebConfigError(error.errors, source) from None
    context = {"base_dir": base_dir}
    try:
        config = WebConfig.model_validate({} if document is None else document, context=context)
    except ValidationError as error:
        problems = list(problems_of(error, model=WebConfig))
        raise WebConfigError(render(problems, positions), source) from None
    config._source = source
    return config
