"""Dated shock paths (docs/model.md 4.13): the scenario's deterministic overlays, evaluated once on
the host into one table per factor of cumulative log changes at each time point t_k.

The model adds row k of a table to the factor's log level at t_k (to the logit of u / u_max for
utilization), so a step costs one addition per factor and an overlay stays in the level after
its last date. A scenario without shocks gets tables of zeros: adding 0.0 leaves every bit as it was.
"""

from __future__ import annotations

from datetime import date as Date
from typing import NamedTuple

import numpy as np

from gpusim.scenario.calendar import year_fraction
from gpusim.scenario.schema import Scenario, Shock


class ShockTables(NamedTuple):
    """Cumulative log change at t_k, k = 0..K, of each shocked factor (0 where none is given)."""

    crypto: np.ndarray  # (K+1, A) ln of the price multiplier per asset
    rental_rate: np.ndarray  # (K+1, G) ln of the rent multiplier per generation
    utilization: np.ndarray  # (K+1,) change of logit(u / u_max)
    power_price: np.ndarray  # (K+1,) ln of the power price multiplier
    market_depth: np.ndarray  # (K+1, G) ln of the market depth multiplier per generation (both regimes)


def shock_log_path(shock: Shock, start: Date, times: np.ndarray) -> np.ndarray:
    """One shock's cumulative log change at `times` (years from t_0).

    Points: linear in log between (reference date, 0) and each dated change, held after the last
    one. Rates: ln(1 + r) per year of the part of each period before t. The two add up.
    """
    reference = shock.anchor or start
    path = np.zeros_like(times)
    if shock.points:
        at = [year_fraction(reference, p.date) for p in shock.points]
        level = [p.log_level for p in shock.points]
        if at[0] > 0.0:
            at, level = [0.0, *at], [0.0, *level]
        path = path + np.interp(times, at, level)
    for rate in shock.rates:
        begin, end = year_fraction(reference, rate.start), year_fraction(reference, rate.end)
        path = path + np.log1p(rate.annual_rate) * np.clip(times - begin, 0.0, end - begin)
    return path


def shock_tables(s: Scenario) -> ShockTables:
    """The overlay tables of a scenario; shocks on one factor add up in log space."""
    # k / steps_per_year, as year_fraction divides whole months by 12: a dated point on a step is exactly on it
    times = np.arange(s.time.n_steps + 1) / s.time.steps_per_year
    assets = [a.name for a in s.crypto.assets]
    gens = [g.name for g in s.compute.generations]
    crypto = np.zeros((times.size, len(assets)))
    rental = np.zeros((times.size, len(gens)))
    utilization = np.zeros(times.size)
    power = np.zeros(times.size)
    depth = np.zeros((times.size, len(gens)))
    for shock in s.shocks:
        path = shock_log_path(shock, s.time.start, times)
        if shock.factor in assets:
            crypto[:, assets.index(shock.factor)] += path
        elif shock.factor in ("rental_rate", "market_depth"):
            columns = [gens.index(shock.generation)] if shock.generation is not None else list(range(len(gens)))
            (rental if shock.factor == "rental_rate" else depth)[:, columns] += path[:, None]
        elif shock.factor == "utilization":
            utilization += path
        else:
            power += path
    return ShockTables(crypto, rental, utilization, power, depth)
