"""`gpusim report`: charts (PNG) and a self-contained `index.html` for one result file.

`write_report(results, out_dir)` takes what `gpusim.output.read.open_results` returns and writes
one PNG per chart plus `index.html`, which shows every chart with a caption and the summary
tables (run attributes, PD term structure, instrument EL and spreads, VaR/ES, contagion).
The page loads nothing from outside the folder: styles are inline, images are the PNGs
beside it.

Charts are drawn on matplotlib `Figure` objects rendered with the Agg canvas (no pyplot, no
GUI backend, no global state), all FIGSIZE inches at DPI, so every PNG is
FIGSIZE[0] * DPI x FIGSIZE[1] * DPI pixels. A run without borrowers (factor-only) gets the
market-factor charts only. Each chart is one function below; `write_report` calls them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from gpusim.output.read import BatchResults
from gpusim.output.write import OutputError
from gpusim.spec import CREDIT_FAN_GRIDS

FIGSIZE = (11.0, 6.0)
DPI = 100
PNG_SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))  # (width, height) in pixels
N_SAMPLE_PATHS = 5
PD_YEARS = (1, 3, 5)

# quantile bands of the fan charts, outermost first: (low, high, opacity, legend label)
FAN_BANDS = ((0.01, 0.99, 0.15, "1-99 % of paths"), (0.05, 0.95, 0.25, "5-95 % of paths"), (0.25, 0.75, 0.40, "25-75 % of paths"))

SECTIONS = (
    ("portfolio", "Portfolio loss"),
    ("borrowers", "Borrowers: default probability and coverage"),
    ("instruments", "Instruments: expected loss and pricing"),
    ("contagion", "Fire-sale contagion"),
    ("market", "Market factors"),
    ("paths", "Sample paths"),
)


class ReportError(OutputError):
    """The report folder cannot be created or written."""


@dataclass(frozen=True)
class Chart:
    file: str
    title: str
    caption: str
    section: str


@dataclass
class _Canvas:
    """Where the charts go: the folder, the file names taken, the charts written."""

    out_dir: Path
    charts: list[Chart] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def figure(self) -> Figure:
        fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    def save(self, fig: Figure, stem: str, title: str, caption: str, section: str) -> Chart:
        name = base = _slug(stem)
        n = 2
        while name in self.used:
            name, n = f"{base}-{n}", n + 1
        self.used.add(name)
        path = self.out_dir / f"{name}.png"
        try:
            fig.savefig(path, dpi=DPI, format="png")
        except OSError as exc:
            raise ReportError(_os_message(path, exc)) from exc
        chart = Chart(path.name, title, caption, section)
        self.charts.append(chart)
        return chart


# ---------------------------------------------------------------------------------------
# entry point


def write_report(results: Any, out_dir: str | Path) -> Path:
    """Write the charts and index.html of `results` (from open_results) to out_dir; return index.html's path.

    A batch file (BatchResults) gets its scenario comparison page instead (`write_batch_report`)."""
    if isinstance(results, BatchResults):
        return write_batch_report(results, out_dir)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(_os_message(out, exc)) from exc
    if not out.is_dir():
        raise ReportError(f"{out}: cannot write report: not a directory")

    canvas = _Canvas(out)
    credit = has_credit(results)
    if credit:
        loss_distribution_chart(canvas, results)
        pd_term_structure_chart(canvas, results)
        for borrower in _names(results.summary, "borrower"):
            coverage_fan_chart(canvas, results, borrower)
        spreads_chart(canvas, results)
        if results.contagion is not None:
            contagion_chart(canvas, results)
    fan = results.fan
    for asset in _names(fan, "asset"):
        crypto_fan_chart(canvas, results, asset)
    for generation in _names(fan, "generation"):
        gpu_fan_chart(canvas, results, generation)
    market_fan_chart(canvas, results)
    if _n_saved_paths(results) > 0:
        sample_paths_market_chart(canvas, results)
        for generation in _names(results.paths, "generation"):
            sample_paths_gpu_chart(canvas, results, generation)

    index = out / "index.html"
    try:
        index.write_text(_html_page(results, canvas.charts, credit), encoding="utf-8")
    except OSError as exc:
        raise ReportError(_os_message(index, exc)) from exc
    return index


def has_credit(results: Any) -> bool:
    """True for a run with borrowers (credit outcomes and summaries), False for a factor-only run."""
    summary = results.summary
    return results.outcomes is not None and summary is not None and "pd" in summary and summary.sizes.get("borrower", 0) > 0


# ---------------------------------------------------------------------------------------
# credit charts


def loss_distribution_chart(canvas: _Canvas, results: Any) -> Chart:
    loss = np.asarray(results.outcomes["portfolio_loss"].values, dtype=float)
    summary = results.summary
    levels = [float(q) for q in summary["level"].values]
    var, es = summary["var"].values, summary["es"].values
    scale, unit = _money_scale(max(float(np.max(loss, initial=0.0)), float(np.max(es, initial=0.0))))

    fig = canvas.figure()
    ax = fig.add_subplot()
    ax.hist(loss / scale, bins=60, color="#4c72b0", alpha=0.8, label=f"portfolio loss on {loss.size:,} paths")
    ax.set_yscale("log")
    colors = ("#dd8452", "#c44e52", "#8172b3", "#937860")
    for i, q in enumerate(levels):
        color = colors[i % len(colors)]
        ax.axvline(var[i] / scale, color=color, lw=1.6, label=f"VaR {_pct(q)}: {_usd(var[i])}")
        ax.axvline(es[i] / scale, color=color, lw=1.6, ls="--", label=f"ES {_pct(q)}: {_usd(es[i])}")
    el = float(summary.attrs.get("portfolio_el", np.mean(loss)))
    ax.axvline(el / scale, color="black", lw=1.2, ls=":", label=f"expected loss: {_usd(el)}")
    ax.set_title(f"Portfolio loss distribution, {_scenario_name(results)}")
    ax.set_xlabel(f"portfolio loss over the horizon, {unit} (discounted to t0)")
    ax.set_ylabel("number of paths (log scale)")
    ax.legend(loc="best", fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    caption = (
        "Histogram of the discounted portfolio loss over all simulated paths (counts on a log scale, so the tail is visible). "
        "Solid lines: value at risk (the loss exceeded on the given share of paths); dashed lines: expected shortfall "
        "(the mean loss beyond VaR) at the same level; dotted: expected loss."
    )
    return canvas.save(fig, "loss_distribution", "Portfolio loss distribution", caption, "portfolio")


def pd_term_structure_chart(canvas: _Canvas, results: Any) -> Chart:
    summary = results.summary
    time = _time(summary)
    fig = canvas.figure()
    ax = fig.add_subplot()
    borrowers = _names(summary, "borrower")
    types = _coord(summary, "borrower_type", len(borrowers))
    colors = _colors(len(borrowers))
    for b, name in enumerate(borrowers):
        pd_ = summary["pd"].isel(borrower=b).values
        se = summary["pd_se"].isel(borrower=b).values if "pd_se" in summary else np.zeros_like(pd_)
        ax.plot(time, pd_, color=colors[b], lw=1.8, label=f"{name} ({types[b]})")
        ax.fill_between(time, np.clip(pd_ - 1.96 * se, 0, 1), np.clip(pd_ + 1.96 * se, 0, 1), color=colors[b], alpha=0.15, lw=0)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(f"Cumulative probability of default by borrower, {_scenario_name(results)}")
    ax.set_xlabel(_time_label(results))
    ax.set_ylabel("cumulative PD (share of paths defaulted)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    caption = (
        "Share of paths on which each borrower has defaulted (payment, covenant or maturity default) by each date. "
        "Shaded: 95 % Monte Carlo interval (± 1.96 standard errors)."
    )
    return canvas.save(fig, "pd_term_structure", "PD term structure", caption, "borrowers")


def coverage_fan_chart(canvas: _Canvas, results: Any, borrower: str) -> Chart:
    fan = results.fan
    time = _time(fan)
    kind = _borrower_type(results.summary, borrower)
    covenants = _covenants(results.scenario, borrower)
    fig = canvas.figure()
    ax_dscr, ax_ltv = fig.subplots(1, 2)
    panels = (
        (ax_dscr, "dscr", "DSCR (trailing 12-month CFADS / debt service)", "dscr_min", "minimum DSCR"),
        (ax_ltv, "ltv", "LTV (debt / (fleets at mark + crypto at market))", "ltv_max", "maximum LTV"),
    )
    for ax, name, ylabel, key, what in panels:
        values = fan[name].sel(borrower=borrower)
        if np.isfinite(values.values).any():
            _draw_fan(ax, time, values, "#4c72b0")
        else:
            ax.text(0.5, 0.5, "no paths alive", transform=ax.transAxes, ha="center", va="center")
        for j, (limit, instruments) in enumerate(sorted(covenants[key].items())):
            ax.axhline(
                limit, color="#c44e52", lw=1.5, ls=("--", "-.", ":")[j % 3], label=f"covenant {what} {limit:g} ({', '.join(instruments)})"
            )
        ax.set_ylim(*CREDIT_FAN_GRIDS[name])  # the fan's histogram grid: quantiles beyond it sit at its edge
        ax.set_xlabel(_time_label(results))
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
    return canvas.save(fig, f"coverage_{borrower}", f"{borrower}: DSCR and LTV", caption, "borrowers")


def spreads_chart(canvas: _Canvas, results: Any) -> Chart:
    summary = results.summary
    names = _names(summary, "instrument")
    breakeven = summary["breakeven_spread_bps"].values.astype(float)
    se = summary["breakeven_spread_bps_se"].values.astype(float) if "breakeven_spread_bps_se" in summary else np.zeros(len(names))
    market = summary["market_spread_bps"].values.astype(float)
    gap = summary["spread_gap_bps"].values.astype(float) if "spread_gap_bps" in summary else market - breakeven
    order = np.argsort(np.where(np.isfinite(gap), gap, -np.inf), kind="stable")  # most negative gap first (top row)
    y = np.arange(len(names))
    fig = canvas.figure()
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
    return canvas.save(fig, "spreads", "Spreads against break-even", caption, "instruments")


def contagion_chart(canvas: _Canvas, results: Any) -> Chart:
    c = results.contagion
    borrowers = _names(c, "borrower") if "borrower" in c.coords else _names(results.summary, "borrower")
    y = np.arange(len(borrowers))
    h = 0.38
    fig = canvas.figure()
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

    owner = _coord(c, "instrument_borrower", c.sizes.get("instrument", 0))
    el_on = np.array([float(np.sum(c["el_with_chain"].values[owner == b])) for b in borrowers])
    el_off = np.array([float(np.sum(c["el_without_chain"].values[owner == b])) for b in borrowers])
    scale, unit = _money_scale(float(np.max(np.r_[el_on, el_off, 0.0])))
    ax_el.barh(y - h / 2, el_on / scale, height=h, color="#c44e52")
    ax_el.barh(y + h / 2, el_off / scale, height=h, color="#8c8c8c")
    right = float(np.max(np.r_[el_on, el_off, 1.0])) / scale
    for row in range(len(borrowers)):
        diff = el_on[row] - el_off[row]
        ax_el.text(max(el_on[row], el_off[row]) / scale + 0.01 * right, row, _usd(diff, sign=True), va="center", fontsize=7)
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
    return canvas.save(fig, "contagion", "Contagion attribution", caption, "contagion")


# ---------------------------------------------------------------------------------------
# market-factor charts


def crypto_fan_chart(canvas: _Canvas, results: Any, asset: str) -> Chart:
    fan = results.fan
    fig = canvas.figure()
    ax = fig.add_subplot()
    values = fan["crypto"].sel(asset=asset)
    time = _time(fan)
    _draw_fan(ax, time, values, "#dd8452")
    median = _quantile(values, 0.5)
    if median is not None:
        ax.axhline(median[0], color="black", lw=0.8, ls=":", label=f"price at t0: ${median[0]:,.0f}")
    _log_usd_axis(ax)
    ax.set_title(f"{asset} price, {_scenario_name(results)}")
    ax.set_xlabel(_time_label(results))
    ax.set_ylabel(f"USD per {asset} (log scale)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    caption = f"Quantile bands of the {asset} price over all simulated paths (regime-switching jump diffusion), log scale."
    return canvas.save(fig, f"fan_crypto_{asset}", f"{asset} price fan", caption, "market")


def gpu_fan_chart(canvas: _Canvas, results: Any, generation: str) -> Chart:
    fan = results.fan
    time = _time(fan)
    fig = canvas.figure()
    ax_rent, ax_value, ax_mark = fig.subplots(1, 3)
    _draw_fan(ax_rent, time, fan["rental_rate"].sel(generation=generation), "#4c72b0")
    ax_rent.set_ylabel("USD per GPU-hour")
    ax_rent.set_title("Spot rental rate")
    _draw_fan(ax_value, time, fan["gpu_value"].sel(generation=generation), "#55a868")
    ax_value.set_ylabel("USD per GPU")
    ax_value.set_title("Value, income approach")
    mark = fan["gpu_mark"].sel(generation=generation)
    _draw_fan(ax_mark, time, mark, "#8172b3")
    h_int = _integration_discount(results.scenario)
    if h_int is not None:
        median = _quantile(mark, 0.5)
        if median is not None:
            ax_mark.plot(
                time,
                median * (1 - h_int),
                color="#c44e52",
                lw=1.6,
                ls="--",
                label=f"fire-sale price, median\n(mark x (1 - {h_int:.0%}), no dumping)",
            )
    ax_mark.set_ylabel("USD per GPU")
    ax_mark.set_title("Secondary-market mark")
    top = max(ax_value.get_ylim()[1], ax_mark.get_ylim()[1])
    for ax in (ax_value, ax_mark):
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.0f}"))
    ax_rent.set_ylim(bottom=0)
    for ax in (ax_rent, ax_value, ax_mark):
        ax.set_xlabel(_time_label(results, short=True))
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{generation} GPUs: rental rate, value and secondary-market mark")
    caption = (
        f"Quantile bands over all paths for one {generation} GPU: the spot rental rate, its value from discounted future "
        "rental income, and its secondary-market mark (depressed by recently dumped GPUs). Red dashed: the price a lender "
        "gets selling at the median mark after the integration discount, before any price impact of the sale itself."
    )
    return canvas.save(fig, f"fan_gpu_{generation}", f"{generation}: rental rate, value and mark", caption, "market")


def market_fan_chart(canvas: _Canvas, results: Any) -> Chart:
    fan = results.fan
    time = _time(fan)
    summary = results.summary
    regime = summary is not None and "regime_tight_share" in summary
    fig = canvas.figure()
    axes = fig.subplots(1, 3 if regime else 2)
    ax_util, ax_power = axes[0], axes[1]
    _draw_fan(ax_util, time, fan["utilization"], "#4c72b0")
    ax_util.set_ylim(0, 1)
    ax_util.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax_util.set_ylabel("spot utilization (share of capacity rented)")
    ax_util.set_title("Spot GPU utilization")
    _draw_fan(ax_power, time, fan["power_price"], "#dd8452")
    ax_power.set_ylim(bottom=0)
    ax_power.set_ylabel("USD per kWh")
    ax_power.set_title("Industrial power price")
    if regime:
        ax_reg = axes[2]
        share = summary["regime_tight_share"].values
        se = summary["regime_tight_share_se"].values if "regime_tight_share_se" in summary else np.zeros_like(share)
        ax_reg.plot(time, share, color="#c44e52", lw=1.8, label="share of paths in the tight regime")
        ax_reg.fill_between(
            time,
            np.clip(share - 1.96 * se, 0, 1),
            np.clip(share + 1.96 * se, 0, 1),
            color="#c44e52",
            alpha=0.2,
            lw=0,
            label="95 % Monte Carlo interval",
        )
        ax_reg.set_ylim(0, 1)
        ax_reg.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax_reg.set_ylabel("share of paths")
        ax_reg.set_title("Tight credit regime")
    for ax in axes:
        ax.set_xlabel(_time_label(results, short=True))
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("Market: utilization, power price and credit regime")
    caption = (
        "Quantile bands of spot GPU utilization and of the power price over all paths, and the share of paths in the "
        "tight (credit-crunch, risk-off) regime at each date."
    )
    return canvas.save(fig, "fan_market", "Utilization, power price and regime", caption, "market")


def sample_paths_market_chart(canvas: _Canvas, results: Any) -> Chart:
    paths = results.paths
    n = min(N_SAMPLE_PATHS, _n_saved_paths(results))
    time = _time(paths)
    colors = _colors(n)
    assets = _names(paths, "asset")
    n_panels = len(assets) + 3
    cols = 3 if n_panels > 4 else 2
    rows = -(-n_panels // cols)
    fig = canvas.figure()
    axes = list(np.ravel(fig.subplots(rows, cols, squeeze=False)))
    for a, asset in enumerate(assets):
        ax = axes[a]
        for i in range(n):
            ax.plot(time, paths["crypto"].isel(path=i).sel(asset=asset).values, color=colors[i], lw=1.1)
        _log_usd_axis(ax)
        ax.set_ylabel(f"USD per {asset} (log)")
        ax.set_title(f"{asset} price")
    ax_util, ax_power, ax_reg = axes[len(assets) : len(assets) + 3]
    for i in range(n):
        ax_util.plot(time, paths["utilization"].isel(path=i).values, color=colors[i], lw=1.1)
        ax_power.plot(time, paths["power_price"].isel(path=i).values, color=colors[i], lw=1.1)
    ax_util.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax_util.set_ylabel("share of capacity rented")
    ax_util.set_title("Spot GPU utilization")
    ax_power.set_ylabel("USD per kWh")
    ax_power.set_title("Power price")
    _draw_regimes(ax_reg, time, paths["regime"].values[:n], colors)
    for ax in axes[:n_panels]:
        ax.set_xlabel(_time_label(results, short=True))
        ax.grid(alpha=0.3)
    handles = ax_util.lines[:n]
    labels = [f"path {i + 1}" for i in range(n)]
    spare = axes[n_panels:]
    for ax in spare:
        ax.set_axis_off()
    if spare:
        spare[0].legend(handles, labels, loc="center", fontsize=9, title="same colour = same path")
    else:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="same colour = same path")
    fig.suptitle(f"{n} sample paths: crypto, utilization, power price and regime")
    caption = (
        f"The first {n} simulated paths (independent draws, nothing selected), each in its own colour in every panel and "
        "in the GPU sample-path charts, so one scenario can be followed across factors. The regime panel marks the months "
        "each path spends in the tight (credit-crunch) regime."
    )
    return canvas.save(fig, "paths_market", "Sample paths: market", caption, "paths")


def sample_paths_gpu_chart(canvas: _Canvas, results: Any, generation: str) -> Chart:
    paths = results.paths
    n = min(N_SAMPLE_PATHS, _n_saved_paths(results))
    time = _time(paths)
    colors = _colors(n)
    fig = canvas.figure()
    axes = fig.subplots(1, 3)
    panels = (
        ("rental_rate", "Spot rental rate", "USD per GPU-hour"),
        ("gpu_value", "Value, income approach", "USD per GPU"),
        ("gpu_mark", "Secondary-market mark", "USD per GPU"),
    )
    for ax, (name, title, unit) in zip(axes, panels, strict=True):
        for i in range(n):
            ax.plot(time, paths[name].isel(path=i).sel(generation=generation).values, color=colors[i], lw=1.1, label=f"path {i + 1}")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xlabel(_time_label(results, short=True))
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.0f}"))
    top = max(axes[1].get_ylim()[1], axes[2].get_ylim()[1])
    axes[1].set_ylim(0, top)
    axes[2].set_ylim(0, top)
    axes[0].legend(loc="upper right", fontsize=7)
    fig.suptitle(f"{generation} GPUs: {n} sample paths")
    caption = f"The same {n} paths as the market sample-path chart (same colours): rental rate, value and mark of one {generation} GPU."
    return canvas.save(fig, f"paths_gpu_{generation}", f"Sample paths: {generation}", caption, "paths")


# ---------------------------------------------------------------------------------------
# drawing helpers


def _draw_fan(ax: Axes, time: np.ndarray, values: Any, color: str) -> None:
    """Quantile bands 1-99, 5-95, 25-75 and the median of a (quantile, step) DataArray."""
    for low, high, alpha, label in FAN_BANDS:
        lo, hi = _quantile(values, low), _quantile(values, high)
        if lo is not None and hi is not None:
            ax.fill_between(time, lo, hi, color=color, alpha=alpha, lw=0, label=label)
    median = _quantile(values, 0.5)
    if median is not None:
        ax.plot(time, median, color=color, lw=2.0, label="median")


def _draw_regimes(ax: Axes, time: np.ndarray, regime: np.ndarray, colors: Sequence[Any]) -> None:
    dt = float(time[1] - time[0]) if len(time) > 1 else 1.0
    for i, row in enumerate(regime):
        tight = np.flatnonzero(np.asarray(row) == 1)
        ax.broken_barh([(float(time[k]), dt) for k in tight], (i - 0.35, 0.7), facecolors=colors[i])
    ax.set_yticks(range(len(regime)), [f"path {i + 1}" for i in range(len(regime))], fontsize=7)
    ax.set_ylim(len(regime) - 0.5, -0.5)
    ax.set_xlim(float(time[0]), float(time[-1]) + dt)
    ax.set_title("Tight-regime months (bars)")


def _log_usd_axis(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _quantile(values: Any, q: float) -> np.ndarray | None:
    quantiles = np.asarray(values["quantile"].values, dtype=float)
    hit = np.flatnonzero(np.isclose(quantiles, q))
    return None if hit.size == 0 else np.asarray(values.isel(quantile=int(hit[0])).values, dtype=float)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ---------------------------------------------------------------------------------------
# data helpers


def _names(ds: Any, dim: str) -> list[str]:
    if ds is None or dim not in ds.coords:
        return []
    return [str(v) for v in ds[dim].values]


def _coord(ds: Any, name: str, n: int) -> np.ndarray:
    return np.asarray([str(v) for v in ds[name].values]) if name in ds.coords else np.array([""] * n)


def _time(ds: Any) -> np.ndarray:
    if "time" in ds.coords or "time" in ds:
        return np.asarray(ds["time"].values, dtype=float)
    return np.arange(ds.sizes["step"], dtype=float)


def _n_saved_paths(results: Any) -> int:
    paths = results.paths
    return 0 if paths is None else int(paths.sizes.get("path", 0))


def _borrower_type(summary: Any, borrower: str) -> str:
    if summary is None or "borrower_type" not in summary.coords:
        return ""
    return str(summary["borrower_type"].sel(borrower=borrower).values)


def _scenario_name(results: Any) -> str:
    return str(results.attrs.get("scenario", getattr(results.scenario, "name", "")))


def _time_label(results: Any, short: bool = False) -> str:
    start = getattr(getattr(results.scenario, "time", None), "start", None)
    if short or start is None:
        return "years from scenario start"
    return f"years from scenario start ({start})"


def _covenants(scenario: Any, borrower: str) -> dict[str, dict[float, list[str]]]:
    """{'dscr_min': {level: [instrument names]}, 'ltv_max': {...}} for one borrower's instruments."""
    out: dict[str, dict[float, list[str]]] = {"dscr_min": {}, "ltv_max": {}}
    for b in getattr(scenario, "borrowers", None) or []:
        if b.name != borrower:
            continue
        for inst in b.debt:
            if inst.covenants is None:
                continue
            for key in out:
                level = getattr(inst.covenants, key)
                if level is not None:
                    out[key].setdefault(float(level), []).append(inst.name)
    return out


