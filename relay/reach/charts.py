"""Charts as SVG drawn on the server: two shapes, horizontal bars (a ranking) and columns over time,
stacked by series.

Why SVG by hand, not a charting library: the console must work offline and without JavaScript, print
well and be accessible. Each chart here is an <svg role="img"> named by its <title> and described by a
<desc> that states the totals, each bar carries its own <title> (its value on hover, no script), and
the same numbers sit in a table under it. pygal, the well-kept Python SVG library, draws richer charts
but its tooltips need a script it loads from a CDN, it sets no role or text alternative, and drawing a
year of days takes it tens of milliseconds per chart against the page's 300 ms budget; a JavaScript
library would need to ship in the project and still leave printing and no-script readers a blank box.
Colours are the Okabe-Ito palette, distinguishable with the common colour-vision deficiencies; a legend
names every colour in words."""
from __future__ import annotations

import itertools
from typing import Sequence

from markupsafe import Markup, escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WIDTH = 720
_ids = itertools.count(1)


def _fmt(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _head(kind: str, title: str, description: str, width: int, height: int) -> tuple[str, list[str]]:
    ident = f"chart-{kind}-{next(_ids)}"
    return ident, [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" aria-labelledby="{ident}-t {ident}-d" '
        f'font-family="system-ui, \'Noto Sans KR\', sans-serif" font-size="12">',
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(description)}</desc>']


def bar_chart(kind: str, title: str, description: str, items: Sequence[tuple[str, float]], suffix: str = "",
              scale: float | None = None) -> Markup:
    """Horizontal bars, one per (label, value), in the order given; `suffix` after each value ("%"), and
    `scale` the value of a full bar (100 for a share; the largest value by default)."""
    row, label_width = 22, 270
    height = max(1, len(items)) * row + 10
    ident, parts = _head(kind, title, description, WIDTH, height)
    top = scale or max((value for _, value in items), default=0) or 1
    room = WIDTH - label_width - 70
    for n, (label, value) in enumerate(items):
        y = 5 + n * row
        length = round(room * value / top, 1)
        shown = label if len(label) <= 34 else label[:33] + "…"
        parts.append(f'<g><title>{escape(label)}: {_fmt(value)}{escape(suffix)}</title>'
                     f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">{escape(shown)}</text>'
                     f'<rect x="{label_width}" y="{y + 3}" width="{length}" height="{row - 6}" fill="{PALETTE[0]}"/>'
                     f'<text x="{label_width + length + 4}" y="{y + 15}">{_fmt(value)}{escape(suffix)}</text></g>')
    if not items:
        parts.append(f'<text x="10" y="{row - 8}">—</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(kind: str, title: str, description: str, categories: Sequence[str],
                 series: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """Columns over `categories` (days, weeks, channels), each stacked from the `series` (name, values)."""
    left, right, top_margin, plot_height, legend_row = 50, 10, 10, 180, 18
    legend_rows = (len(series) + 3) // 4
    height = top_margin + plot_height + 40 + legend_rows * legend_row
    ident, parts = _head(kind, title, description, WIDTH, height)
    totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    peak = max(totals, default=0) or 1
    plot_width = WIDTH - left - right
    step = plot_width / max(1, len(categories))
    bar = max(1.0, step * 0.8)
    base = top_margin + plot_height
    for fraction in (0, 0.5, 1) if peak >= 2 else (0, 1):  # the scale (no half of 1)
        y = round(base - plot_height * fraction, 1)
        parts.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y}" y2="{y}" stroke="#ccc"/>'
                     f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{_fmt(round(peak * fraction))}</text>')
    every = max(1, len(categories) // 8)  # at most some nine labels under the axis
    label_end = float("-inf")
    for i, category in enumerate(categories):
        x = round(left + i * step + (step - bar) / 2, 1)
        y = base
        for n, (name, values) in enumerate(series):
            if values[i]:
                h = round(plot_height * values[i] / peak, 1)
                y = round(y - h, 1)
                parts.append(f'<rect x="{x}" y="{y}" width="{round(bar, 1)}" height="{h}" '
                             f'fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(category)} · {escape(name)}: '
                             f'{_fmt(values[i])}</title></rect>')
        if i % every == 0:  # centred under its column, kept inside the chart, never over the one before
            width = len(category) * 7
            start = min(max(x + bar / 2 - width / 2, 0), WIDTH - width)
            if start >= label_end + 8:
                parts.append(f'<text x="{round(start, 1)}" y="{base + 16}">{escape(category)}</text>')
                label_end = start + width
    for n, (name, values) in enumerate(series):
        x = left + (n % 4) * 170
        y = base + 30 + (n // 4) * legend_row
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{PALETTE[n % len(PALETTE)]}"/>'
                     f'<text x="{x + 16}" y="{y + 10}">{escape(name)} ({_fmt(sum(values))})</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
