"""What a target gets from ``defaults``, and the timing rules it must then obey.

Merging, one rule for everything: a target's ``intervals``, ``timeouts``,
``thresholds``, ``severities``, ``tls`` and ``max_response_bytes`` override
``defaults`` key by key; its ``canaries`` list, ``expect`` block and single
values such as ``canary_min_interval`` replace the defaults' as a whole (so
``expect: {}`` drops expectations it does not share; YAML anchors reuse blocks).

Timeouts, one rule too: a value written that cannot be honoured is an error (a
timeout longer than the interval beside it, canary timeouts adding up to more
than the canary probe's deadline); a value nobody wrote shrinks to fit (an
inherited timeout is cut to a shorter interval, as Prometheus does with
``scrape_timeout``; a canary without ``timeout`` gets 10 s or the probe
deadline, whichever is shorter, but at least its longest command timeout).
"Written" is pydantic's ``model_fields_set``: the keys the YAML gave.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from ..expectations import FrozenDict
from ..vocabulary import CANARY, PROBES
from .fields import format_duration
from .models import DEFAULT_CANARY_TIMEOUT, Canary, Defaults, Probing, Target
from .problems import Location, Problem

P = TypeVar("P", bound=Probing)
_MERGED = ("intervals", "timeouts", "thresholds", "severities", "tls", "max_response_bytes")
_REPLACED = ("canaries", "expect", "canary_min_interval")


def _written_keys(section: Probing, key: str) -> set[str]:
    if key not in section.model_fields_set:
        return set()
    value = getattr(section, key)
    return set(value) if isinstance(value, Mapping) else set(value.model_fields_set)


def _longest_command(canary: Canary) -> float:
    return max((c.timeout for c in canary.commands if c.timeout is not None), default=0.0)


def _promised(canary: Canary) -> float:
    """The time a canary must be allowed, whatever the probe deadline."""
    return canary.timeout if "timeout" in canary.model_fields_set else _longest_command(canary)


def _inherit(written: P, base: Probing) -> P:
    """``written`` with what it does not set taken from ``base``, then fitted:
    the timeouts it did not write cut to their intervals, the canaries without
    a written timeout fitted to the canary deadline."""
    update: dict[str, Any] = {}
    for key in (*_MERGED, *_REPLACED):
        inherited, own = getattr(base, key), getattr(written, key)
        if key not in written.model_fields_set:
            update[key] = inherited
        elif isinstance(own, Mapping):
            update[key] = FrozenDict({**inherited, **own})
        elif key in _MERGED:
            update[key] = inherited.model_copy(
                update={k: getattr(own, k) for k in own.model_fields_set}
            )
    merged = written.model_copy(update=update)
    timeouts = dict(merged.timeouts)
    for kind in set(PROBES) - _written_keys(written, "timeouts"):
        timeouts[kind] = min(timeouts[kind], merged.intervals[kind])
    fitted = min(DEFAULT_CANARY_TIMEOUT, timeouts[CANARY])
    canaries = tuple(
        canary
        if "timeout" in canary.model_fields_set
        else canary.model_copy(update={"timeout": max(fitted, _longest_command(canary))})
        for canary in merged.canaries
    )
    return merged.model_copy(update={"timeouts": FrozenDict(timeouts), "canaries": canaries})


def resolve_defaults(written: Defaults) -> Defaults:
    """The defaults as a target without settings of its own gets them."""
    return _inherit(written, Defaults())


def resolve_target(written: P, defaults: Defaults) -> P:
    """``written`` completed from ``defaults``. Pass the defaults as written
    (or as resolved): inherited canaries are fitted to this target's deadline."""
    return _inherit(
        written, resolve_defaults(defaults).model_copy(update={"canaries": defaults.canaries})
    )


def check(written: Probing, defaults: Defaults, at: Location) -> Iterator[Problem]:
    """The problems of ``written`` (a target, or the defaults against
    ``Defaults()``) once completed from ``defaults`` as written."""
    resolved = resolve_target(written, defaults)
    warning, critical = resolved.thresholds.load_warning, resolved.thresholds.load_critical
    if critical is not None and critical < warning:
        own = _written_keys(written, "thresholds")
        where = "load_critical" if "load_critical" in own else "load_warning"
        yield (
            (*at, "thresholds", where),
            f"load_critical ({critical:g}) must not be below load_warning ({warning:g})",
        )
    # A timeout longer than its interval would let probes of one kind pile up
    # on a server that is already slow: an error rather than a warning, since
    # the fix is one edit and the failure mode is load on production.
    own_timeouts = _written_keys(written, "timeouts")
    intervals, timeouts = resolved.intervals, resolved.timeouts
    for kind in PROBES:
        if kind in own_timeouts and timeouts[kind] > intervals[kind]:
            yield (
                (*at, "timeouts", kind),
                f"the {kind} timeout ({format_duration(timeouts[kind])}) is longer than its "
                f"interval ({format_duration(intervals[kind])}): a probe must end before the "
                f"next one is due; lower timeouts.{kind} or raise intervals.{kind}",
            )
    own_canaries = "canaries" in written.model_fields_set
    # Canary settings nobody changed here are the defaults', checked there.
    if own_canaries or CANARY in {*own_timeouts, *_written_keys(written, "intervals")}:
        canaries = written.canaries if own_canaries else defaults.canaries
        late = _canaries_late(canaries, timeouts[CANARY])
        if late is not None:
            where, message = late
            if not own_canaries:
                where = ("timeouts" if CANARY in own_timeouts else "intervals", CANARY)
            yield (*at, *where), message


def _canaries_late(canaries: Sequence[Canary], deadline: float) -> Problem | None:
    # Canaries run one after another (one container at a time), so the time
    # promised to each must add up within the canary probe's deadline.
    promised = [(index, canary) for index, canary in enumerate(canaries) if _promised(canary)]
    total = sum(_promised(canary) for _, canary in promised)
    if total <= deadline:
        return None
    limit = (
        f"more than the whole canary probe may take ({format_duration(deadline)}: "
        "timeouts.canary, which never exceeds intervals.canary)"
    )
    if len(promised) > 1:
        each = ", ".join(f"{c.name} {format_duration(_promised(c))}" for _, c in promised)
        return ("canaries",), (
            f"the canaries may take {format_duration(total)} one after another ({each}), "
            f"{limit}; raise timeouts.canary or lower their timeouts"
        )
    [(index, canary)] = promised
    explicit = "timeout" in canary.model_fields_set
    reason = "its timeout" if explicit else "its longest command timeout"
    return ("canaries", index, "timeout" if explicit else "commands"), (
        f"canary {canary.name!r} may take {format_duration(total)} ({reason}), {limit}"
    )


def duplicate_names(targets: Sequence[tuple[int, Target]]) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for index, target in targets:
        if target.name in first:
            yield (
                ("targets", index, "name"),
                f"duplicate target name {target.name!r} (also targets[{first[target.name]}]); "
                "names identify targets in metrics and /probe",
            )
        first.setdefault(target.name, index)