def _integration_discount(scenario: Any) -> float | None:
    market = getattr(scenario, "secondary_market", None)
    h = getattr(market, "integration_discount", None)
    return None if h is None else float(h)


def _money_scale(largest: float) -> tuple[float, str]:
    if largest >= 1e9:
        return 1e9, "USD bn"
    if largest >= 1e6:
        return 1e6, "USD m"
    if largest >= 1e3:
        return 1e3, "USD k"
    return 1.0, "USD"


def _usd(x: float, sign: bool = False) -> str:
    """$4.08bn, $10.7m, $993k, $12 (three significant digits); with sign, +$10.7m / -$993k."""
    x = float(x)
    if not np.isfinite(x):
        return "n/a"
    if abs(x) < 0.5:
        return "$0"
    scale, unit = _money_scale(abs(x))
    suffix = {"USD bn": "bn", "USD m": "m", "USD k": "k", "USD": ""}[unit]
    prefix = ("+" if x > 0 else "-") if sign else ("-" if x < 0 else "")
    return f"{prefix}${abs(x) / scale:,.3g}{suffix}"


def _pct(q: float) -> str:
    return f"{q * 100:g} %"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "chart"


def _os_message(path: Path, exc: OSError) -> str:
    return f"{path}: cannot write report: {exc.strerror or exc}"


