"""The pool of stand-in "containers": one working directory each.

Like the real server, an execute takes a free container, and a released
container is "restarted" (its processes killed, its directory wiped, an
optional delay) in the background before it is free again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Container:
    index: int
    workdir: Path
    # Docker shows the short container id as the hostname; it survives restarts.
    hostname: str = field(default_factory=lambda: secrets.token_hex(6))
    # Process groups started in this container that may still have members
    # (background jobs outlive their command, as in a real container, until restart).
    process_groups: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"c{self.index}"


def kill_process_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def wipe_directory(path: Path) -> None:
    """Empty `path` (hidden files too) even if commands removed permissions inside it."""

    def make_writable_and_retry(function, failed_path, _exc_info) -> None:
        try:
            os.chmod(os.path.dirname(failed_path), stat.S_IRWXU)
            if os.path.isdir(failed_path) and not os.path.islink(failed_path):
                os.chmod(failed_path, stat.S_IRWXU)
            function(failed_path)
        except OSError:
            logger.warning("could not remove %s while restarting a container", failed_path)

    if path.exists():
        os.chmod(path, stat.S_IRWXU)
        for entry in list(path.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, onerror=make_writable_and_retry)
            else:
                try:
                    entry.unlink()
                except OSError:
                    make_writable_and_retry(os.unlink, str(entry), None)
    path.mkdir(parents=True, exist_ok=True)


class ContainerPool:
    """`size` containers under `root`; acquire() waits, release() restarts in the background."""

    def __init__(
        self, root: Path, size: int, restart_delay: float, stopping: threading.Event
    ) -> None:
        self.size = size
        self._restart_delay = restart_delay
        self._stopping = stopping
        self._condition = threading.Condition()
        self._all = [Container(index, root / f"c{index}") for index in range(size)]
        for container in self._all:
            container.workdir.mkdir(parents=True)
        self._free: list[Container] = list(self._all)
        self._restarts: set[threading.Thread] = set()

    @property
    def busy(self) -> int:
        """Containers not free now: running a request or restarting (as the real server counts)."""
        with self._condition:
            return self.size - len(self._free)

    def acquire(self, wait: float) -> Container | None:
        """A free container, or None if none came free within `wait` seconds (or on shutdown)."""
        with self._condition:
            self._condition.wait_for(lambda: self._free or self._stopping.is_set(), timeout=wait)
            if self._stopping.is_set() or not self._free:
                return None
            return self._free.pop(0)

    def release(self, container: Container) -> None:
        """Give `container` back; it becomes free after its restart."""
        thread = threading.Thread(
            target=self._restart, args=(container,), name=f"emulator-restart-{container.name}"
        )
        with self._condition:
            self._restarts.add(thread)
        thread.start()

    def _restart(self, container: Container) -> None:
        try:
            self._kill_processes(container)
            wipe_directory(container.workdir)
            if self._restart_delay > 0:
                self._stopping.wait(self._restart_delay)
        except Exception:  # a broken restart must not lose the container for good
            logger.exception("restarting container %s failed", container.name)
        finally:
            with self._condition:
                self._free.append(container)
                self._restarts.discard(threading.current_thread())
                self._condition.notify()

    @staticmethod
    def _kill_processes(container: Container) -> None:
        for pgid in list(container.process_groups):
            kill_process_group(pgid)
        container.process_groups.clear()

    def shutdown(self, timeout: float) -> None:
        """Wake waiters, kill every process started in any container, wait for restarts."""
        with self._condition:
            self._condition.notify_all()
            restarts = list(self._restarts)
        for container in self._all:
            self._kill_processes(container)
        for thread in restarts:
            thread.join(timeout)
