"""`gpusim report` for one run: charts (PNG) and a self-contained `index.html`.

`write_report(results, out_dir)` takes what `gpusim.output.read.open_results` returns and writes
one PNG per chart plus `index.html`, which shows every chart with a caption and the summary
tables (run attributes, PD term structure, instrument EL and spreads, VaR/ES, contagion).
The page loads nothing from outside the folder: styles are inline, images are the PNGs
beside it. A run without borrowers (factor-only) gets the market-factor charts only; a batch
file gets its comparison page (`gpusim.report.batch_page`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpusim.output.read import BatchResults
from gpusim.report.batch_page import write_batch_report
from gpusim.report.credit_charts import contagion_chart, coverage_fan_chart, loss_distribution_chart, pd_term_structure_chart, spreads_chart
from gpusim.report.datasets import dimension_labels, has_credit, saved_path_count, scenario_name
from gpusim.report.figures import Chart, ReportFolder
from gpusim.report.market_charts import crypto_fan_chart, gpu_fan_chart, market_fan_chart, sample_paths_gpu_chart, sample_paths_market_chart
from gpusim.report.tables import (
    contagion_table,
    escape,
    figure_html,
    instrument_table,
    page_head,
    pd_table,
    portfolio_lines,
    risk_table,
    run_table,
)

SECTIONS = (
    ("portfolio", "Portfolio loss"),
    ("borrowers", "Borrowers: default probability and coverage"),
    ("instruments", "Instruments: expected loss and pricing"),
    ("contagion", "Fire-sale contagion"),
    ("market", "Market factors"),
    ("paths", "Sample paths"),
)


def write_report(results: Any, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the charts and index.html of `results` (from open_results) to out_dir; return index.html's path.

    A batch file (BatchResults) gets its scenario comparison page instead (`write_batch_report`).
    A folder that already holds files is refused unless `overwrite`."""
    if isinstance(results, BatchResults):
        return write_batch_report(results, out_dir, overwrite)
    folder = ReportFolder.create(out_dir, overwrite)
    credit = has_credit(results)
    if credit:
        loss_distribution_chart(folder, results)
        pd_term_structure_chart(folder, results)
        for borrower in dimension_labels(results.summary, "borrower"):
            coverage_fan_chart(folder, results, borrower)
        spreads_chart(folder, results)
        if results.contagion is not None:
            contagion_chart(folder, results)
    fan = results.fan
    for asset in dimension_labels(fan, "asset"):
        crypto_fan_chart(folder, results, asset)
    for generation in dimension_labels(fan, "generation"):
        gpu_fan_chart(folder, results, generation)
    market_fan_chart(folder, results)
    if saved_path_count(results) > 0:
        sample_paths_market_chart(folder, results)
        for generation in dimension_labels(results.paths, "generation"):
            sample_paths_gpu_chart(folder, results, generation)
    return folder.write_page(run_page_html(results, folder.charts, credit))


def run_page_html(results: Any, charts: list[Chart], credit: bool) -> str:
    """index.html of a run: the run's facts and resolved scenario, then each section's tables and charts."""
    name = scenario_name(results)
    tables: dict[str, list[str]] = {key: [] for key, _ in SECTIONS}
    if credit:
        tables["portfolio"] += [f"<p>{escape(line)}</p>" for line in portfolio_lines(results)]
        tables["portfolio"].append(risk_table(results))
        tables["borrowers"].append(pd_table(results))
        tables["instruments"].append(instrument_table(results))
        if results.contagion is not None and "pd_with_chain" in results.contagion:
            tables["contagion"].append(contagion_table(results))
    parts = page_head(f"gpusim report: {name}")
    if not credit:
        parts.append("<p>Factor-only run (no borrowers): market-factor charts only.</p>")
    shown = [(key, title) for key, title in SECTIONS if tables[key] or any(c.section == key for c in charts)]
    parts.append("<nav>" + "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in [("run", "Run"), *shown]) + "</nav>")
    parts += ['<h2 id="run">Run</h2>', run_table(results)]
    if "config_yaml" in results.attrs:
        parts.append(
            f"<details><summary>Resolved scenario (re-runnable YAML)</summary><pre>{escape(results.attrs['config_yaml'])}</pre></details>"
        )
    for key, title in shown:
        parts.append(f'<h2 id="{key}">{escape(title)}</h2>')
        parts += tables[key]
        parts += [figure_html(c) for c in charts if c.section == key]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
