"""The report as a PDF: the same tables and figures as the page, through matplotlib's PdfPages
(no browser, nothing beyond matplotlib). Tables go first, one A4 landscape page per table (long
ones continue on the next page), then one page per figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from gpusim.report.figures import Chart
from gpusim.report.tables import Table

A4_LANDSCAPE = (11.69, 8.27)
ROWS_PER_PAGE = 28


def write_pdf(path: Path, title: str, tables: Sequence[Table], charts: Sequence[Chart]) -> None:
    with PdfPages(path, metadata={"Title": title, "Creator": "gpusim"}) as pdf:
        first = True
        for table in tables:
            rows = table.texts()
            for start in range(0, max(len(rows), 1), ROWS_PER_PAGE):
                pdf.savefig(table_page(title if first else "", table, rows[start : start + ROWS_PER_PAGE], start > 0))
                first = False
        for chart in charts:
            pdf.savefig(chart.figure)


def table_page(heading: str, table: Table, rows: list[list[str]], continued: bool) -> Figure:
    """One page holding (part of) a table under its title, and the report's title on the first page."""
    fig = Figure(figsize=A4_LANDSCAPE)
    if heading:
        fig.text(0.04, 0.95, heading, fontsize=16, fontweight="bold", va="top")
    fig.text(0.04, 0.89, table.title + (" (continued)" if continued else ""), fontsize=12, va="top")
    ax = fig.add_axes((0.04, 0.05, 0.92, 0.8))
    ax.set_axis_off()
    if rows:
        drawn = ax.table(cellText=rows, colLabels=list(table.header), loc="upper left", cellLoc="left")
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(7 if len(table.header) > 6 else 9)
        drawn.auto_set_column_width(list(range(len(table.header))))
        drawn.scale(1.0, 1.3)
    return fig
