"""The running exporter: config loading and reloads, the scheduler, on-demand probes.

Everything here runs on one asyncio event loop; probes are coroutines, so
neither targets nor clients cost threads.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError, Target, config_for_url, load_config
from .probes import ProbeResult, run_probe
from .scheduler import ProbeScheduler
from .state import State
from .transport import Transports, open_session
from .vocabulary import LIBRARIES, PROBES, counted

log = logging.getLogger(__name__)

# /probe runs these on every scrape; /libraries/ starts a container on the
# server each call, so it runs only once its configured interval has passed.
ON_DEMAND_PROBES = tuple(p for p in PROBES if p != LIBRARIES)


class Refusal(enum.Enum):
    """Why `/probe` may not probe what it was asked for; the web layer picks the status."""

    NOT_CONFIGURED = "not configured"
    FORBIDDEN = "forbidden"
    INVALID = "invalid"


class UnknownTarget(LookupError):
    """`/probe` was asked for a target it may not probe."""

    def __init__(self, message: str, refusal: Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class OnDemandProbe:
    target: Target
    state: State
    results: tuple[ProbeResult, ...]


class Exporter:
    """Create with a config, then ``await start()`` on the loop that will run it."""

    def __init__(
        self, config: Config, config_path: Path | None = None, *, scheduled: bool = True
    ) -> None:
        """`scheduled=False` probes only on /probe requests: replicas that share
        targets through Prometheus' hashmod then probe only their own share."""
        self.config_path = config_path
        self.scheduled = scheduled
        self.state = State()
        self.state.set_config(config)
        self._reload_lock: asyncio.Lock | None = None
        self.scheduler: ProbeScheduler | None = None
        self._transports: Transports | None = None
        self._session = None

    async def start(self) -> None:
        self._reload_lock = asyncio.Lock()
        self._session = open_session()
        self._transports = Transports(self._session)
        if self.scheduled:
            self.scheduler = ProbeScheduler(self.state, self._transports)
            self.scheduler.apply(self.config)

    @property
    def config(self) -> Config:
        config = self.state.config
        assert config is not None
        return config

    async def reload(self) -> bool:
        """Re-read the config file; on error keep the running config."""
        if self.config_path is None or self._reload_lock is None:
            return True
        async with self._reload_lock:
            try:
                # Reading files (the config, secret files) must not stall the loop.
                config = await asyncio.to_thread(load_config, self.config_path)
            except ConfigError as error:
                log.error("config reload failed, keeping the running config: %s", error)
                self.state.reload_failed(str(error))
                return False
            self.state.set_config(config)
            if self._transports is not None:
                # Forget removed targets' connections and credentials, scheduled or not.
                self._transports.retain({target.name for target in config.targets})
            if self.scheduler is not None:
                self.scheduler.apply(config)
            log.info("config reloaded: %s", counted(len(config.targets), "target"))
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
            raise UnknownTarget(
                f"unknown target {requested!r}: not in the configuration", Refusal.NOT_CONFIGURED
            )
        endpoint = config.probe_endpoint
        if not endpoint.allow_unlisted_targets:
            raise UnknownTarget(
                "probing URLs that are not configured targets is disabled "
                "(probe_endpoint.allow_unlisted_targets)",
                Refusal.FORBIDDEN,
            )
        if not endpoint.allows(requested):
            raise UnknownTarget("URL not allowed by probe_endpoint.allowed_urls", Refusal.FORBIDDEN)
        try:
            return config_for_url(requested, config.defaults).targets[0], False
        except ConfigError as error:
            raise UnknownTarget(f"invalid target URL: {error}", Refusal.INVALID) from error

    async def probe_now(
        self, requested: str, budget: float, probes: Sequence[str] | None = None
    ) -> OnDemandProbe:
        assert self._transports is not None, "start() first"
        target, listed = self.resolve_target(requested)
        state = self.state if listed else State()
        if probes is None:
            probes = list(ON_DEMAND_PROBES)
            # Timed from the last run, not the last success: a failing
            # /libraries/ must not be asked again on every scrape.
            last = self.state.snapshot(target).result(target.name, LIBRARIES)
            due = last is None or time.time() - last.started_at >= target.intervals[LIBRARIES]
            if listed and due:
                probes.append(LIBRARIES)
        transport = self._transports.get(target) if listed else self._transports.unlisted(target)
        if len(probes) == 1:  # the usual `probe=canary`: no task to start
            results: tuple[ProbeResult, ...] = (
                await run_probe(probes[0], transport, target, budget),
            )
        else:
            runs = (run_probe(kind, transport, target, budget) for kind in probes)
            results = tuple(await asyncio.gather(*runs))
        for result in results:
            state.record(result)
        return OnDemandProbe(target, state, results)

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self._session is not None:
            await self._session.close()