# ---------------------------------------------------------------------------------------
# index.html

_CSS = """
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

_RUN_ATTRS = (
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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows of cells; a cell is text, or (text, css class)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, cls = cell if isinstance(cell, tuple) else (cell, "")
            cells.append(f'<td class="{_e(cls)}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _num(text: str, extra: str = "") -> tuple[str, str]:
    return text, ("num " + extra).strip()


def run_table(results: Any) -> str:
    attrs = results.attrs
    rows = []
    for key, label in _RUN_ATTRS:
        if key in attrs:
            value = attrs[key]
            if key == "runtime_s":
                value = f"{float(value):,.2f}"
            elif key == "n_paths":
                value = f"{int(value):,}"
            rows.append((label, value))
    return _table(("attribute", "value"), rows)


def pd_table(results: Any) -> str:
    summary = results.summary
    time = _time(summary)
    horizon = float(time[-1])
    columns = []
    for y in PD_YEARS:
        hit = np.flatnonzero(np.isclose(time, y))
        if hit.size and y < horizon - 1e-9:
            columns.append((f"PD {y}y", int(hit[0])))
    borrowers = _names(summary, "borrower")
    types = _coord(summary, "borrower_type", len(borrowers))
    rows = []
    for b, name in enumerate(borrowers):
        pd_ = summary["pd"].isel(borrower=b).values
        se = summary["pd_se"].isel(borrower=b).values if "pd_se" in summary else np.zeros_like(pd_)
        cells = [_num(f"{pd_[k]:.1%}") for _, k in columns]
        rows.append((name, types[b], *cells, _num(f"{pd_[-1]:.1%} ± {se[-1]:.1%}")))
    return _table(("borrower", "type", *(c for c, _ in columns), f"PD {horizon:g}y (horizon) ± s.e."), rows)


def instrument_table(results: Any) -> str:
    s = results.summary
    names = _names(s, "instrument")
    owner = _coord(s, "instrument_borrower", len(names))

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
                _num(f"{el[i] / 1e6:,.2f} ± {el_se[i] / 1e6:,.2f}"),
                _num(lgd_text),
                _num(f"{be[i]:,.0f} ± {be_se[i]:,.0f}"),
                _num(f"{market[i]:,.0f}"),
                _num(f"{gap[i]:+,.0f}", sign),
                _num(f"{rc[i] / 1e6:,.2f}"),
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
    return _table(header, rows)


def risk_table(results: Any) -> str:
    s = results.summary
    c = results.contagion
    levels = [float(q) for q in s["level"].values]
    header = ["level", "VaR, USD m ± s.e.", "ES, USD m ± s.e."]
    if c is not None:
        header += ["VaR without chain, USD m", "ES without chain, USD m"]
    rows = []
    for i, q in enumerate(levels):
        row: list[Any] = [_pct(q)]
        for name in ("var", "es"):
            se = f" ± {s[name + '_se'].values[i] / 1e6:,.1f}" if name + "_se" in s else ""
            row.append(_num(f"{s[name].values[i] / 1e6:,.1f}{se}"))
        if c is not None:
            row += [_num(f"{c['var_without_chain'].values[i] / 1e6:,.1f}"), _num(f"{c['es_without_chain'].values[i] / 1e6:,.1f}")]
        rows.append(row)
    return _table(header, rows)


def portfolio_lines(results: Any) -> list[str]:
    s = results.summary
    lines = []
    if "portfolio_el" in s.attrs:
        se = s.attrs.get("portfolio_el_se")
        lines.append(
            f"Portfolio expected loss (discounted to t0): {_usd(s.attrs['portfolio_el'])}" + (f" ± {_usd(se)}" if se is not None else "")
        )
    c = results.contagion
    if c is not None and "contagion_share_of_el" in c.attrs:
        text = f"Fire-sale contagion share of portfolio EL: {float(c.attrs['contagion_share_of_el']):.1%}"
        if "portfolio_el_without_chain" in c.attrs:
            text += f" (EL without the chain {_usd(c.attrs['portfolio_el_without_chain'])})"
        lines.append(text)
    return lines


def contagion_table(results: Any) -> str:
    c = results.contagion
    borrowers = _names(c, "borrower")
    owner = _coord(c, "instrument_borrower", c.sizes.get("instrument", 0))
    rows = []
    for b, name in enumerate(borrowers):
        el_on = float(np.sum(c["el_with_chain"].values[owner == name]))
        el_off = float(np.sum(c["el_without_chain"].values[owner == name]))
        rows.append(
            (
                name,
                _num(f"{c['pd_with_chain'].values[b]:.1%}"),
                _num(f"{c['pd_without_chain'].values[b]:.1%}"),
                _num(f"{el_on / 1e6:,.2f}"),
                _num(f"{el_off / 1e6:,.2f}"),
            )
        )
    header = ("borrower", "PD by the horizon, with chain", "without chain", "EL with chain, USD m", "EL without chain, USD m")
    return _table(header, rows)


def _figure_html(chart: Chart) -> str:
    return (
        f'<figure id="chart-{_e(Path(chart.file).stem)}"><img src="{_e(chart.file)}" alt="{_e(chart.title)}" '
        f'width="{PNG_SIZE[0]}" height="{PNG_SIZE[1]}">'
        f"<figcaption><b>{_e(chart.title)}.</b> {_e(chart.caption)}</figcaption></figure>"
    )


def _html_page(results: Any, charts: list[Chart], credit: bool) -> str:
    name = _scenario_name(results)
    tables: dict[str, list[str]] = {key: [] for key, _ in SECTIONS}
    if credit:
        tables["portfolio"] += [f"<p>{_e(line)}</p>" for line in portfolio_lines(results)]
        tables["portfolio"].append(risk_table(results))
        tables["borrowers"].append(pd_table(results))
        tables["instruments"].append(instrument_table(results))
        if results.contagion is not None and "pd_with_chain" in results.contagion:
            tables["contagion"].append(contagion_table(results))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gpusim report: {_e(name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>gpusim report: {_e(name)}</h1>",
    ]
    if not credit:
        parts.append("<p>Factor-only run (no borrowers): market-factor charts only.</p>")
    shown = [(key, title) for key, title in SECTIONS if tables[key] or any(c.section == key for c in charts)]
    parts.append("<nav>" + "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in [("run", "Run"), *shown]) + "</nav>")
    parts += ['<h2 id="run">Run</h2>', run_table(results)]
    if "config_yaml" in results.attrs:
        parts.append(
            f"<details><summary>Resolved scenario (re-runnable YAML)</summary><pre>{_e(results.attrs['config_yaml'])}</pre></details>"
        )
    for key, title in shown:
        parts.append(f'<h2 id="{key}">{_e(title)}</h2>')
        parts += tables[key]
        parts += [_figure_html(c) for c in charts if c.section == key]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------
# batch files: one comparison page


_BATCH_ATTRS = (
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


def write_batch_report(batch: BatchResults, out_dir: str | Path) -> Path:
    """The comparison page of a batch file: EL and ES 99.9 % by scenario, the scenario table, PDs by scenario."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(_os_message(out, exc)) from exc
    canvas = _Canvas(out)
    chart = batch_loss_chart(canvas, batch)
    t = batch.table
    facts = _table(("attribute", "value"), [(label, batch.attrs[key]) for key, label in _BATCH_ATTRS if key in batch.attrs])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gpusim batch report: {_e(batch.attrs.get('batch', ''))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>gpusim batch report: {_e(batch.attrs.get('batch', ''))}</h1>",
        '<h2 id="run">Batch</h2>',
        facts,
        f"<details><summary>Batch file (resolved)</summary><pre>{_e(batch.attrs.get('batch_yaml', ''))}</pre></details>",
        '<h2 id="scenarios">Scenarios</h2>',
        _figure_html(chart),
        batch_table(t),
    ]
    if t.sizes.get("borrower", 0):
        parts += ['<h2 id="borrowers">Probability of default by the horizon</h2>', batch_pd_table(t)]
    parts.append("</body></html>")
    index = out / "index.html"
    try:
        index.write_text("\n".join(parts) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ReportError(_os_message(index, exc)) from exc
    return index


def batch_loss_chart(canvas: _Canvas, batch: BatchResults) -> Chart:
    """Horizontal bars per scenario: portfolio EL (left) and ES 99.9 % (right), with their standard errors."""
    t = batch.table
    names = [str(n) for n in t["scenario"].values]
    y = np.arange(len(names))[::-1]
    fig = canvas.figure()
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, title, color) in zip(
        axes, (("el", "expected loss", "#4c72b0"), ("es_999", "expected shortfall 99.9 %", "#c44e52")), strict=True
    ):
        values = np.asarray(t[key].values, dtype=float)
        errors = np.asarray(t[f"{key}_se"].values, dtype=float)
        scale, unit = _money_scale(float(np.nanmax(np.abs(values), initial=0.0)))
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
    return canvas.save(fig, "batch_el_es", "Expected loss and ES 99.9 % by scenario", caption, "scenarios")


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
                _num(f"{_usd(cell('el'))} ± {_usd(cell('el_se'))}"),
                _num(_usd(cell("var_999"))),
                _num(f"{_usd(cell('es_999'))} ± {_usd(cell('es_999_se'))}"),
                _num("-" if not np.isfinite(share) else f"{share:.1%}"),
            )
        )
    header = ("scenario", "overrides", "EL ± s.e.", "VaR 99.9 %", "ES 99.9 % ± s.e.", "fire-sale share of EL")
    return _table(header, rows)


def batch_pd_table(t: Any) -> str:
    """Scenario x borrower: probability of default by the horizon."""
    borrowers = [str(b) for b in t["borrower"].values]
    pd = np.asarray(t["pd_horizon"].values, dtype=float)
    rows = [(str(name), *(_num("-" if not np.isfinite(p) else f"{p:.1%}") for p in pd[i])) for i, name in enumerate(t["scenario"].values)]
    return _table(("scenario", *borrowers), rows)
