"""Flat parameter arrays built once from a validated scenario.

Backends never read YAML or pydantic objects: they get a `Layout` (static sizes, names, the
slot table, the calendar) and a `MarketParams` of float64 numpy arrays, which each backend
casts to its own array type and dtype. Regime-dependent parameters have a leading axis of 2
(0 = easy, 1 = tight). Everything here is exact arithmetic on config numbers; the equations
that use them live in `factors.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gpusim.config import Scenario, event_step, year_fraction
from gpusim.rng import poisson_cdf_table
from gpusim.slots import SlotTable, slot_table

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class Layout:
    """Static shape and calendar of a scenario: what a compiled kernel would fix at build time."""

    scenario_name: str
    n_steps: int
    steps_per_year: int
    assets: tuple[str, ...]
    generations: tuple[str, ...]
    borrowers: tuple[str, ...]
    btc_index: int
    slots: SlotTable
    max_launches_per_step: int

    @property
    def dt(self) -> float:
        return 1.0 / self.steps_per_year

    @property
    def time_years(self) -> np.ndarray:
        return np.arange(self.n_steps + 1, dtype=np.float64) * self.dt

    @property
    def n_assets(self) -> int:
        return len(self.assets)

    @property
    def n_generations(self) -> int:
        return len(self.generations)


class MarketParams(NamedTuple):
    """Market-factor parameters of MODEL.md section 4, pre-scaled to one step."""

    regime_initial_tight: Any  # () 0/1
    regime_switch_prob: Any  # (2,) per-step probability of leaving easy / leaving tight
    log_spot: Any  # (A,)
    crypto_drift_step: Any  # (2, A) (mu - sigma^2/2 - lambda kbar) dt
    crypto_vol_step: Any  # (2, A) sigma sqrt(dt)
    crypto_cholesky: Any  # (2, A, A)
    jump_cdf: Any  # (2, A, POISSON_CAP) Poisson CDF of the jump count per step
    jump_mean: Any  # (2, A)
    jump_std: Any  # (2, A)
    deflation_step: Any  # (2,) delta_R dt
    shock_decay: Any  # () exp(-kappa dt)
    shock_vol_step: Any  # () sigma_X sqrt((1 - exp(-2 kappa dt)) / (2 kappa))
    shock_corr_btc: Any  # (2,) rho_R
    log_rate0: Any  # (G,)
    util_max: Any  # ()
    util_level: Any  # (2,)
    util_sensitivity: Any  # ()
    generations_behind0: Any  # (G,) generations between g and the newest at t_0
    launch_drop: Any  # (M,) theta m^eta: log-drop for a generation m behind the newest after a launch
    scheduled_launches: Any  # (K,) launches in (t_k, t_k+1]
    random_launch_prob: Any  # () probability of an unscheduled launch in one step
    log_power0: Any  # ()
    log_power_mean: Any  # ()
    power_decay: Any  # ()
    power_vol_step: Any  # ()
    hours_per_step: Any  # ()
    kw_per_gpu: Any  # (G,)
    valuation_pue: Any  # ()
    valuation_deflation: Any  # () dbar
    log_income_discount: Any  # (2,) ln a = -(y_R + dbar) dt
    log_cost_discount: Any  # (2,) ln d = -y_R dt
    life_end_step: Any  # (G,) step index at which each generation's economic life ends
    scrap_value: Any  # (G,)
    market_depth: Any  # (2, G) GPUs a month
    exogenous_supply_step: Any  # (2, G) 12 dt q_exo: distressed GPUs a step from outside the portfolio
    mark_impact: Any  # () alpha_mark
    memory_decay: Any  # () exp(-dt / tau)


def _pair(by_regime: Any) -> list[float]:
    return [float(by_regime.easy), float(by_regime.tight)]


def per_step_probability(monthly: float, dt: float) -> float:
    """A monthly transition probability scaled to a step of dt years: 1 - (1 - p)^(12 dt)."""
    return 1.0 - (1.0 - monthly) ** (12.0 * dt)


def build_layout(s: Scenario) -> Layout:
    assets = tuple(a.name for a in s.crypto.assets)
    schedule = launch_schedule(s)
    max_launches = int(schedule.max(initial=0)) + (1 if s.compute.obsolescence.random_launch_rate > 0 else 0)
    return Layout(
        scenario_name=s.name,
        n_steps=s.time.n_steps,
        steps_per_year=s.time.steps_per_year,
        assets=assets,
        generations=tuple(g.name for g in s.compute.generations),
        borrowers=tuple(b.name for b in s.borrowers),
        btc_index=assets.index("BTC"),
        slots=slot_table(len(assets), len(s.borrowers)),
        max_launches_per_step=max_launches,
    )


def launch_schedule(s: Scenario) -> np.ndarray:
    """Number of scheduled launches falling in each step (t_k, t_k+1]."""
    counts = np.zeros(s.time.n_steps, dtype=np.int64)
    for launch in s.compute.obsolescence.launches:
        k = event_step(s.time, launch.date)
        if k is not None:
            counts[k] += 1
    return counts


def correlation_cholesky(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a correlation matrix; PSD-but-singular matrices via eigenvalues."""
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(matrix)
        root = v * np.sqrt(np.clip(w, 0.0, None))
        # QR of root^T gives a lower-triangular factor with the same product
        _, r = np.linalg.qr(root.T)
        lower = r.T
        return lower * np.sign(np.diag(lower))[None, :]


