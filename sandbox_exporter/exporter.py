"""The running exporter: config loading and reloads, the scheduler, on-demand probes.

Everything here runs on one asyncio event loop; probes are coroutines, so
neither targets nor clients cost threads.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError, Target, config_for_url, load_config
from .probes import ProbeResult
from .runs import Runs
from .scheduler import ProbeScheduler
from .state import State
from .transport import Transports, open_session
from .vocabulary import LIBRARIES, PROBES, counted

log = logging.getLogger(__name__)


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
        self._runs: Runs | None = None
        self._session = None

    async def start(self) -> None:
        self._reload_lock = asyncio.Lock()
        self._session = open_session()
        self._transports = Transports(self._session)
        self._runs = Runs(self.state, self._transports)
        if self.scheduled:
            self.scheduler = ProbeScheduler(self._runs)
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
            old = self.config
            # One step on the loop, so no run records a result in between: the
            # state drops what re-pointed targets' old servers said, the runs
            # of those servers in flight are cancelled, their transports go.
            self.state.set_config(config)
            if self._transports is not None:
                self._transports.retain(config.targets)
            if self.scheduler is not None:
                self.scheduler.apply(config)
            elif self._runs is not None:
                self._runs.forget(
                    t.name for t in old.targets if not t.same_server(config.target(t.name))
                )
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
        """Results of ``probes`` (all by default) of a target for `/probe`, within
        ``budget`` seconds: joined, reused or run now by the one owner of runs."""
        assert self._runs is not None, "start() first"
        target, listed = self.resolve_target(requested)
        if probes is None:
            # /libraries/ takes a container: a URL that is not a target, of
            # which nothing is kept to space its runs, gets it only when asked.
            probes = PROBES if listed else [p for p in PROBES if p != LIBRARIES]
        results = await self._runs.on_demand(target, probes, budget, listed=listed)
        if listed:
            return OnDemandProbe(target, self.state, results)
        # A URL that is not a target: its results are rendered, never kept.
        state = State()
        for result in results:
            state.record(result)
        return OnDemandProbe(target, state, results)

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown()
        elif self._runs is not None:
            self._runs.shutdown()
        if self._session is not None:
            await self._session.close()
