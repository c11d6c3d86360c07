"""What the pages condense: runs of one probe's identical results into one
row, and messages into what their row does not already say."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .state import HistoryEntry


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive results of one probe with the same outcome and message."""

    probe: str
    success: bool
    outcome: str
    message: str
    count: int
    first_at: float  # start of the oldest result of the run
    last_at: float  # start of the newest
    shortest: float  # the durations, seconds
    longest: float

    @classmethod
    def of(cls, entry: HistoryEntry) -> Run:
        return cls(
            entry.probe,
            entry.success,
            entry.outcome,
            entry.message,
            1,
            entry.started_at,
            entry.started_at,
            entry.duration_seconds,
            entry.duration_seconds,
        )

    def repeats(self, entry: HistoryEntry) -> bool:
        return (self.probe, self.success, self.outcome, self.message) == (
            entry.probe,
            entry.success,
            entry.outcome,
            entry.message,
        )

    def extended(self, entry: HistoryEntry) -> Run:
        return Run(
            self.probe,
            self.success,
            self.outcome,
            self.message,
            self.count + 1,
            min(self.first_at, entry.started_at),
            max(self.last_at, entry.started_at),
            min(self.shortest, entry.duration_seconds),
            max(self.longest, entry.duration_seconds),
        )


def collapse(entries: Iterable[HistoryEntry]) -> list[Run]:
    """The runs of `entries`, newest first. Probes interleave (a canary every
    5 s between usage probes every 10 s), so a run is consecutive results of
    one probe, whatever other probes did in between."""
    runs: list[Run] = []
    latest: dict[str, int] = {}  # probe -> index of its newest run in `runs`
    # Appended as they finished; a long probe can finish after a later one
    # started, so order by start time (stable for equal times).
    for entry in sorted(entries, key=lambda e: e.started_at):
        index = latest.get(entry.probe)
        if index is not None and runs[index].repeats(entry):
            runs[index] = runs[index].extended(entry)
        else:
            latest[entry.probe] = len(runs)
            runs.append(Run.of(entry))
    return sorted(runs, key=lambda run: run.last_at, reverse=True)


# The transport's wording of an answer >= 300 (`transport._status_error`):
# "Sandbox responded with status 503 Service Unavailable to POST <url>: <page>".
_STATUS_ANSWER = re.compile(
    r"Sandbox responded with status (?P<code>\d{3})(?P<phrase>(?: [\w'-]+)*) "
    r"to (?P<request>[A-Z]+ \S+?)(?=: |;|$)(?:: (?P<page>[^;]*))?"
)


def trim_message(message: str, url: str) -> str:
    """`message` without what its row already shows: the target's own address
    (`url`, shown beside it) before each path, and a server's error page that
    only repeats its status line.

    "Sandbox responded with status 503 Service Unavailable to POST
    http://h:8/execute/: Service Unavailable" becomes "POST /execute/
    answered 503 Service Unavailable".
    """
    base = url.rstrip("/")
    if base:
        message = message.replace(base + "/", "/")

    def answered(match: re.Match[str]) -> str:
        code, phrase, page = match["code"], match["phrase"], match["page"]
        text = f"{match['request']} answered {code}{phrase}"
        if page and page.strip() not in (phrase.strip(), code + phrase):
            text += f": {page}"
        return text

    return _STATUS_ANSWER.sub(answered, message)
