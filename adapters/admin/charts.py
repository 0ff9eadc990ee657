"""Chart geometry for the analytics page: bars as numbers, drawn as SVG by the templates.

Nothing is drawn in the browser (no script) and nothing comes from another host (no font,
no library): the page works in an air-gapped network. Colours come from the page's
stylesheet (``.s0`` ... ``.s5``); each bar carries a ``<title>`` (shown on hover) and its
value, so the chart is readable without the table next to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

WIDTH = 720
COLUMN_HEIGHT = 220
ROW_HEIGHT = 22
LEFT = 44  # room for the y axis labels of a column chart
LABEL_WIDTH = 200  # room for the row labels of a bar chart
BOTTOM = 24
TOP = 8
SERIES_CLASSES = 6


@dataclass(frozen=True, slots=True)
class Bar:
    """One rectangle: where it is, its series (colour) and what it shows."""

    x: float
    y: float
    width: float
    height: float
    series: int
    value: float
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    """A piece of text on the chart."""

    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True, slots=True)
class Chart:
    """An SVG chart: its size, bars, labels, grid lines and legend."""

    name: str
    title: str
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    grid: list[float] = field(default_factory=list)  # y (columns) or x (bars) positions
    legend: list[tuple[int, str]] = field(default_factory=list)
    horizontal: bool = False


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def stacked_columns(
    *,
    name: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[str],
    values: Mapping[tuple[str, str], float],
    unit: str,
    label_every: int = 1,
) -> Chart:
    """Columns, one per category (a day), stacked by series (platform · route)."""
    plot_width = WIDTH - LEFT - 8
    plot_height = COLUMN_HEIGHT - TOP - BOTTOM
    totals = [sum(values.get((c, s), 0.0) for s in series) for c in categories]
    top = nice_max(max(totals, default=0.0))
    slot = plot_width / max(1, len(categories))
    width = max(1.0, slot * 0.8)
    chart = Chart(name=name, title=title, width=WIDTH, height=COLUMN_HEIGHT)
    for i in range(5):
        y = TOP + plot_height * i / 4
        chart.grid.append(y)
        chart.labels.append(Label(LEFT - 6, y + 4, _number(top * (4 - i) / 4), "end"))
    for index, category in enumerate(categories):
        x = LEFT + slot * index + (slot - width) / 2
        base: float = TOP + plot_height
        for number, serie in enumerate(series):
            value = values.get((category, serie), 0.0)
            if value <= 0:
                continue
            height = plot_height * value / top
            base -= height
            chart.bars.append(
                Bar(
                    x=x,
                    y=base,
                    width=width,
                    height=height,
                    series=number % SERIES_CLASSES,
                    value=value,
                    title=f"{category} · {serie}: {_number(value)} {unit}",
                )
            )
        if index % label_every == 0:
            chart.labels.append(Label(x + width / 2, COLUMN_HEIGHT - 8, category[5:]))
    chart.legend.extend((i % SERIES_CLASSES, s) for i, s in enumerate(series))
    return chart


def bars(
    *,
    name: str,
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[int, float, str]]]],
    series: Sequence[str] = (),
) -> Chart:
    """Horizontal bars: per row (its label) one bar per (series, value, text), side by side."""
    per_row = max((len(b) for _, b in rows), default=1) or 1
    row_height = ROW_HEIGHT * per_row + 8
    height = TOP + row_height * len(rows) + BOTTOM
    plot_width = WIDTH - LABEL_WIDTH - 60
    top = nice_max(max((v for _, b in rows for _, v, _ in b), default=0.0))
    chart = Chart(name=name, title=title, width=WIDTH, height=height, horizontal=True)
    for i in range(5):
        x = LABEL_WIDTH + plot_width * i / 4
        chart.grid.append(x)
        chart.labels.append(Label(x, height - 8, _number(top * i / 4)))
    for index, (label, values) in enumerate(rows):
        y = TOP + row_height * index + 4
        chart.labels.append(Label(LABEL_WIDTH - 8, y + row_height / 2, _shorten(label), "end"))
        for slot, (serie, value, text) in enumerate(values):
            width = plot_width * value / top
            bar_y = y + ROW_HEIGHT * slot
            chart.bars.append(
                Bar(LABEL_WIDTH, bar_y, width, ROW_HEIGHT - 4, serie % SERIES_CLASSES, value, text)
            )
            shown = text.split(": ")[-1]
            chart.labels.append(Label(LABEL_WIDTH + width + 4, bar_y + 13, shown, "start"))
    chart.legend.extend((i % SERIES_CLASSES, s) for i, s in enumerate(series))
    return chart


def _shorten(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
