"""Server-side SVG charts for the console: no script, no library, nothing fetched.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and described by a ``<desc>``
that states the totals in words, with a ``<title>`` per bar segment for pointer users, and
comes with a table of the same figures (``series_table``) for screen readers and for copying.
Every label is escaped here; the result is marked safe for Jinja2 (``__html__``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from rex.console.ops_queries import Series

# Okabe-Ito: told apart with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
OUTCOME_COLORS = {
    "delivered": "#009E73",
    "retrying": "#E69F00",
    "queued": "#56B4E9",
    "failed": "#D55E00",
}

WIDTH = 720
HEIGHT = 260
_PLOT_TOP = 16
_PLOT_LEFT = 44
_PLOT_RIGHT = 8
_PLOT_BOTTOM = 48  # x labels
_LEGEND_ROW = 20


class Html(str):
    """Markup already escaped: Jinja2 inserts it as is."""

    def __html__(self) -> str:
        return str(self)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _dom_id(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", value) or "chart"


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def colors_for(keys: Sequence[str], fixed: dict[str, str] | None = None) -> dict[str, str]:
    colors: dict[str, str] = {}
    spare = iter(c for c in PALETTE if c not in (fixed or {}).values())
    for key in keys:
        colors[key] = (fixed or {}).get(key) or next(spare, PALETTE[-1])
    return colors


def summary(series: Series, *, unit: str, period: str) -> str:
    """The chart in one sentence: its total, and each key's share (plain text)."""
    total = series.total
    if total == 0:
        return f"No {unit} {period}."
    parts = [f"{k}: {sum(series.counts[k])}" for k in series.keys if sum(series.counts[k])]
    totals = series.totals()
    peak = max(range(len(totals)), key=lambda i: totals[i])
    return (
        f"{total} {unit} {period} ({', '.join(parts)}); "
        f"the most, {totals[peak]}, in {series.labels[peak]}."
    )


def stacked_bars(
    series: Series,
    *,
    chart_id: str,
    title: str,
    unit: str,
    period: str,
    colors: dict[str, str] | None = None,
    label_every: int = 1,
    short_label: int | None = None,
) -> Html:
    """A stacked bar chart of ``series``: one bar per label, one segment per key.

    ``label_every``: write every n-th x label (the others stay in the segments' titles and
    the table); ``short_label``: keep the last n characters of each x label on the axis.
    """
    dom = _dom_id(chart_id)
    colors = colors_for(series.keys, colors)
    n = max(1, len(series.labels))
    legend_rows = max(1, (len(series.keys) + 3) // 4)
    height = HEIGHT + legend_rows * _LEGEND_ROW
    plot_w = WIDTH - _PLOT_LEFT - _PLOT_RIGHT
    plot_h = HEIGHT - _PLOT_TOP - _PLOT_BOTTOM
    top = _nice_max(max(series.totals(), default=0))
    slot = plot_w / n
    bar = max(1.0, slot * 0.72)
    description = summary(series, unit=unit, period=period)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{_e(dom)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-labelledby="{_e(dom)}-title {_e(dom)}-desc" focusable="false">',
        f'<title id="{_e(dom)}-title">{_e(title)}</title>',
        f'<desc id="{_e(dom)}-desc">{_e(description)}</desc>',
    ]
    # Grid and y axis: 0, half, top.
    for fraction in (0.0, 0.5, 1.0):
        y = _PLOT_TOP + plot_h * (1 - fraction)
        value = top * fraction
        text = f"{value:g}"
        out.append(
            f'<line x1="{_PLOT_LEFT}" x2="{WIDTH - _PLOT_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'class="chart-grid" stroke="#c8c8c8" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_PLOT_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="currentColor">{_e(text)}</text>'
        )
    for i, label in enumerate(series.labels):
        x = _PLOT_LEFT + slot * i + (slot - bar) / 2
        y = _PLOT_TOP + plot_h
        for key in series.keys:
            count = series.counts[key][i]
            if not count:
                continue
            h = plot_h * count / top
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colors[key]}"><title>{_e(label)}: {_e(key)} {count}</title></rect>'
            )
        if i % max(1, label_every) == 0:
            shown = label[-short_label:] if short_label else label
            out.append(
                f'<text x="{x + bar / 2:.1f}" y="{_PLOT_TOP + plot_h + 16}" text-anchor="middle" '
                f'font-size="10" fill="currentColor">{_e(shown)}</text>'
            )
    # Legend, four keys a row.
    for j, key in enumerate(series.keys):
        lx = _PLOT_LEFT + (j % 4) * (plot_w / 4)
        ly = HEIGHT - 12 + (j // 4) * _LEGEND_ROW
        out.append(
            f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{colors[key]}"/>'
            f'<text x="{lx + 14:.1f}" y="{ly}" font-size="11" fill="currentColor">'
            f"{_e(key)} ({sum(series.counts[key])})</text>"
        )
    out.append("</svg>")
    return Html("".join(out))


def series_table(series: Series, *, caption: str, label_header: str) -> Html:
    """The figures of a chart as a table: one row per label, one column per key, a total."""
    head = "".join(f'<th scope="col">{_e(k)}</th>' for k in series.keys)
    rows = []
    totals = series.totals()
    for i, label in enumerate(series.labels):
        cells = "".join(f"<td>{series.counts[k][i]}</td>" for k in series.keys)
        rows.append(f'<tr><th scope="row">{_e(label)}</th>{cells}<td>{totals[i]}</td></tr>')
    return Html(
        f'<table class="chart-table"><caption>{_e(caption)}</caption>'
        f'<thead><tr><th scope="col">{_e(label_header)}</th>{head}'
        f'<th scope="col">Total</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def leads_chart(series: Series) -> Html:
    return stacked_bars(
        series,
        chart_id="leads-per-day",
        title="Leads per day by source, last 30 days",
        unit="leads",
        period="in the last 30 days",
        label_every=5,
        short_label=5,
    )


def deliveries_chart(series: Series) -> Html:
    hours = len(series.labels)
    return stacked_bars(
        series,
        chart_id="deliveries-per-hour",
        title=f"Deliveries per hour by outcome, last {hours} hours (UTC)",
        unit="deliveries",
        period=f"in the last {hours} hours",
        colors=OUTCOME_COLORS,
        label_every=3,
        short_label=2,
    )
