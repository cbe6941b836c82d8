"""Charts of the market factors: fan charts over all paths and sample paths (every run has them).

Each chart is one function that draws a figure into the ChartBook and returns its Chart; legends sit
outside the axes. Prices are per unit (USD per GPU, per BTC), not portfolio amounts, so they keep plain USD.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter

from gpusim.report.datasets import dimension_labels, integration_discount, saved_path_count, scenario_name, time_axis, time_axis_label
from gpusim.report.figures import (
    Chart,
    ChartBook,
    distinct_colors,
    draw_fan,
    draw_regimes,
    legend_outside,
    log_usd_axis,
    quantile_row,
    share_axis,
)

N_SAMPLE_PATHS = 5
"""Paths drawn in the sample-path charts (the first ones saved)."""


def crypto_fan_chart(book: ChartBook, results: Any, asset: str) -> Chart:
    fan = results.fan
    fig = book.figure()
    ax = fig.add_subplot()
    values = fan["crypto"].sel(asset=asset)
    time = time_axis(fan)
    draw_fan(ax, time, values, "#dd8452")
    median = quantile_row(values, 0.5)
    if median is not None:
        ax.axhline(median[0], color="black", lw=0.8, ls=":", label=f"price at t0: ${median[0]:,.0f}")
    log_usd_axis(ax)
    ax.set_title(f"{asset} price, {scenario_name(results)}")
    ax.set_xlabel(time_axis_label(results))
    ax.set_ylabel(f"USD per {asset} (log scale)")
    ax.grid(alpha=0.3)
    legend_outside(fig, ncol=5)
    caption = f"Quantile bands of the {asset} price over all simulated paths (regime-switching jump diffusion), log scale."
    return book.save_chart(fig, f"fan_crypto_{asset}", f"{asset} price fan", caption, "market")


def gpu_fan_chart(book: ChartBook, results: Any, generation: str) -> Chart:
    fan = results.fan
    time = time_axis(fan)
    fig = book.figure()
    ax_rent, ax_value, ax_mark = fig.subplots(1, 3)
    draw_fan(ax_rent, time, fan["rental_rate"].sel(generation=generation), "#4c72b0")
    ax_rent.set_ylabel("USD per GPU-hour")
    ax_rent.set_title("Spot rental rate")
    draw_fan(ax_value, time, fan["gpu_value"].sel(generation=generation), "#55a868")
    ax_value.set_ylabel("USD per GPU")
    ax_value.set_title("Value, income approach")
    mark = fan["gpu_mark"].sel(generation=generation)
    draw_fan(ax_mark, time, mark, "#8172b3")
    h_int = integration_discount(results.scenario)
    if h_int is not None:
        median = quantile_row(mark, 0.5)
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
        ax.set_xlabel(time_axis_label(results, short=True))
        ax.grid(alpha=0.3)
    legend_outside(fig, ncol=5)
    fig.suptitle(f"{generation} GPUs: rental rate, value and secondary-market mark")
    caption = (
        f"Quantile bands over all paths for one {generation} GPU: the spot rental rate, its value from discounted future "
        "rental income, and its secondary-market mark (depressed by recently dumped GPUs). Red dashed: the price a lender "
        "gets selling at the median mark after the integration discount, before any price impact of the sale itself."
    )
    return book.save_chart(fig, f"fan_gpu_{generation}", f"{generation}: rental rate, value and mark", caption, "market")


def market_fan_chart(book: ChartBook, results: Any) -> Chart:
    fan = results.fan
    time = time_axis(fan)
    summary = results.summary
    regime = summary is not None and "regime_tight_share" in summary
    fig = book.figure()
    axes = fig.subplots(1, 3 if regime else 2)
    ax_util, ax_power = axes[0], axes[1]
    draw_fan(ax_util, time, fan["utilization"], "#4c72b0")
    share_axis(ax_util)
    ax_util.set_ylabel("spot utilization (share of capacity rented)")
    ax_util.set_title("Spot GPU utilization")
    draw_fan(ax_power, time, fan["power_price"], "#dd8452")
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
        share_axis(ax_reg)
        ax_reg.set_ylabel("share of paths")
        ax_reg.set_title("Tight credit regime")
    for ax in axes:
        ax.set_xlabel(time_axis_label(results, short=True))
        ax.grid(alpha=0.3)
    legend_outside(fig, ncol=4)
    fig.suptitle("Market: utilization, power price and credit regime")
    caption = (
        "Quantile bands of spot GPU utilization and of the power price over all paths, and the share of paths in the "
        "tight (credit-crunch, risk-off) regime at each date."
    )
    return book.save_chart(fig, "fan_market", "Utilization, power price and regime", caption, "market")


def sample_paths_market_chart(book: ChartBook, results: Any) -> Chart:
    paths = results.paths
    n = min(N_SAMPLE_PATHS, saved_path_count(results))
    time = time_axis(paths)
    colors = distinct_colors(n)
    assets = dimension_labels(paths, "asset")
    n_panels = len(assets) + 3
    cols = 3 if n_panels > 4 else 2
    rows = -(-n_panels // cols)
    fig = book.figure()
    axes = list(np.ravel(fig.subplots(rows, cols, squeeze=False)))
    for a, asset in enumerate(assets):
        ax = axes[a]
        for i in range(n):
            ax.plot(time, paths["crypto"].isel(path=i).sel(asset=asset).values, color=colors[i], lw=1.1)
        log_usd_axis(ax)
        ax.set_ylabel(f"USD per {asset} (log)")
        ax.set_title(f"{asset} price")
    ax_util, ax_power, ax_reg = axes[len(assets) : len(assets) + 3]
    for i in range(n):
        ax_util.plot(time, paths["utilization"].isel(path=i).values, color=colors[i], lw=1.1)
        ax_power.plot(time, paths["power_price"].isel(path=i).values, color=colors[i], lw=1.1)
    share_axis(ax_util)
    ax_util.set_ylabel("share of capacity rented")
    ax_util.set_title("Spot GPU utilization")
    ax_power.set_ylabel("USD per kWh")
    ax_power.set_title("Power price")
    draw_regimes(ax_reg, time, paths["regime"].values[:n], colors)
    for ax in axes[:n_panels]:
        ax.set_xlabel(time_axis_label(results, short=True))
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
    return book.save_chart(fig, "paths_market", "Sample paths: market", caption, "paths")


def sample_paths_gpu_chart(book: ChartBook, results: Any, generation: str) -> Chart:
    paths = results.paths
    n = min(N_SAMPLE_PATHS, saved_path_count(results))
    time = time_axis(paths)
    colors = distinct_colors(n)
    fig = book.figure()
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
        ax.set_xlabel(time_axis_label(results, short=True))
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.0f}"))
    top = max(axes[1].get_ylim()[1], axes[2].get_ylim()[1])
    axes[1].set_ylim(0, top)
    axes[2].set_ylim(0, top)
    legend_outside(fig, ncol=n)
    fig.suptitle(f"{generation} GPUs: {n} sample paths")
    caption = f"The same {n} paths as the market sample-path chart (same colours): rental rate, value and mark of one {generation} GPU."
    return book.save_chart(fig, f"paths_gpu_{generation}", f"Sample paths: {generation}", caption, "paths")
