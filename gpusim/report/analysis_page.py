"""The analyst commands' charts and the sensitivities page (`gpusim report` on a sensitivities file).

- `tornado_chart`: per bumped field, the change of a metric from the base with the field at LOW
  and at HIGH, largest swing on top, with paired (common random numbers) standard errors.
- `search_chart`: a reverse-stress search, the target metric at every shock tried, the target
  level and the shock found with its 95 % interval.
- `write_sensitivity_report`: one self-contained HTML page of a sensitivities file.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gpusim.output.sensitivities import SensitivityResults
from gpusim.report.figures import FIGSIZE, ChartBook, check_report_path, progress_bar, write_atomically
from gpusim.report.tables import Table, escape, figure_html, number_cell, page_head, page_money

LOW_COLOR, HIGH_COLOR = "#4c72b0", "#c44e52"

METRIC_LABELS = {
    "el": ("expected loss", True),
    "var": ("VaR", True),
    "pd": ("PD by the horizon", False),
    "breakeven_bps": ("break-even spread, bps", False),
}
"""Metric -> (label, is money)."""


def _figure() -> Figure:
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _format(value: float, money: bool, scale: float = 1.0, metric: str = "") -> str:
    if not math.isfinite(value):
        return "-"
    if money:
        return f"{value / scale:,.2f}"
    if metric == "pd":
        return f"{value:.2%}"
    return f"{value:,.1f}"


def tornado_chart(ds: xr.Dataset, metric: str, title: str, money_scale: float = 1.0, money_unit: str = "USD") -> Figure:
    """Bars from the base value to the metric at LOW (blue) and at HIGH (red), one row per field, largest swing on top."""
    low = np.asarray(ds[f"{metric}_low_change"].values, dtype=float)
    high = np.asarray(ds[f"{metric}_high_change"].values, dtype=float)
    low_se = np.asarray(ds[f"{metric}_low_change_se"].values, dtype=float)
    high_se = np.asarray(ds[f"{metric}_high_change_se"].values, dtype=float)
    fields = [str(p) for p in ds["parameter"].values]
    label, money = METRIC_LABELS[metric]
    scale = money_scale if money else (0.01 if metric == "pd" else 1.0)
    order = np.argsort(np.nan_to_num(np.maximum(np.abs(low), np.abs(high))))  # smallest first: drawn at the bottom
    fig = _figure()
    ax = fig.add_subplot()
    y = np.arange(len(order))
    ax.barh(
        y,
        np.nan_to_num(low[order]) / scale,
        xerr=1.96 * np.nan_to_num(low_se[order]) / scale,
        color=LOW_COLOR,
        alpha=0.85,
        capsize=3,
        label="field at LOW",
    )
    ax.barh(
        y,
        np.nan_to_num(high[order]) / scale,
        xerr=1.96 * np.nan_to_num(high_se[order]) / scale,
        color=HIGH_COLOR,
        alpha=0.85,
        capsize=3,
        label="field at HIGH",
    )
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [fields[i] for i in order], fontsize=9)
    unit = money_unit if money else ("percentage points" if metric == "pd" else "bps")
    base = float(np.asarray(ds[f"{metric}_base"].values, dtype=float).ravel()[0])
    ax.set_xlabel(
        f"change of {label} from the base ({_format(base, money, money_scale, metric)}{' ' + money_unit if money else ''}), "
        f"{unit}; error bars 95 % (paired)"
    )
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def search_chart(result: dict[str, Any]) -> Figure:
    """The target metric at every shock tried (95 % error bars), the target level and the shock found."""
    evaluations = result["evaluations"]
    shocks = np.array([e["shock"] for e in evaluations])
    values = np.array([e["value"] for e in evaluations])
    errors = np.array([e["se"] for e in evaluations])
    fig = _figure()
    ax = fig.add_subplot()
    ax.errorbar(shocks, values, yerr=1.96 * errors, fmt="o-", color=LOW_COLOR, capsize=3, markersize=4, label="metric at a shock tried")
    ax.axhline(result["level"], color=HIGH_COLOR, linestyle="--", label=f"target {result['level']:.4g}")
    if result["shock"] is not None:
        ax.axvline(result["shock"], color="black", linewidth=1.0, label=f"shock found {result['shock']:.4f}")
        if result["shock_interval_95"] is not None:
            lo, hi = result["shock_interval_95"]
            ax.axvspan(lo, hi, color="grey", alpha=0.25, label="95 % Monte Carlo interval")
    fields = ", ".join(f"{'.'.join(f.split('.')[-2:])} x {d:g}" for f, d in zip(result["over"], result["direction"], strict=True))
    mode = "relative change of" if result["mode"] == "relative" else "added to"
    ax.set_xlabel(f"shock s ({mode} {fields})")
    ax.set_ylabel(result["metric"])
    ax.set_title(f"Reverse stress: {result['target']} ({result['status'].replace('_', ' ')})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write a chart as SVG or PNG (by the file's suffix)."""
    p = Path(path)
    fmt = "png" if p.suffix.lower() == ".png" else "svg"
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else None, dpi=120)
    write_atomically(p, lambda partial: partial.write_bytes(buffer.getvalue()))
    return p