def build_market_params(s: Scenario) -> MarketParams:
    dt = s.time.dt
    assets = s.crypto.assets
    gens = s.compute.generations
    n_assets = len(assets)

    drift = np.array([_pair(a.drift) for a in assets]).T
    vol = np.array([_pair(a.vol) for a in assets]).T
    rate = np.array([_pair(a.jump_rate) for a in assets]).T
    jmean = np.array([_pair(a.jump_mean) for a in assets]).T
    jstd = np.array([_pair(a.jump_std) for a in assets]).T
    kbar = np.exp(jmean + 0.5 * jstd**2) - 1.0
    if s.crypto.correlation is None:
        chol = np.stack([np.eye(n_assets)] * 2)
    else:
        chol = np.stack([correlation_cholesky(np.asarray(m, dtype=float)) for m in s.crypto.correlation.pair()])

    shock = s.compute.shock
    kappa = shock.mean_reversion
    pw = s.power
    life_end = np.array(
        [year_fraction(s.time.start, g.release) * s.time.steps_per_year + g.economic_life_years * s.time.steps_per_year for g in gens]
    )
    n_gens = len(gens)
    obs = s.compute.obsolescence
    return MarketParams(
        regime_initial_tight=np.float64(s.regime.initial == "tight"),
        regime_switch_prob=np.array(
            [per_step_probability(s.regime.p_easy_to_tight, dt), per_step_probability(s.regime.p_tight_to_easy, dt)]
        ),
        log_spot=np.log([a.spot for a in assets]),
        crypto_drift_step=(drift - 0.5 * vol**2 - rate * kbar) * dt,
        crypto_vol_step=vol * math.sqrt(dt),
        crypto_cholesky=chol,
        jump_cdf=poisson_cdf_table(rate * dt),
        jump_mean=jmean,
        jump_std=jstd,
        deflation_step=np.array(_pair(s.compute.deflation)) * dt,
        shock_decay=np.float64(math.exp(-kappa * dt)),
        shock_vol_step=np.float64(shock.vol * math.sqrt((1.0 - math.exp(-2.0 * kappa * dt)) / (2.0 * kappa))),
        shock_corr_btc=np.array(_pair(shock.corr_btc)),
        log_rate0=np.log([g.rental_rate for g in gens]),
        util_max=np.float64(s.compute.utilization.max),
        util_level=np.array(_pair(s.compute.utilization.level)),
        util_sensitivity=np.float64(s.compute.utilization.sensitivity),
        generations_behind0=np.arange(n_gens - 1, -1, -1, dtype=np.float64),
        launch_drop=obs.drop * np.arange(n_gens + len(obs.launches) + s.time.n_steps + 2, dtype=np.float64) ** obs.curvature,
        scheduled_launches=launch_schedule(s).astype(np.float64),
        random_launch_prob=np.float64(1.0 - math.exp(-obs.random_launch_rate * dt)),
        log_power0=np.float64(math.log(pw.price)),
        log_power_mean=np.float64(math.log(pw.long_run)),
        power_decay=np.float64(math.exp(-pw.mean_reversion * dt)),
        power_vol_step=np.float64(pw.vol * math.sqrt((1.0 - math.exp(-2.0 * pw.mean_reversion * dt)) / (2.0 * pw.mean_reversion))),
        hours_per_step=np.float64(HOURS_PER_YEAR * dt),
        kw_per_gpu=np.array([g.kw_per_gpu for g in gens]),
        valuation_pue=np.float64(s.compute.valuation.pue),
        valuation_deflation=np.float64(s.compute.valuation.expected_deflation),
        log_income_discount=-(np.array(_pair(s.compute.valuation.discount_yield)) + s.compute.valuation.expected_deflation) * dt,
        log_cost_discount=-np.array(_pair(s.compute.valuation.discount_yield)) * dt,
        life_end_step=life_end,
        scrap_value=np.array([g.scrap_value for g in gens]),
        market_depth=np.array([_pair(g.market_depth) for g in gens]).T,
        exogenous_supply_step=np.array([_pair(g.exogenous_distressed_supply) for g in gens]).T * 12.0 * dt,
        mark_impact=np.float64(s.secondary_market.mark_impact),
        memory_decay=np.float64(math.exp(-dt / s.secondary_market.memory_years)),
    )


def cast_params(params: NamedTuple, xp: Any, dtype: Any) -> Any:
    """The same parameters as arrays of namespace xp in the working dtype."""
    return type(params)(*(xp.asarray(np.asarray(v, dtype=np.float64), dtype=dtype) for v in params))
