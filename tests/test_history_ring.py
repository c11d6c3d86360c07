"""The history ring keeps the newest entries, oldest first, field for field."""

from __future__ import annotations

import pytest

from sandbox_exporter.history_ring import HistoryRing
from sandbox_exporter.state import HistoryEntry


def _entry(index: int, *, canary: bool = False) -> HistoryEntry:
    return HistoryEntry(
        probe="canary" if canary else "usage",
        started_at=1_700_000_000.0 + index,
        duration_seconds=index / 1000,
        success=index % 3 != 0,
        outcome="ok" if index % 3 else "timeout",
        message=f"run {index}",
        round_trips=(("shell", index / 100), ("python", None)) if canary else (),
    )


def test_keeps_every_field_of_the_newest_entries_oldest_first() -> None:
    entries = [_entry(index, canary=index % 2 == 0) for index in range(12)]
    ring = HistoryRing(5, HistoryEntry, entries[:3])
    assert list(ring) == entries[:3] and len(ring) == 3
    for entry in entries[3:]:
        ring.append(entry)
    assert list(ring) == entries[-5:] and len(ring) == 5


def test_a_ring_of_one_keeps_the_last() -> None:
    ring = HistoryRing(1, HistoryEntry)
    assert list(ring) == []
    for index in range(3):
        ring.append(_entry(index))
    assert list(ring) == [_entry(2)]


def test_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        HistoryRing(0, HistoryEntry)
