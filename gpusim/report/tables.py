"""The report's tables and number formatting: one money unit per page, percentages, and the
HTML building blocks (escaped cells, tables, figures) of the run and batch pages.

A `Table` is data first (header and rows of text cells), so the same table goes into the page
and, drawn by matplotlib, into the PDF.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusim.report.datasets import (
    contagion_attrs,
    contagion_by_borrower,
    coordinate_labels,
    default_split,
    dimension_labels,
    exposure_at_default,
    instrument_commitment,
    instrument_names,
    instrument_owners,
    instrument_principal,
    portfolio_el,
    risk_levels,
    summary_column,
    time_axis,
)
from gpusim.report.figures import Chart

PD_YEARS = (1, 3, 5)
"""Years at which the PD table shows the cumulative PD (besides the horizon)."""

N_WORST_GAPS = 5
"""Instruments the summary lists by how far the charged spread falls short of break-even."""


@dataclass(frozen=True)
class Money:
    """The one money unit of a page: every amount in its tables and chart labels is divided by `scale`."""

    scale: float
    unit: str  # "USD m"

    def __call__(self, x: float, sign: bool = False) -> str:
        """An amount in the page's unit without the unit: 2,223.4; 0.85 (two decimals below 10)."""
        x = float(x)
        if not np.isfinite(x):
            return "n/a"
        v = x / self.scale
        text = f"{v:+,.2f}" if sign else f"{v:,.2f}"
        return text if abs(v) < 10 else (f"{v:+,.1f}" if sign else f"{v:,.1f}")


def money_scale(largest: float) -> tuple[float, str]:
    """Divisor and unit (USD bn, m, k or plain USD) in which `largest` reads as a few digits."""
    if largest >= 1e9:
        return 1e9, "USD bn"
    if largest >= 1e6:
        return 1e6, "USD m"
    if largest >= 1e3:
        return 1e3, "USD k"
    return 1.0, "USD"


def page_money(amounts: Sequence[float] | np.ndarray) -> Money:
    """The unit of a page from the largest amount it shows: USD m for any portfolio in the millions
    to hundreds of billions (credit memos read in millions; bn would hide single-instrument ELs)."""
    finite = np.abs(np.asarray(amounts, dtype=float))
    largest = float(np.max(finite[np.isfinite(finite)], initial=0.0))
    if largest >= 1e12:
        return Money(1e9, "USD bn")
    if largest >= 1e6:
        return Money(1e6, "USD m")
    if largest >= 1e3:
        return Money(1e3, "USD k")
    return Money(1.0, "USD")


def percent(q: float) -> str:
    """A level as a percentage: 0.999 -> "99.9 %"."""
    return f"{q * 100:g} %"


def share(x: float, digits: int = 1) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}%}"


