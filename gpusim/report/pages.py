"""`gpusim report` for one run: one self-contained HTML page (and optionally a PDF) for a credit memo.

`write_report(results, out)` takes what `gpusim.output.read.open_results` returns and writes
one HTML file: a one-page summary first (exposure, EL and EL as % of exposure, VaR/ES, the
contagion share, the largest gaps between charged and break-even spreads, PD split by type of
default), then the credit sections, the market factors, and the run's facts last. Charts are
embedded as SVG and styles are inline, so the file can be mailed or attached on its own.
With `pdf=True` the same figures and tables also go into a PDF beside it (report.pdf).
A run without borrowers (factor-only) gets the market-factor charts only; a batch file gets
its comparison page (`gpusim.report.batch_page`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gpusim.output.read import BatchResults
from gpusim.report.batch_page import write_batch_report
from gpusim.report.credit_charts import contagion_chart, coverage_fan_chart, loss_distribution_chart, pd_term_structure_chart, spreads_chart
from gpusim.report.datasets import (
    dimension_labels,
    has_credit,
    instrument_commitment,
    portfolio_losses,
    risk_levels,
    saved_path_count,
    scenario_name,
)
from gpusim.report.desk_tables import desk_tables
from gpusim.report.figures import Chart, ChartBook, check_report_path, pdf_path, progress_bar, write_atomically
from gpusim.report.market_charts import crypto_fan_chart, gpu_fan_chart, market_fan_chart, sample_paths_gpu_chart, sample_paths_market_chart
from gpusim.report.pdf import write_pdf
from gpusim.report.tables import (
    Money,
    Table,
    contagion_table,
    default_type_table,
    escape,
    figure_html,
    headline_table,
    instrument_table,
    page_head,
    page_money,
    pd_table,
    risk_table,
    run_table,
    technical_default_note,
    worst_gaps_table,
)

SECTIONS = (
    ("portfolio", "Portfolio loss"),
    ("borrowers", "Borrowers: default probability and coverage"),
    ("instruments", "Instruments: exposure, expected loss and pricing"),
    ("contagion", "Fire-sale contagion"),
    ("desk", "Desk: rating grades, IFRS 9 / CECL loss, market reconciliation, tranches"),
    ("market", "Market factors"),
    ("paths", "Sample paths"),
)

ChartStep = tuple[str, Callable[[ChartBook], Chart]]
"""A chart still to draw: its progress label and the call that draws it."""


def write_report(results: Any, out: str | os.PathLike[str], overwrite: bool = False, pdf: bool = False, progress: bool = False) -> Path:
    """Write the report of `results` (from open_results) to the HTML file `out`; return its path.

    A batch file (BatchResults) gets its scenario comparison page instead (`write_batch_report`).
    An existing file is refused unless `overwrite`; a link, FIFO or folder never. With `pdf` the
    same figures and tables also go to `out` with the suffix .pdf. `progress` shows a bar on stderr."""
    if isinstance(results, BatchResults):
        return write_batch_report(results, out, overwrite, pdf, progress)
    path = check_report_path(out, overwrite, pdf)
    credit = has_credit(results)
    money = run_money(results) if credit else Money(1e6, "USD m")
    steps = chart_steps(results, credit, money)
    book = ChartBook()
    with progress_bar(len(steps) + 1 + int(pdf), progress) as advance:
        for label, draw in steps:
            draw(book)
            advance(label)
        tables = section_tables(results, credit, money)
        summary = summary_tables(results, money) if credit else []
        write_atomically(path, lambda p: p.write_text(run_page_html(results, book.charts, tables, summary, credit), encoding="utf-8"))
        advance(path.name)
        if pdf:
            title = f"gpusim report: {scenario_name(results)}"
            pdf_tables = [*summary, *(t for key, _ in SECTIONS for t in tables[key]), run_table(results)]
            write_atomically(pdf_path(path), lambda p: write_pdf(p, title, pdf_tables, book.charts))
            advance(pdf_path(path).name)
    return path


def run_money(results: Any) -> Money:
    """The page's money unit, from the largest amount it shows (exposure, a path's loss, ES)."""
    risk = risk_levels(results)
    return page_money(np.r_[instrument_commitment(results), np.max(portfolio_losses(results), initial=0.0), risk["es"], risk["var"]])


def report_figures(results: Any) -> dict[str, Figure]:
    """The report's charts of a run as matplotlib Figures, by anchor name, in page order: for a
    notebook or a memo of one's own (`fig.savefig(...)`), drawn exactly as on the page."""
    credit = has_credit(results)
    money = run_money(results) if credit else Money(1e6, "USD m")
    book = ChartBook()
    for _, draw in chart_steps(results, credit, money):
        draw(book)
    return {chart.name: chart.figure for chart in book.charts}


