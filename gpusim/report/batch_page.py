"""`gpusim report` for a batch file: one self-contained page comparing its scenarios (EL and
ES 99.9 %, the scenario table, PDs by scenario), in one money unit, batch facts last."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from gpusim.output.read import BatchResults
from gpusim.report.figures import Chart, ChartBook, check_report_path, pdf_path, progress_bar, write_atomically
from gpusim.report.pdf import write_pdf
from gpusim.report.tables import Money, Table, escape, figure_html, number_cell, page_head, page_money, share

BATCH_ATTRIBUTES = (
    ("batch", "batch"),
    ("description", "description"),
    ("n_scenarios", "scenarios"),
    ("n_paths", "paths per scenario"),
    ("seed", "seed"),
    ("common_random_numbers", "common random numbers"),
    ("dtype", "precision"),
    ("contagion", "fire-sale chain"),
    ("backend", "backend"),
    ("created_utc", "created (UTC)"),
    ("gpusim_version", "gpusim version"),
)


def write_batch_report(
    batch: BatchResults, out: str | os.PathLike[str], overwrite: bool = False, pdf: bool = False, progress: bool = False
) -> Path:
    """The comparison page of a batch file, one self-contained HTML file: EL and ES 99.9 % by
    scenario, the scenario table, PDs by scenario; with `pdf` the same in a PDF beside it."""
    path = check_report_path(out, overwrite, pdf)
    t = batch.table
    money = page_money(np.r_[[np.asarray(t[key].values, dtype=float) for key in ("el", "var_999", "es_999")]].ravel())
    book = ChartBook()
    with progress_bar(2 + int(pdf), progress) as advance:
        chart = batch_loss_chart(book, batch, money)
        advance("EL and ES by scenario")
        facts_rows = [[label, str(batch.attrs[key])] for key, label in BATCH_ATTRIBUTES if key in batch.attrs]
        facts = Table("Batch", ("attribute", "value"), facts_rows, "batch-table")
        tables = [batch_table(t, money), *([batch_pd_table(t)] if t.sizes.get("borrower", 0) else [])]
        title = f"gpusim batch report: {batch.attrs.get('batch', '')}"
        parts = [
            *page_head(title),
            '<h2 id="scenarios">Scenarios</h2>',
            figure_html(chart),
            *(f"<h3>{escape(table.title)}</h3>{table.html()}" for table in tables),
            '<h2 id="run">Batch</h2>',
            facts.html(),
            f"<details><summary>Batch file (resolved)</summary><pre>{escape(batch.attrs.get('batch_yaml', ''))}</pre></details>",
            "</body></html>",
        ]
        write_atomically(path, lambda p: p.write_text("\n".join(parts) + "\n", encoding="utf-8"))
        advance(path.name)
        if pdf:
            write_atomically(pdf_path(path), lambda p: write_pdf(p, title, [*tables, facts], book.charts))
            advance(pdf_path(path).name)
    return path


def batch_loss_chart(book: ChartBook, batch: BatchResults, money: Money) -> Chart:
    """Horizontal bars per scenario: portfolio EL (left) and ES 99.9 % (right), with their standard errors."""
    t = batch.table
    names = [str(n) for n in t["scenario"].values]
    y = np.arange(len(names))[::-1]
    fig = book.figure()
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, title, color) in zip(
        axes, (("el", "expected loss", "#4c72b0"), ("es_999", "expected shortfall 99.9 %", "#c44e52")), strict=True
    ):
        values = np.asarray(t[key].values, dtype=float)
        errors = np.asarray(t[f"{key}_se"].values, dtype=float)
        ax.barh(y, np.nan_to_num(values) / money.scale, xerr=np.nan_to_num(errors) / money.scale, color=color, alpha=0.85, capsize=2)
        ax.set_title(f"Portfolio {title}")
        ax.set_xlabel(f"{money.unit} (discounted to t0), ± 1 s.e.")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names, fontsize=8 if len(names) <= 20 else 6)
    caption = (
        f"Portfolio expected loss and expected shortfall at 99.9 % for every scenario of the batch, in {money.unit}, with their "
        "Monte Carlo standard errors. With common random numbers every scenario sees the same shocks, so differences between "
        "bars are the stresses rather than noise (each bar's own error is larger than the error of a difference)."
    )
    return book.save_chart(fig, "batch_el_es", "Expected loss and ES 99.9 % by scenario", caption, "scenarios")


def batch_table(t: Any, money: Money) -> Table:
    """One row per scenario: how it was made and its headline metrics."""
    rows = []
    for i, name in enumerate(t["scenario"].values):

        def cell(key: str, k: int = i) -> float:
            return float(t[key].values[k])

        rows.append(
            [
                str(name),
                str(t["overrides"].values[i]) or "-",
                number_cell(f"{money(cell('el'))} ± {money(cell('el_se'))}"),
                number_cell(money(cell("var_999"))),
                number_cell(f"{money(cell('es_999'))} ± {money(cell('es_999_se'))}"),
                number_cell(share(cell("contagion_share"))),
            ]
        )
    u = money.unit
    header = ("scenario", "overrides", f"EL, {u} ± s.e.", f"VaR 99.9 %, {u}", f"ES 99.9 %, {u} ± s.e.", "fire-sale share of EL")
    return Table(f"Scenarios, {u}", header, rows, "scenario-table")


def batch_pd_table(t: Any) -> Table:
    """Scenario x borrower: probability of default by the horizon."""
    borrowers = [str(b) for b in t["borrower"].values]
    pd = np.asarray(t["pd_horizon"].values, dtype=float)
    rows = [[str(name), *(number_cell(share(p)) for p in pd[i])] for i, name in enumerate(t["scenario"].values)]
    return Table("Probability of default by the horizon", ("scenario", *borrowers), rows, "batch-pd-table")