PAGE_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1em auto; max-width: 1180px; color: #222; }
body { padding: 0 1em; }
h1 { margin: 0 0 0.1em 0; font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin: 0.2em 0; font-size: 1em; }
p.sub { margin: 0 0 0.6em 0; color: #555; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; } th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.neg { color: #b22222; font-weight: bold; } td.pos { color: #2d6a3e; }
.summary { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.35fr); gap: 0 2em; align-items: start; }
.summary table { margin-top: 0.3em; } .note { font-size: 0.88em; color: #333; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 1100px; }
nav { font-size: 0.9em; margin-bottom: 0.6em; } nav a { margin-right: 1em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }
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

Cell = str | tuple[str, str]
"""Text, or (text, css class)."""


@dataclass(frozen=True)
class Table:
    """A titled table: the header and rows of cells; `element_id` anchors it in the page."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    element_id: str = ""

    def html(self) -> str:
        return html_table(self.header, self.rows, self.element_id)

    def texts(self) -> list[list[str]]:
        """The rows as plain text (the PDF draws them)."""
        return [[cell[0] if isinstance(cell, tuple) else cell for cell in row] for row in self.rows]


def escape(value: Any) -> str:
    """Text safe inside HTML elements and attribute values (names come from user YAML)."""
    return html.escape(str(value), quote=True)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], element_id: str = "") -> str:
    """Rows of cells; a cell is text, or (text, css class)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, cls = cell if isinstance(cell, tuple) else (cell, "")
            cells.append(f'<td class="{escape(cls)}">{escape(text)}</td>' if cls else f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{escape(element_id)}"' if element_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def number_cell(text: str, extra: str = "") -> tuple[str, str]:
    """A right-aligned numeric cell for `html_table`; `extra` adds a class ("neg", "pos")."""
    return text, ("num " + extra).strip()


def figure_html(chart: Chart) -> str:
    """A chart's <figure>: the SVG embedded as a data URI, with its title and caption."""
    width, height = (int(v * 100) for v in chart.figure.get_size_inches())
    return (
        f'<figure id="chart-{escape(chart.name)}"><img src="{chart.data_uri()}" alt="{escape(chart.title)}" '
        f'width="{width}" height="{height}">'
        f"<figcaption><b>{escape(chart.title)}.</b> {escape(chart.caption)}</figcaption></figure>"
    )


def page_head(title: str, subtitle: str = "") -> list[str]:
    """The opening lines of a self-contained page: inline styles, nothing loaded from outside the file."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{PAGE_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *([f'<p class="sub">{escape(subtitle)}</p>'] if subtitle else []),
    ]


def committed_exposure(results: Any) -> float:
    """Total at stake at t0: drawn principal plus undrawn facility limits, USD."""
    return float(np.nansum(instrument_commitment(results)))


def headline_table(results: Any, money: Money) -> Table:
    """The summary's first table: exposure, EL and its share, VaR/ES at each level, the contagion share."""
    exposure = committed_exposure(results)
    el, el_se = portfolio_el(results)
    se = f" ± {money(el_se)}" if el_se is not None else ""
    rows: list[list[Cell]] = [
        ["Exposure at t0 (principal drawn + undrawn limits)", number_cell(money(exposure))],
        ["Expected loss, discounted to t0 (± s.e.)", number_cell(f"{money(el)}{se}")],
        ["Expected loss, % of exposure", number_cell(share(el / exposure, 2) if exposure > 0 else "n/a")],
    ]
    risk = risk_levels(results)
    for k, q in enumerate(risk["level"]):
        rows.append([f"VaR / ES {percent(q)}", number_cell(f"{money(risk['var'][k])} / {money(risk['es'][k])}")])
    attrs = contagion_attrs(results)
    if "contagion_share_of_el" in attrs:
        rows.append(["Fire-sale contagion share of EL", number_cell(share(attrs["contagion_share_of_el"]))])
    return Table(f"Portfolio, {money.unit}", ("portfolio", money.unit), rows, "summary-table")


def worst_gaps_table(results: Any, money: Money) -> Table:
    """The N_WORST_GAPS instruments whose charged spread falls furthest below break-even."""
    names, owners = instrument_names(results), instrument_owners(results)
    gap = summary_column(results, "spread_gap_bps")
    charged, breakeven = summary_column(results, "market_spread_bps"), summary_column(results, "breakeven_spread_bps")
    principal = instrument_principal(results)
    order = np.argsort(np.where(np.isfinite(gap), gap, np.inf), kind="stable")[:N_WORST_GAPS]
    rows = [
        [
            names[i],
            owners[i],
            number_cell(money(principal[i])),
            number_cell(f"{charged[i]:,.0f}"),
            number_cell(f"{breakeven[i]:,.0f}"),
            number_cell(f"{gap[i]:+,.0f}", "neg" if gap[i] < 0 else "pos"),
        ]
        for i in order
    ]
    title = f"Largest gaps: charged minus break-even spread (bps a year); principal in {money.unit}"
    return Table(title, ("instrument", "borrower", "principal", "charged", "break-even", "gap"), rows, "worst-gaps")



def default_type_table(results: Any) -> Table:
    """PD by the horizon per borrower, split by why it defaulted (payment, covenant acceleration =
    DSCR + LTV, maturity; with standard errors where the summary has them), the loss-bearing PD and
    the part with no loss."""
    split = default_split(results)
    summary = results.summary
    borrowers = dimension_labels(summary, "borrower")

    def cell(value: float, se_name: str, b: int) -> tuple[str, str]:
        if se_name not in summary:
            return number_cell(share(value))
        se = np.asarray(summary[se_name].values, dtype=float)
        return number_cell(f"{share(value)} ± {share(float(se[b] if se.ndim == 1 else se[b, -1]))}")

    rows = []
    for b, name in enumerate(borrowers):
        covenant = split["covenant_dscr"][b] + split["covenant_ltv"][b]
        bearing = ("-", "num")
        if "pd_loss_bearing" in summary:
            bearing = cell(float(summary["pd_loss_bearing"].values[b]), "pd_loss_bearing_se", b)
        rows.append(
            [
                name,
                cell(split["pd"][b], "pd_se", b),
                cell(split["payment"][b], "pd_payment_se", b),
                cell(covenant, "pd_covenant_se", b),
                number_cell(share(split["covenant_dscr"][b])),
                number_cell(share(split["covenant_ltv"][b])),
                cell(split["maturity"][b], "pd_maturity_se", b),
                bearing,
                number_cell(share(split["no_loss"][b])),
            ]
        )
    header = ("borrower", "PD", "payment", "covenant", "of which DSCR", "of which LTV", "maturity", "loss-bearing", "of which no loss")
    return Table("PD by the horizon, by type of default (share of paths; ± standard error)", header, rows, "pd-by-type")


def technical_default_note(results: Any) -> str:
    """A sentence for PD with zero loss, naming the borrowers; empty when every default lost money."""
    split = default_split(results)
    borrowers = dimension_labels(results.summary, "borrower")
    hits = [f"{name} {share(split['no_loss'][b])} of paths" for b, name in enumerate(borrowers) if split["no_loss"][b] > 0]
    if not hits:
        return ""
    return (
        f"Technical defaults: {', '.join(hits)} default with no loss to the lenders. The borrower breaches a covenant, "
        "misses a maturity or a payment while its collateral and cash still cover its debt: the default counts in PD, "
        "but the recovery waterfall repays the exposure in full, so it adds to PD and not to EL or LGD."
    )


def run_table(results: Any) -> Table:
    attrs = results.attrs
    rows = []
    for key, label in RUN_ATTRIBUTES:
        if key in attrs:
            value = attrs[key]
            if key == "runtime_s":
                value = f"{float(value):,.2f}"
            elif key == "n_paths":
                value = f"{int(value):,}"
            rows.append([label, str(value)])
    return Table("Run", ("attribute", "value"), rows, "run-table")


def pd_table(results: Any) -> Table:
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
        rows.append([name, str(types[b]), *cells, number_cell(f"{pd_[-1]:.1%} ± {se[-1]:.1%}")])
    header = ("borrower", "type", *(c for c, _ in columns), f"PD {horizon:g}y (horizon) ± s.e.")
    return Table("Cumulative probability of default", header, rows, "pd-table")


def instrument_table(results: Any, money: Money) -> Table:
    names, owner = instrument_names(results), instrument_owners(results)
    el, el_se, lgd, lgd_se = (summary_column(results, k) for k in ("el", "el_se", "lgd", "lgd_se"))
    lgd_ok = summary_column(results, "lgd_defined") if "lgd_defined" in results.summary else np.ones(len(names))
    be, be_se = summary_column(results, "breakeven_spread_bps"), summary_column(results, "breakeven_spread_bps_se")
    market, gap = summary_column(results, "market_spread_bps"), summary_column(results, "spread_gap_bps")
    rc = summary_column(results, "risk_contribution")
    principal, ead = instrument_principal(results), exposure_at_default(results)
    rows = []
    for i, name in enumerate(names):
        lgd_text = f"{lgd[i]:.0%} ± {lgd_se[i]:.0%}" if lgd_ok[i] and np.isfinite(lgd[i]) else "- (no default)"
        rows.append(
            [
                name,
                owner[i],
                number_cell(money(principal[i])),
                number_cell(money(ead[i]) if np.isfinite(ead[i]) else "-"),
                number_cell(f"{money(el[i])} ± {money(el_se[i])}"),
                number_cell(share(el[i] / principal[i], 2) if principal[i] > 0 else "n/a"),
                number_cell(lgd_text),
                number_cell(f"{be[i]:,.0f} ± {be_se[i]:,.0f}"),
                number_cell(f"{market[i]:,.0f}"),
                number_cell(f"{gap[i]:+,.0f}", "neg" if gap[i] < 0 else "pos"),
                number_cell(money(rc[i])),
            ]
        )
    u = money.unit
    header = (
        "instrument",
        "borrower",
        f"principal, {u}",
        f"exposure at default, {u}",
        f"EL, {u} ± s.e.",
        "EL, % of principal",
        "LGD ± s.e.",
        "break-even, bps ± s.e.",
        "charged, bps",
        "gap, bps",
        f"ES 99 % contribution, {u}",
    )
    return Table("Instruments: principal, exposure, expected loss and pricing", header, rows, "instrument-table")


def risk_table(results: Any, money: Money) -> Table:
    risk = risk_levels(results)
    u = money.unit
    header = ["level", f"VaR, {u} ± s.e.", f"ES, {u} ± s.e."]
    chain = "var_without_chain" in risk
    if chain:
        header += [f"VaR without chain, {u}", f"ES without chain, {u}"]
    rows = []
    for i, q in enumerate(risk["level"]):
        row: list[Cell] = [percent(q)]
        for name in ("var", "es"):
            se = f" ± {money(risk[name + '_se'][i])}" if np.isfinite(risk[name + "_se"][i]) else ""
            row.append(number_cell(f"{money(risk[name][i])}{se}"))
        if chain:
            row += [number_cell(money(risk["var_without_chain"][i])), number_cell(money(risk["es_without_chain"][i]))]
        rows.append(row)
    return Table(f"Value at risk and expected shortfall of the portfolio loss, {u}", header, rows, "risk-table")


def contagion_table(results: Any, money: Money) -> Table:
    c = contagion_by_borrower(results)
    rows = [
        [
            str(name),
            number_cell(share(c["pd_with"][b])),
            number_cell(share(c["pd_without"][b])),
            number_cell(money(c["el_with"][b])),
            number_cell(money(c["el_without"][b])),
            number_cell(money(c["el_with"][b] - c["el_without"][b], sign=True)),
        ]
        for b, name in enumerate(c["borrower"])
    ]
    u = money.unit
    header = ("borrower", "PD with chain", "PD without chain", f"EL with chain, {u}", f"EL without chain, {u}", f"difference, {u}")
    return Table("Fire-sale contagion by borrower", header, rows, "contagion-table")
