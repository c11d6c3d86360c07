"""docs/deploy.md end to end: from a broken sandbox to a delivered page.

An emulated sandbox answers 503 to every /execute/ (its pool is "full"),
another is healthy. The exporter runs as a subprocess through its CLI with
the guide's configuration (the sandbox URLs pointed at the emulators); a
real Prometheus loads the guide's scrape job, `alerting` block and the
shipped rule files; a real Alertmanager runs the guide's configuration
(= deploy/alertmanager/alertmanager.yml) with the webhook URLs pointed at a receiver of
this test. The broken sandbox must page (SandboxCanaryFailing and
SandboxErrorBudgetFastBurn reach the pager webhook), its slow-burn ticket
must be held back by the inhibit rule, and the healthy one must page for
nothing.

What is shortened, and only that: scrape and evaluation every second, the
probes every second, `for:` of the alerts 2 s, Alertmanager's grouping
waits 1 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import test_deploy_files as deploy
import yaml
from alertmanager_server import AlertmanagerServer
from prometheus_server import PrometheusServer
from test_deploy_guide import one_block
from test_runbooks import runbooks

from sandbox_emulator import Fault

from helpers import free_port, wait_until

ALERT_FOR = "2s"
DELIVERY_TIMEOUT_SECONDS = 60.0
HEALTHY, BROKEN = "pl-sandbox-1", "pl-sandbox-2"
GUIDE_EXPORTER = "exporter.example.org:9929"
GUIDE_ALERTMANAGER = "alertmanager.example.org:9093"


class Webhook:
    """A receiver on loopback that keeps every notification it gets."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass  # quiet test output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, path: str) -> list[dict[str, Any]]:
        """Firing alerts delivered to `path`."""
        return [
            alert
            for where, body in list(self.received)
            if where == path
            for alert in body["alerts"]
            if alert["status"] == "firing"
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.close()


def exporter_config(directory: Path, urls: dict[str, str]) -> Path:
    """The guide's configuration with the sandboxes' URLs replaced and the
    probes run every second."""
    config = yaml.safe_load(one_block("exporter-config").text)
    assert {t["name"] for t in config["targets"]} == set(urls)
    for target in config["targets"]:
        target["url"] = urls[target["name"]]
        for key in ("password_file", "bearer_token_file"):
            if key in target.get("auth", {}):
                path = directory / target["auth"][key]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("dummy\n")
    intervals = {"specifications": "1s", "usage": "1s", "libraries": "5s", "canary": "1s"}
    config["defaults"]["intervals"] = intervals
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def exporter(tmp_path: Path, make_emulator) -> Iterator[str]:
    """The exporter as a subprocess; yields its host:port once it is ready."""
    urls = {
        HEALTHY: make_emulator(api=3).url,
        BROKEN: make_emulator(api=3, faults={"execute": Fault(status=503)}).url,
    }
    config = exporter_config(tmp_path, urls)
    address = f"127.0.0.1:{free_port()}"
    binary = Path(sys.executable).parent / "sandbox-exporter"
    log = (tmp_path / "exporter.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "-c", str(config), f"--web.listen-address={address}"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the exporter exited: {(tmp_path / 'exporter.log').read_text()}")
        try:
            return requests.get(f"http://{address}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.2)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


def rules_with_short_for(path: Path) -> str:
    rules = yaml.safe_load(path.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = ALERT_FOR
    return yaml.safe_dump(rules, sort_keys=False)


def prometheus_config(exporter: str, alertmanager: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The guide's daemon-mode job and alerting block, addresses replaced,
    intervals one second; the rule files where the guide's rule_files say."""
    config = yaml.safe_load(one_block("prometheus-config", "daemon").text)
    config.update(yaml.safe_load(one_block("prometheus-config", "alerting").text))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
        for static in job["static_configs"]:
            static["targets"] = [exporter if t == GUIDE_EXPORTER else t for t in static["targets"]]
    for manager in config["alerting"]["alertmanagers"]:
        for static in manager["static_configs"]:
            assert static["targets"] == [GUIDE_ALERTMANAGER]
            static["targets"] = [alertmanager]
    rule_files = {
        name: rules_with_short_for(deploy.RULES_DIR / Path(name).name)
        for name in config["rule_files"]
    }
    return config, rule_files


def alertmanager_config(webhook: Webhook) -> dict[str, Any]:
    """The guide's Alertmanager configuration, webhooks pointed at ours and
    grouping waits shortened."""
    config = yaml.safe_load(one_block("alertmanager-config").text)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = hook["url"].split("/", 3)[3]
            hook["url"] = f"{webhook.url}/{path}"

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return config


@pytest.mark.timeout(180)
def test_a_broken_sandbox_pages_through_prometheus_and_alertmanager(
    tmp_path: Path, exporter: str, webhook: Webhook
) -> None:
    (tmp_path / "alertmanager").mkdir()
    (tmp_path / "prometheus").mkdir()
    with AlertmanagerServer(alertmanager_config(webhook), tmp_path / "alertmanager") as manager:
        config, rule_files = prometheus_config(exporter, manager.url.removeprefix("http://"))
        with PrometheusServer(config, tmp_path / "prometheus", rule_files=rule_files):
            wanted = {"SandboxCanaryFailing", "SandboxErrorBudgetFastBurn"}

            def paged() -> set[str]:
                names = {
                    a["labels"]["alertname"]
                    for a in webhook.alerts("/page")
                    if a["labels"].get("target") == BROKEN
                }
                return names if wanted <= names else set()

            wait_until(paged, timeout=DELIVERY_TIMEOUT_SECONDS, interval=0.5)

            # The ticket for the same budget is held back while it pages.
            def slow_burn() -> list[dict[str, Any]]:
                return [
                    a
                    for a in manager.alerts()
                    if a["labels"]["alertname"] == "SandboxErrorBudgetSlowBurn"
                    and a["labels"].get("target") == BROKEN
                ]

            (held,) = wait_until(slow_burn, timeout=DELIVERY_TIMEOUT_SECONDS, interval=0.5)
            assert held["status"]["state"] == "suppressed", held["status"]
            assert held["status"]["inhibitedBy"], held["status"]

    pages = webhook.alerts("/page")
    for alert in pages:
        assert alert["labels"]["severity"] == "critical", alert["labels"]
        assert alert["labels"].get("target") != HEALTHY, alert["labels"]
        # What the receiver gets links to what to do.
        wanted_url = runbooks.runbook_url(alert["labels"]["alertname"])
        assert alert["annotations"]["runbook_url"] == wanted_url, alert["annotations"]
    tickets = webhook.alerts("/ticket")
    assert all(a["labels"]["severity"] == "warning" for a in tickets)
    assert not [
        a
        for a in tickets
        if a["labels"]["alertname"] == "SandboxErrorBudgetSlowBurn"
        and a["labels"].get("target") == BROKEN
    ], "the inhibit rule let the ticket through"
    summaries = [a["annotations"]["summary"] for a in pages]
    assert f"Canary shell fails on sandbox {BROKEN}" in summaries
