"""Small inline SVG drawings for the pages: a strip of results and a sparkline.

Drawn on the server, each a self-contained ``<svg>`` element with no script
and no external resource, so the pages keep working under a
Content-Security-Policy of ``default-src 'none'``. Tooltips are SVG
``<title>`` children, which browsers show on hover and screen readers read.
Callers pass plain text; everything is escaped here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Fill of a strip cell by kind: "ok", "warn" (ran, but expectations missed),
#: "fail". Lighter than the pages' text colours, so a cell never reads as text
#: and a screenshot test can tell cells from words by colour.
FILLS = {"ok": "#2da44e", "warn": "#d4a72c", "fail": "#e5534b"}
_LINE = "#0969da"
_MUTED = "#59636e"


@dataclass(frozen=True, slots=True)
class Cell:
    kind: str  # a key of FILLS
    title: str  # the tooltip: when, what, in a few words


def strip(cells: Sequence[Cell], label: str, *, size: int = 10, gap: int = 2) -> str:
    """One cell per result, oldest left, in a row `size` wide and twice as tall."""
    step = size + gap
    rects = "".join(
        f'<rect x="{i * step}" y="0" width="{size}" height="{2 * size}" '
        f'fill="{FILLS[cell.kind]}"><title>{escape(cell.title)}</title></rect>'
        for i, cell in enumerate(cells)
    )
    width = max(step * len(cells) - gap, 1)
    return (
        f'<svg class="strip" width="{width}" height="{2 * size}" viewBox="0 0 {width} '
        f'{2 * size}" role="img" aria-label="{escape(label)}">{rects}</svg>'
    )


def compact_strip(kinds: Sequence[str], label: str, *, size: int = 7, gap: int = 1) -> str:
    """`strip` for pages with hundreds of them: one shape per colour and one
    tooltip, `label`, for the whole strip (a page of a thousand targets stays
    small and quick to make)."""
    shapes: dict[str, list[str]] = {kind: [] for kind in FILLS}
    for i, kind in enumerate(kinds):
        shapes[kind].append(_cell_path(i, size, gap))
    paths = "".join(
        f'<path d="{"".join(cells)}" fill="{FILLS[kind]}"/>'
        for kind, cells in shapes.items()
        if cells
    )
    width = max((size + gap) * len(kinds) - gap, 1)
    return (
        f'<svg class="strip" width="{width}" height="{2 * size}" role="img">'
        f"<title>{escape(label)}</title>{paths}</svg>"
    )


@functools.cache
def _cell_path(index: int, size: int, gap: int) -> str:
    return f"M{index * (size + gap)} 0h{size}v{2 * size}h-{size}z"


def sparkline(
    values: Sequence[float | None],
    label: str,
    *,
    width: int = 280,
    height: int = 40,
    unit: str = "s",
) -> str:
    """`values` oldest first as a line, its highest and lowest labelled on the
    left; a None (nothing measured) is a gap in the line and a red tick."""
    measured = [v for v in values if v is not None]
    if not values:
        return ""
    axis = 66  # room for the labels
    top, bottom = 6, height - 6
    low, high = (min(measured), max(measured)) if measured else (0.0, 0.0)
    spread = high - low

    def x(i: int) -> float:
        return axis + (i * (width - axis - 4) / (len(values) - 1) if len(values) > 1 else 0)

    def y(value: float) -> float:
        return (
            (top + bottom) / 2 if not spread else bottom - (value - low) / spread * (bottom - top)
        )

    # Runs of measured values, each drawn as one line: a None breaks it.
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((x(i), y(value)))
    drawn = "".join(
        f'<polyline points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in run)}" fill="none" '
        f'stroke="{_LINE}" stroke-width="1.5"/>'
        if len(run) > 1
        # A lone point would not show as a line.
        else f'<circle cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="1.5" fill="{_LINE}"/>'
        for run in runs
        if run
    )
    drawn += "".join(
        f'<rect x="{x(i) - 1:.1f}" y="{height - 4}" width="2" height="4" fill="{FILLS["fail"]}"/>'
        for i, value in enumerate(values)
        if value is None
    )
    labels = ""
    if measured:
        marks = [(high, f"max {high:.3f}{unit}", top + 4)]
        if spread:
            marks.append((low, f"min {low:.3f}{unit}", bottom + 2))
        for value, text, baseline in marks:
            at = values.index(value)
            labels += (
                f'<text x="0" y="{baseline}" font-size="10" fill="{_MUTED}">{escape(text)}</text>'
                f'<circle cx="{x(at):.1f}" cy="{y(value):.1f}" r="2.5" fill="{_LINE}">'
                f"<title>{escape(text)}</title></circle>"
            )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}">{labels}{drawn}</svg>'
    )
