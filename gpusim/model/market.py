"""Market factors of docs/model.md section 4, written once against the array API.

Every function is pure: arrays in, new arrays out, no in-place updates and no Python branch
on array values, so the same code runs on numpy, jax.numpy (under jit / lax.scan) and cupy.
Per-path arrays have the path on the last axis: shape (n,) for scalars per path, (C, n) for
C components (assets or generations). `tight` is the boolean regime R_k per path.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gpusim.model.factor_table import OBSERVED_FACTORS
from gpusim.model.params import Layout, MarketParams
from gpusim.model.rng import box_muller, poisson_inverse_cdf, step_words, uniform
from gpusim.model.slots import SLOT_ENTRIES

Draws = NamedTuple("Draws", [(entry.name, Any) for entry in SLOT_ENTRIES])
Draws.__doc__ = """This step's random variables, one field per entry of the slot table (docs/model.md 3): shape (n,)
for a one-slot entry, (count, n) otherwise (e.g. `crypto_diffusion` (A, n), `revenue_shock` (B, n))."""


class MarketState(NamedTuple):
    """Market state at t_k for each path."""

    tight: Any  # (n,) bool: R_k
    log_crypto: Any  # (A, n) ln S_k
    cum_deflation: Any  # (n,) sum_{j<k} delta_{R_j} dt
    compute_shock: Any  # (n,) X_k
    obsolescence: Any  # (G, n) O^g_k
    launches: Any  # (n,) launches so far (newer generations than every simulated one)
    log_power: Any  # (n,) ln power price
    distress_memory: Any  # (G, n) L^g_k
    hashrate_deviation: Any  # (n,) y_k = ln H_k - ln H_0 - trend: the random part of the log network hashrate


MarketView = NamedTuple("MarketView", [(factor.name, Any) for factor in OBSERVED_FACTORS])
MarketView.__doc__ = """Observable factors at t_k (what borrowers, covenants and outputs read), one field per row of
the factor table: shape (n,) for a per-path factor, (A, n) or (G, n) per asset or generation."""


def by_regime(pair: Any, tight: Any, xp: Any) -> Any:
    """Select a regime-indexed parameter (leading axis 2) per path: shape (...) -> (..., n)."""
    return xp.where(tight, pair[1, ..., None], pair[0, ..., None])


# ---------------------------------------------------------------------------------------
# Random draws


def draw_step(seed: int, path_start: int, n_paths: int, step: int, layout: Layout, dtype: Any, xp: Any) -> Draws:
    """Turn the Philox words of one step into the named draws of the slot table."""
    table = layout.slots
    u = uniform(step_words(seed, path_start, n_paths, step, table.n_blocks, xp), dtype, xp)

    def uniforms(name: str) -> Any:
        return u[table.offsets[name] : table.offsets[name] + table.counts[name], :]

    def normals(name: str) -> Any:
        start, count = table.offsets[name], table.counts[name]
        if count == 0:
            return xp.zeros((0, n_paths), dtype=dtype)
        pairs = -(-count // 2)
        z_cos, z_sin = box_muller(u[start : start + 2 * pairs : 2, :], u[start + 1 : start + 2 * pairs : 2, :], xp)
        interleaved = xp.reshape(xp.stack((z_cos, z_sin), axis=1), (2 * pairs, n_paths))
        return interleaved[:count, :]

    draws = {}
    for entry in SLOT_ENTRIES:
        rows = uniforms(entry.name) if entry.kind == "uniform" else normals(entry.name)
        draws[entry.name] = rows[0, :] if entry.per_path else rows
    return Draws(**draws)


# ---------------------------------------------------------------------------------------
# Equations of section 4


def next_regime(tight: Any, u: Any, switch_prob: Any, xp: Any) -> Any:
    """R_{k+1}: leave the current regime with its per-step switching probability."""
    return xp.logical_xor(tight, u < by_regime(switch_prob, tight, xp))


def correlated_crypto_shocks(z: Any, tight: Any, cholesky: Any, xp: Any) -> Any:
    """Z_S = L_R z for independent normals z of shape (A, n).

    Written as explicit sums over the lower triangle rather than matmul, so the summation
    order is fixed and results are bitwise the same for any chunk size.
    """
    rows = []
    for i in range(z.shape[0]):
        acc = by_regime(cholesky[:, i, 0], tight, xp) * z[0, :]
        for j in range(1, i + 1):
            acc = acc + by_regime(cholesky[:, i, j], tight, xp) * z[j, :]
        rows.append(acc)
    return xp.stack(rows, axis=0)


def jump_counts(u: Any, tight: Any, cdf: Any, xp: Any) -> Any:
    """Poisson jump counts per asset by inverse CDF on the regime's table, shape (A, n)."""
    counts = [
        xp.where(tight, poisson_inverse_cdf(u[a, :], cdf[1, a, :], xp), poisson_inverse_cdf(u[a, :], cdf[0, a, :], xp))
        for a in range(u.shape[0])
    ]
    return xp.stack(counts, axis=0)


