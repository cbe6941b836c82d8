"""The report's tables and number formatting: money in USD with a unit, percentages, and the
HTML building blocks (escaped cells, tables, figures) of the run and batch pages."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpusim.report.datasets import coordinate_labels, dimension_labels, time_axis
from gpusim.report.figures import PNG_SIZE, Chart

PD_YEARS = (1, 3, 5)
"""Years at which the PD table shows the cumulative PD (besides the horizon)."""


def money_scale(largest: float) -> tuple[float, str]:
    """Divisor and unit (USD bn, m, k or plain USD) in which `largest` reads as a few digits."""
    if largest >= 1e9:
        return 1e9, "USD bn"
    if largest >= 1e6:
        return 1e6, "USD m"
    if largest >= 1e3:
        return 1e3, "USD k"
    return 1.0, "USD"


def usd(x: float, sign: bool = False) -> str:
    """$4.08bn, $10.7m, $993k, $12 (three significant digits); with sign, +$10.7m / -$993k."""
    x = float(x)
    if not np.isfinite(x):
        return "n/a"
    if abs(x) < 0.5:
        return "$0"
    scale, unit = money_scale(abs(x))
    suffix = {"USD bn": "bn", "USD m": "m", "USD k": "k", "USD": ""}[unit]
    prefix = ("+" if x > 0 else "-") if sign else ("-" if x < 0 else "")
    return f"{prefix}${abs(x) / scale:,.3g}{suffix}"


def percent(q: float) -> str:
    """A level as a percentage: 0.999 -> "99.9 %"."""
    return f"{q * 100:g} %"


PAGE_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1180px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; } th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.neg { color: #b22222; font-weight: bold; } td.pos { color: #2d6a3e; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 1100px; }
nav a { margin-right: 1em; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""

RUN_ATTRIBUTES = (
    ("scenario", "scenario"),
    ("seed", "seed"),
    ("n_paths", "paths"),
    ("n_steps", "steps"),
    ("backend", "backend"),
    ("device", "device"),
    ("dtype", "precision"),
    ("chunk_paths", "paths per chunk"),
    ("workers", "workers"),
    ("runtime_s", "runtime, s"),
    ("created_utc", "created (UTC)"),
    ("gpusim_version", "gpusim version"),
    ("format_version", "file format version"),
)


def escape(value: Any) -> str:
    """Text safe inside HTML elements and attribute values (names come from user YAML)."""
    return html.escape(str(value), quote=True)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows of cells; a cell is text, or (text, css class)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, cls = cell if isinstance(cell, tuple) else (cell, "")
            cells.append(f'<td class="{escape(cls)}">{escape(text)}</td>' if cls else f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def number_cell(text: str, extra: str = "") -> tuple[str, str]:
    """A right-aligned numeric cell for `html_table`; `extra` adds a class ("neg", "pos")."""
    return text, ("num " + extra).strip()


def figure_html(chart: Chart) -> str:
    """A chart's <figure>: the PNG at its pixel size, with its title and caption."""
    return (
        f'<figure id="chart-{escape(Path(chart.file).stem)}"><img src="{escape(chart.file)}" alt="{escape(chart.title)}" '
        f'width="{PNG_SIZE[0]}" height="{PNG_SIZE[1]}">'
        f"<figcaption><b>{escape(chart.title)}.</b> {escape(chart.caption)}</figcaption></figure>"
    )


