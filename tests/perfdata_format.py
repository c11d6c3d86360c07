"""A strict reader of monitoring-plugin performance data, for the tests.

`parse(text)` reads `'label'=value[unit];[warn];[crit];[min];[max] ...` the
way the guidelines (https://www.monitoring-plugins.org/doc/guidelines.html)
write it and fails on anything they do not allow, plus this project's own
rules: a label is quoted exactly when it holds a space, the unit is `s`, `%`
or none, thresholds are plain numbers (no ranges), and a label appears once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
ITEM = re.compile(
    rf"(?P<label>'[^'=]+'|[^'=\s]+)=(?P<value>{NUMBER})(?P<unit>s|%|)"
    rf"(?:;(?P<warn>(?:{NUMBER})?)(?:;(?P<crit>(?:{NUMBER})?)"
    rf"(?:;(?P<min>(?:{NUMBER})?)(?:;(?P<max>(?:{NUMBER})?))?)?)?)?"
)


@dataclass(frozen=True)
class Item:
    label: str
    value: float
    unit: str
    warn: float | None
    crit: float | None
    min: float | None
    max: float | None


def _number(text: str | None) -> float | None:
    return float(text) if text else None


def parse(text: str) -> dict[str, Item]:
    """The items of a perfdata string by label; AssertionError on a bad one."""
    items: dict[str, Item] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = ITEM.match(text, position)
        assert match is not None, f"not perfdata at {text[position:]!r}"
        end = match.end()
        assert end == len(text) or text[end] == " ", f"bad item {text[position:]!r}"
        raw_label = match["label"]
        label = raw_label.strip("'")
        assert (raw_label != label) == (" " in label), f"quoted iff it has spaces: {raw_label}"
        assert label not in items, f"label {label!r} twice in {text!r}"
        items[label] = Item(
            label,
            float(match["value"]),
            match["unit"],
            _number(match["warn"]),
            _number(match["crit"]),
            _number(match["min"]),
            _number(match["max"]),
        )
        position = end + 1
    return items


def of_output(output: str) -> dict[str, Item]:
    """The perfdata of a plugin output: after the first `|` of the first line."""
    first = output.splitlines()[0]
    assert first.count("|") <= 1, f"more than one | in {first!r}"
    return parse(first.partition("|")[2])