def log_crypto_step(log_s: Any, z_s: Any, n_jumps: Any, z_jump: Any, tight: Any, p: MarketParams, xp: Any) -> Any:
    """Merton jump diffusion: ln S += (mu - sigma^2/2 - lambda kbar) dt + sigma sqrt(dt) Z_S + N mu_J + sqrt(N) sigma_J Z_J."""
    jump = n_jumps * by_regime(p.jump_mean, tight, xp) + xp.sqrt(n_jumps) * by_regime(p.jump_std, tight, xp) * z_jump
    return log_s + by_regime(p.crypto_drift_step, tight, xp) + by_regime(p.crypto_vol_step, tight, xp) * z_s + jump


def compute_shock_step(x: Any, z_btc: Any, z_own: Any, tight: Any, p: MarketParams, xp: Any) -> Any:
    """Exact OU step of X with corr(Z_X, Z_S,BTC) = rho_R."""
    rho = by_regime(p.shock_corr_btc, tight, xp)
    z_x = rho * z_btc + xp.sqrt(1.0 - rho * rho) * z_own
    return x * p.shock_decay + p.shock_vol_step * z_x


def obsolescence_drop(behind: Any, n_launches: Any, max_launches: int, p: MarketParams, xp: Any) -> Any:
    """Total log-drop of generations `behind` newest when n_launches newer ones arrive in a step.

    The j-th launch of the step puts a generation (behind + j) behind the newest and costs it
    theta (behind + j)^eta, read from the precomputed table `p.launch_drop`; `max_launches` is
    a static bound so no branch depends on values.
    """
    last = p.launch_drop.shape[0] - 1
    total = xp.zeros_like(behind)
    for j in range(1, max_launches + 1):
        hit = xp.astype(n_launches >= j, behind.dtype)
        index = xp.astype(xp.minimum(behind + j, float(last)), xp.int64)
        total = total + hit * xp.reshape(xp.take(p.launch_drop, xp.reshape(index, (-1,))), index.shape)
    return total


def log_power_step(log_power: Any, z: Any, p: MarketParams) -> Any:
    """Exact log-OU step of the power price around its long-run level."""
    return p.log_power_mean + (log_power - p.log_power_mean) * p.power_decay + p.power_vol_step * z


def log_rental_rate(cum_deflation: Any, x: Any, obsolescence: Any, p: MarketParams) -> Any:
    """ln r^g_k = ln r^g_0 - sum_{j<k} delta_{R_j} dt + X_k - O^g_k, shape (G, n)."""
    return p.log_rate0[:, None] - cum_deflation + x - obsolescence


def utilization(x: Any, tight: Any, shock: Any, p: MarketParams, xp: Any) -> Any:
    """u = u_max / (1 + exp(-(a_R + b X + s_u))), s_u the dated shock of the logit (4.13)."""
    return p.util_max / (1.0 + xp.exp(-(by_regime(p.util_level, tight, xp) + p.util_sensitivity * x + shock)))


def income_value(rate: Any, util: Any, power_price: Any, remaining_steps: Any, tight: Any, p: MarketParams, dt: float, xp: Any) -> Any:
    """Income-approach value of one GPU (docs/model.md 4): remaining net rent, cut off when rent < power.

    V = max(scrap, h [u r a (1 - a^n*) / (1 - a) - c d (1 - d^n*) / (1 - d)]) with
    a = exp(-(y_R + dbar) dt), d = exp(-y_R dt), c = kW PUE power, n* = min(n, floor(ln(u r / c) / (dbar dt))).
    """
    kw = p.kw_per_gpu[:, None]
    cost = kw * p.valuation_pue * power_price
    gross = util * rate
    pays = gross > cost
    # with dbar = 0 rent never falls below power: the tiny floor makes the cut-off infinite
    cutoff = xp.floor(xp.log(xp.where(pays, gross / cost, 1.0)) / xp.maximum(p.valuation_deflation * dt, 1e-30))
    n_star = xp.where(pays, xp.minimum(remaining_steps, cutoff), 0.0)
    log_a = by_regime(p.log_income_discount, tight, xp)
    log_d = by_regime(p.log_cost_discount, tight, xp)
    a, d = xp.exp(log_a), xp.exp(log_d)
    income = gross * a * (1.0 - xp.exp(n_star * log_a)) / (1.0 - a)
    power = cost * d * (1.0 - xp.exp(n_star * log_d)) / (1.0 - d)
    return xp.maximum(p.scrap_value[:, None], p.hours_per_step * (income - power))


