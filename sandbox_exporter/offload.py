"""Parsing a big document in a worker process, so the event loop never waits for it.

``json.loads`` and pydantic's validation are each one call that holds the
GIL until it returns: on a thread they would stall the loop just the same.
A document up to ``IN_LOOP_BYTES`` is parsed on the loop, which costs at most
a few milliseconds whatever it holds (docs/reliability.md); a bigger one goes
to one worker process, started on first need and kept for the life of the
process. Only ``/libraries/`` comes here: the other documents' caps are small
enough to parse on the loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

R = TypeVar("R")

# The most bytes parsed on the loop: a libraries document this size costs at
# most about 4 ms of the worst a server can put in it (thousands of tiny
# entries, each matched against the language packages' names).
IN_LOOP_BYTES = 16 * 2**10

_worker: ProcessPoolExecutor | None = None


def _pool() -> ProcessPoolExecutor:
    global _worker
    if _worker is None:
        # "spawn": a fork of a process with threads (the loop's workers, c-ares)
        # may copy a lock some thread held; one worker: parsing is rare (a
        # libraries probe is hourly) and each costs well under a second.
        _worker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    return _worker


async def parse(function: Callable[..., R], content: bytes, *args: object) -> R:
    """``function(content, *args)``: here when ``content`` is small, else in the
    worker process (then ``function`` and its arguments must pickle)."""
    if len(content) <= IN_LOOP_BYTES:
        return function(content, *args)
    return await asyncio.get_running_loop().run_in_executor(_pool(), function, content, *args)
