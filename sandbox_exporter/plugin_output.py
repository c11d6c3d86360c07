"""The monitoring-plugin output format of `--once`: text and performance data.

What Nagios, Naemon, Icinga 2 and their graphers read: the first line is
`TEXT | PERFDATA`, each perfdata item `'label'=value[unit];[warn];[crit];[min];[max]`
(https://www.monitoring-plugins.org/doc/guidelines.html). Graphers key their
series by label, so a label must be unique within the output and the same on
every run: here it is built from the configured names only (the target's,
the canary's), never from a result, and a target keeps its own labels in a
multi-target run. A value that could not be measured this run is left out
rather than written as `U`, which Icinga 2 rejects with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import Target
from .health import TargetVerdict
from .vocabulary import CANARY

# The first `|` of the output starts the perfdata, for Nagios in the long
# text too: a name or a server's message must not bring its own.
PIPE_STAND_IN = "/"
# The guidelines forbid `'` and `=` in a label (Icinga 2 splits at the last `=`).
_LABEL_STAND_INS = str.maketrans({"'": "_", "=": "_", "|": "_"})
LOAD = "load"


def plain_text(text: str) -> str:
    """``text`` fit for the text part of the output (no `|`)."""
    return text.replace("|", PIPE_STAND_IN)


@dataclass(frozen=True)
class Item:
    """One perfdata item; None fields are written empty."""

    label: str
    value: float
    unit: str = ""  # "s", "%" or none, the guidelines' units
    warn: float | None = None
    crit: float | None = None
    min: float | None = None
    max: float | None = None

    def __str__(self) -> str:
        label = f"'{self.label}'" if " " in self.label else self.label
        fields = [_decimal(self.value) + self.unit]
        fields += ["" if x is None else _decimal(x) for x in (self.warn, self.crit, self.min)]
        fields.append("" if self.max is None else _decimal(self.max))
        return f"{label}={';'.join(fields).rstrip(';')}"


def _decimal(number: float) -> str:
    # Plain decimals: the guidelines' values are [-0-9.], no exponent.
    return f"{number:.6f}".rstrip("0").rstrip(".") or "0"


def labels(targets: Sequence[Target]) -> dict[tuple[str, str], str]:
    """The label of each (target name, series) the targets can report:
    series `load` and `canary NAME` for each configured canary. Unique, and
    stable for a given list of targets: a name that would repeat an earlier
    one (``a`` with canary ``b_load`` against ``a_canary_b``'s load) gets
    ``_2``, ``_3``... in the order of the configuration."""
    found: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for target in targets:
        series = [(LOAD, f"{target.name}_load")]
        series += [
            (f"{CANARY} {c.name}", f"{target.name}_canary_{c.name}") for c in target.canaries
        ]
        for key, wanted in series:
            label = base = wanted.translate(_LABEL_STAND_INS)
            suffix = 2
            while label in taken:
                label, suffix = f"{base}_{suffix}", suffix + 1
            taken.add(label)
            found[(target.name, key)] = label
    return found


def perfdata(verdicts: Sequence[TargetVerdict]) -> list[Item]:
    """Each target's load (%, with its thresholds) and each canary's round
    trip (s), in the order of the configuration."""
    names = labels([v.target for v in verdicts])
    items: list[Item] = []
    for verdict in verdicts:
        target = verdict.target
        if verdict.load_ratio is not None:
            thresholds = target.thresholds
            critical = thresholds.load_critical
            items.append(
                Item(
                    names[(target.name, LOAD)],
                    verdict.load_ratio * 100,
                    "%",
                    warn=thresholds.load_warning * 100,
                    crit=None if critical is None else critical * 100,
                    min=0,
                    max=100,
                )
            )
        canary = verdict.results.get(CANARY)
        if canary is not None and isinstance(canary.data, tuple):
            for result in canary.data:
                label = names.get((target.name, f"{CANARY} {result.name}"))
                if label is not None and result.round_trip_seconds is not None:
                    items.append(Item(label, result.round_trip_seconds, "s", min=0))
    return items
