"""The running exporter: config loading and reloads, the scheduler, on-demand probes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError, Target, config_for_url, load_config
from .probes import ProbeResult, make_sandbox, run_probe
from .scheduler import ProbeScheduler, SandboxClients
from .state import State
from .vocabulary import LIBRARIES, PROBES

log = logging.getLogger(__name__)

# /probe runs these on every scrape; /libraries/ starts a container on the
# server each call, so it runs only once its configured interval has passed.
ON_DEMAND_PROBES = tuple(p for p in PROBES if p != LIBRARIES)


class UnknownTarget(LookupError):
    """`/probe` was asked for a target it may not probe."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OnDemandProbe:
    target: Target
    state: State
    results: tuple[ProbeResult, ...]


class Exporter:
    def __init__(
        self, config: Config, config_path: Path | None = None, *, scheduled: bool = True
    ) -> None:
        """`scheduled=False` probes only on /probe requests: replicas that share
        targets through Prometheus' hashmod then probe only their own share."""
        self.config_path = config_path
        self.scheduled = scheduled
        self.state = State()
        self.clients = SandboxClients()
        self.scheduler = ProbeScheduler(self.state, self.clients)
        self._reload_lock = threading.Lock()
        # Up to four probes per /probe request; sized for Prometheus scraping
        # a few dozen targets at once (benchmarks/: B2, /probe throughput).
        self._on_demand = ThreadPoolExecutor(max_workers=128, thread_name_prefix="probe")
        self._apply(config)

    @property
    def config(self) -> Config:
        config = self.state.config
        assert config is not None
        return config

    def _apply(self, config: Config) -> None:
        self.state.set_config(config)
        if self.scheduled:
            self.scheduler.apply(config)

    def reload(self) -> bool:
        """Re-read the config file; on error keep the running config."""
        if self.config_path is None:
            return True
        with self._reload_lock:
            try:
                config = load_config(self.config_path)
            except ConfigError as error:
                log.error("config reload failed, keeping the running config: %s", error)
                self.state.reload_failed(str(error))
                return False
            self._apply(config)
            log.info("config reloaded: %d targets", len(config.targets))
            return True

    def is_ready(self) -> bool:
        """Every configured target has been probed at least once."""
        if not self.scheduled:
            return True
        probed = self.state.probed_targets()
        return all(t.name in probed for t in self.config.targets)

    def resolve_target(self, requested: str) -> tuple[Target, bool]:
        """A configured target by name, or an allowed URL; (target, listed)."""
        config = self.config
        target = config.target(requested)
        if target is not None:
            return target, True
        if "://" not in requested:
            raise UnknownTarget(f"unknown target {requested!r}: not in the configuration", 404)
        endpoint = config.probe_endpoint
        if not endpoint.allow_unlisted_targets:
            raise UnknownTarget(
                "probing URLs that are not configured targets is disabled "
                "(probe_endpoint.allow_unlisted_targets)",
                403,
            )
        if not endpoint.allows(requested):
            raise UnknownTarget("URL not allowed by probe_endpoint.allowed_urls", 403)
        try:
            return config_for_url(requested, config.defaults).targets[0], False
        except ConfigError as error:
            raise UnknownTarget(f"invalid target URL: {error}", 400) from error

    def probe_now(
        self, requested: str, budget: float, probes: Iterable[str] | None = None
    ) -> OnDemandProbe:
        target, listed = self.resolve_target(requested)
        state = self.state if listed else State()
        if probes is None:
            probes = list(ON_DEMAND_PROBES)
            last = self.state.snapshot().last_success.get((target.name, LIBRARIES))
            if listed and (last is None or _age(last) >= target.intervals[LIBRARIES]):
                probes.append(LIBRARIES)
        # Unlisted URLs get a throw-away client: nothing about them is kept.
        sandbox = self.clients.get(target) if listed else make_sandbox(target)
        try:
            futures = [
                self._on_demand.submit(run_probe, kind, sandbox, target, budget) for kind in probes
            ]
            results = tuple(future.result() for future in futures)
        finally:
            if not listed:
                sandbox.close()
        for result in results:
            state.record(result)
        return OnDemandProbe(target, state, results)

    def stop(self) -> None:
        self.scheduler.shutdown()
        self._on_demand.shutdown(wait=False, cancel_futures=True)


def _age(timestamp: float) -> float:
    return time.time() - timestamp
