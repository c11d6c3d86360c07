"""A target's last history entries, kept by column in fixed-size storage.

A full history is `--history.limit` entries (100 by default) for every
target, for as long as the exporter runs: the largest part of what a target
costs in memory once it has run a while. As objects, an entry is about 150
bytes (the object, its two boxed floats, its slot in a deque) and a
canary's round trips some 130 more. Here the times are two doubles in one
array, success a byte, and the rest references to strings and tuples that
entries share (the probe, the outcome, interned messages): about 50 bytes an
entry and the canaries' round trips. Entries are made again when read, for
the pages, which read one target's at a time.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

Entry = TypeVar("Entry", bound="Fields")


class Fields(Protocol):
    """What the ring keeps of an entry (state.HistoryEntry)."""

    probe: str
    started_at: float
    duration_seconds: float
    success: bool
    outcome: str
    message: str
    round_trips: tuple[tuple[str, float | None], ...]


class HistoryRing(Generic[Entry]):
    """The last `limit` entries appended (limit > 0), oldest first when read;
    `make` turns the kept fields back into an entry."""

    __slots__ = ("_count", "_limit", "_make", "_next", "_refs", "_success", "_times")

    def __init__(self, limit: int, make: type[Entry], entries: Iterable[Entry] = ()) -> None:
        if limit <= 0:
            raise ValueError(f"a history ring holds at least one entry, not {limit}")
        self._make = make
        self._limit = limit
        self._next = 0  # where the next entry goes
        self._count = 0
        self._times = array("d", bytes(16 * limit))  # started_at, duration_seconds
        self._success = bytearray(limit)
        # probe, outcome, message, round_trips: four references an entry.
        self._refs: list[object] = [None] * (4 * limit)
        for entry in entries:
            self.append(entry)

    def append(self, entry: Fields) -> None:
        slot = self._next
        self._times[2 * slot] = entry.started_at
        self._times[2 * slot + 1] = entry.duration_seconds
        self._success[slot] = entry.success
        self._refs[4 * slot : 4 * slot + 4] = (
            entry.probe,
            entry.outcome,
            entry.message,
            entry.round_trips,
        )
        self._next = (slot + 1) % self._limit
        self._count = min(self._count + 1, self._limit)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Entry]:
        first = (self._next - self._count) % self._limit
        for offset in range(self._count):
            slot = (first + offset) % self._limit
            probe, outcome, message, round_trips = self._refs[4 * slot : 4 * slot + 4]
            yield self._make(
                probe=probe,
                started_at=self._times[2 * slot],
                duration_seconds=self._times[2 * slot + 1],
                success=bool(self._success[slot]),
                outcome=outcome,
                message=message,
                round_trips=round_trips,
            )
