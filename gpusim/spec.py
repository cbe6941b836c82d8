"""What the engine asks a backend to compute, and what a backend hands back for one chunk.

Shared by the engine and every backend, so neither needs the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import array_api_compat.numpy as xnp
import numpy as np

from gpusim.model.factor_table import CREDIT_RATIOS, OBSERVED_FACTORS
from gpusim.model.market import initial_state, observe
from gpusim.model.params import (
    CreditParams,
    Layout,
    MarketParams,
    build_credit_params,
    build_layout,
    build_market_params,
    without_contagion,
)
from gpusim.scenario import Scenario
from gpusim.statistics import Binning

DType = Literal["float32", "float64"]

# Fan charts, in the factor table's order: market factors for every run, credit ratios with borrowers
FAN_FACTORS: tuple[str, ...] = tuple(f.name for f in OBSERVED_FACTORS)
CREDIT_FANS: tuple[str, ...] = tuple(f.name for f in CREDIT_RATIOS)
CREDIT_FAN_GRIDS: dict[str, tuple[float, float]] = {f.name: (f.fan.lo, f.fan.hi) for f in CREDIT_RATIOS}
"""(lo, hi) of each credit ratio's linear grid."""


@dataclass(frozen=True)
class RunSpec:
    """A scenario compiled for the backends: static layout, float64 parameters, fan grids."""

    scenario: Scenario
    layout: Layout
    market: MarketParams
    binnings: dict[str, Binning]
    dtype: DType
    credit: CreditParams | None = None  # None for a scenario without borrowers
    attribution: bool = True  # also run the paths with the fire-sale chain off

    @property
    def has_credit(self) -> bool:
        return self.credit is not None and self.layout.n_borrowers > 0

    @property
    def fans(self) -> tuple[str, ...]:
        return FAN_FACTORS + (CREDIT_FANS if self.has_credit else ())


class ChunkResult(NamedTuple):
    """Outputs of one chunk of paths, as host numpy arrays."""

    path_start: int
    n_paths: int
    saved: dict[str, np.ndarray]  # factor -> (m, steps+1[, C]) for the chunk's first m saved paths
    fan_counts: dict[str, np.ndarray]  # factor -> (steps+1, C, n_bins+1) integer counts (int32 or uint32)
    tight_count: np.ndarray  # (steps+1,) int64: paths in the tight regime at each t_k
    outcomes: CreditOutcomes | None = None  # with the fire-sale chain as configured
    outcomes_without_chain: CreditOutcomes | None = None  # same paths, chain off (attribution)


class CreditOutcomes(NamedTuple):
    """Per-path credit outcomes of one chunk (host arrays, path first)."""

    default_step: np.ndarray  # (n, B) int16, -1 = no default by the horizon
    default_reason: np.ndarray  # (n, B) int8, a constants.DefaultReason code
    loss: np.ndarray  # (n, I) discounted loss, USD
    exposure: np.ndarray  # (n, I) exposure at default, USD
    risky_annuity: np.ndarray  # (n, I) sum of DF x outstanding x dt while the borrower is alive
    portfolio_loss_nominal: np.ndarray  # (n,) undiscounted loss, USD


def build_spec(scenario: Scenario, dtype: DType = "float64", contagion: bool = True) -> RunSpec:
    """Compile a scenario for the backends. `contagion=False` switches the fire-sale chain off
    (each defaulter prices only its own dump, L keeps only the outside supply) and skips the attribution pass."""
    layout = build_layout(scenario)
    market = build_market_params(scenario)
    if not contagion:
        market = without_contagion(market)
    start = observe(initial_state(1, market, layout, xnp), 0, market, layout, xnp)
    binnings = {}
    for factor in OBSERVED_FACTORS:
        level = np.asarray(getattr(start, factor.name), dtype=np.float64)
        reference = level[:, 0] if level.ndim == 2 else level
        binnings[factor.name] = Binning(reference=np.atleast_1d(reference), lo=factor.fan.lo, hi=factor.fan.hi, log=factor.fan.log)
    credit = build_credit_params(scenario) if scenario.borrowers else None
    if credit is not None:
        for factor in CREDIT_RATIOS:
            binnings[factor.name] = Binning(reference=np.zeros(layout.n_borrowers), lo=factor.fan.lo, hi=factor.fan.hi, log=factor.fan.log)
    return RunSpec(
        scenario=scenario,
        layout=layout,
        market=market,
        binnings=binnings,
        dtype=dtype,
        credit=credit,
        attribution=contagion and credit is not None,
    )
