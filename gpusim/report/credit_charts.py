"""Charts of a run with borrowers: portfolio loss, PD term structure, coverage fans, spreads, contagion.

Each chart is one function that draws a figure in the report folder and returns its Chart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.ticker import PercentFormatter

from gpusim.report.datasets import (
    borrower_type,
    coordinate_labels,
    covenant_levels,
    dimension_labels,
    scenario_name,
    time_axis,
    time_axis_label,
)
from gpusim.report.figures import Chart, ReportFolder, distinct_colors, draw_fan
from gpusim.report.tables import money_scale, percent, usd
from gpusim.spec import CREDIT_FAN_GRIDS


def loss_distribution_chart(folder: ReportFolder, results: Any) -> Chart:
    loss = np.asarray(results.outcomes["portfolio_loss"].values, dtype=float)
    summary = results.summary
    levels = [float(q) for q in summary["level"].values]
    var, es = summary["var"].values, summary["es"].values
    scale, unit = money_scale(max(float(np.max(loss, initial=0.0)), float(np.max(es, initial=0.0))))

    fig = folder.figure()
    ax = fig.add_subplot()
    ax.hist(loss / scale, bins=60, color="#4c72b0", alpha=0.8, label=f"portfolio loss on {loss.size:,} paths")
    ax.set_yscale("log")
    colors = ("#dd8452", "#c44e52", "#8172b3", "#937860")
    for i, q in enumerate(levels):
        color = colors[i % len(colors)]
        ax.axvline(var[i] / scale, color=color, lw=1.6, label=f"VaR {percent(q)}: {usd(var[i])}")
        ax.axvline(es[i] / scale, color=color, lw=1.6, ls="--", label=f"ES {percent(q)}: {usd(es[i])}")
    el = float(summary.attrs.get("portfolio_el", np.mean(loss)))
    ax.axvline(el / scale, color="black", lw=1.2, ls=":", label=f"expected loss: {usd(el)}")
    ax.set_title(f"Portfolio loss distribution, {scenario_name(results)}")
    ax.set_xlabel(f"portfolio loss over the horizon, {unit} (discounted to t0)")
    ax.set_ylabel("number of paths (log scale)")
    ax.legend(loc="best", fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    caption = (
        "Histogram of the discounted portfolio loss over all simulated paths (counts on a log scale, so the tail is visible). "
        "Solid lines: value at risk (the loss exceeded on the given share of paths); dashed lines: expected shortfall "
        "(the mean loss beyond VaR) at the same level; dotted: expected loss."
    )
    return folder.save_chart(fig, "loss_distribution", "Portfolio loss distribution", caption, "portfolio")


def pd_term_structure_chart(folder: ReportFolder, results: Any) -> Chart:
    summary = results.summary
    time = time_axis(summary)
    fig = folder.figure()
    ax = fig.add_subplot()
    borrowers = dimension_labels(summary, "borrower")
    types = coordinate_labels(summary, "borrower_type", len(borrowers))
    colors = distinct_colors(len(borrowers))
    for b, name in enumerate(borrowers):
        pd_ = summary["pd"].isel(borrower=b).values
        se = summary["pd_se"].isel(borrower=b).values if "pd_se" in summary else np.zeros_like(pd_)
        ax.plot(time, pd_, color=colors[b], lw=1.8, label=f"{name} ({types[b]})")
        ax.fill_between(time, np.clip(pd_ - 1.96 * se, 0, 1), np.clip(pd_ + 1.96 * se, 0, 1), color=colors[b], alpha=0.15, lw=0)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(f"Cumulative probability of default by borrower, {scenario_name(results)}")
    ax.set_xlabel(time_axis_label(results))
    ax.set_ylabel("cumulative PD (share of paths defaulted)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    caption = (
        "Share of paths on which each borrower has defaulted (payment, covenant or maturity default) by each date. "
        "Shaded: 95 % Monte Carlo interval (± 1.96 standard errors)."
    )
    return folder.save_chart(fig, "pd_term_structure", "PD term structure", caption, "borrowers")


def coverage_fan_chart(folder: ReportFolder, results: Any, borrower: str) -> Chart:
    fan = results.fan
    time = time_axis(fan)
    kind = borrower_type(results.summary, borrower)
    covenants = covenant_levels(results.scenario, borrower)
    fig = folder.figure()
    ax_dscr, ax_ltv = fig.subplots(1, 2)
    panels = (
        (ax_dscr, "dscr", "DSCR (trailing 12-month CFADS / debt service)", "dscr_min", "minimum DSCR"),
        (ax_ltv, "ltv", "LTV (debt / (fleets at mark + crypto at market))", "ltv_max", "maximum LTV"),
    )
    for ax, name, ylabel, key, what in panels:
        values = fan[name].sel(borrower=borrower)
        if np.isfinite(values.values).any():
            draw_fan(ax, time, values, "#4c72b0")
        else:
            ax.text(0.5, 0.5, "no paths alive", transform=ax.transAxes, ha="center", va="center")
        for j, (limit, instruments) in enumerate(sorted(covenants[key].items())):
            ax.axhline(
                limit, color="#c44e52", lw=1.5, ls=("--", "-.", ":")[j % 3], label=f"covenant {what} {limit:g} ({', '.join(instruments)})"
            )
        ax.set_ylim(*CREDIT_FAN_GRIDS[name])  # the fan's histogram grid: quantiles beyond it sit at its edge
        ax.set_xlabel(time_axis_label(results))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name.upper()} on paths where {borrower} is alive")
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    if "pd" in results.summary:
        pd_h = float(results.summary["pd"].sel(borrower=borrower).values[-1])
        fig.suptitle(f"{borrower} ({kind}): coverage and leverage, PD by the horizon {pd_h:.1%}")
    dscr_grid, ltv_grid = CREDIT_FAN_GRIDS["dscr"], CREDIT_FAN_GRIDS["ltv"]
    caption = (
        f"Quantile bands of {borrower}'s DSCR and LTV over the paths on which it has not yet defaulted "
        "(each date's bands use only those paths, so they thin out as PD rises). Red lines: covenant levels of its "
        "instruments; the LTV covenant is tested on each instrument's own collateral, so against this borrower-wide LTV "
        f"it is a reference. Quantiles beyond the chart's range (DSCR {dscr_grid[0]:g} to {dscr_grid[1]:g}, "
        f"LTV {ltv_grid[0]:g} to {ltv_grid[1]:g}) are drawn at its edge; a DSCR with no debt service due is off the top."
    )
    return folder.save_chart(fig, f"coverage_{borrower}", f"{borrower}: DSCR and LTV", caption, "borrowers")


def spreads_chart(folder: ReportFolder, results: Any) -> Chart:
    summary = results.summary
    names = dimension_labels(summary, "instrument")
    breakeven = summary["breakeven_spread_bps"].values.astype(float)
    se = summary["breakeven_spread_bps_se"].values.astype(float) if "breakeven_spread_bps_se" in summary else np.zeros(len(names))
    market = summary["market_spread_bps"].values.astype(float)
    gap = summary["spread_gap_bps"].values.astype(float) if "spread_gap_bps" in summary else market - breakeven
    order = np.argsort(np.where(np.isfinite(gap), gap, -np.inf), kind="stable")  # most negative gap first (top row)
    y = np.arange(len(names))
    fig = folder.figure()
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
    fig.legend(loc="outside lower center", ncol=2, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    caption = (
        "For each instrument: the spread the market charges (green) and the break-even spread that would just pay for "
        "the simulated expected loss (red: expected discounted loss over the risky annuity, with its 95 % Monte Carlo "
        "interval). Numbers on the right: charged minus break-even in bps; negative means the loan does not pay for its "
        "credit risk in this scenario."
    )
    return folder.save_chart(fig, "spreads", "Spreads against break-even", caption, "instruments")


def contagion_chart(folder: ReportFolder, results: Any) -> Chart:
    c = results.contagion
    borrowers = dimension_labels(c, "borrower") if "borrower" in c.coords else dimension_labels(results.summary, "borrower")
    y = np.arange(len(borrowers))
    h = 0.38
    fig = folder.figure()
    ax_pd, ax_el = fig.subplots(1, 2, sharey=True)
    pd_on, pd_off = c["pd_with_chain"].values.astype(float), c["pd_without_chain"].values.astype(float)
    ax_pd.barh(y - h / 2, pd_on, height=h, color="#c44e52", label="with the fire-sale chain")
    ax_pd.barh(y + h / 2, pd_off, height=h, color="#8c8c8c", label="without it (same paths, no price or mark impact)")
    for row in range(len(borrowers)):
        ax_pd.text(max(pd_on[row], pd_off[row]) + 0.01, row, f"{(pd_on[row] - pd_off[row]) * 100:+.1f} pp", va="center", fontsize=7)
    ax_pd.set_xlim(0, 1.2)
    ax_pd.set_xticks(np.linspace(0, 1, 6))
    ax_pd.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax_pd.set_xlabel("PD by the horizon (labels: with - without, percentage points)")
    ax_pd.set_title("Probability of default")
    ax_pd.set_yticks(y, borrowers, fontsize=8)
    ax_pd.invert_yaxis()

    owner = coordinate_labels(c, "instrument_borrower", c.sizes.get("instrument", 0))
    el_on = np.array([float(np.sum(c["el_with_chain"].values[owner == b])) for b in borrowers])
    el_off = np.array([float(np.sum(c["el_without_chain"].values[owner == b])) for b in borrowers])
    scale, unit = money_scale(float(np.max(np.r_[el_on, el_off, 0.0])))
    ax_el.barh(y - h / 2, el_on / scale, height=h, color="#c44e52")
    ax_el.barh(y + h / 2, el_off / scale, height=h, color="#8c8c8c")
    right = float(np.max(np.r_[el_on, el_off, 1.0])) / scale
    for row in range(len(borrowers)):
        diff = el_on[row] - el_off[row]
        ax_el.text(max(el_on[row], el_off[row]) / scale + 0.01 * right, row, usd(diff, sign=True), va="center", fontsize=7)
    ax_el.set_xlim(0, right * 1.2)
    ax_el.set_xlabel(f"EL of its instruments, {unit} discounted to t0 (labels: with - without)")
    ax_el.set_title("Expected loss")
    for ax in (ax_pd, ax_el):
        ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax_pd.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8)
    share = c.attrs.get("contagion_share_of_el")
    suffix = f": {float(share):.1%} of portfolio EL" if share is not None else ""
    fig.suptitle(f"Contagion through GPU fire sales, by borrower{suffix}")
    caption = (
        "The same paths rerun with the fire-sale price impact and mark impact switched off: the difference is the loss "
        "caused by defaulting borrowers dumping GPUs, which depresses marks, LTV tests and recoveries of the others."
    )
    return folder.save_chart(fig, "contagion", "Contagion attribution", caption, "contagion")