def page_head(title: str) -> list[str]:
    """The opening lines of a self-contained page: inline styles, nothing loaded from outside the folder."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{PAGE_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]


def run_table(results: Any) -> str:
    attrs = results.attrs
    rows = []
    for key, label in RUN_ATTRIBUTES:
        if key in attrs:
            value = attrs[key]
            if key == "runtime_s":
                value = f"{float(value):,.2f}"
            elif key == "n_paths":
                value = f"{int(value):,}"
            rows.append((label, value))
    return html_table(("attribute", "value"), rows)


def pd_table(results: Any) -> str:
    summary = results.summary
    time = time_axis(summary)
    horizon = float(time[-1])
    columns = []
    for y in PD_YEARS:
        hit = np.flatnonzero(np.isclose(time, y))
        if hit.size and y < horizon - 1e-9:
            columns.append((f"PD {y}y", int(hit[0])))
    borrowers = dimension_labels(summary, "borrower")
    types = coordinate_labels(summary, "borrower_type", len(borrowers))
    rows = []
    for b, name in enumerate(borrowers):
        pd_ = summary["pd"].isel(borrower=b).values
        se = summary["pd_se"].isel(borrower=b).values if "pd_se" in summary else np.zeros_like(pd_)
        cells = [number_cell(f"{pd_[k]:.1%}") for _, k in columns]
        rows.append((name, types[b], *cells, number_cell(f"{pd_[-1]:.1%} ± {se[-1]:.1%}")))
    return html_table(("borrower", "type", *(c for c, _ in columns), f"PD {horizon:g}y (horizon) ± s.e."), rows)


def instrument_table(results: Any) -> str:
    s = results.summary
    names = dimension_labels(s, "instrument")
    owner = coordinate_labels(s, "instrument_borrower", len(names))

    def col(name: str) -> np.ndarray:
        return np.asarray(s[name].values, dtype=float) if name in s else np.full(len(names), np.nan)

    el, el_se, lgd, lgd_se = col("el"), col("el_se"), col("lgd"), col("lgd_se")
    lgd_ok = col("lgd_defined") if "lgd_defined" in s else np.ones(len(names))
    be, be_se, market, gap = col("breakeven_spread_bps"), col("breakeven_spread_bps_se"), col("market_spread_bps"), col("spread_gap_bps")
    rc = col("risk_contribution")
    rows = []
    for i, name in enumerate(names):
        lgd_text = f"{lgd[i]:.0%} ± {lgd_se[i]:.0%}" if lgd_ok[i] and np.isfinite(lgd[i]) else "- (no default)"
        sign = "neg" if gap[i] < 0 else "pos"
        rows.append(
            (
                name,
                owner[i],
                number_cell(f"{el[i] / 1e6:,.2f} ± {el_se[i] / 1e6:,.2f}"),
                number_cell(lgd_text),
                number_cell(f"{be[i]:,.0f} ± {be_se[i]:,.0f}"),
                number_cell(f"{market[i]:,.0f}"),
                number_cell(f"{gap[i]:+,.0f}", sign),
                number_cell(f"{rc[i] / 1e6:,.2f}"),
            )
        )
    header = (
        "instrument",
        "borrower",
        "EL, USD m ± s.e.",
        "LGD ± s.e.",
        "break-even, bps ± s.e.",
        "charged, bps",
        "gap, bps",
        "ES 99 % contribution, USD m",
    )
    return html_table(header, rows)


def risk_table(results: Any) -> str:
    s = results.summary
    c = results.contagion
    levels = [float(q) for q in s["level"].values]
    header = ["level", "VaR, USD m ± s.e.", "ES, USD m ± s.e."]
    if c is not None:
        header += ["VaR without chain, USD m", "ES without chain, USD m"]
    rows = []
    for i, q in enumerate(levels):
        row: list[Any] = [percent(q)]
        for name in ("var", "es"):
            se = f" ± {s[name + '_se'].values[i] / 1e6:,.1f}" if name + "_se" in s else ""
            row.append(number_cell(f"{s[name].values[i] / 1e6:,.1f}{se}"))
        if c is not None:
            row += [
                number_cell(f"{c['var_without_chain'].values[i] / 1e6:,.1f}"),
                number_cell(f"{c['es_without_chain'].values[i] / 1e6:,.1f}"),
            ]
        rows.append(row)
    return html_table(header, rows)


def portfolio_lines(results: Any) -> list[str]:
    s = results.summary
    lines = []
    if "portfolio_el" in s.attrs:
        se = s.attrs.get("portfolio_el_se")
        lines.append(
            f"Portfolio expected loss (discounted to t0): {usd(s.attrs['portfolio_el'])}" + (f" ± {usd(se)}" if se is not None else "")
        )
    c = results.contagion
    if c is not None and "contagion_share_of_el" in c.attrs:
        text = f"Fire-sale contagion share of portfolio EL: {float(c.attrs['contagion_share_of_el']):.1%}"
        if "portfolio_el_without_chain" in c.attrs:
            text += f" (EL without the chain {usd(c.attrs['portfolio_el_without_chain'])})"
        lines.append(text)
    return lines


def contagion_table(results: Any) -> str:
    c = results.contagion
    borrowers = dimension_labels(c, "borrower")
    owner = coordinate_labels(c, "instrument_borrower", c.sizes.get("instrument", 0))
    rows = []
    for b, name in enumerate(borrowers):
        el_on = float(np.sum(c["el_with_chain"].values[owner == name]))
        el_off = float(np.sum(c["el_without_chain"].values[owner == name]))
        rows.append(
            (
                name,
                number_cell(f"{c['pd_with_chain'].values[b]:.1%}"),
                number_cell(f"{c['pd_without_chain'].values[b]:.1%}"),
                number_cell(f"{el_on / 1e6:,.2f}"),
                number_cell(f"{el_off / 1e6:,.2f}"),
            )
        )
    header = ("borrower", "PD by the horizon, with chain", "without chain", "EL with chain, USD m", "EL without chain, USD m")
    return html_table(header, rows)
