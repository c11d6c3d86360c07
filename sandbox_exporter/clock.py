"""When this process started, on the event loop's clock.

A monitoring system that runs ``--once -t 15`` starts its own clock when it
executes us; so must we, or the imports (half a second alone, several seconds
when a monitoring server starts dozens of checks at once) are taken out of
nobody's budget and the check overruns what it promised.
"""

from __future__ import annotations

import os
import time

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
