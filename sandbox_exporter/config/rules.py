"""What a target gets from ``defaults``, and the timing rules it must then obey.

Merging, one rule for everything: a target's mappings of scalars (``intervals``,
``timeouts``, ``thresholds``, ``severities``, ``tls``) override ``defaults`` key
by key; a target's ``canaries`` list and ``expect`` block replace the defaults'
as a whole (so a target can drop expectations it does not share: ``expect: {}``;
YAML anchors ``&name``/``*name`` reuse blocks).

Timeouts, one rule too: a value written that cannot be honoured is an error (a
timeout longer than the interval beside it, canary timeouts adding up to more
than the canary probe's deadline); a value nobody wrote shrinks to fit (an
inherited timeout is cut to a shorter interval, as Prometheus does with
``scrape_timeout``; a canary without ``timeout`` gets 10 s or the probe
deadline, whichever is shorter, but at least its longest command timeout).

"Written" is pydantic's ``model_fields_set``: the keys the YAML gave.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from ..vocabulary import CANARY, PROBES
from .canary import DEFAULT_CANARY_TIMEOUT, Canary
from .durations import format_duration
from .errors import Location
from .models import Defaults, Probing, Target
from .problems import Problem
from .section import Section

S = TypeVar("S", bound=Section)
_MERGED = ("intervals", "timeouts", "thresholds", "severities", "tls")
_REPLACED = ("canaries", "expect")


def _overlay(base: S, written: S) -> S:
    """``base`` with the keys ``written`` sets."""
    update = {key: getattr(written, key) for key in written.model_fields_set}
    return base.model_copy(update=update) if update else base


def _promised(canary: Canary) -> float:
    """The time a canary must be allowed, whatever the probe deadline."""
    if "timeout" in canary.model_fields_set:
        return canary.timeout
    return _longest_command(canary)


def _longest_command(canary: Canary) -> float:
    return max(
        (float(c["timeout"]) for c in canary.commands if not isinstance(c, str)), default=0.0
    )


P = TypeVar("P", bound=Probing)


def _fit(section: P, own_timeouts: set[str]) -> P:
    """``section`` with the timeouts it did not write cut to their intervals,
    and the canaries without a written timeout fitted to the canary deadline."""
    timeouts = section.timeouts.model_copy(
        update={
            kind: min(section.timeouts[kind], section.intervals[kind])
            for kind in PROBES
            if kind not in own_timeouts
        }
    )
    deadline = timeouts[CANARY]
    canaries = tuple(
        canary
        if "timeout" in canary.model_fields_set
        else canary.model_copy(
            update={"timeout": max(min(DEFAULT_CANARY_TIMEOUT, deadline), _longest_command(canary))}
        )
        for canary in section.canaries
    )
    return section.model_copy(update={"timeouts": timeouts, "canaries": canaries})


def resolve_defaults(written: Defaults) -> Defaults:
    """The defaults as a target without settings of its own gets them."""
    return _fit(written, _written_keys(written, "timeouts"))


def resolve_target(written: Target, defaults: Defaults) -> Target:
    """``written`` completed from ``defaults``. Pass the defaults as written
    (or as resolved): inherited canaries are fitted to this target's deadline."""
    inherited = resolve_defaults(defaults)
    update: dict[str, Any] = {}
    for key in _MERGED:
        base = getattr(inherited, key)
        if key in written.model_fields_set:
            update[key] = _overlay(base, getattr(written, key))
        else:
            update[key] = base
    for key in _REPLACED:
        if key not in written.model_fields_set:
            update[key] = getattr(defaults, key)
    return _fit(written.model_copy(update=update), _written_keys(written, "timeouts"))


def check_defaults(written: Defaults) -> Iterator[Problem]:
    yield from _thresholds_in_order(written, written, ("defaults",))
    resolved = resolve_defaults(written)
    yield from _timings(written, resolved, written.canaries, ("defaults",), check_canaries=True)


