"""Borrower cash flows of MODEL.md section 5, written once against the array API.

Per-path arrays carry the path on the last axis: (B, n) per borrower, (B, G, n) per borrower
and generation. Every function is pure and branch-free on values; sums over generations and
assets run in a fixed order so rounding does not depend on the chunk size.
"""

from __future__ import annotations

from typing import Any

from gpusim.model.constants import DAYS_PER_YEAR, HOURS_PER_YEAR
from gpusim.model.params import CreditParams, MarketParams


def sum_over(x: Any, axis: int) -> Any:
    """Sum over a small static axis in a fixed order (chunk-independent rounding)."""
    n = x.shape[axis]
    index = [slice(None)] * x.ndim

    def part(j: int) -> Any:
        index[axis] = j
        return x[tuple(index)]

    total = part(0)
    for j in range(1, n):
        total = total + part(j)
    return total


def revenue_shock_step(eps: Any, z: Any, c: CreditParams) -> Any:
    """Exact log-OU step of each borrower's idiosyncratic revenue shock eps^b."""
    return eps * c.shock_decay[:, None] + c.shock_vol_step[:, None] * z


def contracted_share(step: int, c: CreditParams) -> Any:
    """s_g e_g: share of each fleet earning its contract rate in this step, (B, G, 1)."""
    return (c.contracted_share * c.contract_active[step])[:, :, None]


def fleet_revenue(rental_rate: Any, utilization: Any, eps: Any, step: int, dt: float, c: CreditParams, xp: Any) -> Any:
    """sum_g n_g h [s_g e_g rc_g + (1 - s_g e_g) u r^g e^eps]: contract plus spot rent, (B, n)."""
    share = contracted_share(step, c)
    contract = share * c.contract_rate[:, :, None]
    spot = (1.0 - share) * utilization * rental_rate[None, :, :] * xp.exp(eps)[:, None, :]
    return (HOURS_PER_YEAR * dt) * sum_over(c.fleet_count[:, :, None] * (contract + spot), axis=1)


def mining_revenue(btc_price: Any, step: int, dt: float, c: CreditParams) -> Any:
    """Hashrate x hashprice x days, with hashprice_k = hp_0 (S_k / S_0) e^{-g_d t_k} halved at halvings, (B, n)."""
    hashprice = c.hashprice_per_btc[step] * btc_price
    return c.hashrate[:, None] * hashprice[None, :] * (DAYS_PER_YEAR * dt)


def operating_cost(utilization: Any, power_price: Any, step: int, dt: float, m: MarketParams, c: CreditParams) -> Any:
    """Power for running GPUs and miners plus fixed opex, (B, n).

    Contracted GPUs run all the time, spot GPUs at the market utilization; idle GPUs are taken
    to draw no power. GPU power carries the borrower's PUE; miners' efficiency is at the wall.
    """
    share = contracted_share(step, c)
    running = c.fleet_count[:, :, None] * (share + (1.0 - share) * utilization)
    gpu_kw = sum_over(running * m.kw_per_gpu[None, :, None], axis=1) * c.pue[:, None]
    price = power_price * c.power_price_ratio[:, None]
    return (HOURS_PER_YEAR * dt) * price * (gpu_kw + c.mining_kw[:, None]) + c.fixed_opex_step[:, None]


def cfads(
    rental_rate: Any,
    utilization: Any,
    power_price: Any,
    btc_price: Any,
    eps: Any,
    step: int,
    dt: float,
    m: MarketParams,
    c: CreditParams,
    xp: Any,
) -> Any:
    """Cash flow available for debt service in the step: revenue - opex, (B, n)."""
    revenue = fleet_revenue(rental_rate, utilization, eps, step, dt, c, xp) + mining_revenue(btc_price, step, dt, c)
    return revenue - operating_cost(utilization, power_price, step, dt, m, c)
