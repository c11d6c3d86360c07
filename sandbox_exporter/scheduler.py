"""Probes on their intervals: one APScheduler job per (target, probe), on the event loop.

One scheduler lives as long as the exporter; a reload adds, removes and
reschedules jobs in it. Jobs are coroutines run by APScheduler's asyncio
executor, so the number of threads does not grow with the number of targets;
each run goes through `Runs`, the one owner of runs in flight.

Cadence, the way Prometheus spreads its scrapes: each (target, probe) fires
on a grid of its own, every `interval` seconds exactly at a stable offset
derived from its name (`GridTrigger`), so targets spread over the interval
and no jitter accumulates from one run to the next.

A start or a reload makes new probes due at once (4000 first runs at 1000
targets): their first runs are spread at random over `first_run_window`, at
least half a second and longer when there are many, then they join their
grid. A reload that re-points a target to another server (`Target.same_server`)
cancels its runs in flight and runs its probes again the same way; one that
changes only its labels or intervals keeps its runs and its place on the grid.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from .config import Config, Target
from .runs import Runs
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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def first_run_window(first_runs: int, interval: float) -> float:
    """Seconds over which a probe's first run falls, at random, when a start or
    a reload adds `first_runs` runs and the probe runs every `interval` s."""
    return max(min(interval, 2.0) * START_SPREAD, first_runs / FIRST_RUNS_PER_SECOND)


def grid_phase(name: str, probe: str) -> float:
    """Where in its interval a (target, probe) fires, as a share of it in [0, 1):
    the same in every process and after every restart and reload."""
    digest = hashlib.blake2b(f"{name}\0{probe}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class GridTrigger(BaseTrigger):
    """Fires at `phase * interval + k * interval` seconds after the epoch.

    APScheduler's IntervalTrigger adds its jitter to the previous, already
    jittered, fire time, so the period grows by half the jitter on average
    (+5% at 10%); the grid cannot drift. After a fire time off the grid (a
    first run), the next is the first grid point at least half an interval
    later, so the first two runs are never closer than that.
    """

    __slots__ = ("interval", "phase")

    def __init__(self, interval: float, phase: float) -> None:
        self.interval = interval
        self.phase = phase * interval

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            earliest = (now - _EPOCH).total_seconds()
        else:
            earliest = (previous_fire_time - _EPOCH).total_seconds() + self.interval / 2
        steps = math.ceil((earliest - self.phase) / self.interval)
        return _EPOCH + timedelta(seconds=self.phase + steps * self.interval)

    def __repr__(self) -> str:
        return f"<GridTrigger every {self.interval:g}s at +{self.phase:g}s>"


class ProbeScheduler:
    def __init__(self, runs: Runs) -> None:
        self._runs = runs
        self._targets: dict[str, Target] = {}
        # Each job's next fire time on its grid, as of its last fire: a fire
        # later than that by whole intervals means the times between passed
        # unstarted (APScheduler coalesces a late job's missed times into one).
        self._expected: dict[Key, datetime] = {}
        self._stopped = False
        self._scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(),
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        # APScheduler refuses a run while the previous one of its job is going
        # (max_instances) and says so only in its own log: count it ourselves.
        self._scheduler.add_listener(self._refused, EVENT_JOB_MAX_INSTANCES)
        self._scheduler.add_listener(self._fired, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        self._scheduler.start()

    def apply(self, config: Config) -> None:
        """Make the jobs match ``config``. Runs on the loop: no job starts meanwhile."""
        old = self._targets
        self._targets = {t.name: t for t in config.targets}
        moved = {
            name for name, target in old.items() if not target.same_server(self._targets.get(name))
        }
        self._runs.forget(moved)
        existing = {tuple(job.id.split("\0")): job for job in self._scheduler.get_jobs()}
        for key, job in existing.items():
            if key[0] not in self._targets:
                job.remove()
        # A job that starts over (new, re-pointed, another interval) has no
        # missed times behind it.
        self._expected = {
            key: due
            for key, due in self._expected.items()
            if key[0] in self._targets
            and key[0] not in moved
            and key in existing
            and existing[key].trigger.interval == self._targets[key[0]].intervals[key[1]]
        }
        now = datetime.now(UTC)
        fresh = [
            (target, probe)
            for target in config.targets
            for probe in PROBES
            if (target.name, probe) not in existing or target.name in moved
        ]
        for target in config.targets:
            for probe in PROBES:
                job = existing.get((target.name, probe))
                interval = target.intervals[probe]
                if job is not None and job.trigger.interval != interval:
                    job.reschedule(trigger=GridTrigger(interval, grid_phase(target.name, probe)))
        for target, probe in fresh:
            interval = target.intervals[probe]
            first = now + timedelta(
                seconds=random.uniform(0, first_run_window(len(fresh), interval))
            )
            job = existing.get((target.name, probe))
            if job is not None:  # re-pointed: its grid stays, its next run comes now
                job.modify(next_run_time=first)
                continue
            self._scheduler.add_job(
                self._run,
                trigger=GridTrigger(interval, grid_phase(target.name, probe)),
                args=(target.name, probe),
                id=f"{target.name}\0{probe}",
                name=f"{probe} probe of {target.name}",
                next_run_time=first,
            )

    async def _run(self, name: str, probe: str) -> None:
        target = self._targets.get(name)
        # A run APScheduler handed to the loop just before shutdown() starts
        # after it, when the probes' session may already be closed.
        if target is None or self._stopped:
            return
        await self._runs.scheduled(target, probe)

    def _fired(self, event: JobSubmissionEvent) -> None:
        """Count the grid times a job passed without a run: it fired later than
        its next time on the grid by whole intervals."""
        key = tuple(event.job_id.split("\0"))
        job = self._scheduler.get_job(event.job_id)
        if job is None or len(key) != 2:
            return
        fired = event.scheduled_run_times[-1]
        expected = self._expected.get(key)
        self._expected[key] = job.trigger.get_next_fire_time(fired, fired)
        if expected is not None:
            interval = job.trigger.interval
            missed = round((fired - expected).total_seconds() / interval)
            if missed > 0:
                self._runs.missed(missed)

    def _refused(self, event: JobSubmissionEvent) -> None:
        name, _, probe = event.job_id.partition("\0")
        self._runs.skipped(name, probe)

    def shutdown(self) -> None:
        self._stopped = True
        # Removing the jobs, not shutting APScheduler down: its shutdown
        # cancels runs not yet started and logs each as a crash.
        self._scheduler.remove_all_jobs()
        self._scheduler.pause()
        self._runs.shutdown()
