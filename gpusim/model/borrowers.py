"""Borrower cash flows of docs/model.md section 5, written once against the array API.

Per-path arrays carry the path on the last axis: (B, n) per borrower, (B, G, n) per borrower
and generation. Every function is pure and branch-free on values; sums over generations and
assets run in a fixed order so rounding does not depend on the chunk size.
"""

from __future__ import annotations

from typing import Any

from gpusim.model.constants import DAYS_PER_YEAR, HOURS_PER_YEAR
from gpusim.model.market import MarketView, by_regime, network_hashrate_trend
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
    """sum_g n_g h [s_g e_g rc_g + (1 - s_g e_g) u r^g e^eps]: contract plus spot rent of the GPUs
    not leased to tenants, (B, n)."""
    share = contracted_share(step, c)
    contract = share * c.contract_rate[:, :, None]
    spot = (1.0 - share) * utilization * rental_rate[None, :, :] * xp.exp(eps)[:, None, :]
    return (HOURS_PER_YEAR * dt) * sum_over(c.free_fleet_count[:, :, None] * (contract + spot), axis=1)


def hashprice(btc_price: Any, network_hashrate: Any, step: int, levels_step: int, m: MarketParams, c: CreditParams, xp: Any) -> Any:
    """hp_k = hp_0 (S / S_0) (H_0 / H) 0.5^halvings, USD per PH/s per day, (n,): the calendar of step k
    times BTC and the network hashrate observed at t_{levels_step}. Without a hashrate process H is
    its trend, trend / H = 1 exactly, and hp_k = hp_0 (S / S_0) e^{-g_d t_k} 0.5^halvings."""
    return c.hashprice_per_btc[step] * btc_price * (network_hashrate_trend(levels_step, m, xp) / network_hashrate)


def mining_capacity(hashrate_added: Any, kw_added: Any, layout: Layout, c: CreditParams, xp: Any) -> tuple[Any, Any, Any]:
    """Each borrower's miners on the path, (B, n) each (or (B, 1) without miners orders): hashrate
    H_b + dH_b (PH/s), power kW_b + dkW_b, and 24 e' with e' = kW / H (kWh a day per PH/s: the
    break-even of curtailment; 0 with no hashrate left) (docs/model.md 5.9)."""
    if not layout.miner_orders:  # static: the miners of t_0
        return c.hashrate[:, None], c.mining_kw[:, None], c.breakeven_kwh_per_day[:, None]
    hashrate = c.hashrate[:, None] + hashrate_added
    kw = c.mining_kw[:, None] + kw_added
    efficiency = xp.where(hashrate > 0.0, kw / xp.where(hashrate > 0.0, hashrate, 1.0), 0.0)
    return hashrate, kw, 24.0 * efficiency


def miners_running(price: Any, power_price: Any, c: CreditParams, breakeven: Any = None) -> Any:
    """1 while the miners run, 0 in a step they are curtailed: hashprice per kWh, hp / (24 e),
    below the borrower's power price P rho (only for borrowers that curtail), (B, n). `breakeven`
    is 24 e of the miners on the path (mining_capacity; none: of t_0)."""
    breakeven = c.breakeven_kwh_per_day[:, None] if breakeven is None else breakeven
    loses_money = price[None, :] < breakeven * (power_price * c.power_price_ratio[:, None])
    return 1.0 - c.curtails[:, None] * loses_money


def mining_revenue(price: Any, running: Any, dt: float, c: CreditParams, hashrate: Any = None) -> Any:
    """Hashrate x hashprice x days while the miners run, (B, n); `hashrate` on the path (none: of t_0)."""
    hashrate = c.hashrate[:, None] if hashrate is None else hashrate
    return hashrate * price[None, :] * (DAYS_PER_YEAR * dt) * running