def remaining_life_steps(step: int, p: MarketParams, xp: Any) -> Any:
    """Whole steps of economic life left at t_step per generation, shape (G, 1)."""
    return xp.maximum(xp.floor(p.life_end_step - step), 0.0)[:, None]


def gpu_mark(value: Any, memory: Any, p: MarketParams, xp: Any) -> Any:
    """M = V exp(-alpha_mark L): distressed supply remembered by the market depresses marks."""
    return value * xp.exp(-p.mark_impact * memory)


def shocked_depth(p: MarketParams, step: Any, xp: Any) -> Any:
    """D^g_R exp(s^D,g_k): the market depth of both regimes with the dated shock of t_step (4.13), shape (2, G)."""
    return p.market_depth * xp.exp(p.shock_market_depth[step])[None, :]


def distress_memory_step(memory: Any, dumped: Any, tight: Any, p: MarketParams, xp: Any) -> Any:
    """L_{k+1} = L_k exp(-dt/tau) + (Q_k + 12 dt q_exo,R) / D_R for each generation."""
    inflow = (dumped + by_regime(p.exogenous_supply_step, tight, xp)) / by_regime(p.market_depth, tight, xp)
    return memory * p.memory_decay + inflow


def log_hashrate_step(deviation: Any, z: Any, log_btc_return: Any, tight: Any, p: MarketParams, xp: Any) -> Any:
    """y_{k+1} = y_k + m_R dt + sigma_H sqrt(dt) Z_H + e (ln S_{k+1} - ln S_k): the random part of ln H."""
    return deviation + by_regime(p.hashrate_drift_step, tight, xp) + p.hashrate_vol_step * z + p.hashrate_btc_elasticity * log_btc_return


def network_hashrate_trend(step: Any, p: MarketParams, xp: Any) -> Any:
    """H_0 exp(g_d t_k): the network hashrate without its random part (the whole path without a hashrate process)."""
    return xp.exp(p.log_hashrate0 + p.hashrate_trend_step * step)


def network_hashrate(deviation: Any, step: Any, p: MarketParams, xp: Any) -> Any:
    """H_k = trend_k exp(y_k), EH/s; exactly the trend where y = 0, so that trend / H = 1 keeps hashprice unchanged."""
    return network_hashrate_trend(step, p, xp) * xp.exp(deviation)


# ---------------------------------------------------------------------------------------
# State transitions


def initial_state(n_paths: int, p: MarketParams, layout: Layout, xp: Any) -> MarketState:
    dtype = p.log_spot.dtype
    zeros = xp.zeros((n_paths,), dtype=dtype)
    gen_zeros = xp.zeros((layout.n_generations, n_paths), dtype=dtype)
    return MarketState(
        tight=xp.zeros((n_paths,), dtype=xp.bool) | (p.regime_initial_tight > 0.5),
        log_crypto=p.log_spot[:, None] + xp.zeros((layout.n_assets, n_paths), dtype=dtype),
        cum_deflation=zeros,
        compute_shock=zeros,
        obsolescence=gen_zeros,
        launches=zeros,
        log_power=p.log_power0 + zeros,
        distress_memory=gen_zeros,
        hashrate_deviation=zeros,
    )


