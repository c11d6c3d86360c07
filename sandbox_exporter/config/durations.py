"""Durations as Prometheus writes them: ``15s``, ``1m30s``, ``500ms``, ``1d``."""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_UNIT_ORDER = tuple(_DURATION_UNITS)
# "ms" first so that "500ms" is not read as 500 minutes followed by garbage.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|y|w|d|h|m|s))+")
_BARE_SECONDS = re.compile(r"\d+(?:\.\d+)?")
# No probe needs to wait longer than this, and the scheduler's datetime
# arithmetic overflows on absurd values long before infinity.
MAX_DURATION_SECONDS = 366 * 86_400.0


def _invalid_duration(value: object, why: str = "") -> ValueError:
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, int) and abs(value) >= 10**30:
        shown = "(a huge integer)"  # str() of a huge int can itself fail
    else:
        shown = str(value)
    return ValueError(f"invalid duration {shown}{why} (use e.g. 10s, 1m)")


def parse_duration(value: str | int | float) -> float:
    """Seconds in a Prometheus-style duration.

    ``"15s"``, ``"1m"``, ``"1h30m"``, ``"500ms"``, ``"1d"`` (units ``ms s m h d w
    y``, largest first, each at most once; decimals such as ``"1.5s"`` are
    accepted); bare numbers, or strings of one, are seconds. Negative, infinite
    and boolean values raise :class:`ValueError`.
    """
    if isinstance(value, bool):
        raise _invalid_duration(value, ": a boolean is not a duration")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise _invalid_duration(value, ": too large") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise _invalid_duration(value, ": must be a finite number of seconds >= 0")
        return _bounded(value, seconds)
    if not isinstance(value, str):
        raise _invalid_duration(value)
    text = value.strip()
    if _BARE_SECONDS.fullmatch(text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = 0.0
        last_rank = -1
        for number, unit in _DURATION_PART.findall(text):
            rank = _UNIT_ORDER.index(unit)
            if rank <= last_rank:
                raise _invalid_duration(value, ": units go from largest to smallest, each once")
            last_rank = rank
            seconds += float(number) * _DURATION_UNITS[unit]
    else:
        raise _invalid_duration(value)
    if not math.isfinite(seconds):
        raise _invalid_duration(value, ": too large")
    return _bounded(value, seconds)


def _bounded(value: object, seconds: float) -> float:
    if seconds > MAX_DURATION_SECONDS:
        raise _invalid_duration(value, ": longer than the 366d this exporter accepts")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest duration string for ``seconds``: 90 -> ``"1m30s"``, 0.5 -> ``"500ms"``."""
    milliseconds = round(seconds * 1000)
    if milliseconds <= 0:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if milliseconds:
        parts.append(f"{milliseconds}ms")
    return "".join(parts)