def check_target(written: Target, defaults: Defaults, at: Location) -> Iterator[Problem]:
    """The problems of a target once merged with ``defaults`` (as written)."""
    resolved = resolve_target(written, defaults)
    yield from _thresholds_in_order(written, resolved, at)
    canaries = written.canaries if "canaries" in written.model_fields_set else defaults.canaries
    # Otherwise the canary settings are the defaults', checked there.
    touched = {*_written_keys(written, "timeouts"), *_written_keys(written, "intervals")}
    check_canaries = "canaries" in written.model_fields_set or CANARY in touched
    yield from _timings(written, resolved, canaries, at, check_canaries=check_canaries)


def _written_keys(section: Probing, key: str) -> set[str]:
    if key not in section.model_fields_set:
        return set()
    return set(getattr(section, key).model_fields_set)


def _thresholds_in_order(written: Probing, resolved: Probing, at: Location) -> Iterator[Problem]:
    warning, critical = resolved.thresholds.load_warning, resolved.thresholds.load_critical
    if critical is not None and critical < warning:
        own = _written_keys(written, "thresholds")
        where = "load_critical" if "load_critical" in own else "load_warning"
        yield (
            (*at, "thresholds", where),
            f"load_critical ({critical:g}) must not be below load_warning ({warning:g})",
        )


def _timings(
    written: Probing,
    resolved: Probing,
    canaries: Sequence[Canary],
    at: Location,
    *,
    check_canaries: bool,
) -> Iterator[Problem]:
    """The timeouts written in this section that cannot be honoured.

    A timeout longer than its interval would let probes of one kind pile up
    on a server that is already slow: an error rather than a warning, since
    the fix is one edit and the failure mode is load on production.
    """
    timeout_keys = _written_keys(written, "timeouts")
    intervals, timeouts = resolved.intervals, resolved.timeouts
    for kind in PROBES:
        if kind in timeout_keys and timeouts[kind] > intervals[kind]:
            yield (
                (*at, "timeouts", kind),
                f"the {kind} timeout ({format_duration(timeouts[kind])}) is longer than its "
                f"interval ({format_duration(intervals[kind])}): a probe must end before the "
                f"next one is due; lower timeouts.{kind} or raise intervals.{kind}",
            )
    if not check_canaries:
        return
    # Canaries run one after another (one container at a time), so the time
    # promised to each must add up within the canary probe's deadline.
    promised = [(index, canary) for index, canary in enumerate(canaries) if _promised(canary)]
    total = sum(_promised(canary) for _, canary in promised)
    deadline = timeouts[CANARY]
    if total <= deadline:
        return
    limit = (
        f"more than the whole canary probe may take ({format_duration(deadline)}: "
        "timeouts.canary, which never exceeds intervals.canary)"
    )
    if len(promised) == 1:
        index, canary = promised[0]
        explicit = "timeout" in canary.model_fields_set
        where: Location = ("canaries", index, "timeout" if explicit else "commands")
        reason = "its timeout" if explicit else "its longest command timeout"
        message = f"canary {canary.name!r} may take {format_duration(total)} ({reason}), {limit}"
    else:
        where = ("canaries",)
        each = ", ".join(
            f"{canary.name} {format_duration(_promised(canary))}" for _, canary in promised
        )
        message = (
            f"the canaries may take {format_duration(total)} one after another ({each}), "
            f"{limit}; raise timeouts.canary or lower their timeouts"
        )
    if "canaries" not in written.model_fields_set:
        where = ("timeouts" if CANARY in timeout_keys else "intervals", CANARY)
    yield (*at, *where), message


def duplicate_names(targets: Sequence[tuple[int, Target]]) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for index, target in targets:
        if target.name in first:
            yield (
                ("targets", index, "name"),
                f"duplicate target name {target.name!r} (also targets[{first[target.name]}]); "
                "names identify targets in metrics and /probe",
            )
        else:
            first[target.name] = index
