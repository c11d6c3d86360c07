"""The one owner of probe runs: one run at a time per (target, probe), whoever asks.

The scheduler and `/probe` both come here. A run in flight is a task that
records its result in the state once, whoever waits for it:

- a scheduled run finds one in flight (its own previous run, or one that
  `/probe` started) and is skipped, counted in `sandbox_probe_skipped_total`;
- an on-demand run (`/probe`) joins the run in flight and waits for it
  within its own budget, or answers with the last result while it is recent
  enough: a canary takes a container, so `/probe` starts one at most every
  `canary_min_interval`, and `/libraries/` (a container too) at most once per
  its configured interval; specifications and usage cost the server nothing
  worth sparing, so `/probe` runs them whenever no run is in flight.

So no client of `/probe`, however many or fast, makes a sandbox run more than
its configuration allows, and a scrape never starts a second run beside the
scheduler's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .config import Target
from .probes import ProbeResult, run_probe
from .state import State
from .transport import MAX_CONNECTIONS, ProbeTransport, Transports
from .vocabulary import CANARY, LIBRARIES, Reason

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (target name, or "\0" + URL for a URL that is not a target; probe)

# Scheduled runs in flight at once. A probe holds at most one connection at
# a time: more runs than the pool has connections could only wait for one.
# Half the pool, so that /probe keeps connections of its own.
MAX_SCHEDULED_IN_FLIGHT = MAX_CONNECTIONS // 2


def reuse_window(target: Target, probe: str) -> float:
    """How long a result stays fresh enough for `/probe` to answer with it
    instead of starting a run: the probes that take a container are spaced."""
    if probe == CANARY:
        return target.canary_min_interval
    if probe == LIBRARIES:
        return target.intervals[LIBRARIES]
    return 0.0


@dataclass(frozen=True, slots=True)
class _Run:
    target: Target
    task: asyncio.Task[ProbeResult]


class Runs:
    """Create on the event loop that runs the probes."""

    def __init__(self, state: State, transports: Transports) -> None:
        self._state = state
        self._transports = transports
        self._in_flight: dict[Key, _Run] = {}
        self._slots = asyncio.Semaphore(MAX_SCHEDULED_IN_FLIGHT)
        # Crashes already logged with their traceback: a bug that crashes every
        # run of a probe logs its traceback once, then one line per run.
        self._crashes_logged: set[tuple[str, str, type]] = set()
        self._stopped = False

    async def scheduled(self, target: Target, probe: str) -> None:
        """The scheduler's run of ``probe``: skipped when one is in flight."""
        if self._stopped:
            return
        key = (target.name, probe)
        if key in self._in_flight:
            self.skipped(target.name, probe)
            return
        task = self._start(key, target, probe, None, self._state, scheduled=True)
        try:
            await task
        except asyncio.CancelledError:
            # Cancelled with its job (we are stopping) or by forget(): the run
            # ends with it, and the job ends quietly (APScheduler would log a
            # cancelled job as a crash).
            task.cancel()

    def missed(self, runs: int) -> None:
        """Scheduled runs whose time passed before they could start (the loop
        was too busy): the scheduler ran their job once for all of them."""
        log.debug("%d scheduled runs started late, after their next run was due", runs)
        self._state.count_missed(runs)

    def skipped(self, name: str, probe: str) -> None:
        """A scheduled run did not start because the previous one is still going."""
        log.debug("skipped %s probe of %s: the previous run is still going", probe, name)
        self._state.count_skip(name, probe)

    async def on_demand(
        self, target: Target, probes: Iterable[str], budget: float, *, listed: bool = True
    ) -> tuple[ProbeResult, ...]:
        """Results of ``probes`` for `/probe` within ``budget`` seconds: joined, reused
        or run now. A URL that is not a configured target (``listed=False``) keeps
        nothing in the state; its concurrent requests still share one run."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        waits = [self._result(target, probe, budget, listed) for probe in probes]
        if len(waits) == 1:  # the usual `probe=canary`: no task to gather
            return (await self._bounded(waits[0], deadline, target),)
        return tuple(await asyncio.gather(*(self._bounded(w, deadline, target) for w in waits)))

    def _result(
        self, target: Target, probe: str, budget: float, listed: bool
    ) -> tuple[str, asyncio.Task[ProbeResult] | ProbeResult]:
        key = (target.name if listed else "\0" + target.url, probe)
        run = self._in_flight.get(key)
        if run is not None:
            return probe, run.task
        if listed:
            last = self._state.latest(target.name, probe)
            if last is not None and time.time() - last.started_at < reuse_window(target, probe):
                return probe, last
        state = self._state if listed else None
        return probe, self._start(key, target, probe, budget, state, scheduled=False)

    async def _bounded(
        self,
        wait: tuple[str, asyncio.Task[ProbeResult] | ProbeResult],
        deadline: float,
        target: Target,
    ) -> ProbeResult:
        probe, pending = wait
        if isinstance(pending, ProbeResult):
            return pending
        started_at, started = time.time(), time.perf_counter()
        message = f"the {probe} run in flight did not finish within the scrape's budget"
        try:
            # Shielded: a scrape that gives up must not cancel a run that the
            # scheduler or another scrape waits for too.
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(pending)
        except TimeoutError:
            # Only a run that someone else started, with a longer deadline, can
            # outlast ours; its result will be recorded when it ends.
            reason = Reason.TIMEOUT
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not pending.cancelled() or (current is not None and current.cancelling()):
                raise
            # The run, not this request, was cancelled: a reload re-pointed or
            # removed the target while it ran.
            reason, message = Reason.CONNECTION, "the target changed while it was being probed"
        return ProbeResult(
            target=target.name,
            probe=probe,
            success=False,
            reason=reason,
            started_at=started_at,
            duration_seconds=time.perf_counter() - started,
            message=message,
        )

    def _start(
        self,
        key: Key,
        target: Target,
        probe: str,
        budget: float | None,
        state: State | None,
        *,
        scheduled: bool,
    ) -> asyncio.Task[ProbeResult]:
        if state is not None:
            transport = self._transports.get(target)
        else:
            transport = self._transports.unlisted(target)
        task = asyncio.get_running_loop().create_task(
            self._run(key, target, probe, transport, budget, state, scheduled),
            name=f"{probe} probe of {target.name}",
        )
        self._in_flight[key] = _Run(target, task)
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: Key, task: asyncio.Task[ProbeResult]) -> None:
        run = self._in_flight.get(key)
        if run is not None and run.task is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled waiter must not leave it unretrieved

    async def _run(
        self,
        key: Key,
        target: Target,
        probe: str,
        transport: ProbeTransport,
        budget: float | None,
        state: State | None,
        scheduled: bool,
    ) -> ProbeResult:
        started_at, started = time.time(), time.perf_counter()
        try:
            if scheduled:
                # The deadline starts once the run has its slot: a healthy
                # target is not failed for a queue that other targets made.
                async with self._slots:
                    result = await run_probe(probe, transport, target, budget)
            else:
                result = await run_probe(probe, transport, target, budget)
        except Exception as error:
            # A bug of ours must cost one run, and must not leave the last
            # success exported as current.
            result = self._crashed(target, probe, error, started_at, started)
        if not result.success:
            log.debug(
                "probe failed target=%s probe=%s reason=%s: %s",
                target.name,
                probe,
                result.reason.value if result.reason else "",
                result.message,
            )
        if state is not None:
            state.record(result)
        return result

    def _crashed(
        self, target: Target, probe: str, error: Exception, started_at: float, started: float
    ) -> ProbeResult:
        signature = (target.name, probe, type(error))
        if signature in self._crashes_logged:
            log.error("probe %s of target %s crashed again: %r", probe, target.name, error)
        else:
            self._crashes_logged.add(signature)
            log.exception("probe %s of target %s crashed", probe, target.name)
        return ProbeResult(
            target=target.name,
            probe=probe,
            success=False,
            reason=Reason.EXPORTER_ERROR,
            started_at=started_at,
            duration_seconds=time.perf_counter() - started,
            message=f"the exporter failed while probing ({type(error).__name__}); see its log",
        )

    def forget(self, names: Iterable[str]) -> None:
        """Cancel the runs in flight of these targets (removed, or now another
        server): their results would describe a server no longer watched."""
        names = set(names)
        for key, run in list(self._in_flight.items()):
            if key[0] in names:
                run.task.cancel()
                # Gone at once, not when the task ends: a run asked for from now
                # on is about the new server, and must not join the old one's.
                del self._in_flight[key]

    def shutdown(self) -> None:
        self._stopped = True
        for run in self._in_flight.values():
            run.task.cancel()
