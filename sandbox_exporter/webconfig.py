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

Like the toolkit, basic auth guards every path, `/-/healthy` included. Keys
of the toolkit that this exporter does not implement (inline `cert`/`key`,
cipher suites, `http_server_config`, `rate_limit`...) are errors, never
silently ignored. The file is read once at start-up.

Password hashes are treated as secrets: no message, log line or repr shows
them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, load_yaml

__all__ = [
    "CLIENT_AUTH_TYPES",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]

log = logging.getLogger(__name__)

# The toolkit's names (Go's tls.ClientAuthType) -> what Python's ssl can do.
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go can ask for a client certificate without verifying it; Python's ssl
# module cannot, and the toolkit itself calls these insecure.
_UNSUPPORTED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert")
TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

_TOP_KEYS = ("tls_server_config", "basic_auth_users")
_TOOLKIT_TOP_KEYS = ("http_server_config", "rate_limit")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
)
_TOOLKIT_TLS_KEYS = (
    "cert",
    "key",
    "client_ca",
    "client_allowed_sans",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
# $2a$, $2b$, $2x$ or $2y$, a two-digit cost, 22 characters of salt and 31 of hash.
_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


class WebConfigError(ConfigError):
    """The web configuration file is not valid; ``errors`` names each bad key."""


@dataclass(frozen=True)
class TLSServerConfig:
    """Where the certificate and key are, and whether clients must show one."""

    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

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


@dataclass(frozen=True)
class WebConfig:
    """A valid web configuration. No TLS and no users means plain, open HTTP."""

    tls: TLSServerConfig | None = None
    # user -> bcrypt hash; kept out of the repr so a hash never reaches a log.
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    source: str = "<string>"


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and check the web configuration file; raises :class:`WebConfigError`."""
    file_path = Path(path)
    source = str(file_path)
    try:
        text = file_path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise WebConfigError(
            [f"cannot read the web configuration file: {reason}"], source
        ) from None
    except UnicodeDecodeError as error:
        raise WebConfigError(
            [f"not UTF-8 text (invalid byte at offset {error.start})"], source
        ) from None
    return parse_web_config(text, source=source, base_dir=file_path.absolute().parent)


def parse_web_config(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> WebConfig:
    """Check web configuration ``text``; relative paths resolve against ``base_dir``
    (default: the current directory). Raises :class:`WebConfigError` listing every problem."""
    try:
        document = load_yaml(text, source)
    except ConfigError as error:
        raise WebConfigError(error.errors, source) from None
    if document is not None and not isinstance(document, Mapping):
        raise WebConfigError(
            [f"the web configuration must be a mapping, got {_kind(document)}"], source
        )
    errors: list[str] = []
    top = _keys_of(document, "", _TOP_KEYS, _TOOLKIT_TOP_KEYS, errors) or {}
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    tls = None
    if top.get("tls_server_config") is not None:
        tls = _tls(top["tls_server_config"], base, errors)
    users = _users(top.get("basic_auth_users"), errors)
    if errors:
        raise WebConfigError(errors, source)
    return WebConfig(tls, users, source)


def _keys_of(
    value: object, path: str, allowed: tuple[str, ...], toolkit_only: tuple[str, ...], errors: list
) -> Mapping[str, Any] | None:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected a mapping, got {_kind(value)}")
        return None
    for key in value:
        # Odd keys (line breaks, spaces) are quoted so that a message stays one line.
        shown = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else json.dumps(str(key))
        where = f"{path}.{shown}" if path else shown
        if key in toolkit_only:
            errors.append(f"{where}: exporter-toolkit option not supported by sandbox-exporter")
        elif key not in allowed:
            errors.append(f"{where}: unknown key; expected one of {', '.join(allowed)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else type(value).__name__
    )


def _string(section: Mapping[str, Any], key: str, path: str, errors: list[str]) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{path}.{key}: expected a non-empty string, got {_kind(value)}")
        return None
    return value


def _readable_file(
    section: Mapping[str, Any], key: str, path: str, base_dir: Path, errors: list[str]
) -> str | None:
    name = _string(section, key, path, errors)
    if name is None:
        return None
    file_path = base_dir / name
    try:
        with file_path.open("rb"):
            pass
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the name
        reason = getattr(error, "strerror", None) or str(error)
        errors.append(f"{path}.{key}: cannot read {name!r}: {reason}")
        return None
    return str(file_path)


def _tls(value: object, base_dir: Path, errors: list[str]) -> TLSServerConfig | None:
    path = "tls_server_config"
    section = _keys_of(value, path, _TLS_KEYS, _TOOLKIT_TLS_KEYS, errors)
    if section is None:
        return None
    before = len(errors)
    files = {}
    for key in ("cert_file", "key_file"):
        if section.get(key) is None:
            errors.append(f"{path}.{key}: required to serve TLS")
        files[key] = _readable_file(section, key, path, base_dir, errors)
    ca_file = _readable_file(section, "client_ca_file", path, base_dir, errors)

    auth_type = _string(section, "client_auth_type", path, errors) or "NoClientCert"
    if auth_type in _UNSUPPORTED_CLIENT_AUTH_TYPES:
        errors.append(
            f"{path}.client_auth_type: {auth_type} (a client certificate accepted without "
            "verification) is not supported; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    elif auth_type not in CLIENT_AUTH_TYPES:
        errors.append(
            f"{path}.client_auth_type: unknown type {auth_type!r}; expected one of "
            f"{', '.join(CLIENT_AUTH_TYPES)}"
        )
    elif auth_type != "NoClientCert" and section.get("client_ca_file") is None:
        errors.append(
            f"{path}.client_ca_file: required with client_auth_type {auth_type}, "
            "to verify client certificates against"
        )
    elif auth_type == "NoClientCert" and section.get("client_ca_file") is not None:
        # The toolkit refuses this too: a CA that nothing uses is a mistake.
        errors.append(
            f"{path}.client_ca_file: given but client_auth_type is NoClientCert; "
            "set client_auth_type: RequireAndVerifyClientCert to check client certificates"
        )

    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = _string(section, key, path, errors) or default
        if version not in TLS_VERSIONS:
            errors.append(
                f"{path}.{key}: unknown TLS version {version!r}; expected one of "
                f"{', '.join(TLS_VERSIONS)}"
            )
        versions[key] = version
    if (
        all(v in TLS_VERSIONS for v in versions.values())
        and TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]
    ):
        errors.append(f"{path}.min_version: {versions['min_version']} is above max_version")

    if len(errors) > before or files["cert_file"] is None or files["key_file"] is None:
        return None
    tls = TLSServerConfig(
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        client_auth_type=auth_type,
        client_ca_file=ca_file,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
    )
    try:
        # Load it now: a bad certificate must stop the start, not the first scrape.
        tls.ssl_context()
    except (ssl.SSLError, OSError, ValueError) as error:
        errors.append(f"{path}: cannot use cert_file, key_file or client_ca_file: {error}")
        return None
    return tls


def _users(value: object, errors: list[str]) -> dict[str, str]:
    path = "basic_auth_users"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected a mapping of user names to bcrypt hashes")
        return {}
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            errors.append(f"{path}: user names must be non-empty strings, got {_kind(user)}")
            continue
        if ":" in user or any(ord(c) < 32 or ord(c) == 127 for c in user):
            # Basic auth sends "user:password": a colon would end the name early.
            errors.append(f"{path}[{user!r}]: a user name cannot hold ':' or control characters")
            continue
        where = f"{path}.{user}"
        # Never show the value: it may be a hash, or a password pasted by mistake.
        if not isinstance(hashed, str):
            errors.append(f"{where}: expected a bcrypt hash (a string), got {_kind(hashed)}")
            continue
        match = _BCRYPT_HASH.fullmatch(hashed.strip())
        if match is None:
            errors.append(
                f"{where}: not a bcrypt hash (expected $2y$<cost>$ and 53 characters, "
                "as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints); the value is not shown"
            )
            continue
        if not 4 <= int(match.group(1)) <= 31:
            errors.append(f"{where}: bcrypt cost must be between 04 and 31")
            continue
        users[user] = hashed.strip()
    return users
