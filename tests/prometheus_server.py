"""A real Prometheus server for end-to-end tests: Debian's `prometheus` binary
on 127.0.0.1, a free port, a throw-away configuration and TSDB directory.

    with PrometheusServer(config, tmp_path) as prometheus:
        prometheus.query('up{job="sandbox-exporter"}')

`config` is the parsed prometheus.yml (a dict); `rule_files` maps file names
(as the config lists them) to their content, written beside the config so
that relative paths resolve as they do in production. Every wait is bounded;
a server that does not come up fails the test with the end of its log.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from server_process import ServerProcess

REQUEST_TIMEOUT_SECONDS = 10.0


class PrometheusAPIError(AssertionError):
    """The HTTP API refused a request (bad PromQL, bad parameters...)."""


def prometheus_binary() -> str:
    """The path of the `prometheus` server binary; fails the test when absent."""
    path = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
    )
    if path is None:
        pytest.fail(
            "the prometheus server binary is not installed: ./scripts/test installs "
            "Debian's prometheus package (apt-get install prometheus)"
        )
    return path


def prometheus_version(binary: str) -> str:
    """`2.42.0` from `prometheus --version`; fails when the binary is not Prometheus."""
    done = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    output = done.stdout + done.stderr
    match = re.search(r"prometheus, version (\d+\.\d+\.\d+)", output)
    if done.returncode != 0 or match is None:
        pytest.fail(f"{binary} --version did not identify Prometheus:\n{output}")
    return match.group(1)


class PrometheusServer(ServerProcess):
    name = "Prometheus"

    def __init__(
        self,
        config: Mapping[str, Any],
        directory: Path,
        rule_files: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(prometheus_binary(), directory)
        self.version = prometheus_version(self.binary)
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        for name, text in (rule_files or {}).items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text)
        # e.g. --web.enable-lifecycle, for tests of POST /-/reload
        self.extra_args = list(extra_args)

    def arguments(self, port: int) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *self.extra_args,
        ]

    # ------------------------------------------------------------------- API

    def api(self, path: str, **params: Any) -> Any:
        """`data` of a successful /api/v1 answer; PrometheusAPIError otherwise."""
        response = requests.get(
            f"{self.url}/api/v1/{path}", params=params, timeout=REQUEST_TIMEOUT_SECONDS
        )
        try:
            body = response.json()
        except ValueError as error:
            raise PrometheusAPIError(
                f"/api/v1/{path} answered HTTP {response.status_code}, not JSON: "
                f"{response.text[:300]}"
            ) from error
        if body.get("status") != "success":
            raise PrometheusAPIError(
                f"/api/v1/{path} {params}: {body.get('errorType')}: {body.get('error')}"
            )
        if body.get("warnings"):
            raise PrometheusAPIError(f"/api/v1/{path} {params}: warnings {body['warnings']}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: the series of the vector (a scalar comes back as one
        series without labels), each {"metric": labels, "value": [time, "text"]}."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query: each series as {"metric": labels, "values": [[time, "text"], ...]}."""
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        return data["result"]

    def targets(self, state: str = "active") -> list[dict[str, Any]]:
        """Scrape targets after relabeling (`active`) or the ones relabeling dropped."""
        data = self.api("targets", state=state)
        return data["droppedTargets" if state == "dropped" else "activeTargets"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.api("rules")["groups"]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        return self.api("alerts")["alerts"]