def operating_cost(
    utilization: Any,
    power_price: Any,
    running: Any,
    step: int,
    dt: float,
    m: MarketParams,
    c: CreditParams,
    mining_kw: Any = None,
) -> Any:
    """Power for running GPUs and miners plus fixed opex, (B, n).

    Contracted GPUs run all the time, spot GPUs at the market utilization; idle GPUs are taken
    to draw no power. GPU power carries the borrower's PUE; miners' efficiency is at the wall.
    Curtailed miners (running = 0) pay only the take-or-pay share of their power. `mining_kw` is
    the miners' power on the path (mining_capacity; none: of t_0).
    """
    mining_kw = c.mining_kw[:, None] if mining_kw is None else mining_kw
    share = contracted_share(step, c)
    running_gpus = c.free_fleet_count[:, :, None] * (share + (1.0 - share) * utilization)
    gpu_kw = sum_over(running_gpus * m.kw_per_gpu[None, :, None], axis=1) * c.pue[:, None]
    price = power_price * c.power_price_ratio[:, None]
    mining_kw = mining_kw * (running + (1.0 - running) * c.power_take_or_pay[:, None])
    return (HOURS_PER_YEAR * dt) * price * (gpu_kw + mining_kw) + c.fixed_opex_step[:, None]


# ---------------------------------------------------------------------------------------
# Tenant contracts (docs/model.md 5.7)


def tenant_defaults(default_step: Any, u: Any, tight: Any, step: Any, c: CreditParams, xp: Any) -> Any:
    """Default step of each tenant (T, n) after step k: a performing tenant whose contract is in
    force defaults when its uniform is below 1 - exp(-h_R dt); NO_DEFAULT while it performs."""
    in_force = (default_step < 0.0) & (c.tenant_active[step][:, None] > 0.0)
    defaults = in_force & (u < by_regime(c.tenant_default_prob, tight, xp))
    return xp.where(defaults, step, default_step)


def tenant_shares(default_step: Any, step: Any, c: CreditParams, xp: Any) -> tuple[Any, Any]:
    """(contract, spot) weight of each tenant's capacity in step k, (T, n) each: a performing
    tenant pays its contract while it is in force and its capacity is at spot after expiry; a
    defaulted tenant's capacity earns nothing for the re-leasing lag, then is at spot. Before a
    tenant's start its capacity earns nothing (it is not yet delivered or let)."""
    performing = default_step < 0.0
    active = c.tenant_active[step][:, None]
    released = (default_step >= 0.0) & (default_step + c.tenant_lag_steps[:, None] <= step)
    contract = xp.where(performing, active, 0.0)
    spot = xp.where(performing, c.tenant_started[step][:, None] - active, xp.where(released, 1.0, 0.0))
    return contract, spot


def sum_by_tenant(x: Any, layout: Layout, xp: Any) -> Any:
    """Per-tenant rows (T, n) summed per borrower (B, n) in a fixed order; 0 for a borrower without tenants."""
    rows = []
    for b in range(layout.n_borrowers):
        members = layout.tenants_of(b)
        total = xp.zeros_like(x[0]) if not members else x[members[0]]
        for t in members[1:]:
            total = total + x[t]
        rows.append(total)
    return xp.stack(rows, axis=0)


def tenant_revenue(
    rental_rate: Any, utilization: Any, eps: Any, contract: Any, spot: Any, step: Any, dt: float, c: CreditParams, layout: Layout, xp: Any
) -> Any:
    """Contract revenue of the performing tenants plus the spot revenue of released capacity (GPUs
    at u r^g e^eps, colocation at the spot colocation rate), per borrower (B, n)."""
    owner = xp.asarray(layout.tenant_owner, dtype=xp.int64)
    rates = xp.take(rental_rate, xp.asarray(layout.tenant_generation, dtype=xp.int64), axis=0)
    gpu_spot = c.tenant_gpus[:, None] * utilization * rates * xp.take(xp.exp(eps), owner, axis=0) * (HOURS_PER_YEAR * dt)
    per_tenant = contract * c.tenant_contract_revenue[step][:, None] + spot * (gpu_spot + c.tenant_spot_revenue[:, None])
    return sum_by_tenant(per_tenant, layout, xp)


