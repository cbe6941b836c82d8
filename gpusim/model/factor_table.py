"""The factor table: every observed market factor and credit ratio, with its axis, units and fan grid.

Defined once here, in save order; the market view (`market.MarketView`), the fan-chart grids
(`gpusim.spec`), the HDF5 layout (`gpusim.output.write`), the kernel's saved columns and
generated header (`gpusim.backends.kernel_config`), the Pallas view shapes and the readers all
derive from it. A new observed factor is one row here plus its equation in `market.observe`
(and `fan_coordinates`), and its CUDA twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gpusim.model.params import Layout

Axis = Literal["path", "asset", "generation", "borrower"]
"""What one component of a factor belongs to: "path" for one number per path, else one per asset,
GPU generation or borrower."""


@dataclass(frozen=True)
class FanGrid:
    """Histogram grid of a fan chart: log(x / level at t_0) when `log`, else the level itself.

    Values beyond the grid are counted in its edge bins, so a quantile there is reported as out
    of range (-inf or +inf), unless that edge bounds the quantity itself (a share of capacity
    is never above 1, an LTV never below 0) and the edge bin holds only values in range.
    """

    log: bool
    lo: float
    hi: float
    bounded_below: bool = False
    bounded_above: bool = False


@dataclass(frozen=True)
class Factor:
    """One observed quantity: a dataset in the outputs, a fan chart, and (for market levels) a
    field of the market view and saved columns of the kernel."""

    name: str
    axis: Axis
    units: str  # in words, for people (the dataset's `description`)
    fan: FanGrid
    cf_units: str  # UDUNITS / pint-parseable units of the stored dataset
    long_name: str  # CF long_name of the dataset

    @property
    def component_dims(self) -> tuple[str, ...]:
        """The dimension after (path, step) in the outputs: none for a per-path scalar."""
        return () if self.axis == "path" else (self.axis,)

    def width(self, layout: Layout) -> int:
        """Components per path: 0 for a per-path scalar (stored without a component axis)."""
        sizes = {"path": 0, "asset": layout.n_assets, "generation": layout.n_generations, "borrower": layout.n_borrowers}
        return sizes[self.axis]


OBSERVED_FACTORS: tuple[Factor, ...] = (
    Factor("crypto", "asset", "USD per unit", FanGrid(True, -12.0, 8.0), "USD", "price of one unit of the crypto asset"),
    Factor("rental_rate", "generation", "USD per GPU-hour", FanGrid(True, -14.0, 4.0), "USD/hour", "rental rate of one GPU"),
    Factor(
        "utilization",
        "path",
        "share of capacity rented",
        FanGrid(False, 0.0, 1.0, bounded_below=True, bounded_above=True),
        "1",
        "share of capacity rented",
    ),
    Factor("power_price", "path", "USD per kWh", FanGrid(True, -6.0, 6.0), "USD/(kW h)", "power price"),
    Factor(
        "gpu_value", "generation", "USD per GPU (income approach)", FanGrid(True, -14.0, 4.0), "USD", "value of one GPU (income approach)"
    ),
    Factor(
        "gpu_mark",
        "generation",
        "USD per GPU (secondary-market mark)",
        FanGrid(True, -14.0, 4.0),
        "USD",
        "secondary-market mark of one GPU",
    ),
    Factor("network_hashrate", "path", "EH/s (bitcoin network hashrate)", FanGrid(True, -6.0, 6.0), "EH/s", "bitcoin network hashrate"),
)
"""The market levels at t_k that borrowers, covenants and outputs read (docs/model.md 4), in save order:
the order of the market view's fields, of the fan charts and of the kernel's saved columns."""

CREDIT_RATIOS: tuple[Factor, ...] = (
    Factor(
        "dscr",
        "borrower",
        "trailing-12-month CFADS / debt service",
        FanGrid(False, -32.0, 96.0),
        "1",
        "debt service coverage ratio: trailing-12-month CFADS / debt service",
    ),
    Factor(
        "ltv",
        "borrower",
        "debt / (fleets at mark + treasury at market)",
        FanGrid(False, 0.0, 128.0, bounded_below=True),
        "1",
        "loan to value: debt / (fleets at mark + treasury at market)",
    ),
)
"""Credit ratios per borrower, fanned on linear grids; defaulted borrowers fall in the "not
applicable" bin, so the quantiles are over the paths where the borrower is still alive."""

REGIME_UNITS = "0 easy, 1 tight"
"""The regime R_k, saved per path beside the observed factors (not a market level)."""

FACTORS_BY_NAME: dict[str, Factor] = {f.name: f for f in OBSERVED_FACTORS + CREDIT_RATIOS}


def saved_columns(layout: Layout) -> dict[str, slice | int]:
    """Column (or columns) of each observed factor in one saved row of a path at a step: the
    factors side by side in save order, a per-path scalar taking one column."""
    columns: dict[str, slice | int] = {}
    cursor = 0
    for factor in OBSERVED_FACTORS:
        width = factor.width(layout)
        columns[factor.name] = cursor if width == 0 else slice(cursor, cursor + width)
        cursor += max(width, 1)
    return columns


def saved_width(layout: Layout) -> int:
    """Columns of one saved row (every observed factor at one step of one path)."""
    return sum(max(f.width(layout), 1) for f in OBSERVED_FACTORS)