def observe(state: MarketState, step: Any, p: MarketParams, layout: Layout, xp: Any, row: Any = None) -> MarketView:
    """Factor levels at t_step. Called after `advance_market`, the state still holds R_k and L_k,
    which docs/model.md 7 says set utilization, values and marks at t_{k+1}.

    The dated shocks of t_step (4.13) are added to the log levels here, so everything read from
    the view (values, marks, collateral, hashprice) sees them. They are read from row `row` of
    the shock tables: `step`, unless the caller has cut the tables down to t_step's row (the
    fused Pallas step, which passes 0)."""
    row = step if row is None else row
    regime_for_levels = state.tight
    deviation = state.hashrate_deviation + p.hashrate_btc_elasticity * p.shock_crypto[row, layout.btc_index]
    rate = xp.exp(log_rental_rate(state.cum_deflation, state.compute_shock, state.obsolescence, p) + p.shock_rental_rate[row][:, None])
    util = utilization(state.compute_shock, regime_for_levels, p.shock_utilization[row], p, xp)
    power = xp.exp(state.log_power + p.shock_power_price[row])
    value = income_value(rate, util, power, remaining_life_steps(step, p, xp), regime_for_levels, p, layout.dt, xp)
    return MarketView(
        crypto=xp.exp(state.log_crypto + p.shock_crypto[row][:, None]),
        rental_rate=rate,
        utilization=util,
        power_price=power,
        gpu_value=value,
        gpu_mark=gpu_mark(value, state.distress_memory, p, xp),
        network_hashrate=network_hashrate(deviation, step, p, xp),
    )


def fan_coordinates(state: MarketState, view: MarketView, step: Any, p: MarketParams, xp: Any) -> dict[str, Any]:
    """What the fan-chart histograms bin, per factor, shape (C, n): the log level of prices,
    rates and values (taken from the state and the shock tables of t_step where it is already
    held, to save a log per component) and the level of utilization."""
    log_value = xp.log(view.gpu_value)
    log_rate = log_rental_rate(state.cum_deflation, state.compute_shock, state.obsolescence, p)
    return {
        "crypto": state.log_crypto + p.shock_crypto[step][:, None],
        "rental_rate": log_rate + p.shock_rental_rate[step][:, None],
        "utilization": view.utilization[None, :],
        "power_price": (state.log_power + p.shock_power_price[step])[None, :],
        "gpu_value": log_value,
        "gpu_mark": log_value - p.mark_impact * state.distress_memory,
        "network_hashrate": xp.log(view.network_hashrate)[None, :],
    }


def advance_market(state: MarketState, draws: Draws, step: int, p: MarketParams, layout: Layout, xp: Any) -> MarketState:
    """Steps 2-3 of docs/model.md 7 for k -> k+1: launches, then crypto, X, rates, power under R_k.

    The regime and the distress memory are left at R_k and L_k: they change in `close_step`,
    after the borrowers of this step have defaulted and dumped their fleets.
    """
    tight = state.tight
    n_launch = p.scheduled_launches[step] + xp.astype(draws.random_launch < p.random_launch_prob, state.launches.dtype)
    behind = p.generations_behind0[:, None] + state.launches
    drop = obsolescence_drop(behind, n_launch, layout.max_launches_per_step, p, xp)

    z_s = correlated_crypto_shocks(draws.crypto_diffusion, tight, p.crypto_cholesky, xp)
    n_jumps = jump_counts(draws.jump_count, tight, p.jump_cdf, xp)
    log_crypto = log_crypto_step(state.log_crypto, z_s, n_jumps, draws.jump_size, tight, p, xp)
    log_btc_return = log_crypto[layout.btc_index, :] - state.log_crypto[layout.btc_index, :]
    return state._replace(
        log_crypto=log_crypto,
        cum_deflation=state.cum_deflation + by_regime(p.deflation_step, tight, xp),
        compute_shock=compute_shock_step(state.compute_shock, z_s[layout.btc_index, :], draws.market_shocks[0, :], tight, p, xp),
        obsolescence=state.obsolescence + drop,
        launches=state.launches + n_launch,
        log_power=log_power_step(state.log_power, draws.market_shocks[1, :], p),
        hashrate_deviation=log_hashrate_step(state.hashrate_deviation, draws.hashrate_shock, log_btc_return, tight, p, xp),
    )


def close_step(state: MarketState, dumped: Any, draws: Draws, step: Any, p: MarketParams, xp: Any) -> MarketState:
    """Step 10 of docs/model.md 7: update L with this step's fire sales Q (G, n), sold into the
    depth of t_step = t_{k+1}, then draw R_{k+1}."""
    depth_now = p._replace(market_depth=shocked_depth(p, step, xp))
    return state._replace(
        distress_memory=distress_memory_step(state.distress_memory, dumped, state.tight, depth_now, xp),
        tight=next_regime(state.tight, draws.regime, p.regime_switch_prob, xp),
    )