def tenant_power_cost(
    utilization: Any, power_price: Any, contract: Any, spot: Any, dt: float, c: CreditParams, layout: Layout, xp: Any
) -> Any:
    """Power of the tenants' GPUs, with the site PUE: contracted GPUs run all the time, GPUs at
    spot at the market utilization, idle ones (and colocation, whose tenant pays its own power)
    draw nothing, (B, n)."""
    kw = sum_by_tenant(c.tenant_gpus[:, None] * c.tenant_kw_per_gpu[:, None] * (contract + spot * utilization), layout, xp)
    return (HOURS_PER_YEAR * dt) * (power_price * c.power_price_ratio[:, None]) * (kw * c.pue[:, None])


# ---------------------------------------------------------------------------------------
# GPUs delivered by capex orders (docs/model.md 5.9)


def delivered_spot_gpus(added: Any, step: Any, c: CreditParams) -> Any:
    """a_g - l_g: GPUs capex delivered (`added`, (B, G, n)) less those leased to tenants that started
    after t_0 (their GPUs leave the spot pool at the start), (B, G, n)."""
    return added - c.tenant_leased_later[step][:, :, None]


def delivered_revenue(rental_rate: Any, utilization: Any, eps: Any, added: Any, step: Any, dt: float, c: CreditParams, xp: Any) -> Any:
    """sum_g (a_g - l_g) h u r^g e^eps: the delivered GPUs not leased to later tenants rent at spot, (B, n)."""
    gpus = delivered_spot_gpus(added, step, c)
    return (HOURS_PER_YEAR * dt) * sum_over(gpus * (utilization * rental_rate[None, :, :] * xp.exp(eps)[:, None, :]), axis=1)


def delivered_power_cost(utilization: Any, power_price: Any, added: Any, step: Any, dt: float, m: MarketParams, c: CreditParams) -> Any:
    """Power of those GPUs running at the market utilization, with the site PUE, (B, n)."""
    kw = sum_over(delivered_spot_gpus(added, step, c) * utilization * m.kw_per_gpu[None, :, None], axis=1)
    return (HOURS_PER_YEAR * dt) * (power_price * c.power_price_ratio[:, None]) * (kw * c.pue[:, None])


def cfads(
    view: MarketView,
    tenant_default_step: Any,
    eps: Any,
    step: int,
    levels_step: int,
    m: MarketParams,
    c: CreditParams,
    layout: Layout,
    xp: Any,
    added: Any = None,
    hashrate_added: Any = None,
    kw_added: Any = None,
) -> Any:
    """Cash flow available for debt service in step k (calendars of `step`), paid out of the
    market levels `view` observed at t_{levels_step} (k + 1; 0 for the run rates at t_0), the
    tenants' default steps (T, n), the GPUs capex has delivered by t_k (`added`, (B, G, n)) and
    the miners' PH/s and kW it has added (`hashrate_added`, `kw_added`, (B, n)); none of these at
    t_0: revenue - opex, (B, n)."""
    dt = layout.dt
    price = hashprice(view.crypto[layout.btc_index], view.network_hashrate, step, levels_step, m, c, xp)
    hashrate, mining_kw, breakeven = mining_capacity(hashrate_added, kw_added, layout, c, xp) if hashrate_added is not None else (None,) * 3
    running = miners_running(price, view.power_price, c, breakeven)
    revenue = fleet_revenue(view.rental_rate, view.utilization, eps, step, dt, c, xp) + mining_revenue(price, running, dt, c, hashrate)
    cost = operating_cost(view.utilization, view.power_price, running, step, dt, m, c, mining_kw)
    if layout.n_tenants:  # static: a portfolio without tenants skips the tenant terms
        contract, spot = tenant_shares(tenant_default_step, step, c, xp)
        revenue = revenue + tenant_revenue(view.rental_rate, view.utilization, eps, contract, spot, step, dt, c, layout, xp)
        cost = cost + tenant_power_cost(view.utilization, view.power_price, contract, spot, dt, c, layout, xp)
    if layout.fleet_changes and added is not None:  # static: a portfolio without capex or later tenants skips these terms
        revenue = revenue + delivered_revenue(view.rental_rate, view.utilization, eps, added, step, dt, c, xp)
        cost = cost + delivered_power_cost(view.utilization, view.power_price, added, step, dt, m, c)
    return revenue - cost
