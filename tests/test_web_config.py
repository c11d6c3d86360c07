"""`--web.config.file`: TLS and basic auth on the exporter's own endpoints.

Certificates are made for each test session by the openssl command line;
password hashes by the bcrypt library at its lowest cost, to stay fast.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml
from harness import RunningExporter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sandbox_exporter.basic_auth import PasswordCheck
from sandbox_exporter.config import parse_config
from sandbox_exporter.webconfig import (
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_web_config,
)

from helpers import free_port, wait_until

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "S3CR3T-OTHER-PASSWORD"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Certificates:
    directory: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A self-signed server certificate for 127.0.0.1, and a client CA with one client."""
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.pem"),
        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    )  # fmt: skip
    _openssl(
        "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
        "-days", "2", "-subj", "/CN=test client CA",
    )  # fmt: skip
    _openssl(
        "req", "-new", *ec, "-keyout", str(d / "client.key"), "-out", str(d / "client.csr"),
        "-subj", "/CN=prometheus",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "client.pem"),
        "-days", "2",
    )  # fmt: skip
    return Certificates(
        d,
        d / "server.pem",
        d / "server.key",
        d / "ca.pem",
        d / "client.pem",
        d / "client.key",
    )


@pytest.fixture(scope="module")
def password_hash() -> str:
    # "$2y$" is what htpasswd writes (and the toolkit's docs show); same algorithm.
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")


def write(directory: Path, text: str, name: str = "web.yml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------- parsing


def test_empty_file_means_plain_open_http(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, ""))
    assert config.source == str(tmp_path / "web.yml")
    assert config.tls is None and not config.basic_auth_users
    # Sections written but left empty mean the same.
    assert parse_web_config("tls_server_config:\nbasic_auth_users:\n") == WebConfig()


def test_full_file_resolves_paths_next_to_it(certs: Certificates, password_hash: str) -> None:
    path = write(
        certs.directory,
        f"""\
        tls_server_config:
          cert_file: server.pem
          key_file: server.key
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: ca.pem
          min_version: TLS13
        basic_auth_users:
          prometheus: {password_hash}
        """,
    )
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == str(certs.server_cert)
    assert config.tls.client_ca_file == str(certs.client_ca)
    assert (config.tls.min_version, config.tls.max_version) == ("TLS13", "TLS13")
    assert config.basic_auth_users == {"prometheus": password_hash}
    assert password_hash not in repr(config)


