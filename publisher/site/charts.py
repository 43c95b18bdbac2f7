"""Bar charts as static SVG: the geometry here, the markup in ``templates/chart.svg.j2``.

No JavaScript and nothing fetched, so the site works offline. A chart is horizontal bars
from zero with the 95% interval as a line with end caps; every bar is labelled with its
category and its value; a figure without a number shows its marker as text and no bar;
the unknown category is hatched as well as named. The words of a chart (its title, its
description for screen readers, its caption, the headings of grouped bars) are written
by ``templates/chart-words.txt.j2``; this module only measures and places them.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

from publisher.site.text import one_line

__all__ = ["Bar", "Chart", "Element", "Layout", "layout"]

# Sizes in SVG user units (pixels at full width). The character width is generous for the
# system fonts the theme uses, so labels never run into the bars.
WIDTH = 720
# The narrow form, for phones: labels above their bars, drawn at about the width of the
# screen so the text keeps its size and nothing scrolls sideways.
NARROW_WIDTH = 360
FONT_SIZE = 13
_CHAR_WIDTH = 7.2
_ROW_HEIGHT = 24
_BAR_HEIGHT = 14
_LINE_HEIGHT = 15
_LEGEND_HEIGHT = 30
_AXIS_HEIGHT = 44
_GAP = 8


@dataclass(frozen=True)
class Bar:
    """One row of a bar chart: a bar with its interval, or a heading for a group of bars."""

    label: str
    value: float | None = None  # None: no bar (a marker stands instead)
    lower: float | None = None
    upper: float | None = None
    shown: str = ""  # the value as the page prints it, with any marker ("1,090 [r]")
    lower_shown: str = ""  # the interval's bounds as the page prints them ("1,070")
    upper_shown: str = ""
    hatched: bool = False  # the "unknown" category, hatched as well as labelled
    heading: bool = False

    @property
    def has_interval(self) -> bool:
        return bool(self.lower_shown and self.upper_shown)


@dataclass(frozen=True)
class Chart:
    """A chart and its words (plain text; the SVG template escapes them)."""

    ident: str  # unique on its page; made of [a-z0-9-] only
    title: str
    description: str
    axis: str
    caption: str
    bars: tuple[Bar, ...]
    percent: bool = False


@dataclass(frozen=True)
class Element:
    """One SVG element, placed. ``kind`` says which: ``band`` (the white band behind a
    group heading), ``heading``, ``label``, ``missing`` (a marker where no bar is),
    ``bar``, ``interval``, ``value``, ``grid``, ``tick``, ``axis-line`` or ``axis``; in the
    narrow form ``label`` is ``label-above`` (left-aligned, above its bar)."""

    kind: str
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    text: str = ""
    path: str = ""  # the ``d`` of a path
    hatched: bool = False


@dataclass(frozen=True)
class Layout:
    """A chart, measured and placed: what ``chart.svg.j2`` draws."""

    chart: Chart
    width: int
    height: float
    hatched: bool  # whether the legend explains the hatching
    elements: tuple[Element, ...]
    narrow: bool = False
    hatch_key: tuple[float, float] = (258.0, 8.0)  # where the legend explains the hatching

    @property
    def ident(self) -> str:
        """Unique on the page: the narrow form of a chart has ids of its own."""
        return f"{self.chart.ident}-narrow" if self.narrow else self.chart.ident


def _nice_ticks(top: float, *, percent: bool) -> list[float]:
    """Round tick values from 0 to at least ``top``: 0, 200, 400... or 0%, 10%, 20%..."""
    top = max(top, 0.05 if percent else 5.0)
    rough = top / 5
    magnitude = 10 ** math.floor(math.log10(rough))
    # 2.5 only where it gives whole ticks (25, 250; 2.5% is fine for shares).
    steps = (1, 2, 2.5, 5, 10) if percent or magnitude >= 10 else (1, 2, 5, 10)
    step = max(next(m * magnitude for m in steps if m * magnitude >= rough - 1e-12), 0.0)
    if not percent:
        step = max(step, 1.0)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def _tick_label(value: float, *, percent: bool) -> str:
    return f"{value * 100:g}%" if percent else f"{value:,.0f}"


def _wrap(label: str, width: int) -> list[str]:
    return textwrap.wrap(one_line(label), width=max(width, 8)) or [""]


def layout(chart: Chart, *, narrow: bool = False) -> Layout:
    """Measure and place every element of ``chart``: labels beside the bars, or in the
    ``narrow`` form above them."""
    bars = chart.bars
    width = NARROW_WIDTH if narrow else WIDTH
    label_chars = max((len(bar.label) for bar in bars if not bar.heading), default=10)
    if narrow:
        label_width = width - 2.0 * _GAP
        wrap_at = int(label_width / _CHAR_WIDTH)
        plot_left = float(_GAP)
    else:
        label_width = min(max(label_chars * _CHAR_WIDTH, 80.0), 250.0)
        wrap_at = int(label_width / _CHAR_WIDTH)
        plot_left = _GAP + label_width + _GAP
    value_chars = max((len(bar.shown) for bar in bars if not bar.heading), default=5)
    right_margin = value_chars * _CHAR_WIDTH + 16
    plot_width = width - plot_left - right_margin
    top = max(
        (max(bar.value, bar.upper or 0.0) for bar in bars if bar.value is not None),
        default=0.0,
    )
    ticks = _nice_ticks(top, percent=chart.percent)
    scale_top = ticks[-1]

    def x_of(value: float) -> float:
        return plot_left + plot_width * max(value, 0.0) / scale_top

    hatched = any(bar.hatched for bar in bars)
    # In the narrow form the legend of the hatching takes a line of its own.
    legend_height = _LEGEND_HEIGHT + (22 if narrow and hatched else 0)
    hatch_key = (float(_GAP), 30.0) if narrow else (258.0, 8.0)
    body: list[Element] = []
    y = float(legend_height)
    for bar in bars:
        if bar.heading:
            lines = _wrap(bar.label, int((width - 2 * _GAP) / _CHAR_WIDTH))
            height = max(_ROW_HEIGHT + 4, len(lines) * _LINE_HEIGHT + 12)
            # A white band hides the grid behind the heading: each group reads as a panel.
            body.append(Element("band", y=y, width=width, height=height))
            body += [
                Element(
                    "heading",
                    x=_GAP,
                    y=y + height - 8 - (len(lines) - 1 - number) * _LINE_HEIGHT,
                    text=line,
                )
                for number, line in enumerate(lines)
            ]
            y += height
            continue
        lines = _wrap(bar.label, wrap_at)
        if narrow:
            body += [
                Element(
                    "label-above", x=plot_left + 2, y=y + (number + 1) * _LINE_HEIGHT, text=line
                )
                for number, line in enumerate(lines)
            ]
            height = len(lines) * _LINE_HEIGHT + _ROW_HEIGHT
            middle = y + len(lines) * _LINE_HEIGHT + _ROW_HEIGHT / 2
        else:
            height = max(_ROW_HEIGHT, len(lines) * _LINE_HEIGHT + 9)
            middle = y + height / 2
            first = middle - (len(lines) - 1) * _LINE_HEIGHT / 2 + 4.5
            body += [
                Element("label", x=plot_left - _GAP, y=first + number * _LINE_HEIGHT, text=line)
                for number, line in enumerate(lines)
            ]
        if bar.value is None:
            body.append(Element("missing", x=plot_left + 4, y=middle + 4.5, text=bar.shown))
        else:
            end = x_of(bar.value)
            body.append(
                Element(
                    "bar",
                    x=plot_left,
                    y=middle - _BAR_HEIGHT / 2,
                    width=max(end - plot_left, 1.0),
                    height=_BAR_HEIGHT,
                    hatched=bar.hatched,
                )
            )
            label_at = end
            if bar.lower is not None and bar.upper is not None:
                low, high = x_of(bar.lower), x_of(bar.upper)
                body.append(
                    Element(
                        "interval",
                        path=f"M{low:.1f} {middle:.1f}H{high:.1f}M{low:.1f} {middle - 6:.1f}"
                        f"V{middle + 6:.1f}M{high:.1f} {middle - 6:.1f}V{middle + 6:.1f}",
                    )
                )
                label_at = max(end, high)
            body.append(Element("value", x=label_at + 6, y=middle + 4.5, text=bar.shown))
        y += height
    plot_bottom = y + 4

    grid: list[Element] = []
    for tick in _thinned(ticks, narrow=narrow):
        x = x_of(tick)
        grid.append(Element("grid", path=f"M{x:.1f} {legend_height}V{plot_bottom:.1f}"))
        grid.append(
            Element("tick", x=x, y=plot_bottom + 16, text=_tick_label(tick, percent=chart.percent))
        )
    grid.append(Element("axis-line", path=f"M{plot_left:.1f} {legend_height}V{plot_bottom:.1f}"))
    axis = Element("axis", x=plot_left + plot_width / 2, y=plot_bottom + 36, text=chart.axis)
    return Layout(
        chart=chart,
        width=width,
        height=plot_bottom + _AXIS_HEIGHT,
        hatched=hatched,
        elements=(*grid, *body, axis),
        narrow=narrow,
        hatch_key=hatch_key,
    )


def _thinned(ticks: list[float], *, narrow: bool) -> list[float]:
    """Every tick, or in the narrow form every other one when there are many (their labels
    would touch); the bars keep the scale of all of them."""
    if not narrow or len(ticks) <= 5:
        return ticks
    return ticks[::2]
