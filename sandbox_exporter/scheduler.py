"""APScheduler jobs: one per (target, probe), feeding the state.

Each job runs its probe on its own interval, jittered so that targets do not
fire together, and never overlaps itself (`max_instances=1`). The worker pool
is sized from the number of jobs so that a hanging target (bounded by its
probe deadline anyway) never holds up another target's probes.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .client import Sandbox
from .config import Config, Target
from .probes import make_sandbox, run_probe
from .state import State
from .vocabulary import PROBES

log = logging.getLogger(__name__)

# Enough threads for every job to run at once up to this many; beyond it,
# jobs queue for a free worker (they are short and bounded by deadlines).
MAX_WORKERS = 512
MIN_WORKERS = 4


def workers_for(job_count: int) -> int:
    return max(MIN_WORKERS, min(MAX_WORKERS, job_count))


class SandboxClients:
    """One client (one connection pool) per target, rebuilt when its settings change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[Target, Sandbox]] = {}

    def get(self, target: Target) -> Sandbox:
        with self._lock:
            known = self._clients.get(target.name)
            if known is not None and _same_connection(known[0], target):
                return known[1]
            sandbox = make_sandbox(target)
            self._clients[target.name] = (target, sandbox)
        if known is not None:
            known[1].close()
        return sandbox

    def retain(self, names: set[str]) -> None:
        with self._lock:
            gone = [name for name in self._clients if name not in names]
            closing = [self._clients.pop(name)[1] for name in gone]
        for sandbox in closing:
            sandbox.close()

    def close(self) -> None:
        self.retain(set())


def _same_connection(old: Target, new: Target) -> bool:
    return (old.url, old.auth, old.tls, old.timeouts) == (new.url, new.auth, new.tls, new.timeouts)


class ProbeScheduler:
    def __init__(self, state: State, clients: SandboxClients | None = None) -> None:
        self._state = state
        self._clients = clients or SandboxClients()
        self._scheduler: BackgroundScheduler | None = None
        self._workers = 0
        self._lock = threading.Lock()

    def apply(self, config: Config) -> None:
        """Make the running jobs match `config`: add, reschedule and remove jobs."""
        with self._lock:
            wanted = {(t.name, probe): t for t in config.targets for probe in PROBES}
            workers = workers_for(len(wanted))
            if self._scheduler is None or workers > self._workers:
                self._restart(workers)
            scheduler = self._scheduler
            assert scheduler is not None
            # No job starts while jobs are being added: with hundreds of
            # targets the first ones would be probing already, competing for
            # the interpreter with this loop, which then took seconds and
            # handed the last targets their first run that much later.
            scheduler.pause()
            try:
                self._apply_jobs(scheduler, wanted)
            finally:
                scheduler.resume()
            self._clients.retain({t.name for t in config.targets})

    def _apply_jobs(
        self, scheduler: BackgroundScheduler, wanted: dict[tuple[str, str], Target]
    ) -> None:
        existing = {tuple(job.id.split("\0")): job for job in scheduler.get_jobs()}
        for key, job in existing.items():
            if key not in wanted:
                job.remove()
        now = datetime.now(timezone.utc)
        for (name, probe), target in wanted.items():
            interval = target.intervals[probe]
            trigger = IntervalTrigger(seconds=interval, jitter=interval * 0.1)
            job = existing.get((name, probe))
            if job is not None:
                # A reload must not restart the cadence of unchanged jobs.
                if job.args[0] != target:
                    job.modify(args=(target, probe))
                if job.trigger.interval.total_seconds() != interval:
                    job.reschedule(trigger=trigger)
                continue
            # Spread first runs over a short window so the exporter is
            # ready soon after start without every target firing at once.
            first = now + timedelta(seconds=random.uniform(0, min(interval, 2.0) * 0.25))
            scheduler.add_job(
                self._run,
                trigger=trigger,
                args=(target, probe),
                id=f"{name}\0{probe}",
                name=f"{probe} probe of {name}",
                next_run_time=first,
            )

    def _restart(self, workers: int) -> None:
        old = self._scheduler
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        scheduler.start()
        self._scheduler, self._workers = scheduler, workers
        if old is not None:
            old.shutdown(wait=False)

    def _run(self, target: Target, probe: str) -> None:
        try:
            result = run_probe(probe, self._clients.get(target), target)
        except Exception:
            # A bug must cost one probe run, never the job.
            log.exception("probe %s of target %s crashed", probe, target.name)
            return
        if not result.success:
            log.debug(
                "probe failed target=%s probe=%s reason=%s: %s",
                target.name,
                probe,
                result.reason.value if result.reason else "",
                result.message,
            )
        self._state.record(result)

    @property
    def clients(self) -> SandboxClients:
        return self._clients

    @property
    def workers(self) -> int:
        return self._workers

    def shutdown(self) -> None:
        with self._lock:
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=False)
                self._scheduler = None
        self._clients.close()
