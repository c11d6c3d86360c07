"""The deadline of ``--once -t``: counted from the process's start, kept whatever happens.

A monitoring system that runs ``--once -t 15`` starts its clock when it
executes us; so must we, or the imports (half a second alone, many seconds
when a monitoring server starts dozens of checks at once on a busy machine)
are taken out of nobody's budget. This module is light on purpose: the
command line imports it, and arms the watchdog, before anything heavy.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from .protocol import seconds_text

DEFAULT_TIMEOUT_SECONDS = 30.0
# The monitoring-plugin convention's UNKNOWN (health.Status.UNKNOWN, which
# cannot be imported this early).
UNKNOWN_EXIT_CODE = 3
# The watchdog reports this long before the deadline: writing a line and
# leaving must fit too.
EXIT_SECONDS = 0.25

# Read when this module is first imported, which the command line does before
# its heavy imports: the fallback where the kernel cannot tell when we started.
_IMPORTED = time.monotonic()

# /proc/<pid>/stat's 22nd field: the start time, in clock ticks since boot.
_STARTTIME_FIELD = 22


def process_start() -> float:
    """``time.monotonic()`` (an asyncio loop's ``time()``) at this process's exec.

    Linux: the kernel's start time of the process (``/proc/self/stat``,
    clock ticks since boot) against ``CLOCK_BOOTTIME``, the clock it is
    counted on (time namespaces shift both alike), gives the process's age;
    the monotonic clock minus that age is its start. Elsewhere (no ``/proc``,
    no boot-time clock), or if the kernel's answer makes no sense, the time
    this module was imported.
    """
    try:
        age = _age_from_kernel()
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    start = time.monotonic() - age
    # A start after our own import, or negative age, is a kernel we misread.
    return start if age >= 0 and start <= _IMPORTED else _IMPORTED


def _age_from_kernel() -> float:
    with open("/proc/self/stat", "rb") as file:
        stat = file.read()
    # Field 2 is the command name in parentheses, which may itself hold
    # spaces and parentheses: count fields from after its last ')'.
    after_name = stat[stat.rindex(b")") + 2 :].split()
    ticks = int(after_name[_STARTTIME_FIELD - 3])
    started = ticks / os.sysconf("SC_CLK_TCK")
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


class Watchdog:
    """Ends the process with an UNKNOWN report at ``timeout`` seconds after
    ``started``, unless the check's own report claimed the output first.

    The check's deadlines leave it time to report; this is for what they
    cannot bound: a machine so busy that starting the interpreter and
    importing take most of the budget.
    """

    def __init__(self, started: float, timeout: float, output: str = "text") -> None:
        self._at = started + max(timeout - EXIT_SECONDS, 0.0)
        self._timeout = timeout
        self._output = output
        self._claimed = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="once-deadline", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def claim(self) -> None:
        """Returns if the caller may write its report; if the watchdog has
        written one, blocks until the watchdog ends the process."""
        self._claimed.acquire()

    def _watch(self) -> None:
        time.sleep(max(self._at - time.monotonic(), 0.0))
        if not self._claimed.acquire(blocking=False):
            return  # the check is writing its own report
        what = (
            f"not done within the check's timeout of {seconds_text(self._timeout)} (-t), "
            "counted from its start"
        )
        if self._output == "json":
            document = {"status": "UNKNOWN", "exit_code": UNKNOWN_EXIT_CODE, "targets": []}
            report = json.dumps({**document, "message": what}, indent=2) + "\n"
        else:
            report = f"SANDBOX UNKNOWN - {what}\n"
        try:
            sys.stdout.write(report)
            sys.stdout.flush()
        finally:
            os._exit(UNKNOWN_EXIT_CODE)