BAD_FILES = [
    ("- a list", "(top level): expected a mapping, got a list"),
    ("tls_server_config: {cert_file: server.pem, key_file: [x", "line 1, column"),
    ("basic_auth_users: {}\nbasic_auth_users: {}", "duplicate key 'basic_auth_users'"),
    (
        "basic_auth_user: {}",
        "basic_auth_user: unknown key (did you mean 'basic_auth_users'?); expected one of",
    ),
    ("rate_limit: {interval: 1s}", "rate_limit: exporter-toolkit option not supported"),
    ("http_server_config: {http2: false}", "http_server_config: exporter-toolkit option"),
    ("tls_server_config: [a]", "tls_server_config: expected a mapping, got a list"),
    (
        "tls_server_config: {key_file: server.key}",
        "tls_server_config.cert_file: missing (the server's",
    ),
    (
        "tls_server_config: {cert_file: server.pem}",
        "tls_server_config.key_file: missing (the certificate's",
    ),
    (
        "tls_server_config: {cert_file: nope.pem, key_file: server.key}",
        "tls_server_config.cert_file: '{directory}/nope.pem' is not a readable file",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: server.key, cert: PEM}",
        "tls_server_config.cert: exporter-toolkit option not supported",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: ca.key}",
        "tls_server_config: cannot use cert_file, key_file or client_ca_file",
    ),
    (
        "tls_server_config: {cert_file: server.key, key_file: server.key}",
        "tls_server_config: cannot use cert_file",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: server.key,"
        " client_auth_type: RequireAnyClientCert}",
        "client_auth_type: RequireAnyClientCert (a client certificate accepted without",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: server.key,"
        " client_auth_type: Sometimes}",
        "client_auth_type: expected one of: NoClientCert, VerifyClientCertIfGiven,"
        " RequireAndVerifyClientCert; got the string 'Sometimes'",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: server.key,"
        " client_auth_type: RequireAndVerifyClientCert}",
        "tls_server_config.client_ca_file: required with client_auth_type",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem}",
        "client_ca_file: given but client_auth_type is NoClientCert",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: server.key, min_version: TLS14}",
        "tls_server_config.min_version: expected one of: TLS10, TLS11, TLS12, TLS13;"
        " got the string 'TLS14'",
    ),
    (
        "tls_server_config: {cert_file: server.pem, key_file: server.key,"
        " min_version: TLS13, max_version: TLS12}",
        "tls_server_config.min_version: TLS13 is above max_version",
    ),
    (
        "tls_server_config: {cert_file: 5, key_file: server.key}",
        "tls_server_config.cert_file: expected a file name, got an integer",
    ),
    ("basic_auth_users: [alice]", "basic_auth_users: expected a mapping, got a list"),
    ("basic_auth_users: {alice: 12}", "basic_auth_users.alice: expected a bcrypt hash"),
    ("basic_auth_users: {'a:b': x}", "basic_auth_users.a:b: must not contain ':'"),
    ("basic_auth_users: {'': x}", 'basic_auth_users[""]: must not be empty'),
    ("basic_auth_users: {5: x}", "basic_auth_users: keys must be strings, got the integer 5"),
    (
        "basic_auth_users: {alice: S3CR3T-PLAIN-PASSWORD}",
        "basic_auth_users.alice: not a bcrypt hash",
    ),
    (
        "basic_auth_users: {alice: '$2y$99$" + "a" * 53 + "'}",
        "basic_auth_users.alice: bcrypt cost must be between 04 and 31",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_files_are_refused_naming_the_key(certs: Certificates, text: str, message: str) -> None:
    path = write(certs.directory, text, "bad.yml")
    with pytest.raises(WebConfigError) as raised:
        load_web_config(path)
    text_of_error = str(raised.value)
    assert message.replace("{directory}", str(certs.directory)) in text_of_error
    assert text_of_error.startswith(str(path) + ": ")
    # Whatever sat in a password field is never repeated back.
    assert "S3CR3T-PLAIN-PASSWORD" not in text_of_error
    assert "a" * 53 not in text_of_error


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError) as raised:
        parse_web_config(
            "tls_server_config: {key_file: k, min_version: SSL3}\n"
            "basic_auth_users: {bob: nope}\nextra: 1\n",
            base_dir=tmp_path,
        )
    # In the order of the file, each with where it was written (a missing key:
    # where its section was).
    keys = [
        (error.split(":", 1)[0], error.rsplit(" (line ", 1)[1]) for error in raised.value.errors
    ]
    assert keys == [
        ("tls_server_config.cert_file", "1, column 1)"),
        ("tls_server_config.key_file", "1, column 21)"),
        ("tls_server_config.min_version", "1, column 34)"),
        ("basic_auth_users.bob", "2, column 20)"),
        ("extra", "3, column 1)"),
    ]


def test_unknown_keys_are_placed_and_get_a_suggestion(certs: Certificates) -> None:
    with pytest.raises(WebConfigError) as raised:
        parse_web_config(
            "tls_server_config:\n"
            "  cert_file: server.pem\n"
            "  key_file: server.key\n"
            "  min_verison: TLS13\n"
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            base_dir=certs.directory,
        )
    assert raised.value.errors == [
        "tls_server_config.min_verison: unknown key (did you mean 'min_version'?); expected one"
        " of: cert_file, key_file, client_auth_type, client_ca_file, min_version, max_version"
        " (line 4, column 3)",
        "tls_server_config.cipher_suites: exporter-toolkit option not supported by"
        " sandbox-exporter (line 5, column 3)",
    ]


