"""From figures to what the page draws: each table's chart with its words (relay/reach/labels.py, in the
reader's language from the catalogue) and a text alternative that states the totals, and the table's CSV."""
from __future__ import annotations

import csv
import io

from markupsafe import Markup

from .charts import bar_chart, column_chart
from .figures import CHARTS, Figures, Table


def _word(labels: dict[str, str], key: str) -> str:
    return labels.get(key, key)


def headers(table: Table, labels: dict[str, str]) -> list[str]:
    return [_word(labels, h) for h in table.headers]


def series_chart(table: Table, title: str, labels: dict[str, str], period) -> Markup:
    names = table.headers[1:]
    series = [(_word(labels, name), [row[i + 1] for row in table.rows]) for i, name in enumerate(names)]
    totals = [(name, sum(values)) for name, values in series]
    parts = ", ".join(f"{name} {total:,}" for name, total in totals)
    description = labels["desc_series"] % dict(title=title, start=period.start, end=period.end,
                                               total=f"{sum(t for _, t in totals):,}", parts=parts or "0")
    return column_chart(table.name, title, description, [str(row[0]) for row in table.rows], series)


def _ranking_chart(table: Table, title: str, labels: dict[str, str], period, label_of, column: str,
                   suffix: str = "", scale: float | None = None) -> Markup:
    at = table.headers.index(column)
    items = [(label_of(row), row[at]) for row in table.rows]
    first = f"{items[0][0]} {_cell(items[0][1])}{suffix}" if items else "—"
    description = labels["desc_ranking"] % dict(title=title, start=period.start, end=period.end,
                                                n=len(items), first=first)
    return bar_chart(table.name, title, description, items, suffix=suffix, scale=scale)


def charts(figures: Figures, labels: dict[str, str]) -> dict[str, Markup]:
    period = figures.period
    deliveries = figures.deliveries
    # deliveries: columns per channel, stacked by outcome (the table's rows are channels)
    by_channel = Table(deliveries.name, deliveries.headers,
                       [[_word(labels, row[0]), *row[1:]] for row in deliveries.rows])
    titles = {name: labels[f"chart_{name}"] for name in CHARTS}
    return {
        "readers": series_chart(figures.readers, titles["readers"], labels, period),
        "cases": _ranking_chart(figures.cases, titles["cases"], labels, period, lambda row: f"{row[0]} {row[1]}",
                                "views"),
        "deliveries": series_chart(by_channel, titles["deliveries"], labels, period),
        "held_back": series_chart(figures.held_back, titles["held_back"], labels, period),
        "acks": _ranking_chart(figures.acks, titles["acks"], labels, period, lambda row: f"{row[0]} {row[1]}",
                               "rate", suffix="%", scale=100),
        "replies": series_chart(figures.replies, titles["replies"], labels, period),
        "countries": _ranking_chart(figures.countries, titles["countries"], labels, period, lambda row: row[0],
                                    "members"),
        "consent": series_chart(figures.consent, titles["consent"], labels, period),
    }


def to_csv(table: Table, labels: dict[str, str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers(table, labels) if labels else table.headers)
    for row in table.rows:  # a cell that a spreadsheet would run as a formula is quoted with '
        writer.writerow([f"'{cell}" if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@") else cell
                         for cell in row])
    return out.getvalue()


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def shown(table: Table, labels: dict[str, str]) -> dict:
    """The table as the page prints it: headers in words, cells formatted, a totals row (built here, not
    in the template: a year of days is thousands of cells)."""
    translate = table.name == "deliveries"  # its first column names channels
    rows = [[_word(labels, row[0]) if translate else str(row[0]), *map(_cell, row[1:])] for row in table.rows]
    totals = table.totals()
    footer = None
    if table.rows and totals:
        footer = [labels["total"], *([""] * (len(table.headers) - 1 - len(totals))), *map(_cell, totals)]
    return {"name": table.name, "headers": headers(table, labels), "rows": rows, "footer": footer,
            "columns": len(table.headers)}
