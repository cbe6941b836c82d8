"""`gpusim report` for a batch file: one page comparing its scenarios (EL and ES 99.9 %, the
scenario table, PDs by scenario)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gpusim.output.read import BatchResults
from gpusim.report.figures import Chart, ReportFolder
from gpusim.report.tables import escape, figure_html, html_table, money_scale, number_cell, page_head, usd

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


def write_batch_report(batch: BatchResults, out_dir: str | Path, overwrite: bool = False) -> Path:
    """The comparison page of a batch file: EL and ES 99.9 % by scenario, the scenario table, PDs by scenario."""
    folder = ReportFolder.create(out_dir, overwrite)
    chart = batch_loss_chart(folder, batch)
    t = batch.table
    facts = html_table(("attribute", "value"), [(label, batch.attrs[key]) for key, label in BATCH_ATTRIBUTES if key in batch.attrs])
    parts = [
        *page_head(f"gpusim batch report: {batch.attrs.get('batch', '')}"),
        '<h2 id="run">Batch</h2>',
        facts,
        f"<details><summary>Batch file (resolved)</summary><pre>{escape(batch.attrs.get('batch_yaml', ''))}</pre></details>",
        '<h2 id="scenarios">Scenarios</h2>',
        figure_html(chart),
        batch_table(t),
    ]
    if t.sizes.get("borrower", 0):
        parts += ['<h2 id="borrowers">Probability of default by the horizon</h2>', batch_pd_table(t)]
    parts.append("</body></html>")
    return folder.write_page("\n".join(parts) + "\n")


def batch_loss_chart(folder: ReportFolder, batch: BatchResults) -> Chart:
    """Horizontal bars per scenario: portfolio EL (left) and ES 99.9 % (right), with their standard errors."""
    t = batch.table
    names = [str(n) for n in t["scenario"].values]
    y = np.arange(len(names))[::-1]
    fig = folder.figure()
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, title, color) in zip(
        axes, (("el", "expected loss", "#4c72b0"), ("es_999", "expected shortfall 99.9 %", "#c44e52")), strict=True
    ):
        values = np.asarray(t[key].values, dtype=float)
        errors = np.asarray(t[f"{key}_se"].values, dtype=float)
        scale, unit = money_scale(float(np.nanmax(np.abs(values), initial=0.0)))
        ax.barh(y, np.nan_to_num(values) / scale, xerr=np.nan_to_num(errors) / scale, color=color, alpha=0.85, capsize=2)
        ax.set_title(f"Portfolio {title}")
        ax.set_xlabel(f"{unit} (discounted to t0), ± 1 s.e.")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names, fontsize=8 if len(names) <= 20 else 6)
    caption = (
        "Portfolio expected loss and expected shortfall at 99.9 % for every scenario of the batch, with their Monte Carlo "
        "standard errors. With common random numbers every scenario sees the same shocks, so differences between bars are "
        "the stresses rather than noise (each bar's own error is larger than the error of a difference)."
    )
    return folder.save_chart(fig, "batch_el_es", "Expected loss and ES 99.9 % by scenario", caption, "scenarios")


def batch_table(t: Any) -> str:
    """One row per scenario: how it was made and its headline metrics."""
    rows = []
    for i, name in enumerate(t["scenario"].values):

        def cell(key: str, k: int = i) -> float:
            return float(t[key].values[k])

        share = cell("contagion_share")
        rows.append(
            (
                str(name),
                str(t["overrides"].values[i]) or "-",
                number_cell(f"{usd(cell('el'))} ± {usd(cell('el_se'))}"),
                number_cell(usd(cell("var_999"))),
                number_cell(f"{usd(cell('es_999'))} ± {usd(cell('es_999_se'))}"),
                number_cell("-" if not np.isfinite(share) else f"{share:.1%}"),
            )
        )
    header = ("scenario", "overrides", "EL ± s.e.", "VaR 99.9 %", "ES 99.9 % ± s.e.", "fire-sale share of EL")
    return html_table(header, rows)


def batch_pd_table(t: Any) -> str:
    """Scenario x borrower: probability of default by the horizon."""
    borrowers = [str(b) for b in t["borrower"].values]
    pd = np.asarray(t["pd_horizon"].values, dtype=float)
    rows = [
        (str(name), *(number_cell("-" if not np.isfinite(p) else f"{p:.1%}") for p in pd[i])) for i, name in enumerate(t["scenario"].values)
    ]
    return html_table(("scenario", *borrowers), rows)
