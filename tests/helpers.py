"""Small helpers shared by the exporter's end-to-end tests."""

from __future__ import annotations

import importlib.util
import io
import socket
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import requests
from prometheus_client.parser import text_string_to_metric_families


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """A parsed exposition, queried by metric name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[Sample] = []
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            self.helps[family.name] = family.documentation
            for s in family.samples:
                self.samples.append(Sample(s.name, dict(s.labels), s.value))

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def find(self, metric: str, /, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, metric: str, /, **labels: str) -> float:
        found = self.find(metric, **labels)
        assert len(found) == 1, f"expected one {metric}{labels}, found {found}"
        return found[0].value

    def get(self, metric: str, /, **labels: str) -> float | None:
        found = self.find(metric, **labels)
        return found[0].value if len(found) == 1 else None


def scrape(url: str, **kwargs) -> Scrape:
    response = requests.get(url, timeout=10, **kwargs)
    response.raise_for_status()
    return Scrape(response.text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_tgz(files: dict[str, bytes]) -> bytes:
    """A .tgz holding `files` (name -> content), as the sandbox takes environments."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def load_script(path: Path) -> ModuleType:
    """A script of scripts/ as a module (they are files, not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