def test_a_hash_never_shows_in_errors_or_repr(password_hash: str) -> None:
    config = parse_web_config(f"basic_auth_users: {{prometheus: '{password_hash}'}}\n")
    assert password_hash not in repr(config) and password_hash not in str(config)
    # A valid hash beside a broken entry: the error names the entry and its place, no value.
    text = f"basic_auth_users: {{prometheus: '{password_hash}', bob: [x]}}\n"
    with pytest.raises(WebConfigError) as raised:
        parse_web_config(text)
    column = text.index("bob") + 1
    assert raised.value.errors == [
        "basic_auth_users.bob: expected a bcrypt hash (a string), got a list"
        f" (line 1, column {column})"
    ]


def test_unreadable_or_undecodable_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read the web configuration file"):
        load_web_config(tmp_path / "missing.yml")
    path = tmp_path / "latin1.yml"
    path.write_bytes(b"basic_auth_users: {\xe9: x}\n")
    with pytest.raises(WebConfigError, match="not UTF-8"):
        load_web_config(path)


_KEYS = [
    "tls_server_config",
    "basic_auth_users",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "rate_limit",
    "alice",
]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.sampled_from(
        [
            "server.pem",
            "server.key",
            "ca.pem",
            "/",
            "",
            "TLS12",
            "TLS13",
            "NoClientCert",
            "RequireAndVerifyClientCert",
            "$2y$04$" + "b" * 53,
            "$2y$10$short",
        ]
    ),
)
_DOCUMENTS = st.recursive(
    _VALUES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=4)), children),
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(document={"tls_server_config": {"cert_file": "\x00", "key_file": "server.key"}})
@example(document={"a\nb": 1, "tls_server_config": {"x\ny": 1, 5: 2}})
@given(
    document=st.one_of(
        _DOCUMENTS,
        st.fixed_dictionaries(
            {},
            optional={
                "tls_server_config": st.dictionaries(st.sampled_from(_KEYS), _VALUES),
                "basic_auth_users": st.dictionaries(st.text(max_size=5), _VALUES),
            },
        ),
    )
)
def test_random_documents_give_a_web_config_or_a_web_config_error(
    certs: Certificates, document: object
) -> None:
    try:
        config = parse_web_config(yaml.safe_dump(document), base_dir=certs.directory)
    except WebConfigError as error:
        assert error.errors and all(e and "\n" not in e for e in error.errors)
    else:
        assert isinstance(config, WebConfig)


# ------------------------------------------------------------ serving it


@pytest.fixture(scope="module")
def serve() -> Iterator:
    """Start an exporter with a web config; all of them stop at the end of the module."""
    servers: list[RunningExporter] = []

    def start(web_config: WebConfig) -> RunningExporter:
        server = RunningExporter(parse_config("targets: []"), web_config=web_config)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def tls_config(certs: Certificates, extra: str = "") -> WebConfig:
    return parse_web_config(
        "tls_server_config: {cert_file: server.pem, key_file: server.key" + extra + "}\n",
        base_dir=certs.directory,
    )


def test_tls_serves_every_route_to_a_client_trusting_the_certificate(
    certs: Certificates, serve
) -> None:
    server = serve(tls_config(certs))
    assert server.url.startswith("https://127.0.0.1:")
    for path in ("metrics", "", "-/healthy", "-/ready"):
        response = requests.get(server.url + path, verify=certs.server_cert, timeout=10)
        assert response.status_code == 200, path
    assert (
        "sandbox_exporter_build_info"
        in requests.get(server.url + "metrics", verify=certs.server_cert, timeout=10).text
    )
    # A client that does not trust the certificate is refused by its own TLS.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "metrics", timeout=10)


def test_tls_port_survives_plain_http_and_silent_clients(certs: Certificates, serve) -> None:
    server = serve(tls_config(certs))
    host, port = "127.0.0.1", int(server.address.rsplit(":", 1)[1])
    silent = socket.create_connection((host, port))  # connects, never says hello
    try:
        plain = requests.get(server.url.replace("https", "http") + "metrics", timeout=10)
    except requests.exceptions.ConnectionError:
        plain = None  # closed without an answer: also fine
    assert plain is None or plain.status_code >= 400
    # The silent client holds its own thread, not the listener.
    response = requests.get(server.url + "metrics", verify=certs.server_cert, timeout=10)
    assert response.status_code == 200
    silent.close()


