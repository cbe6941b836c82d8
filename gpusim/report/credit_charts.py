"""Charts of a run with borrowers: portfolio loss, PD term structure, coverage fans, spreads, contagion.

Each chart is one function that draws a figure into the ChartBook and returns its Chart; money
is in the page's one unit (`Money`), legends sit outside the axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpusim.report.datasets import (
    borrower_type,
    contagion_attrs,
    contagion_by_borrower,
    coordinate_labels,
    covenant_levels,
    dimension_labels,
    portfolio_el,
    portfolio_losses,
    risk_levels,
    scenario_name,
    time_axis,
    time_axis_label,
)
from gpusim.report.figures import Chart, ChartBook, distinct_colors, draw_fan, legend_outside, quantile_row, share_axis
from gpusim.report.tables import Money, percent
from gpusim.spec import CREDIT_FAN_GRIDS


def loss_distribution_chart(book: ChartBook, results: Any, money: Money) -> Chart:
    loss = portfolio_losses(results)
    risk = risk_levels(results)
    fig = book.figure()
    ax = fig.add_subplot()
    ax.hist(loss / money.scale, bins=60, color="#4c72b0", alpha=0.8, label=f"portfolio loss on {loss.size:,} paths")
    ax.set_yscale("log")
    colors = ("#dd8452", "#c44e52", "#8172b3", "#937860")
    for i, q in enumerate(risk["level"]):
        color = colors[i % len(colors)]
        ax.axvline(risk["var"][i] / money.scale, color=color, lw=1.6, label=f"VaR {percent(q)}: {money(risk['var'][i])}")
        ax.axvline(risk["es"][i] / money.scale, color=color, lw=1.6, ls="--", label=f"ES {percent(q)}: {money(risk['es'][i])}")
    el, _ = portfolio_el(results)
    ax.axvline(el / money.scale, color="black", lw=1.2, ls=":", label=f"expected loss: {money(el)}")
    ax.set_title(f"Portfolio loss distribution, {scenario_name(results)}")
    ax.set_xlabel(f"portfolio loss over the horizon, {money.unit} (discounted to t0)")
    ax.set_ylabel("number of paths (log scale)")
    ax.margins(x=0.02)
    ax.grid(alpha=0.3)
    legend_outside(fig, ncol=4)
    caption = (
        f"Histogram of the discounted portfolio loss over all simulated paths, in {money.unit} (counts on a log scale, so "
        "the tail is visible). Solid lines: value at risk (the loss exceeded on the given share of paths); dashed lines: "
        "expected shortfall (the mean loss beyond VaR) at the same level; dotted: expected loss."
    )
    return book.save_chart(fig, "loss_distribution", "Portfolio loss distribution", caption, "portfolio")


def pd_term_structure_chart(book: ChartBook, results: Any) -> Chart:
    summary = results.summary
    time = time_axis(summary)
    fig = book.figure()
    ax = fig.add_subplot()
    borrowers = dimension_labels(summary, "borrower")
    types = coordinate_labels(summary, "borrower_type", len(borrowers))
    colors = distinct_colors(len(borrowers))
    for b, name in enumerate(borrowers):
        pd_ = summary["pd"].isel(borrower=b).values
        se = summary["pd_se"].isel(borrower=b).values if "pd_se" in summary else np.zeros_like(pd_)
        ax.plot(time, pd_, color=colors[b], lw=1.8, label=f"{name} ({types[b]})")
        ax.fill_between(time, np.clip(pd_ - 1.96 * se, 0, 1), np.clip(pd_ + 1.96 * se, 0, 1), color=colors[b], alpha=0.15, lw=0)
    share_axis(ax)
    ax.margins(x=0.01)
    ax.set_title(f"Cumulative probability of default by borrower, {scenario_name(results)}")
    ax.set_xlabel(time_axis_label(results))
    ax.set_ylabel("cumulative PD (share of paths defaulted)")
    ax.grid(alpha=0.3)
    legend_outside(fig, ncol=min(len(borrowers), 4))
    caption = (
        "Share of paths on which each borrower has defaulted (payment, covenant or maturity default) by each date. "
        "Shaded: 95 % Monte Carlo interval (± 1.96 standard errors)."
    )
    return book.save_chart(fig, "pd_term_structure", "PD term structure", caption, "borrowers")


def ratio_axis_range(values: Any, covenant_levels: list[float], grid: tuple[float, float]) -> tuple[float, float]:
    """y range of a DSCR or LTV fan: the finite 5-95 % band and median, and every covenant level,
    inside the histogram grid (the grid is wide, so a range taken from it would flatten the bands)."""
    rows = [quantile_row(values, q) for q in (0.05, 0.5, 0.95)]
    finite = np.concatenate([r[np.isfinite(r)] for r in rows if r is not None] + [np.asarray(covenant_levels, dtype=float)])
    if finite.size == 0:
        return grid
    low, high = max(float(finite.min()), grid[0]), min(float(finite.max()), grid[1])
    return (low, high) if high > low else (low - 1.0, high + 1.0)


def coverage_fan_chart(book: ChartBook, results: Any, borrower: str) -> Chart:
    fan = results.fan
    time = time_axis(fan)
    kind = borrower_type(results.summary, borrower)
    covenants = covenant_levels(results.scenario, borrower)
    fig = book.figure()
    ax_dscr, ax_ltv = fig.subplots(1, 2)
    panels = (
        (ax_dscr, "dscr", "DSCR (trailing 12-month CFADS / debt service)", "dscr_min", "minimum DSCR"),
        (ax_ltv, "ltv", "LTV (debt / (fleets at mark + crypto at market))", "ltv_max", "maximum LTV"),
    )
    for ax, name, ylabel, key, what in panels:
        values = fan[name].sel(borrower=borrower)
        low, high = ratio_axis_range(values, list(covenants[key]), CREDIT_FAN_GRIDS[name])
        if np.isfinite(values.values).any():
            # quantiles stored as -inf/+inf lie beyond the fan's grid: drawn at the chart's edge
            draw_fan(ax, time, values.clip(low, high), "#4c72b0")
        else:
            ax.text(0.5, 0.5, "no paths alive", transform=ax.transAxes, ha="center", va="center")
        for j, (limit, instruments) in enumerate(sorted(covenants[key].items())):
            ax.axhline(
                limit, color="#c44e52", lw=1.5, ls=("--", "-.", ":")[j % 3], label=f"covenant {what} {limit:g} ({', '.join(instruments)})"
            )
        ax.set_ylim(low - 0.02 * (high - low), high + 0.02 * (high - low))  # a margin, so the edge stays clear of the frame
        ax.set_xlabel(time_axis_label(results))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name.upper()} on paths where {borrower} is alive")
        ax.grid(alpha=0.3)
    legend_outside(fig, ncol=4)
    if "pd" in results.summary:
        pd_h = float(results.summary["pd"].sel(borrower=borrower).values[-1])
        fig.suptitle(f"{borrower} ({kind}): coverage and leverage, PD by the horizon {pd_h:.1%}")
    caption = (
        f"Quantile bands of {borrower}'s DSCR and LTV over the paths on which it has not yet defaulted "
        "(each date's bands use only those paths, so they thin out as PD rises). Red lines: covenant levels of its "
        "instruments; the LTV covenant is tested on each instrument's own collateral, so against this borrower-wide LTV "
        "it is a reference. The range shows the 5-95 % band and the covenants; quantiles beyond it, and those beyond the "
        "fan's histogram grid (stored as infinite in the results), are drawn at its edge."
    )
    return book.save_chart(fig, f"coverage_{borrower}", f"{borrower}: DSCR and LTV", caption, "borrowers")


def spreads_chart(book: ChartBook, results: Any) -> Chart:
    summary = results.summary
    names = dimension_labels(summary, "instrument")
    breakeven = summary["breakeven_spread_bps"].values.astype(float)
    se = summary["breakeven_spread_bps_se"].values.astype(float) if "breakeven_spread_bps_se" in summary else np.zeros(len(names))
    market = summary["market_spread_bps"].values.astype(float)
    gap = summary["spread_gap_bps"].values.astype(float) if "spread_gap_bps" in summary else market - breakeven
    order = np.argsort(np.where(np.isfinite(gap), gap, -np.inf), kind="stable")  # most negative gap first (top row)
    y = np.arange(len(names))
    fig = book.figure()
    ax = fig.add_subplot()
    h = 0.38
    ax.barh(y + h / 2, market[order], height=h, color="#55a868", label="spread charged (market)")
    be = np.where(np.isfinite(breakeven[order]), breakeven[order], 0.0)
    ax.barh(
        y - h / 2,
        be,
        height=h,
        color="#c44e52",
        xerr=1.96 * np.nan_to_num(se[order]),
        error_kw={"ecolor": "black", "elinewidth": 0.8, "capsize": 2},
        label="break-even spread (± 1.96 s.e.)",
    )
    right = max(float(np.nanmax(np.r_[market, breakeven + 1.96 * np.nan_to_num(se), 1.0])), 1.0)
    for row, i in enumerate(order):
        text = "n/a" if not np.isfinite(gap[i]) else f"{gap[i]:+,.0f}"
        ax.text(right * 1.02, row, text, va="center", fontsize=7, color="#c44e52" if not gap[i] >= 0 else "#2d6a3e")
    ax.text(right * 1.02, -0.9, "gap, bps", va="center", fontsize=7, fontweight="bold")
    ax.set_xlim(0, right * 1.12)
    ax.set_ylim(max(len(names), 6) - 0.5, -1.3)  # at least six rows tall, so a few instruments keep slim bars
    ax.set_yticks(y, [names[i] for i in order], fontsize=7)
    ax.set_xlabel("spread over the base curve, bps a year (right: gap = charged - break-even)")
    ax.set_title("Spread charged against break-even spread, sorted by gap (most under-priced first)")
    legend_outside(fig, ncol=2)
    ax.grid(axis="x", alpha=0.3)
    caption = (
        "For each instrument: the spread the market charges (green) and the break-even spread that would just pay for "
        "the simulated expected loss (red: expected discounted loss over the risky annuity, with its 95 % Monte Carlo "
        "interval). Numbers on the right: charged minus break-even in bps; negative means the loan does not pay for its "
        "credit risk in this scenario."
    )
    return book.save_chart(fig, "spreads", "Spreads against break-even", caption, "instruments")


def contagion_chart(book: ChartBook, results: Any, money: Money) -> Chart:
    """What the fire-sale chain adds, per borrower: PD (percentage points) and EL (page unit), as the difference."""
    c = contagion_by_borrower(results)
    borrowers = [str(b) for b in c["borrower"]]
    y = np.arange(len(borrowers))
    fig = book.figure()
    ax_pd, ax_el = fig.subplots(1, 2, sharey=True)
    panels = (
        (ax_pd, (c["pd_with"] - c["pd_without"]) * 100, "PD by the horizon, percentage points", lambda v: f"{v:+.2f} pp"),
        (ax_el, (c["el_with"] - c["el_without"]) / money.scale, f"EL, {money.unit} discounted to t0", lambda v: f"{v:+,.2f}"),
    )
    for ax, diff, label, text in panels:
        diff = np.nan_to_num(diff)
        ax.barh(y, diff, height=0.6, color=np.where(diff > 0, "#c44e52", "#55a868"))
        ax.axvline(0, color="black", lw=0.8)
        span = max(float(np.max(np.abs(diff), initial=0.0)), 1e-9)
        for row, v in enumerate(diff):
            ax.text(v + (0.02 if v >= 0 else -0.02) * span, row, text(v), va="center", ha="left" if v >= 0 else "right", fontsize=8)
        low = min(float(np.min(diff, initial=0.0)), 0.0)
        ax.set_xlim(low - 0.3 * span if low < 0 else 0, max(float(np.max(diff, initial=0.0)), 0.0) + 0.3 * span)
        ax.set_xlabel(f"with the chain minus without: {label}")
        ax.grid(axis="x", alpha=0.3)
    ax_pd.set_title("Added probability of default")
    ax_el.set_title("Added expected loss")
    ax_pd.set_yticks(y, borrowers, fontsize=8)
    ax_pd.set_ylim(max(len(borrowers), 3) - 0.5, -0.6)
    attrs = contagion_attrs(results)
    suffix = f": {attrs['contagion_share_of_el']:.1%} of portfolio EL" if "contagion_share_of_el" in attrs else ""
    fig.suptitle(f"What GPU fire sales add, by borrower{suffix}")
    caption = (
        "The same paths rerun with the fire-sale price impact and mark impact switched off; each bar is the difference, "
        "with the chain minus without: the PD and loss caused by defaulting borrowers dumping GPUs, which depresses marks, "
        "LTV tests and recoveries of the others. The table below gives both levels."
    )
    return book.save_chart(fig, "contagion", "Contagion attribution", caption, "contagion")