def chart_steps(results: Any, credit: bool, money: Money) -> list[ChartStep]:
    """Every chart of the page in order, drawn later one by one (so progress knows the total)."""
    steps: list[ChartStep] = []
    if credit:
        steps.append(("portfolio loss", lambda b: loss_distribution_chart(b, results, money)))
        steps.append(("PD term structure", lambda b: pd_term_structure_chart(b, results)))
        for borrower in dimension_labels(results.summary, "borrower"):
            steps.append((f"coverage {borrower}", lambda b, name=borrower: coverage_fan_chart(b, results, name)))
        steps.append(("spreads", lambda b: spreads_chart(b, results)))
        if results.contagion is not None:
            steps.append(("contagion", lambda b: contagion_chart(b, results, money)))
    fan = results.fan
    for asset in dimension_labels(fan, "asset"):
        steps.append((f"{asset} fan", lambda b, name=asset: crypto_fan_chart(b, results, name)))
    for generation in dimension_labels(fan, "generation"):
        steps.append((f"{generation} fan", lambda b, name=generation: gpu_fan_chart(b, results, name)))
    steps.append(("market fan", lambda b: market_fan_chart(b, results)))
    if saved_path_count(results) > 0:
        steps.append(("sample paths", lambda b: sample_paths_market_chart(b, results)))
        for generation in dimension_labels(results.paths, "generation"):
            steps.append((f"{generation} sample paths", lambda b, name=generation: sample_paths_gpu_chart(b, results, name)))
    return steps


def summary_tables(results: Any, money: Money) -> list[Table]:
    return [headline_table(results, money), default_type_table(results), worst_gaps_table(results, money)]


def section_tables(results: Any, credit: bool, money: Money) -> dict[str, list[Table]]:
    tables: dict[str, list[Table]] = {key: [] for key, _ in SECTIONS}
    if credit:
        tables["portfolio"].append(risk_table(results, money))
        tables["borrowers"].append(pd_table(results))
        tables["instruments"].append(instrument_table(results, money))
        if results.contagion is not None and "pd_with_chain" in results.contagion:
            tables["contagion"].append(contagion_table(results, money))
        tables["desk"] += desk_tables(results, money)
    return tables


def titled(table: Table, level: str = "h3") -> str:
    return f"<{level}>{escape(table.title)}</{level}>{table.html()}"


def summary_html(results: Any, summary: list[Table]) -> list[str]:
    """The first screen: the headline and PD-by-type tables side by side, the worst spread gaps, the technical-default note."""
    headline, by_type, gaps = summary
    note = technical_default_note(results)
    return [
        '<section id="summary"><div class="summary">',
        f"<div>{titled(headline)}</div>",
        f"<div>{titled(gaps)}{titled(by_type)}" + (f'<p class="note">{escape(note)}</p>' if note else "") + "</div>",
        "</div></section>",
    ]


def run_page_html(results: Any, charts: list[Chart], tables: dict[str, list[Table]], summary: list[Table], credit: bool) -> str:
    """The page of a run: the summary, each section's tables and charts, then the run's facts and resolved scenario."""
    name = scenario_name(results)
    a = results.attrs
    subtitle = f"{int(a['n_paths']):,} paths, seed {a.get('seed')}" if "n_paths" in a else ""
    parts = page_head(f"gpusim report: {name}", subtitle)
    shown = [(key, title) for key, title in SECTIONS if tables[key] or any(c.section == key for c in charts)]
    links = [("summary", "Summary")] if summary else []
    parts.append("<nav>" + "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in [*links, *shown, ("run", "Run")]) + "</nav>")
    if summary:
        parts += summary_html(results, summary)
    else:
        parts.append("<p>Factor-only run (no borrowers): market-factor charts only.</p>")
    for key, title in shown:
        parts.append(f'<h2 id="{key}">{escape(title)}</h2>')
        parts += [titled(t) for t in tables[key]]
        parts += [figure_html(c) for c in charts if c.section == key]
    parts += ['<h2 id="run">Run</h2>', run_table(results).html()]
    if "config_yaml" in a:
        parts.append(f"<details><summary>Resolved scenario (re-runnable YAML)</summary><pre>{escape(a['config_yaml'])}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
