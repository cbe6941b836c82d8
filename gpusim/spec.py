"""What the engine asks a backend to compute, and what a backend hands back for one chunk.

Shared by the engine and every backend, so neither needs the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import array_api_compat.numpy as xnp
import numpy as np

from gpusim.config import Scenario
from gpusim.factors import MarketView, initial_state, observe
from gpusim.params import Layout, MarketParams, build_layout, build_market_params
from gpusim.statistics import Binning

DType = Literal["float32", "float64"]

# Fan-chart grids per factor: (log binning?, lo, hi) in log(x / level at t_0) or in level.
FAN_GRIDS: dict[str, tuple[bool, float, float]] = {
    "crypto": (True, -12.0, 8.0),
    "rental_rate": (True, -14.0, 4.0),
    "utilization": (False, 0.0, 1.0),
    "power_price": (True, -6.0, 6.0),
    "gpu_value": (True, -14.0, 4.0),
    "gpu_mark": (True, -14.0, 4.0),
}
FAN_FACTORS: tuple[str, ...] = tuple(FAN_GRIDS)
assert set(FAN_FACTORS) <= set(MarketView._fields)


@dataclass(frozen=True)
class RunSpec:
    """A scenario compiled for the backends: static layout, float64 parameters, fan grids."""

    scenario: Scenario
    layout: Layout
    market: MarketParams
    binnings: dict[str, Binning]
    dtype: DType


class ChunkResult(NamedTuple):
    """Outputs of one chunk of paths, as host numpy arrays."""

    path_start: int
    n_paths: int
    saved: dict[str, np.ndarray]  # factor -> (m, steps+1[, C]) for the chunk's first m saved paths
    fan_counts: dict[str, np.ndarray]  # factor -> (steps+1, C, n_bins+1) int64
    tight_count: np.ndarray  # (steps+1,) int64: paths in the tight regime at each t_k


def build_spec(scenario: Scenario, dtype: DType = "float64") -> RunSpec:
    layout = build_layout(scenario)
    market = build_market_params(scenario)
    start = observe(initial_state(1, market, layout, xnp), 0, market, layout, xnp)
    binnings = {}
    for name, (log, lo, hi) in FAN_GRIDS.items():
        level = np.asarray(getattr(start, name), dtype=np.float64)
        reference = level[:, 0] if level.ndim == 2 else level
        binnings[name] = Binning(reference=np.atleast_1d(reference), lo=lo, hi=hi, log=log)
    return RunSpec(scenario=scenario, layout=layout, market=market, binnings=binnings, dtype=dtype)
