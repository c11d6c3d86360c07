"""Probes on their intervals: one APScheduler job per (target, probe), on the event loop.

One scheduler lives as long as the exporter; a reload adds, removes and
reschedules jobs in it, so an unchanged (target, probe) keeps its cadence.
Jobs are coroutines run by APScheduler's asyncio executor, so the number of
threads does not grow with the number of targets. Two runs of the same
(target, probe) never overlap: a run still in flight makes the next one
skip, and a reload that changes or removes a target cancels its runs in
flight (their results would describe a target that no longer exists).

A start or a reload makes every probe of every target due at once (4000
first runs at 1000 targets). Their first runs are spread at random over
`first_run_window`, at least half a second and longer when there are many,
and at most `MAX_IN_FLIGHT` scheduled runs are in flight at once; the others
wait for a slot before their probe starts. Beyond that they could only
queue for a connection, and each queued probe holds aiohttp's whole request
in memory (about 8 KiB) where a run waiting for a slot holds its task; the
allocator kept the memory of that burst long after it (B5 measures it). A probe's deadline and
reported duration start once it has its slot, so a healthy target is not
failed nor shown slow for a queue that other targets made; the job's next
run skips while this one waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .config import Config, Target
from .probes import run_probe
from .state import State
from .transport import MAX_CONNECTIONS, Transports
from .vocabulary import PROBES

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (target name, probe kind)

# A target's first runs are spread over this share of min(interval, 2 s), so
# the exporter is ready soon after start without every target firing at once;
# over longer when there are many first runs: at most FIRST_RUNS_PER_SECOND
# start, on average, so that a start over 1000 targets (4000 first runs)
# takes 4 s instead of arriving within half a second.
START_SPREAD = 0.25
FIRST_RUNS_PER_SECOND = 1000.0
JITTER = 0.1
# Scheduled runs in flight at once. A probe holds at most one connection at
# a time: more runs than the pool has connections could only wait for one.
# Half the pool, so that /probe keeps connections of its own.
MAX_IN_FLIGHT = MAX_CONNECTIONS // 2


def first_run_window(first_runs: int, interval: float) -> float:
    """Seconds over which a probe's first run falls, at random, when a start or
    a reload adds `first_runs` runs and the probe runs every `interval` s."""
    return max(min(interval, 2.0) * START_SPREAD, first_runs / FIRST_RUNS_PER_SECOND)


class ProbeScheduler:
    def __init__(self, state: State, transports: Transports) -> None:
        self._state = state
        self._transports = transports
        self._targets: dict[str, Target] = {}
        self._running: dict[Key, asyncio.Task] = {}
        self._stopped = False
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(),
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._scheduler.start()

    def apply(self, config: Config) -> None:
        """Make the jobs match ``config``. Runs on the loop: no job starts meanwhile."""
        old = self._targets
        self._targets = {t.name: t for t in config.targets}
        for key, task in list(self._running.items()):
            if self._targets.get(key[0]) != old.get(key[0]):
                task.cancel()
        existing = {tuple(job.id.split("\0")): job for job in self._scheduler.get_jobs()}
        for key, job in existing.items():
            if key[0] not in self._targets:
                job.remove()
        now = datetime.now(UTC)
        first_runs = sum(
            (target.name, probe) not in existing for target in config.targets for probe in PROBES
        )
        # A trigger only computes fire times from what it is given: jobs of
        # the same interval share one (four objects a job otherwise, 0.9 MiB
        # at 1000 targets).
        triggers: dict[float, IntervalTrigger] = {}
        for target in config.targets:
            for probe in PROBES:
                interval = target.intervals[probe]
                trigger = triggers.get(interval)
                if trigger is None:
                    trigger = IntervalTrigger(seconds=interval, jitter=interval * JITTER)
                    triggers[interval] = trigger
                job = existing.get((target.name, probe))
                if job is not None:
                    if job.trigger.interval.total_seconds() != interval:
                        job.reschedule(trigger=trigger)
                    continue
                spread = random.uniform(0, first_run_window(first_runs, interval))
                self._scheduler.add_job(
                    self._run,
                    trigger=trigger,
                    args=(target.name, probe),
                    id=f"{target.name}\0{probe}",
                    name=f"{probe} probe of {target.name}",
                    next_run_time=now + timedelta(seconds=spread),
                )

    async def _run(self, name: str, probe: str) -> None:
        key = (name, probe)
        target = self._targets.get(name)
        # A run APScheduler handed to the loop just before shutdown() starts
        # after it, when the probes' session may already be closed.
        if target is None or self._stopped:
            return
        if key in self._running:
            log.debug("skipped %s probe of %s: the previous run is still going", probe, name)
            return
        self._running[key] = asyncio.current_task()  # type: ignore[assignment]
        try:
            async with self._slots:
                result = await run_probe(probe, self._transports.get(target), target)
        except asyncio.CancelledError:
            return  # a reload changed or removed the target, or we are stopping
        except Exception:
            # A bug must cost one probe run, never the job.
            log.exception("probe %s of target %s crashed", probe, name)
            return
        finally:
            self._running.pop(key, None)
        if not result.success:
            log.debug(
                "probe failed target=%s probe=%s reason=%s: %s",
                name,
                probe,
                result.reason.value if result.reason else "",
                result.message,
            )
        self._state.record(result)

    def shutdown(self) -> None:
        self._stopped = True
        # Removing the jobs, not shutting APScheduler down: its shutdown
        # cancels runs not yet started and logs each as a crash.
        self._scheduler.remove_all_jobs()
        self._scheduler.pause()
        for task in self._running.values():
            task.cancel()
