"""A real Alertmanager for end-to-end tests: Debian's `prometheus-alertmanager`
binary (upstream calls it `alertmanager`) on 127.0.0.1, a free port, a
throw-away configuration and data directory, clustering off.

    with AlertmanagerServer(config, tmp_path) as alertmanager:
        alertmanager.url  # http://127.0.0.1:PORT

Every wait is bounded; a server that does not come up fails the test with
the end of its log.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from server_process import ServerProcess

# Debian renames the server binary; upstream tarballs and images call it alertmanager.
BINARY_NAMES = ("alertmanager", "prometheus-alertmanager")


def alertmanager_binary() -> str:
    """The path of the Alertmanager server binary; fails the test when absent."""
    for name in BINARY_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        "Alertmanager is not installed: ./scripts/test installs Debian's "
        "prometheus-alertmanager package (apt-get install prometheus-alertmanager)"
    )


class AlertmanagerServer(ServerProcess):
    name = "Alertmanager"

    def __init__(self, config: Mapping[str, Any], directory: Path) -> None:
        super().__init__(alertmanager_binary(), directory)
        self.config_path = directory / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))

    def arguments(self, port: int) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # No gossip: the default would listen on 0.0.0.0:9094.
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds now (API v2), with their status."""
        response = requests.get(f"{self.url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        return response.json()
