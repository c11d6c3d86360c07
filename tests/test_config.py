"""The configuration loader: YAML -> validated frozen objects, every error with its key path."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sandbox_exporter.config import (
    Config,
    ConfigError,
    Target,
    config_for_url,
    empty_config_note,
    load_config,
    parse_config,
)
from sandbox_exporter.config.fields import Secret, format_duration, parse_duration
from sandbox_exporter.config.models import (
    DEFAULT_CANARY,
    DEFAULT_INTERVALS,
    DEFAULT_TIMEOUTS,
    TLS,
    Canary,
    Defaults,
    Expectations,
    ProbeEndpoint,
)
from sandbox_exporter.expectations import Matcher
from sandbox_exporter.vocabulary import PROBES

REPO = Path(__file__).resolve().parent.parent
MARKER = "S3CR3T-MARKER"


def parse(text: str, **kwargs: object) -> Config:
    return parse_config(textwrap.dedent(text), **kwargs)  # type: ignore[arg-type]


def errors_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, **kwargs)
    return caught.value.errors


# --------------------------------------------------------------------------
# Every kind of error names its key path


def target_with(body: str) -> str:
    """A one-target config whose target has the extra YAML ``body`` (flow style)."""
    return f"targets:\n  - {{name: t, url: 'http://127.0.0.1:8000/', {body}}}\n"


ERROR_CASES = [
    # (id, YAML, key path that must start the error, fragment of the message)
    ("root-not-mapping", "- a\n- b\n", "(top level)", "expected a mapping, got a list"),
    ("root-scalar", "hello\n", "(top level)", "expected a mapping, got the string 'hello'"),
    ("unknown-top-key", "target: []\n", "target", "did you mean 'targets'?"),
    ("non-string-key", "1: x\n", "(top level)", "keys must be strings, got the integer 1"),
    ("targets-not-list", "targets: {a: 1}\n", "targets", "expected a list, got a mapping"),
    ("target-not-mapping", "targets: [http://x/]\n", "targets[0]", "expected a mapping"),
    ("missing-url", "targets: [{name: a}]\n", "targets[0].url", "missing"),
    ("url-not-string", "targets: [{url: 42}]\n", "targets[0].url", "expected a string"),
    (
        "url-no-scheme",
        "targets: [{url: h.example.org}]\n",
        "targets[0].url",
        "https://h.example.org",
    ),
    ("url-ftp", "targets: [{url: 'ftp://h/'}]\n", "targets[0].url", "http:// or https://"),
    ("url-no-host", "targets: [{url: 'http:///x'}]\n", "targets[0].url", "no host name"),
    ("url-bad-port", "targets: [{url: 'http://h:99999/'}]\n", "targets[0].url", "invalid port"),
    ("url-port-zero", "targets: [{url: 'http://h:0/'}]\n", "targets[0].url", "invalid port"),
    ("url-query", "targets: [{url: 'http://h/?a=1'}]\n", "targets[0].url", "query string"),
    ("url-fragment", "targets: [{url: 'http://h/#x'}]\n", "targets[0].url", "fragment"),
    ("url-space", "targets: [{url: 'http://h x/'}]\n", "targets[0].url", "spaces"),
    ("url-ipv6", "targets: [{url: 'http://[::1/'}]\n", "targets[0].url", "not a valid URL"),
    ("url-userinfo", "targets: [{url: 'http://u:p@h/'}]\n", "targets[0].url", "credentials"),
    ("name-empty", target_with("name: ''").replace("name: t, ", ""), "targets[0].name", "empty"),
    ("name-number", "targets: [{name: 7, url: 'http://h/'}]\n", "targets[0].name", "quotes"),
    (
        "name-url-like",
        "targets: [{name: 'http://h/', url: 'http://h/'}]\n",
        "targets[0].name",
        "must not look like a URL",
    ),
    ("name-spaces", "targets: [{name: ' a', url: 'http://h/'}]\n", "targets[0].name", "spaces"),
    (
        "name-control",
        'targets: [{name: "a\\tb", url: "http://h/"}]\n',
        "targets[0].name",
        "control characters",
    ),
    (
        "duplicate-names",
        "targets: [{name: a, url: 'http://h/'}, {name: a, url: 'http://i/'}]\n",
        "targets[1].name",
        "duplicate target name 'a' (also targets[0])",
    ),
    (
        "duplicate-default-names",
        "targets: [{url: 'http://h/'}, {url: 'https://h/x/'}]\n",
        "targets[1].name",
        "duplicate target name 'h'",
    ),
    ("unknown-target-key", target_with("labls: {}"), "targets[0].labls", "did you mean 'labels'"),
    (
        "label-name",
        target_with("labels: {1a: x}"),
        "targets[0].labels.1a",
        "must match pattern '^[A-Za-z_][A-Za-z0-9_]*$', got the string '1a'",
    ),
    ("label-dash", target_with("labels: {a-b: x}"), "targets[0].labels.a-b", "must match pattern"),
    ("label-target", target_with("labels: {target: x}"), "targets[0].labels.target", "reserved"),
    ("label-url", target_with("labels: {url: x}"), "targets[0].labels.url", "reserved"),
    ("label-job", target_with("labels: {job: x}"), "targets[0].labels.job", "reserved"),
    ("label-dunder", target_with("labels: {__x: y}"), "targets[0].labels.__x", "reserved"),
    ("label-number", target_with("labels: {v: 3.10}"), "targets[0].labels.v", "quotes"),
    ("label-bool", target_with("labels: {v: yes}"), "targets[0].labels.v", "booleans"),
    ("labels-list", target_with("labels: [a]"), "targets[0].labels", "expected a mapping"),
    (
        "inline-password",
        target_with("auth: {username: u, password: hunter2}"),
        "targets[0].auth.password",
        "use password_file",
    ),
    (
        "inline-token",
        target_with("auth: {bearer_token: abc}"),
        "targets[0].auth.bearer_token",
        "bearer_token_file",
    ),
    (
        "password-and-token",
        target_with("auth: {username: u, password_env: HOME, bearer_token_env: HOME}"),
        "targets[0].auth",
        "not both",
    ),
    (
        "username-without-password",
        target_with("auth: {username: u}"),
        "targets[0].auth.password_file",
        "a username needs a password",
    ),
    (
        "password-without-username",
        target_with("auth: {password_env: HOME}"),
        "targets[0].auth.username",
        "a password needs a username",
    ),
    (
        "file-and-env",
        target_with("auth: {username: u, password_file: x, password_env: HOME}"),
        "targets[0].auth.password_file",
        "either password_file or password_env",
    ),
    (
        "username-colon",
        target_with("auth: {username: 'a:b', password_env: HOME}"),
        "targets[0].auth.username",
        "':'",
    ),
    (
        "env-name",
        target_with("auth: {username: u, password_env: 'NOT A NAME'}"),
        "targets[0].auth.password_env",
        "expected an environment variable name, got the string 'NOT A NAME'",
    ),
    (
        "auth-header",
        target_with("auth: {headers: {authorization: x}}"),
        "targets[0].auth.headers.authorization",
        "bearer_token_file",
    ),
    (
        "header-name",
        target_with("auth: {headers: {'a b': x}}"),
        'targets[0].auth.headers["a b"]',
        "must match pattern",
    ),
    (
        "header-value",
        target_with("auth: {headers: {X-A: [1]}}"),
        "targets[0].auth.headers.X-A",
        "expected a string, got a list",
    ),
    (
        "header-twice",
        target_with("auth: {headers: {X-A: a, x-a: b}}"),
        "targets[0].auth.headers.x-a",
        "case-insensitive",
    ),
    ("unknown-auth-key", target_with("auth: {user: u}"), "targets[0].auth.user", "username"),
    (
        "tls-ca-missing",
        target_with("tls: {ca_file: nope.pem}"),
        "targets[0].tls.ca_file",
        "nope.pem",
    ),
    (
        "tls-ca-nul",
        target_with('tls: {ca_file: "a\\0b"}'),
        "targets[0].tls.ca_file",
        "control characters",
    ),
    (
        "secret-file-nul",
        target_with('auth: {bearer_token_file: "a\\0b"}'),
        "targets[0].auth.bearer_token_file",
        "control characters",
    ),
    (
        "tls-insecure-int",
        target_with("tls: {insecure_skip_verify: 1}"),
        "targets[0].tls.insecure_skip_verify",
        "expected true or false, got the integer 1",
    ),
    (
        "interval-kind",
        target_with("intervals: {usages: 1m}"),
        "targets[0].intervals.usages",
        "usage",
    ),
    (
        "interval-bad",
        target_with("intervals: {usage: 5 seconds}"),
        "targets[0].intervals.usage",
        "invalid duration: the string '5 seconds' (use e.g. 10s, 1m30s or 500ms",
    ),
    ("interval-zero", target_with("intervals: {usage: 0s}"), "targets[0].intervals.usage", "0s"),
    (
        "interval-negative",
        target_with("intervals: {usage: -5}"),
        "targets[0].intervals.usage",
        "-5",
    ),
    (
        "interval-bool",
        target_with("intervals: {usage: true}"),
        "targets[0].intervals.usage",
        "bool",
    ),
    (
        "interval-null",
        target_with("intervals: {usage: }"),
        "targets[0].intervals.usage",
        "invalid duration: null",
    ),
    (
        "interval-order",
        target_with("intervals: {usage: 1m1h}"),
        "targets[0].intervals.usage",
        "largest",
    ),
    (
        "timeout-over-interval",
        target_with("timeouts: {usage: 20s}"),
        "targets[0].timeouts.usage",
        "the usage timeout (20s) is longer than its interval (15s)",
    ),
    (
        "timeout-over-own-interval",
        target_with("intervals: {specifications: 5s}, timeouts: {specifications: 6s}"),
        "targets[0].timeouts.specifications",
        "the specifications timeout (6s) is longer than its interval (5s)",
    ),
    (
        "defaults-timeout-over-interval",
        "defaults: {intervals: {libraries: 30s}, timeouts: {libraries: 1m}}\n",
        "defaults.timeouts.libraries",
        "the libraries timeout (1m) is longer than its interval (30s)",
    ),
    ("canaries-not-list", target_with("canaries: {a: 1}"), "targets[0].canaries", "a list"),
    (
        "canary-no-name",
        target_with("canaries: [{commands: [ls]}]"),
        "targets[0].canaries[0].name",
        "missing",
    ),
    (
        "canary-no-commands",
        target_with("canaries: [{name: a}]"),
        "targets[0].canaries[0].commands",
        "missing",
    ),
    (
        "canary-empty-commands",
        target_with("canaries: [{name: a, commands: []}]"),
        "targets[0].canaries[0].commands",
        "at least one command",
    ),
    (
        "canary-command-number",
        target_with("canaries: [{name: a, commands: [42]}]"),
        "targets[0].canaries[0].commands[0]",
        "got the integer 42",
    ),
    (
        "canary-command-blank",
        target_with("canaries: [{name: a, commands: ['  ']}]"),
        "targets[0].canaries[0].commands[0]",
        "empty command",
    ),
    (
        "canary-save",
        target_with("canaries: [{name: a, commands: [ls], save: true}]"),
        "targets[0].canaries[0].save",
        "never save",
    ),
    (
        "canary-environment",
        target_with("canaries: [{name: a, commands: [ls], environment: x}]"),
        "targets[0].canaries[0].environment",
        "fresh container",
    ),
    (
        "canary-unknown-key",
        target_with("canaries: [{name: a, commands: [ls], expect_stout: x}]"),
        "targets[0].canaries[0].expect_stout",
        "did you mean 'expect_stdout'",
    ),
    (
        "command-no-command",
        target_with("canaries: [{name: a, commands: [{timeout: 1}]}]"),
        "targets[0].canaries[0].commands[0].command",
        "missing",
    ),
    (
        "command-unknown-key",
        target_with("canaries: [{name: a, commands: [{command: ls, save: true}]}]"),
        "targets[0].canaries[0].commands[0].save",
        "unknown key",
    ),
    (
        "command-timeout-bad",
        target_with("canaries: [{name: a, commands: [{command: ls, timeout: soon}]}]"),
        "targets[0].canaries[0].commands[0].timeout",
        "invalid duration: the string 'soon'",
    ),
    (
        "command-timeout-over-canary",
        target_with("canaries: [{name: a, commands: [{command: ls, timeout: 12s}], timeout: 10s}]"),
        "targets[0].canaries[0].commands[0].timeout",
        "12s is longer than the canary's own timeout (10s)",
    ),
    (
        "canary-timeout",
        target_with("canaries: [{name: a, commands: [ls], timeout: 5 seconds}]"),
        "targets[0].canaries[0].timeout",
        "invalid duration: the string '5 seconds' (use e.g. 10s, 1m30s or 500ms",
    ),
    (
        "canary-timeout-over-probe",
        target_with("canaries: [{name: a, commands: [ls], timeout: 25s}]"),
        "targets[0].canaries[0].timeout",
        "canary 'a' may take 25s (its timeout), more than the whole canary probe may take (20s",
    ),
    (
        "canary-command-over-probe",
        target_with("canaries: [{name: a, commands: [{command: ls, timeout: 25s}]}]"),
        "targets[0].canaries[0].commands",
        "canary 'a' may take 25s (its longest command timeout)",
    ),
    (
        "canary-timeouts-sum",
        target_with(
            "canaries: [{name: a, commands: [ls], timeout: 10s}, {name: b, commands: [ls]}, "
            "{name: c, commands: [ls], timeout: 11s}]"
        ),
        "targets[0].canaries",
        "the canaries may take 21s one after another (a 10s, c 11s)",
    ),
    (
        "probe-timeout-under-canary",
        "defaults: {canaries: [{name: a, commands: [ls], timeout: 10s}]}\n"
        + target_with("timeouts: {canary: 5s}"),
        "targets[0].timeouts.canary",
        "canary 'a' may take 10s (its timeout), more than the whole canary probe may take (5s",
    ),
    (
        "probe-interval-under-canary",
        "defaults: {canaries: [{name: a, commands: [ls], timeout: 10s}]}\n"
        + target_with("intervals: {canary: 5s}"),
        "targets[0].intervals.canary",
        "which never exceeds intervals.canary",
    ),
    (
        "defaults-probe-timeout-under-canary",
        "defaults: {timeouts: {canary: 5s}, canaries: [{name: a, commands: [ls], timeout: 6s}]}\n",
        "defaults.canaries[0].timeout",
        "canary 'a' may take 6s (its timeout)",
    ),
    (
        "expect-status-bool",
        target_with("canaries: [{name: a, commands: [ls], expect_status: false}]"),
        "targets[0].canaries[0].expect_status",
        "expected an integer, got a boolean (false)",
    ),
    (
        "expect-status-range",
        target_with("canaries: [{name: a, commands: [ls], expect_status: 256}]"),
        "targets[0].canaries[0].expect_status",
        "must be less than or equal to 255, got the integer 256",
    ),
    (
        "expect-status-string",
        target_with("canaries: [{name: a, commands: [ls], expect_status: '0'}]"),
        "targets[0].canaries[0].expect_status",
        "expected an integer",
    ),
    (
        "expect-stdout-number",
        target_with("canaries: [{name: a, commands: [ls], expect_stdout: 4}]"),
        "targets[0].canaries[0].expect_stdout",
        "quotes",
    ),
    (
        "expect-stdout-regex",
        target_with("canaries: [{name: a, commands: [ls], expect_stdout_regex: '(4'}]"),
        "targets[0].canaries[0].expect_stdout_regex",
        "invalid regular expression '(4': missing ), unterminated subpattern at position 0",
    ),
    (
        "duplicate-canaries",
        target_with("canaries: [{name: a, commands: [ls]}, {name: a, commands: [ls]}]"),
        "targets[0].canaries[1].name",
        "'a' is listed twice (also canaries[0])",
    ),
    (
        "expect-unknown-language",
        target_with("expect: {languages: {python: '>=3'}}"),
        "targets[0].expect.languages.python",
        "did you mean 'python3'",
    ),
    (
        "expect-language-twice",
        target_with("expect: {languages: {gpp: '8.*', g++: '8.*'}}"),
        "targets[0].expect.languages.g++",
        "'gpp' is expected twice",
    ),
    (
        "expect-number-spec",
        target_with("expect: {languages: {python3: 3.10}}"),
        "targets[0].expect.languages.python3",
        "got the number 3.1 (YAML reads it as a number: put the value in quotes)",
    ),
    (
        "expect-bad-spec",
        target_with("expect: {packages: {python: {numpy: '=>1.18'}}}"),
        "targets[0].expect.packages.python.numpy",
        "unknown operator",
    ),
    (
        "expect-package-kind",
        target_with("expect: {packages: {pip: {numpy: present}}}"),
        "targets[0].expect.packages.pip",
        "expected one of: system, python, perl, c",
    ),
    (
        "expect-package-dotted-name",
        target_with("expect: {packages: {python: {ruamel.yaml: '>=x'}}}"),
        'targets[0].expect.packages.python["ruamel.yaml"]',
        "numbers separated by dots",
    ),
    (
        "expect-packages-list",
        target_with("expect: {packages: {python: [numpy]}}"),
        "targets[0].expect.packages.python",
        "expected a mapping, got a list",
    ),
    ("expect-bin-string", target_with("expect: {bin: gcc}"), "targets[0].expect.bin", "a list"),
    (
        "expect-bin-twice",
        target_with("expect: {bin: [gcc, gcc]}"),
        "targets[0].expect.bin[1]",
        "listed twice",
    ),
    ("expect-bin-number", target_with("expect: {bin: [7]}"), "targets[0].expect.bin[0]", "integer"),
    (
        "expect-unknown",
        target_with("expect: {libraries: {}}"),
        "targets[0].expect.libraries",
        "one of",
    ),
    (
        "threshold-percent",
        target_with("thresholds: {load_warning: 80}"),
        "targets[0].thresholds.load_warning",
        "must be less than or equal to 1, got the integer 80",
    ),
    (
        "threshold-bool",
        target_with("thresholds: {load_warning: true}"),
        "targets[0].thresholds.load_warning",
        "expected a number, got a boolean",
    ),
    (
        "threshold-string",
        target_with("thresholds: {load_critical: high}"),
        "targets[0].thresholds.load_critical",
        "expected a number",
    ),
    (
        "threshold-nan",
        target_with("thresholds: {load_critical: .nan}"),
        "targets[0].thresholds.load_critical",
        "finite",
    ),
    (
        "threshold-order",
        target_with("thresholds: {load_warning: 0.9, load_critical: 0.5}"),
        "targets[0].thresholds.load_critical",
        "must not be below load_warning",
    ),
    (
        "threshold-order-with-defaults",
        "defaults: {thresholds: {load_critical: 0.9}}\n"
        + target_with("thresholds: {load_warning: 0.95}"),
        "targets[0].thresholds.load_warning",
        "must not be below load_warning (0.95)",
    ),
    (
        "severity-value",
        target_with("severities: {overloaded: fatal}"),
        "targets[0].severities.overloaded",
        "expected one of: warning, critical",
    ),
    (
        "severity-key",
        "defaults: {severities: {canary_fail: warning}}\n",
        "defaults.severities.canary_fail",
        "did you mean 'canary_failed'",
    ),
    ("defaults-auth", "defaults: {auth: {}}\n", "defaults.auth", "unknown key"),
    (
        "probe-allow-without-urls",
        "probe_endpoint: {allow_unlisted_targets: true}\n",
        "probe_endpoint.allowed_urls",
        "required when allow_unlisted_targets is true",
    ),
    (
        "probe-allow-not-bool",
        "probe_endpoint: {allow_unlisted_targets: 'yes please'}\n",
        "probe_endpoint.allow_unlisted_targets",
        "expected true or false",
    ),
    (
        "probe-bad-regex",
        "probe_endpoint: {allowed_urls: ['https://[a-']}\n",
        "probe_endpoint.allowed_urls[0]",
        "invalid regular expression",
    ),
    (
        "probe-urls-not-list",
        "probe_endpoint: {allowed_urls: 'https://x/'}\n",
        "probe_endpoint.allowed_urls",
        "expected a list",
    ),
    (
        "yaml-duplicate-key",
        "targets: []\ntargets: []\n",
        "line 2, column 1",
        "duplicate key 'targets'",
    ),
    (
        "yaml-duplicate-nested",
        "targets:\n  - name: a\n    url: http://h/\n    url: http://i/\n",
        "line 4, column 5",
        "duplicate key 'url'",
    ),
    ("yaml-tab", "targets:\n\t- a\n", "line 2, column 1", "cannot start any token"),
    # Keys spelled like pydantic's internal names for the forms of a command.
    ("odd-top-key", "'~': 1\n", '"~"', "unknown key"),
    ("key-like-a-form", target_with("mapping: 1"), "targets[0].mapping", "unknown key"),
    (
        "command-key-like-a-form",
        target_with("canaries: [{name: a, commands: [{command: ls, text: x}]}]"),
        "targets[0].canaries[0].commands[0].text",
        "unknown key",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_each_error_names_its_key_path(text: str, path: str, fragment: str) -> None:
    errors = errors_of(text, base_dir=REPO)
    matching = [error for error in errors if error.startswith(f"{path}: ")]
    assert matching, f"no error at {path!r} in {errors}"
    assert any(fragment in error for error in matching), errors


def test_all_errors_are_collected_and_shown_one_per_line() -> None:
    text = """\
        defaults:
          intervals: {usage: 5 seconds}
        targets:
          - {name: a, url: 'ftp://x/'}
          - {name: b, url: 'http://h/', canaries: [{name: c, commands: [ls], timeout: never}]}
          - {name: c, url: 'http://i/', labels: {__meta: x}, expect: {languages: {cobol: present}}}
        """
    with pytest.raises(ConfigError) as caught:
        parse(text, source="sandbox.yml")
    error = caught.value
    assert [line.split(":")[0] for line in error.errors] == [
        "defaults.intervals.usage",
        "targets[0].url",
        "targets[1].canaries[0].timeout",
        "targets[2].labels.__meta",
        "targets[2].expect.languages.cobol",
    ]
    lines = str(error).splitlines()
    assert len(lines) == len(error.errors)
    assert all(line.startswith("sandbox.yml: ") for line in lines)
    assert error.source == "sandbox.yml"


def test_validation_errors_give_the_line_and_column_of_their_key() -> None:
    text = "targets:\n  - name: a\n    url: http://h/\n    intervals:\n      usage: 5 seconds\n"
    assert errors_of(text) == [
        "targets[0].intervals.usage: invalid duration: the string '5 seconds' (use e.g. 10s, "
        "1m30s or 500ms: units y w d h m s ms, largest first, each once; at most 366d) "
        "(line 5, column 7)"
    ]
    # A missing key points at the mapping it is missing from.
    [missing] = errors_of("targets:\n  - name: a\n")
    assert missing.startswith("targets[0].url: missing (the sandbox's base URL")
    assert missing.endswith("(line 2, column 5)")


def test_errors_come_in_the_order_of_the_document() -> None:
    text = """\
        targets:
          - {name: a, url: 'http://h/', timeouts: {usage: 1m}}
          - {name: b, url: 'ftp://h/'}
        probe_endpoint: {allow_unlisted_targets: true}
        """
    assert [error.split(":")[0] for error in errors_of(text)] == [
        "targets[0].timeouts.usage",
        "targets[1].url",
        "probe_endpoint.allowed_urls",
    ]


def test_a_block_reused_through_an_alias_is_found_where_it_was_written() -> None:
    errors = errors_of(
        "x-intervals: &i\n  usage: soon\n"
        "targets:\n  - {name: a, url: 'http://h/', intervals: *i}\n"
        "  - {<<: {name: b, url: 'ftp://h/'}, labels: {site: x}}\n"
    )
    assert errors[0].startswith("x-intervals: unknown key")
    assert errors[1].startswith("targets[0].intervals.usage: invalid duration: the string 'soon'")
    assert errors[1].endswith("(line 2, column 3)")
    assert errors[2].startswith("targets[1].url: 'ftp://h/' must start with http://")
    assert errors[2].endswith("(line 5, column 20)")


def test_a_yaml_syntax_error_gives_line_and_column() -> None:
    text = "targets:\n  - name: a\n    url: [http://h/\n  - name: b\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="broken.yml")
    [message] = caught.value.errors
    # The ':' of "name: b" is where the unclosed "[" of line 3 goes wrong.
    assert message == (
        "line 4, column 9: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 3, column 10)"
    )
    assert str(caught.value) == "broken.yml: " + message


def test_a_yaml_mapping_value_error_gives_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("targets:\n  - url: a: b\n")
    assert caught.value.errors == ["line 2, column 11: mapping values are not allowed here"]


def test_several_yaml_documents_are_refused() -> None:
    with pytest.raises(ConfigError, match="line 2, column 1: but found another document"):
        parse_config("targets: []\n---\ntargets: []\n")


def test_yaml_merge_keys_are_not_duplicates() -> None:
    config = parse(
        """\
        targets:
          - &base {name: a, url: 'http://h/', labels: {site: x}}
          - {<<: *base, name: b}
        """
    )
    assert [t.name for t in config.targets] == ["a", "b"]
    assert config.targets[1].labels == {"site": "x"}


def test_a_deeply_nested_document_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_config("targets: " + "[" * 5000 + "]" * 5000)


def test_booleans_are_not_integers_anywhere() -> None:
    errors = errors_of(
        target_with(
            "intervals: {usage: true}, thresholds: {load_warning: false}, "
            "canaries: [{name: a, commands: [ls], expect_status: true, timeout: false}]"
        )
    )
    assert len(errors) == 4
    assert all("boolean" in error for error in errors)


# --------------------------------------------------------------------------
# Secrets


def auth_config(auth: str) -> str:
    return f"targets:\n  - name: t\n    url: 'http://h/'\n    auth: {auth}\n"


def test_a_password_is_read_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pass").write_text(MARKER + "\n")
    config_file = tmp_path / "sandbox.yml"
    config_file.write_text(auth_config("{username: monitor, password_file: secrets/pass}"))
    auth = load_config(config_file).targets[0].auth
    assert auth.username == "monitor"
    assert auth.password is not None
    assert auth.password.value() == MARKER
    assert auth.bearer_token is None


def test_only_trailing_line_breaks_are_stripped_from_a_secret_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"  " + MARKER.encode() + b" \r\n")
    config = parse(auth_config("{bearer_token_file: token}"), base_dir=tmp_path)
    assert config.targets[0].auth.bearer_token.value() == f"  {MARKER} "  # type: ignore[union-attr]


def test_an_absolute_secret_path_ignores_base_dir(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(MARKER)
    config = parse(auth_config(f"{{bearer_token_file: '{tmp_path / 'token'}'}}"), base_dir=REPO)
    assert config.targets[0].auth.bearer_token.value() == MARKER  # type: ignore[union-attr]


def test_a_secret_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_TEST_TOKEN", MARKER)
    monkeypatch.setenv("SANDBOX_TEST_PASSWORD", MARKER + "-pw")
    config = parse(
        auth_config("{bearer_token_env: SANDBOX_TEST_TOKEN}").replace("name: t", "name: a")
        + "  - name: b\n    url: 'http://i/'\n"
        + "    auth: {username: u, password_env: SANDBOX_TEST_PASSWORD}\n"
    )
    first, second = config.targets
    assert first.auth.bearer_token.value() == MARKER  # type: ignore[union-attr]
    assert second.auth.password.value() == MARKER + "-pw"  # type: ignore[union-attr]


def test_secrets_never_show_in_str_repr_or_the_config_repr(tmp_path: Path) -> None:
    (tmp_path / "pass").write_text(MARKER)
    config = parse(auth_config("{username: u, password_file: pass}"), base_dir=tmp_path)
    secret = config.targets[0].auth.password
    assert isinstance(secret, Secret)
    assert str(secret) == repr(secret) == "<secret>"
    assert f"{secret}" == "<secret>"
    for text in (repr(config), str(config), repr(config.targets[0].auth)):
        assert MARKER not in text
    # Header values may be API keys: the same goes for them.
    config = parse(auth_config(f"{{headers: {{X-Api-Key: {MARKER}}}}}"))
    assert config.targets[0].auth.headers["X-Api-Key"] == MARKER
    for text in (repr(config), str(config), repr(config.targets[0].auth)):
        assert MARKER not in text


def test_secrets_compare_by_value() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert hash(Secret("a")) == hash(Secret("a"))


@pytest.mark.parametrize(
    ("setup", "auth", "path", "fragment"),
    [
        (
            None,
            "{username: u, password_file: missing}",
            "password_file",
            "No such file or directory",
        ),
        ("dir", "{username: u, password_file: dir}", "password_file", "Is a directory"),
        ("empty", "{username: u, password_file: empty}", "password_file", "is empty"),
        ("newline", "{username: u, password_file: newline}", "password_file", "is empty"),
        ("two-lines", "{bearer_token_file: two-lines}", "bearer_token_file", "one line expected"),
        ("binary", "{bearer_token_file: binary}", "bearer_token_file", "not UTF-8"),
        ("huge", "{bearer_token_file: huge}", "bearer_token_file", "larger than 64 KiB"),
        (None, "{bearer_token_env: SANDBOX_TEST_UNSET}", "bearer_token_env", "is not set"),
        (None, "{bearer_token_env: SANDBOX_TEST_EMPTY}", "bearer_token_env", "is empty"),
        (None, "{bearer_token_file: [" + MARKER + "]}", "bearer_token_file", "got a list"),
        (None, "{bearer_token_file: }", "bearer_token_file", "expected a file name, got null"),
    ],
)
def test_unusable_secrets_name_the_key_and_file_never_the_content(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str | None,
    auth: str,
    path: str,
    fragment: str,
) -> None:
    contents = {
        "empty": b"",
        "newline": b"\n",
        "two-lines": MARKER.encode() + b"\nsecond line " + MARKER.encode() + b"\n",
        "binary": b"\xff\xfe" + MARKER.encode(),
        "huge": MARKER.encode() * 10_000,
    }
    if setup == "dir":
        (tmp_path / "dir").mkdir()
    elif setup is not None:
        (tmp_path / setup).write_bytes(contents[setup])
    monkeypatch.delenv("SANDBOX_TEST_UNSET", raising=False)
    monkeypatch.setenv("SANDBOX_TEST_EMPTY", "")
    with pytest.raises(ConfigError) as caught:
        parse(auth_config(auth), base_dir=tmp_path)
    [error] = caught.value.errors
    assert error.startswith(f"targets[0].auth.{path}: ")
    assert fragment in error
    if setup is not None:
        assert str(tmp_path / setup) in error
    assert MARKER not in str(caught.value)
    assert MARKER not in repr(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        auth_config("{username: u, password: " + MARKER + "}"),
        auth_config("{bearer_token: " + MARKER + "}"),
        auth_config("{token: " + MARKER + "}"),
        auth_config("{headers: {Authorization: 'Bearer " + MARKER + "'}}"),
        auth_config("{headers: {X-Api-Key: [" + MARKER + "]}}"),
        auth_config("{headers: {X-Api-Key: '" + MARKER + "\\n'}}").replace("'", '"'),
        "targets: [{url: 'https://monitor:" + MARKER + "@sandbox.example.org/'}]\n",
        "targets: [{url: 'https://" + MARKER + "@sandbox.example.org/'}]\n",
    ],
)
def test_misplaced_secrets_are_rejected_without_echoing_them(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.errors
    for message in (str(caught.value), repr(caught.value), *caught.value.errors):
        assert MARKER not in message


def test_the_inline_password_error_is_the_only_error() -> None:
    errors = errors_of(auth_config("{username: u, password: x}"))
    assert errors == [
        "targets[0].auth.password: inline secrets are not allowed (they would sit in a file "
        "anyone reading the configuration sees): put it in a file and use password_file, or "
        "name an environment variable with password_env (line 4, column 25)"
    ]


def test_refused_keys_give_their_advice_and_are_never_offered() -> None:
    [error] = errors_of(auth_config("{pasword_file: x}"))
    assert error.startswith(
        "targets[0].auth.pasword_file: unknown key (did you mean 'password_file'?); expected "
        "one of: username, password_file, password_env, bearer_token_file, bearer_token_env, "
        "headers (line 4"
    )


def test_headers_are_kept(tmp_path: Path) -> None:
    config = parse(auth_config("{headers: {X-Forwarded-Proto: https, X-Empty: ''}}"))
    assert config.targets[0].auth.headers == {"X-Forwarded-Proto": "https", "X-Empty": ""}


def test_ca_file_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here, only readable\n")
    config_file = tmp_path / "c.yml"
    config_file.write_text(
        "defaults: {tls: {ca_file: ca.pem}}\n"
        "targets:\n"
        "  - {name: a, url: 'https://h/'}\n"
        "  - {name: b, url: 'https://i/', tls: {insecure_skip_verify: true}}\n"
        "  - {name: c, url: 'https://j/', tls: {ca_file: null}}\n"
    )
    a, b, c = load_config(config_file).targets
    assert a.tls == TLS(ca_file=str(tmp_path / "ca.pem"), insecure_skip_verify=False)
    assert b.tls == TLS(ca_file=str(tmp_path / "ca.pem"), insecure_skip_verify=True)
    assert c.tls == TLS(ca_file=None, insecure_skip_verify=False)


# --------------------------------------------------------------------------
# Defaults and overrides


def test_an_empty_document_is_a_valid_config_with_no_targets() -> None:
    for text in ("", "# nothing\n", "targets:\n", "targets: []\n", "{}\n"):
        config = parse_config(text)
        assert config.targets == ()
        assert config.defaults == Defaults()
        assert config.probe_endpoint == ProbeEndpoint()


def test_built_in_defaults() -> None:
    target = parse("targets: [{url: 'http://sandbox.example.org:8000'}]\n").targets[0]
    assert target.name == "sandbox.example.org:8000"
    assert target.url == "http://sandbox.example.org:8000/"
    assert dict(target.intervals) == {
        "specifications": 30.0,
        "usage": 15.0,
        "libraries": 3600.0,
        "canary": 30.0,
    }
    assert dict(target.timeouts) == {
        "specifications": 10.0,
        "usage": 10.0,
        "libraries": 60.0,
        "canary": 20.0,
    }
    assert set(target.intervals) == set(target.timeouts) == set(PROBES)
    assert target.canaries == (DEFAULT_CANARY,)
    assert DEFAULT_CANARY.request_config() == {"commands": ["echo $((2+2))"]}
    assert DEFAULT_CANARY.expect_stdout == "4"
    assert DEFAULT_CANARY.expect_status == 0
    assert DEFAULT_CANARY.timeout == 10.0
    assert target.expect == Expectations()
    assert (target.thresholds.load_warning, target.thresholds.load_critical) == (0.8, None)
    severities = target.severities
    assert (severities.expectation_missed, severities.overloaded, severities.canary_failed) == (
        "warning",
        "critical",
        "critical",
    )
    assert target.labels == {}
    assert target.auth.username is None and target.auth.password is None
    assert target.tls == TLS()


def test_targets_merge_scalar_mappings_and_replace_lists_and_expect() -> None:
    config = parse(
        """\
        defaults:
          intervals: {usage: 20s, canary: 1m}
          timeouts: {canary: 30s}
          canaries:
            - {name: shell, commands: ['echo ok'], expect_stdout: ok}
            - {name: python, commands: ['python3 -c "print(1)"'], expect_stdout: '1'}
          expect:
            languages: {python3: '>=3.7'}
            bin: [gcc]
          thresholds: {load_warning: 0.6, load_critical: 0.9}
          severities: {expectation_missed: critical}
        targets:
          - name: inherits
            url: http://a/
          - name: overrides
            url: http://b/
            intervals: {canary: 2m}
            timeouts: {usage: 12s}
            canaries: [{name: only, commands: ['true']}]
            expect: {bin: [java]}
            thresholds: {load_warning: 0.5}
            severities: {overloaded: warning}
          - name: opts-out
            url: http://c/
            canaries: []
            expect: {}
        """
    )
    inherits, overrides, opts_out = config.targets
    assert dict(inherits.intervals) == {
        "specifications": 30.0,
        "usage": 20.0,
        "libraries": 3600.0,
        "canary": 60.0,
    }
    assert inherits.timeouts["canary"] == 30.0
    assert [c.name for c in inherits.canaries] == ["shell", "python"]
    assert inherits.expect.languages == {"python3": Matcher(">=3.7")}
    assert inherits.expect.bin == ("gcc",)
    assert (inherits.thresholds.load_warning, inherits.thresholds.load_critical) == (0.6, 0.9)
    assert inherits.severities.expectation_missed == "critical"
    assert inherits.severities.overloaded == "critical"

    assert overrides.intervals["canary"] == 120.0
    assert overrides.intervals["usage"] == 20.0  # from defaults, merged per key
    assert overrides.timeouts["usage"] == 12.0
    assert overrides.timeouts["canary"] == 30.0
    assert [c.name for c in overrides.canaries] == ["only"]  # replaced, not appended
    assert overrides.expect.bin == ("java",)
    assert overrides.expect.languages == {}  # replaced as a whole
    assert (overrides.thresholds.load_warning, overrides.thresholds.load_critical) == (0.5, 0.9)
    assert overrides.severities.expectation_missed == "critical"
    assert overrides.severities.overloaded == "warning"

    assert opts_out.canaries == ()
    assert opts_out.expect == Expectations()
    assert config.defaults.canaries == inherits.canaries


def test_null_sections_mean_defaults() -> None:
    config = parse(
        """\
        defaults:
          intervals:
          canaries:
        targets:
          - name: a
            url: http://a/
            canaries:
            expect:
            labels:
        """
    )
    assert config.defaults == Defaults()
    assert config.targets[0].canaries == (DEFAULT_CANARY,)


def test_expectations_are_parsed() -> None:
    expect = (
        parse(
            target_with(
                "expect: {languages: {python3: '>=3.7,<4', g++: , java: present}, "
                "packages: {system: {git: '>=2.20'}, perl: {'Data::Dumper': '*'}, c: {}}, "
                "bin: [gcc, javac]}"
            )
        )
        .targets[0]
        .expect
    )
    assert dict(expect.languages) == {
        "python3": Matcher(">=3.7,<4"),
        "gpp": Matcher(None),
        "java": Matcher(None),
    }
    assert expect.packages["system"] == {"git": Matcher(">=2.20")}
    assert expect.packages["perl"] == {"Data::Dumper": Matcher(None)}
    assert expect.packages["c"] == {}
    assert expect.bin == ("gcc", "javac")
    assert str(expect.packages["perl"]["Data::Dumper"]) == "present"


def test_canaries_are_parsed() -> None:
    [canary] = (
        parse(
            """\
            targets:
              - url: http://h/
                canaries:
                  - name: c
                    commands:
                      - |
                        cat > a.c <<'EOF'
                        int main(void) { return 0; }
                        EOF
                      - {command: 'gcc a.c', timeout: 5}
                      - {command: './a.out', timeout: 1500ms}
                      - {command: 'echo done'}
                    expect_stdout: "  done\\n"
                    expect_stdout_regex: '^d.ne$'
                    expect_status: -2
                    timeout: 8s
            """
        )
        .targets[0]
        .canaries
    )
    assert canary.name == "c"
    assert canary.request_config()["commands"] == [
        "cat > a.c <<'EOF'\nint main(void) { return 0; }\nEOF\n",
        {"command": "gcc a.c", "timeout": 5},
        {"command": "./a.out", "timeout": 1.5},
        "echo done",
    ]
    assert isinstance(canary.request_config()["commands"][1]["timeout"], int)
    assert canary.expect_stdout == "done"
    assert canary.expect_stdout_regex is not None
    assert canary.expect_stdout_regex.pattern == "^d.ne$"
    assert canary.expect_status == -2
    assert canary.timeout == 8.0
    request = canary.request_config()
    assert json.loads(json.dumps(request)) == request
    assert "save" not in request
    assert request["commands"][1] == {"command": "gcc a.c", "timeout": 5}


@pytest.mark.parametrize(
    ("expect_stdout", "regex", "stdout", "matches"),
    [
        ("4", None, "4", True),
        ("4", None, "4\n", True),
        ("4", None, "  4  ", True),
        ("4", None, "44", False),
        ("4", None, "", False),
        ("", None, "", True),
        (None, None, "anything", True),
        (None, r"^java 42$", "java 42", True),
        (None, r"^java 42$", "java 420", False),
        (None, r"42", "java 42 ok", True),
        (None, r"(?m)^ok$", "first\nok\nlast", True),
        ("java 42", r"42", "java 42", True),
        ("java 42", r"43", "java 42", False),
    ],
)
def test_stdout_matches(
    expect_stdout: str | None, regex: str | None, stdout: str, matches: bool
) -> None:
    import re

    canary = Canary(
        name="c",
        commands=("true",),
        expect_stdout=expect_stdout,
        expect_stdout_regex=re.compile(regex) if regex else None,
    )
    assert canary.stdout_matches(stdout) is matches


def test_labels_are_kept_in_order() -> None:
    target = parse(target_with("labels: {site: paris, tier: '1', empty: ''}")).targets[0]
    assert list(target.labels.items()) == [("site", "paris"), ("tier", "1"), ("empty", "")]


def test_url_normalisation() -> None:
    config = parse(
        """\
        targets:
          - {name: a, url: 'HTTPS://Sandbox.example.org'}
          - {name: b, url: 'http://h:8000/prefix'}
          - {name: c, url: 'http://h/prefix/'}
          - {name: d, url: '  http://[::1]:8080  '}
        """
    )
    assert [t.url for t in config.targets] == [
        "https://Sandbox.example.org/",
        "http://h:8000/prefix/",
        "http://h/prefix/",
        "http://[::1]:8080/",
    ]


def test_probe_endpoint() -> None:
    endpoint = parse(
        "probe_endpoint:\n"
        "  allow_unlisted_targets: true\n"
        "  allowed_urls: ['https://sandbox-[0-9]+\\.example\\.org/', 'http://127\\.0\\.0\\.1:[0-9]+/']\n"
    ).probe_endpoint
    assert endpoint.allow_unlisted_targets
    assert endpoint.allows("https://sandbox-12.example.org/")
    assert endpoint.allows("http://127.0.0.1:8080/")
    assert not endpoint.allows("https://sandbox-12.example.org/../x")  # fullmatch
    assert not endpoint.allows("https://sandbox-12.example.org.evil.com/")
    assert not endpoint.allows("https://evil.com/?https://sandbox-1.example.org/")
    closed = parse("probe_endpoint: {allowed_urls: ['.*']}\n").probe_endpoint
    assert not closed.allow_unlisted_targets
    assert not closed.allows("https://anything/")


def test_config_target_lookup() -> None:
    config = parse("targets: [{name: a, url: 'http://a/'}, {name: b, url: 'http://b/'}]\n")
    assert config.target("b") is config.targets[1]
    assert config.target("c") is None
    # A copy with other targets finds its own, not the original's.
    copy = config.model_copy(update={"targets": config.targets[:1]})
    assert copy.target("b") is None and copy.target("a") is config.targets[0]
    assert config.target("b") is config.targets[1]
    # The lookup's index is not part of what a configuration is.
    assert config == parse("targets: [{name: a, url: 'http://a/'}, {name: b, url: 'http://b/'}]\n")


def test_config_objects_are_frozen_and_picklable() -> None:
    config = parse(target_with("labels: {site: x}, expect: {bin: [gcc]}"))
    target = config.targets[0]
    with pytest.raises(ValidationError, match="frozen"):
        target.url = "http://evil/"  # type: ignore[misc]
    with pytest.raises(TypeError):
        target.labels["site"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        target.intervals["usage"] = 1.0  # type: ignore[index]
    assert pickle.loads(pickle.dumps(config)) == config
    assert parse(target_with("labels: {site: x}, expect: {bin: [gcc]}")) == config
    # The scheduler keeps targets in sets and compares reloaded ones.
    again = parse(target_with("labels: {site: x}, expect: {bin: [gcc]}")).targets[0]
    assert hash(again) == hash(target) and again in {target}
    assert isinstance(target.intervals, Mapping) and set(target.timeouts) == set(PROBES)


def test_load_config_reports_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yml")
    assert str(caught.value) == (
        f"{tmp_path / 'missing.yml'}: cannot read the configuration file: No such file or directory"
    )
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"targets: [\xff]\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(binary)
    with_bom = tmp_path / "bom.yml"
    with_bom.write_bytes(b"\xef\xbb\xbftargets: [{url: 'http://h/'}]\n")
    assert load_config(with_bom).targets[0].name == "h"


# --------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("15s", 15.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1y", 31536000.0),
        ("2h45m30s100ms", 9930.1),
        ("1.5s", 1.5),
        (" 10s ", 10.0),
        ("10", 10.0),
        ("2.5", 2.5),
        ("0s", 0.0),
        (10, 10.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "5 seconds",
        "",
        "s",
        "10x",
        "-5s",
        "1m1h",
        "1s1s",
        "1ms1s",
        "1h 30m",
        "1e3s",
        "ten",
        True,
        -1,
        float("nan"),
        float("inf"),
        10**400,
        1.797693134862316e305,
        "367d",
        None,
        [1],
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"invalid duration: .* \(use e\.g\. 10s, 1m30s or 500ms"):
        parse_duration(value)  # type: ignore[arg-type]


def test_parse_duration_message() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("5 seconds")
    assert str(caught.value) == (
        "invalid duration: the string '5 seconds' (use e.g. 10s, 1m30s or 500ms: "
        "units y w d h m s ms, largest first, each once; at most 366d)"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (15, "15s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (0.5, "500ms"),
        (86400, "1d"),
        (0, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# --------------------------------------------------------------------------
# config_for_url


def test_config_for_url_applies_defaults() -> None:
    defaults = parse(
        "defaults: {intervals: {canary: 1m}, expect: {bin: [gcc]}, "
        "tls: {insecure_skip_verify: true}}\n"
    ).defaults
    config = config_for_url("https://sandbox-3.example.org", defaults)
    [target] = config.targets
    assert target.name == "sandbox-3.example.org"
    assert target.url == "https://sandbox-3.example.org/"
    assert target.intervals["canary"] == 60.0
    assert target.expect.bin == ("gcc",)
    assert target.tls.insecure_skip_verify
    assert target.auth.username is None and target.auth.password is None
    assert config.defaults is defaults
    assert config.target("sandbox-3.example.org") is target


def test_config_for_url_without_defaults_uses_the_built_in_ones() -> None:
    [target] = config_for_url("http://127.0.0.1:8080/sandbox").targets
    assert target == Target(name="127.0.0.1:8080", url="http://127.0.0.1:8080/sandbox/")
    assert target.intervals == DEFAULT_INTERVALS
    assert target.timeouts == DEFAULT_TIMEOUTS


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://h/", "http:// or https://"),
        ("sandbox.example.org", "did you mean 'https://sandbox.example.org'"),
        ("http://", "no host name"),
        (f"https://monitor:{MARKER}@h/", "must not contain credentials"),
        ("", "must not be empty"),
    ],
)
def test_config_for_url_rejects_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_for_url(url, Defaults())
    [error] = caught.value.errors
    assert error.startswith("url: ")
    assert fragment in error
    assert MARKER not in str(caught.value)


# --------------------------------------------------------------------------
# The shipped example files


@pytest.fixture
def example_directory(tmp_path: Path) -> Path:
    """config/example.yml beside the secret files and CA bundle it refers to."""
    shutil.copy(REPO / "config" / "example.yml", tmp_path / "example.yml")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "paris.password").write_text("paris-" + MARKER + "\n")
    (tmp_path / "secrets" / "lyon.token").write_text("lyon-" + MARKER + "\n")
    (tmp_path / "secrets" / "marseille.password").write_text("marseille-" + MARKER + "\n")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "private-ca.pem").write_text("placeholder\n")
    return tmp_path


def test_the_example_config_loads(example_directory: Path) -> None:
    config = load_config(example_directory / "example.yml")
    assert [t.name for t in config.targets] == ["paris-1", "lyon-courses", "marseille"]
    paris, lyon, marseille = config.targets
    assert paris.auth.password.value() == "paris-" + MARKER  # type: ignore[union-attr]
    assert paris.tls.ca_file == str(example_directory / "certs" / "private-ca.pem")
    assert paris.labels == {"site": "paris", "tier": "production"}
    assert paris.intervals["canary"] == 60.0
    assert lyon.auth.bearer_token.value() == "lyon-" + MARKER  # type: ignore[union-attr]
    assert [c.name for c in lyon.canaries] == ["shell", "python", "c", "java"]
    assert marseille.auth.password.value() == "marseille-" + MARKER  # type: ignore[union-attr]
    assert marseille.expect == lyon.expect  # shared through a YAML anchor
    assert len(lyon.expect.languages) + sum(map(len, lyon.expect.packages.values())) > 10
    assert not config.probe_endpoint.allow_unlisted_targets
    assert [p.pattern for p in config.probe_endpoint.allowed_urls] == [
        "https://sandbox-[0-9]+\\.example\\.org/"
    ]
    assert MARKER not in repr(config)


def test_the_example_config_names_missing_secrets_without_crashing(tmp_path: Path) -> None:
    # Copied alone, away from the dummy secrets shipped beside it.
    shutil.copy(REPO / "config" / "example.yml", tmp_path / "example.yml")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "example.yml")
    assert any("secrets/paris.password" in error for error in caught.value.errors)


def test_the_shipped_example_config_loads_with_its_dummy_files() -> None:
    config = load_config(REPO / "config" / "example.yml")
    assert [t.name for t in config.targets] == ["paris-1", "lyon-courses", "marseille"]


def test_the_minimal_config_loads() -> None:
    config = load_config(REPO / "config" / "minimal.yml")
    [target] = config.targets
    assert target.name == "local"
    assert target.canaries == (DEFAULT_CANARY,)


def run_canary_locally(canary: Canary, workdir: Path) -> tuple[int, str]:
    """Run a canary's commands the way the sandbox does: bash -c each, in order,
    in one directory, stopping at the first failure; stdout stripped."""
    stdout = ""
    for command in canary.commands:
        done = subprocess.run(
            ["bash", "-c", command.command], cwd=workdir, capture_output=True, text=True, timeout=60
        )
        stdout = done.stdout.strip()
        if done.returncode != 0:
            return done.returncode, stdout
    return 0, stdout


@pytest.mark.parametrize("name", ["shell", "python", "c", "java"])
def test_the_example_toolchain_canaries_really_work(
    example_directory: Path, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    canary = next(
        c
        for c in load_config(example_directory / "example.yml").target("lyon-courses").canaries  # type: ignore[union-attr]
        if c.name == name
    )
    tools = {"shell": "bash", "python": "python3", "c": "gcc", "java": "javac"}
    if shutil.which(tools[name]) is None:
        pytest.skip(f"{tools[name]} is not installed here; the canary targets real sandboxes")
    status, stdout = run_canary_locally(canary, tmp_path_factory.mktemp(name))
    assert status == canary.expect_status
    assert canary.stdout_matches(stdout), stdout


# --------------------------------------------------------------------------
# Robustness: any YAML gives a Config or a ConfigError, never another exception

_KEYS = [
    *("defaults", "probe_endpoint", "targets", "name", "url", "labels", "auth", "tls"),
    *("intervals", "timeouts", "canaries", "expect", "thresholds", "severities"),
    *("username", "password", "password_file", "password_env", "bearer_token_file"),
    *("bearer_token_env", "headers", "ca_file", "insecure_skip_verify", "commands"),
    *("command", "timeout", "expect_stdout", "expect_stdout_regex", "expect_status", "save"),
    *("languages", "packages", "bin", "load_warning", "load_critical", "expectation_missed"),
    *("overloaded", "canary_failed", "allow_unlisted_targets", "allowed_urls"),
    *PROBES,
    *("python3", "g++", "gpp", "system", "python", "perl", "c", "__x", "site"),
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "http://h/",
            "https://u:p@h/",
            "15s",
            "1h30m",
            "0s",
            ">=3.8,<4",
            "=>1",
            "warning",
            "critical",
            "(",
            "[a-",
            "present",
            "echo $((2+2))",
            "/nonexistent",
            "HOME",
        ]
    ),
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(_KEYS), st.text(max_size=6), st.integers(-3, 3)),
            children,
            max_size=5,
        ),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_DOCUMENTS)
def test_random_documents_give_a_config_or_a_config_error(document: object) -> None:
    text = yaml.safe_dump(document)
    try:
        config = parse_config(text)
    except ConfigError as error:
        assert error.errors
        # One line per problem, whatever odd characters the document holds.
        assert all(message and "\n" not in message for message in error.errors)
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_random_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as error:
        assert error.errors


def _section(keys: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    """Mappings over the real keys of a section, with arbitrary values."""
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


_CANARY = _section(
    ["name", "commands", "expect_stdout", "expect_stdout_regex", "expect_status", "timeout"],
    st.one_of(_SCALARS, st.lists(st.one_of(_SCALARS, _section(["command", "timeout"], _SCALARS)))),
)
_EXPECT = _section(
    ["languages", "packages", "bin"],
    st.one_of(
        _SCALARS,
        st.lists(_SCALARS, max_size=3),
        st.dictionaries(st.sampled_from(_KEYS), st.one_of(_SCALARS, _DOCUMENTS), max_size=3),
    ),
)
_PER_KIND = st.one_of(_SCALARS, _section(list(PROBES), _SCALARS))
_TARGET = st.fixed_dictionaries(
    {"url": st.sampled_from(["http://h/", "https://sandbox.example.org:8443/x"])},
    optional={
        "name": _SCALARS,
        "labels": st.one_of(_SCALARS, st.dictionaries(st.text(max_size=5), _SCALARS, max_size=3)),
        "auth": _section(
            ["username", "password_env", "bearer_token_env", "password_file", "headers"],
            st.one_of(_SCALARS, st.dictionaries(st.text(max_size=5), _SCALARS, max_size=2)),
        ),
        "tls": _section(["ca_file", "insecure_skip_verify"], _SCALARS),
        "intervals": _PER_KIND,
        "timeouts": _PER_KIND,
        "canaries": st.one_of(_SCALARS, st.lists(st.one_of(_SCALARS, _CANARY), max_size=3)),
        "expect": st.one_of(_SCALARS, _EXPECT),
        "thresholds": _section(["load_warning", "load_critical"], _SCALARS),
        "severities": _section(["expectation_missed", "overloaded", "canary_failed"], _SCALARS),
    },
)
_STRUCTURED = st.fixed_dictionaries(
    {"targets": st.lists(_TARGET, max_size=3)},
    optional={
        "defaults": _section(["intervals", "timeouts", "canaries", "expect"], _DOCUMENTS),
        "probe_endpoint": _section(
            ["allow_unlisted_targets", "allowed_urls"],
            st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3)),
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_STRUCTURED)
@example(document={"targets": [{"url": "http://h/", "auth": {"password_file": "\x00"}}]})
@example(document={"targets": [{"url": "http://h/", "timeouts": {"specifications": 1.7e305}}]})
def test_random_values_in_real_keys_give_a_config_or_a_config_error(document: object) -> None:
    try:
        config = parse_config(yaml.safe_dump(document))
    except ConfigError as error:
        assert error.errors
        assert all(message and "\n" not in message for message in error.errors)
    else:
        assert len(config.targets) == len(document["targets"])  # type: ignore[index]


# --------------------------------------------------------------------------
# Values nobody wrote shrink to fit; values written that cannot fit are errors


def test_an_inherited_timeout_shrinks_to_a_shorter_interval() -> None:
    config = parse(
        """\
        defaults:
          intervals: {libraries: 30s}
        targets:
          - {name: a, url: 'http://a/', intervals: {specifications: 5s, canary: 8s}}
          - {name: b, url: 'http://b/', timeouts: {usage: 3s}, intervals: {usage: 4s}}
        """
    )
    assert config.defaults.timeouts["libraries"] == 30.0  # built-in 60s, cut to the interval
    a, b = config.targets
    assert a.timeouts["specifications"] == 5.0
    assert a.timeouts["libraries"] == 30.0
    assert a.timeouts["canary"] == 8.0
    assert a.timeouts["usage"] == 10.0  # interval 15s: nothing to fit
    assert b.timeouts["usage"] == 3.0
    assert all(t.timeouts[kind] <= t.intervals[kind] for t in config.targets for kind in PROBES)


def test_canary_timeouts_nobody_wrote_shrink_to_the_probe_deadline() -> None:
    config = parse(
        """\
        defaults:
          canaries:
            - {name: quick, commands: [ls]}
            - {name: slow, commands: [{command: make, timeout: 4s}]}
            - {name: fixed, commands: [ls], timeout: 3s}
        targets:
          - {name: a, url: 'http://a/'}
          - {name: b, url: 'http://b/', intervals: {canary: 7s}}
          - {name: c, url: 'http://c/', intervals: {canary: 2m}, timeouts: {canary: 1m}}
        """
    )
    timeouts = {t.name: {c.name: c.timeout for c in t.canaries} for t in config.targets}
    assert timeouts == {
        "a": {"quick": 10.0, "slow": 10.0, "fixed": 3.0},
        "b": {"quick": 7.0, "slow": 7.0, "fixed": 3.0},
        "c": {"quick": 10.0, "slow": 10.0, "fixed": 3.0},
    }
    assert {c.name: c.timeout for c in config.defaults.canaries} == timeouts["a"]


def test_a_canary_without_timeout_gets_at_least_its_longest_command() -> None:
    [canary] = (
        parse(target_with("canaries: [{name: a, commands: [{command: make, timeout: 15s}]}]"))
        .targets[0]
        .canaries
    )
    assert canary.timeout == 15.0


def test_the_default_canary_fits_a_short_canary_interval() -> None:
    target = parse(
        "defaults: {intervals: {specifications: 10s, canary: 5s}}\n"
        "targets: [{name: demo, url: 'http://h/'}]\n"
    ).targets[0]
    assert target.timeouts["canary"] == 5.0
    assert target.canaries == (DEFAULT_CANARY.model_copy(update={"timeout": 5.0}),)
    defaults = parse("defaults: {intervals: {canary: 5s}}").defaults
    [from_url] = config_for_url("http://h/", defaults).targets
    assert from_url.canaries[0].timeout == 5.0


# --------------------------------------------------------------------------
# The JSON Schema, for editors

SCHEMA_FILE = REPO / "config" / "sandbox-exporter.schema.json"
MODELINE = "# yaml-language-server: $schema=sandbox-exporter.schema.json"


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_shipped_schema_is_the_one_the_models_generate() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "sandbox_exporter.config", "--schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    assert json.loads(generated)["title"] == "sandbox-exporter configuration"
    assert SCHEMA_FILE.read_text() == generated, (
        "config/sandbox-exporter.schema.json is stale: regenerate it with "
        "python -m sandbox_exporter.config --schema > config/sandbox-exporter.schema.json"
    )


@pytest.mark.parametrize("name", ["example.yml", "minimal.yml"])
def test_the_shipped_configs_validate_against_the_schema_they_name(
    schema_validator: jsonschema.Draft7Validator, name: str
) -> None:
    text = (REPO / "config" / name).read_text()
    assert text.splitlines()[0] == MODELINE
    # The modeline's path is relative to the YAML file.
    assert (REPO / "config" / MODELINE.split("=", 1)[1]).is_file()
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in schema_validator.iter_errors(yaml.safe_load(text))
    ]
    assert errors == []


@pytest.mark.parametrize(
    "document",
    [
        {"target": []},
        {"targets": [{"name": "a"}]},
        {"targets": [{"url": "http://h/", "labls": {}}]},
        {"targets": [{"url": "http://h/", "intervals": {"usage": "5 seconds"}}]},
        {"targets": [{"url": "http://h/", "intervals": {"usages": "5s"}}]},
        {"targets": [{"url": "http://h/", "severities": {"overloaded": "fatal"}}]},
        {"targets": [{"url": "http://h/", "thresholds": {"load_warning": 80}}]},
        {"targets": [{"url": "http://h/", "auth": {"password": "x"}}]},
        {
            "targets": [
                {"url": "http://h/", "canaries": [{"name": "a", "commands": ["ls"], "save": True}]}
            ]
        },
        {"targets": [{"url": "http://h/", "expect": {"languages": {"python": ">=3"}}}]},
        {"defaults": {"auth": {}}},
    ],
)
def test_the_schema_flags_what_the_loader_refuses(
    schema_validator: jsonschema.Draft7Validator, document: dict[str, object]
) -> None:
    assert not schema_validator.is_valid(document)
    with pytest.raises(ConfigError):
        parse_config(yaml.safe_dump(document))


def test_the_schema_documents_keys_and_defaults(
    schema_validator: jsonschema.Draft7Validator,
) -> None:
    schema = schema_validator.schema
    target = schema["$defs"]["Target"]["properties"]
    assert "base URL" in target["url"]["description"]
    intervals = schema["$defs"]["Defaults"]["properties"]["intervals"]
    assert intervals["default"] == dict(DEFAULT_INTERVALS)
    assert intervals["propertyNames"]["enum"] == list(PROBES)
    refused = schema["$defs"]["Auth"]["properties"]["password"]
    assert refused["not"] == {} and "password_file" in refused["description"]


# --------------------------------------------------------------------------
# Another program's file, and a file that lists no targets


@pytest.mark.parametrize(
    ("text", "kind", "checker"),
    [
        (
            "global: {scrape_interval: 15s}\nscrape_configs: []\n",
            "a Prometheus configuration",
            "promtool check config",
        ),
        ("rule_files: [alerts.yml]\n", "a Prometheus configuration", "promtool check config"),
        (
            "route: {receiver: x}\nreceivers: [{name: x}]\n",
            "an Alertmanager configuration",
            "amtool check-config",
        ),
        # Alertmanager's own `global` does not make it Prometheus'.
        (
            "global: {resolve_timeout: 5m}\nroute: {receiver: x}\n",
            "an Alertmanager configuration",
            "amtool check-config",
        ),
        ("groups: []\n", "a Prometheus rules file", "promtool check rules"),
    ],
)
def test_another_programs_file_is_named_with_its_checker(
    text: str, kind: str, checker: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="mine.yml")
    # One line that says what the file is, rather than one "unknown key" per key.
    [error] = caught.value.errors
    assert f"this looks like {kind} (top-level " in error
    assert error.endswith(f"check it with: {checker} mine.yml")


def test_a_file_of_ours_with_a_stray_prometheus_key_gets_the_usual_error() -> None:
    errors = errors_of("global: {scrape_interval: 15s}\ntargets: []\n")
    assert errors == [
        "global: unknown key; expected one of: defaults, probe_endpoint, targets (line 1, column 1)"
    ]


@pytest.mark.parametrize("text", ["", "targets: []\n", "defaults: {}\n"])
def test_a_config_without_targets_is_valid_with_a_note(text: str) -> None:
    config = parse_config(text)
    assert config.targets == ()
    assert empty_config_note(config) == "it lists no targets: the exporter would watch nothing"


def test_the_note_says_what_an_open_probe_endpoint_still_does() -> None:
    config = parse_config(
        "probe_endpoint: {allow_unlisted_targets: true, allowed_urls: ['https://.*']}\n"
    )
    assert "only /probe?target=URL will probe" in empty_config_note(config)
    assert empty_config_note(parse_config("targets: [{name: a, url: 'http://a/'}]\n")) is None