def sensitivity_table(ds: xr.Dataset, metric: str, entity: str | None, scale: float, unit: str) -> Table:
    """One row per (name, field): base, LOW, HIGH, HIGH - LOW with its paired and independent-run errors, derivative."""
    label, money = METRIC_LABELS[metric]
    names = [str(n) for n in ds[entity].values] if entity else ["portfolio"]
    rows = []
    for e, name in enumerate(names):
        for p, field in enumerate(str(f) for f in ds["parameter"].values):

            def cell(key: str, p: int = p, e: int = e) -> float:
                values = np.asarray(ds[f"{metric}_{key}"].values, dtype=float)
                return float(values[p, e] if values.ndim == 2 else values[p])

            fmt = lambda v: _format(v, money, scale, metric)  # noqa: E731
            rows.append(
                [
                    name,
                    field,
                    number_cell(fmt(cell("base"))),
                    number_cell(fmt(cell("low"))),
                    number_cell(fmt(cell("high"))),
                    number_cell(f"{fmt(cell('delta'))} ± {fmt(cell('delta_se'))}"),
                    number_cell(fmt(cell("delta_se_independent"))),
                    number_cell(f"{cell('derivative'):.4g} ± {cell('derivative_se'):.2g}"),
                ]
            )
    u = f", {unit}" if money else ""
    header = ("name", "field", f"base{u}", f"LOW{u}", f"HIGH{u}", f"HIGH - LOW ± s.e. (paired){u}", f"s.e. if independent{u}", "derivative")
    return Table(f"{label}{u}", header, rows, f"sensitivity-{metric}-{entity or 'portfolio'}")


def write_sensitivity_report(
    results: SensitivityResults, out: str | os.PathLike[str], overwrite: bool = False, progress: bool = False
) -> Path:
    """One HTML page: tornado charts of the portfolio EL and VaR and of the names that move most, and the tables."""
    path = check_report_path(out, overwrite)
    g = results.groups
    portfolio, instrument, borrower = g["portfolio"], g["instrument"], g["borrower"]
    money = page_money(
        np.abs(
            np.concatenate([np.asarray(portfolio[f"{m}_{k}"].values, dtype=float) for m in ("el", "var") for k in ("base", "low", "high")])
        )
    )
    book = ChartBook()
    level = float(results.attrs.get("var_level", 0.99))
    plan = [
        (portfolio, "el", "Portfolio expected loss"),
        (portfolio, "var", f"Portfolio VaR {level:.1%}"),
    ]
    swing = (
        np.nan_to_num(np.abs(np.asarray(borrower["pd_delta"].values, dtype=float))).max(axis=0) if borrower.sizes.get("borrower") else []
    )
    for b in np.argsort(swing)[::-1][:3]:
        plan.append((borrower.isel(borrower=int(b)), "pd", f"PD of {borrower['borrower'].values[b]}"))
    with progress_bar(len(plan) + 1, progress) as advance:
        charts = []
        for ds, metric, title in plan:
            fig = tornado_chart(ds, metric, title, money.scale, money.unit)
            caption = (
                f"{title}: change from the base scenario with each field at LOW (blue) and at HIGH (red), all on common random "
                "numbers; error bars are 95 % intervals of the paired differences."
            )
            charts.append(book.save_chart(fig, f"tornado-{metric}-{title}", title, caption, "sensitivities"))
            advance(title)
        tables = [
            sensitivity_table(portfolio, "el", None, money.scale, money.unit),
            sensitivity_table(portfolio, "var", None, money.scale, money.unit),
            sensitivity_table(instrument, "el", "instrument", money.scale, money.unit),
            sensitivity_table(instrument, "breakeven_bps", "instrument", money.scale, money.unit),
            sensitivity_table(borrower, "pd", "borrower", money.scale, money.unit),
        ]
        p = g["parameters"]
        params = Table(
            "Bumped fields",
            ("field", "base", "LOW", "HIGH", "scenarios in the batch"),
            [
                [
                    str(f),
                    str(p["base_value"].values[i]),
                    str(p["low_value"].values[i]),
                    str(p["high_value"].values[i]),
                    f"{p['scenario_low'].values[i]}, {p['scenario_high'].values[i]}",
                ]
                for i, f in enumerate(p["parameter"].values)
            ],
            "parameters",
        )
        attrs = results.attrs
        facts = Table(
            "Run",
            ("attribute", "value"),
            [
                [k, str(attrs[k])]
                for k in ("config", "n_paths", "seed", "common_random_numbers", "contagion", "var_level", "batch_file", "gpusim_version")
                if k in attrs
            ],
            "run-table",
        )
        title = f"gpusim sensitivities: {attrs.get('config', '')}"
        parts = [
            *page_head(title, "bump-and-revalue on common random numbers; central differences with paired standard errors"),
            '<h2 id="fields">Bumped fields</h2>',
            params.html(),
            '<h2 id="sensitivities">Tornado charts</h2>',
            *(figure_html(c) for c in charts),
            '<h2 id="tables">Tables</h2>',
            *(f"<h3>{escape(t.title)}</h3>{t.html()}" for t in tables),
            '<h2 id="run">Run</h2>',
            facts.html(),
            f"<details><summary>Batch file of the bumps</summary><pre>{escape(attrs.get('batch_yaml', ''))}</pre></details>",
            "</body></html>",
        ]
        write_atomically(path, lambda partial: partial.write_text("\n".join(parts) + "\n", encoding="utf-8"))
        advance(path.name)
    return path
