"""Borrower cash flows of MODEL.md section 5, written once against the array API.

Per-path arrays carry the path on the last axis: (B, n) per borrower, (B, G, n) per borrower
and generation. Every function is pure and branch-free on values; sums over generations and
assets run in a fixed order so rounding does not depend on the chunk size.
"""

from __future__ import annotations

from typing import Any

from gpusim.model.constants import DAYS_PER_YEAR, HOURS_PER_YEAR
from gpusim.model.market import MarketView, network_hashrate_trend
from gpusim.model.params import CreditParams, Layout, MarketParams


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


def hashprice(btc_price: Any, network_hashrate: Any, step: int, levels_step: int, m: MarketParams, c: CreditParams, xp: Any) -> Any:
    """hp_k = hp_0 (S / S_0) (H_0 / H) 0.5^halvings, USD per PH/s per day, (n,): the calendar of step k
    times BTC and the network hashrate observed at t_{levels_step}. Without a hashrate process H is
    its trend, trend / H = 1 exactly, and hp_k = hp_0 (S / S_0) e^{-g_d t_k} 0.5^halvings."""
    return c.hashprice_per_btc[step] * btc_price * (network_hashrate_trend(levels_step, m, xp) / network_hashrate)


def miners_running(price: Any, power_price: Any, c: CreditParams) -> Any:
    """1 while the miners run, 0 in a step they are curtailed: hashprice per kWh, hp / (24 e),
    below the borrower's power price P rho (only for borrowers that curtail), (B, n)."""
    loses_money = price[None, :] < c.breakeven_kwh_per_day[:, None] * (power_price * c.power_price_ratio[:, None])
    return 1.0 - c.curtails[:, None] * loses_money


def mining_revenue(price: Any, running: Any, dt: float, c: CreditParams) -> Any:
    """Hashrate x hashprice x days while the miners run, (B, n)."""
    return c.hashrate[:, None] * price[None, :] * (DAYS_PER_YEAR * dt) * running


def operating_cost(utilization: Any, power_price: Any, running: Any, step: int, dt: float, m: MarketParams, c: CreditParams) -> Any:
    """Power for running GPUs and miners plus fixed opex, (B, n).

    Contracted GPUs run all the time, spot GPUs at the market utilization; idle GPUs are taken
    to draw no power. GPU power carries the borrower's PUE; miners' efficiency is at the wall.
    Curtailed miners (running = 0) pay only the take-or-pay share of their power.
    """
    share = contracted_share(step, c)
    running_gpus = c.fleet_count[:, :, None] * (share + (1.0 - share) * utilization)
    gpu_kw = sum_over(running_gpus * m.kw_per_gpu[None, :, None], axis=1) * c.pue[:, None]
    price = power_price * c.power_price_ratio[:, None]
    mining_kw = c.mining_kw[:, None] * (running + (1.0 - running) * c.power_take_or_pay[:, None])
    return (HOURS_PER_YEAR * dt) * price * (gpu_kw + mining_kw) + c.fixed_opex_step[:, None]


def cfads(view: MarketView, eps: Any, step: int, levels_step: int, m: MarketParams, c: CreditParams, layout: Layout, xp: Any) -> Any:
    """Cash flow available for debt service in step k (calendars of `step`), paid out of the
    market levels `view` observed at t_{levels_step} (k + 1; 0 for the run rates at t_0): revenue - opex, (B, n)."""
    dt = layout.dt
    price = hashprice(view.crypto[layout.btc_index], view.network_hashrate, step, levels_step, m, c, xp)
    running = miners_running(price, view.power_price, c)
    revenue = fleet_revenue(view.rental_rate, view.utilization, eps, step, dt, c, xp) + mining_revenue(price, running, dt, c)
    return revenue - operating_cost(view.utilization, view.power_price, running, step, dt, m, c)