def test_tls_can_require_a_client_certificate(certs: Certificates, serve) -> None:
    server = serve(
        tls_config(certs, ", client_auth_type: RequireAndVerifyClientCert, client_ca_file: ca.pem")
    )
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(server.url + "metrics", verify=certs.server_cert, timeout=10)
    response = requests.get(
        server.url + "metrics",
        verify=certs.server_cert,
        cert=(str(certs.client_cert), str(certs.client_key)),
        timeout=10,
    )
    assert response.status_code == 200


def test_tls_minimum_version_is_enforced(certs: Certificates, serve) -> None:
    server = serve(tls_config(certs, ", min_version: TLS13"))
    context = ssl.create_default_context(cafile=str(certs.server_cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = "127.0.0.1", int(server.address.rsplit(":", 1)[1])
    with (
        socket.create_connection((host, port), timeout=10) as sock,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(sock, server_hostname="127.0.0.1")
    assert (
        requests.get(server.url + "-/healthy", verify=certs.server_cert, timeout=10).status_code
        == 200
    )


def auth_config(password_hash: str) -> WebConfig:
    return parse_web_config(f"basic_auth_users: {{prometheus: '{password_hash}'}}\n")


@pytest.fixture(scope="module")
def auth_server(password_hash: str, serve) -> RunningExporter:
    return serve(auth_config(password_hash))


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("prometheus", "wrong"),
        basic("prometheus", ""),
        basic("nobody", PASSWORD),
        basic("PROMETHEUS", PASSWORD),
        basic("prometheus", PASSWORD + " "),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Basic"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode()},
    ],
    ids=[
        "none",
        "wrong-password",
        "empty-password",
        "unknown-user",
        "user-case",
        "trailing-space",
        "not-base64",
        "no-colon",
        "bearer",
        "empty-basic",
        "binary",
    ],
)
def test_basic_auth_refuses_missing_or_wrong_credentials(
    password_hash: str, auth_server: RunningExporter, headers: dict[str, str]
) -> None:
    server = auth_server
    for path in ("metrics", "", "-/healthy", "-/ready", "probe?target=x", "nope"):
        response = requests.get(server.url + path, headers=headers, timeout=10)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="sandbox-exporter"')
        assert PASSWORD not in response.text and password_hash not in response.text
    reload = requests.post(server.url + "-/reload", headers=headers, timeout=10)
    assert reload.status_code == 401


def test_basic_auth_lets_the_right_password_through_everywhere(
    auth_server: RunningExporter,
) -> None:
    server = auth_server
    auth = ("prometheus", PASSWORD)
    for path in ("metrics", "", "-/healthy", "-/ready"):
        assert requests.get(server.url + path, auth=auth, timeout=10).status_code == 200, path
    # Past auth, the routes behave as usual.
    assert requests.get(server.url + "probe?target=x", auth=auth, timeout=10).status_code == 404


def test_bcrypt_runs_once_per_credentials_not_once_per_scrape(
    password_hash: str, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        checks.append(password)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    server = serve(auth_config(password_hash))
    for _ in range(5):
        response = requests.get(server.url + "metrics", auth=("prometheus", PASSWORD), timeout=10)
        assert response.status_code == 200
    assert len(checks) == 1
    for _ in range(3):
        response = requests.get(server.url + "metrics", auth=("prometheus", "nope"), timeout=10)
        assert response.status_code == 401
    assert len(checks) == 2
    # An unknown user costs a bcrypt check too (against a decoy hash), so
    # that names cannot be told apart by timing.
    requests.get(server.url + "metrics", auth=("mallory", PASSWORD), timeout=10)
    assert len(checks) == 3


def test_cache_is_bounded_and_keyed_by_credentials(password_hash: str) -> None:
    check = PasswordCheck({"prometheus": password_hash})
    for attempt in range(PasswordCheck.CACHE_SIZE + 10):
        assert check.check(b"prometheus", f"guess-{attempt}".encode()) is False
    assert len(check._cache) == PasswordCheck.CACHE_SIZE
    assert check.known(b"prometheus", PASSWORD.encode()) is None
    assert check.check(b"prometheus", PASSWORD.encode()) is True
    assert check.known(b"prometheus", PASSWORD.encode()) is True
    # No password sits in the cache in the clear.
    assert all(PASSWORD.encode() not in key for key in check._cache)


def test_passwords_longer_than_bcrypt_reads_behave_as_bcrypt_does() -> None:
    long_password = "x" * 80
    # htpasswd and bcrypt itself only ever use the first 72 bytes.
    hashed = bcrypt.hashpw(long_password[:72].encode(), bcrypt.gensalt(4)).decode()
    assert PasswordCheck({"u": hashed}).check(b"u", long_password.encode()) is True


def test_tls_and_basic_auth_together(certs: Certificates, password_hash: str, serve) -> None:
    config = parse_web_config(
        "tls_server_config: {cert_file: server.pem, key_file: server.key}\n"
        f"basic_auth_users: {{prometheus: '{password_hash}'}}\n",
        base_dir=certs.directory,
    )
    server = serve(config)
    url = server.url + "metrics"
    assert requests.get(url, verify=certs.server_cert, timeout=10).status_code == 401
    ok = requests.get(url, verify=certs.server_cert, auth=("prometheus", PASSWORD), timeout=10)
    assert ok.status_code == 200


# -------------------------------------------------------------- command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_invalid_web_config_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    config = write(tmp_path, "targets: []\n", "config.yml")
    hidden = "$2y$04$" + "c" * 50  # three characters short of a bcrypt hash
    web = write(tmp_path, f"basic_auth_users: {{alice: '{hidden}'}}\n")
    result = run_cli(
        "-c", str(config), "--web.config.file", str(web),
        "--web.listen-address", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert result.returncode == 1
    assert "basic_auth_users.alice: not a bcrypt hash" in result.stderr
    assert "Traceback" not in result.stderr
    assert hidden not in result.stderr + result.stdout

    check = run_cli("-c", str(config), "--config.check", "--web.config.file", str(web))
    assert check.returncode == 1
    assert "web config invalid" in check.stderr and "basic_auth_users.alice" in check.stderr
    missing = run_cli("-c", str(config), "--web.config.file", str(tmp_path / "nope.yml"))
    assert missing.returncode == 1
    assert "cannot read the web configuration file" in missing.stderr


def test_daemon_serves_tls_with_basic_auth_and_never_logs_secrets(
    certs: Certificates, password_hash: str, tmp_path: Path
) -> None:
    config = write(tmp_path, "targets: []\n", "config.yml")
    web = write(
        tmp_path,
        json.dumps(
            {
                "tls_server_config": {
                    "cert_file": str(certs.server_cert),
                    "key_file": str(certs.server_key),
                },
                "basic_auth_users": {"prometheus": password_hash},
            }
        ),
    )
    port = free_port()
    url = f"https://127.0.0.1:{port}/"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sandbox_exporter.cli", "-c", str(config),
            "--web.config.file", str(web), "--web.listen-address", f"127.0.0.1:{port}",
            "--log.level", "debug",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:

        def answers() -> bool:
            try:
                requests.get(url + "-/healthy", verify=certs.server_cert, timeout=2)
            except requests.exceptions.ConnectionError:
                return False
            return True

        wait_until(answers, timeout=30)
        get = {"verify": certs.server_cert, "timeout": 10}
        assert requests.get(url + "metrics", **get).status_code == 401
        assert (
            requests.get(url + "metrics", auth=("prometheus", OTHER_PASSWORD), **get).status_code
            == 401
        )
        ok = requests.get(url + "metrics", auth=("prometheus", PASSWORD), **get)
        assert ok.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    logs = stdout + stderr
    assert f"listening on {url}" in logs
    assert "refused GET /metrics" in logs  # the debug log saw the refusals...
    for secret in (password_hash, password_hash[7:], PASSWORD, OTHER_PASSWORD):
        assert secret not in logs  # ...but none of what was typed or stored
    assert "Traceback" not in logs
    assert os.path.exists(web)
