"""Debt instruments of docs/model.md section 6: coupons, schedules, collateral, fire sales, recoveries.

Array-API functions on per-instrument arrays (I, n) and per-borrower arrays (B, n). Which
instrument belongs to which borrower, and their seniority, are static (`Layout`), so loops
over instruments and ranks are plain Python loops over a fixed structure; only path values
are arrays.
"""

from __future__ import annotations

from typing import Any

from gpusim.model.borrowers import sum_over
from gpusim.model.market import by_regime
from gpusim.model.params import CreditParams, Layout, MarketParams


def coupon_rate(step: int, spread_add: Any, c: CreditParams) -> Any:
    """Annual rate of each instrument: fixed coupon, or base rate at t_k plus spread; plus refinancing step-ups."""
    return (c.coupon + c.floating * c.base_rate[step])[:, None] + spread_add


def remaining_payments(maturity_step: Any, step: int, dt: float, c: CreditParams, xp: Any) -> Any:
    """Scheduled payments from the end of step k to maturity, this one included (at least 1)."""
    return xp.maximum(xp.round((maturity_step - step) * dt * c.payments_per_year[:, None]) + 1.0, 1.0)


def scheduled_principal(outstanding: Any, rate: Any, remaining: Any, c: CreditParams, xp: Any) -> Any:
    """Principal due at a payment date: level (O / m), annuity (A - O r with A = O r / (1 - (1 + r)^-m)), or none.

    1 - (1 + r)^-m is computed as -expm1(-m log1p(r)): in float32, 1 + r rounds to 1 for r
    below about 6e-8 and the plain form would divide by zero (inf, then 0 x inf = NaN for
    loans that do not amortize)."""
    level = outstanding / remaining
    r = rate / c.payments_per_year[:, None]
    safe_r = xp.where(r > 1e-12, r, 1.0)
    annuity_factor = -xp.expm1(-remaining * xp.log1p(safe_r))
    annuity = xp.where(r > 1e-12, outstanding * safe_r / annuity_factor - outstanding * safe_r, level)
    return c.amortizes_level[:, None] * level + c.amortizes_annuity[:, None] * annuity


def by_owner(x: Any, layout: Layout, xp: Any) -> Any:
    """Per-borrower rows (B, ...) repeated for each instrument (I, ...)."""
    return xp.take(x, xp.asarray(layout.instrument_owner, dtype=xp.int64), axis=0)


def sum_by_owner(x: Any, layout: Layout, xp: Any) -> Any:
    """Per-instrument rows (I, n) summed per borrower (B, n), in a fixed order."""
    rows = []
    for b in range(layout.n_borrowers):
        members = layout.instruments_of(b)
        total = x[members[0]]
        for i in members[1:]:
            total = total + x[i]
        rows.append(total)
    return xp.stack(rows, axis=0)


def pledged_crypto_value(pledged: Any, prices: Any, layout: Layout, c: CreditParams, xp: Any) -> Any:
    """Value of the owner's pledged crypto (B, A, n) securing each instrument at market prices, (I, n)."""
    return sum_over(c.collateral_crypto[:, :, None] * by_owner(pledged, layout, xp) * prices[None, :, :], axis=1)


def pledged_fleet_weights(fleet: Any, layout: Layout, c: CreditParams, xp: Any) -> Any:
    """GPUs of each generation pledged to each instrument, (I, G, n), from the owners' fleets `fleet` (B, G, n)."""
    return c.collateral_fleet[:, :, None] * by_owner(fleet, layout, xp)


def owned_fleet(added: Any, layout: Layout, c: CreditParams) -> Any:
    """GPUs each borrower owns, (B, G, n): the fleets at t_0 plus the GPUs its capex orders delivered
    on the path ((B, G, 1), the fleets at t_0, in a portfolio without capex orders)."""
    if not layout.n_orders:  # static: the fleets never change
        return c.fleet_count[:, :, None]
    return c.fleet_count[:, :, None] + added


def delivered_book_value(order_paid: Any, step_next: int, layout: Layout, c: CreditParams) -> Any:
    """Book value of the delivered GPUs securing each instrument, (I, n): sum over its pledged
    orders of the USD paid times the straight-line factor at t_{k+1}, in order of the orders."""
    total = c.order_pledged[:, 0, None] * (order_paid[0][None, :] * c.order_book_factor[step_next][0])
    for o in range(1, layout.n_orders):
        total = total + c.order_pledged[:, o, None] * (order_paid[o][None, :] * c.order_book_factor[step_next][o])
    return total


def collateral_value(
    marks: Any,
    step_next: int,
    pledged: Any,
    prices: Any,
    layout: Layout,
    c: CreditParams,
    xp: Any,
    fleet: Any = None,
    order_paid: Any = None,
) -> tuple[Any, Any]:
    """Collateral of each instrument at marks and at book (pledged fleets + pledged crypto + pledged
    data centres, whose value is the same on both bases), (I, n) each. `fleet` (B, G, n) are the
    GPUs owned on the path (owned_fleet; none: the fleets at t_0); the GPUs delivered by capex count
    at book for what was paid for them (`order_paid`, (O, n))."""
    weights = pledged_fleet_weights(c.fleet_count[:, :, None] if fleet is None else fleet, layout, c, xp)
    crypto = pledged_crypto_value(pledged, prices, layout, c, xp)
    at_mark = sum_over(weights * marks[None, :, :], axis=1) + crypto
    at_book = c.pledged_fleet_book[step_next][:, None] + crypto  # the fleets at t_0 at book: a host table
    if layout.n_orders and order_paid is not None:  # static: without capex the book is the fleets' at t_0
        at_book = at_book + delivered_book_value(order_paid, step_next, layout, c)
    if layout.n_data_centres:  # (adding 0 changes nothing: CUDA always adds it)
        sites = c.pledged_data_centre_value[step_next][:, None]
        at_mark, at_book = at_mark + sites, at_book + sites
    return at_mark, at_book


def data_centre_proceeds(step_next: int, tight: Any, c: CreditParams, xp: Any) -> Any:
    """What a workout sale of each data centre raises at t_{k+1}: value x (1 - haircut_R), (D, n)."""
    return c.data_centre_value[step_next][:, None] * (1.0 - by_regime(c.data_centre_haircut, tight, xp))


def facility_headroom(outstanding: Any, collateral_at_mark: Any, c: CreditParams, xp: Any) -> Any:
    """Undrawn availability of each facility: min(commitment, advance rate x collateral mark) - drawn, >= 0."""
    base = xp.minimum(c.commitment[:, None], c.advance_rate[:, None] * collateral_at_mark)
    return c.is_facility[:, None] * xp.maximum(base - outstanding, 0.0)


def fire_sale_price(marks: Any, dumped: Any, tight: Any, m: MarketParams, xp: Any) -> Any:
    """P^g = M^g (1 - h_int) exp(-alpha_R Q^g / D^g_R): what a liquidating lender receives per GPU, (G, n)."""
    impact = by_regime(m.price_impact, tight, xp) * dumped / by_regime(m.market_depth, tight, xp)
    return marks * (1.0 - m.integration_discount) * xp.exp(-impact)


def liquidation_dump(dumped: Any, fleet: Any, m: MarketParams) -> Any:
    """GPUs whose sale sets a borrower's fire-sale price, (G, n): the step's whole dump Q^g with the
    fire-sale chain on, only the borrower's own `fleet` (G, n) with it off (the other defaulters' sales removed)."""
    return m.chain * dumped + (1.0 - m.chain) * fleet


def share_pool(pool: Any, claimants: list[int], claims: list[Any], recovered: list[Any], layout: Layout, xp: Any) -> Any:
    """Pay claimants from a pool by seniority, pro rata within a rank; return what is left of the pool."""
    for rank in sorted({layout.seniority[i] for i in claimants}):
        group = [i for i in claimants if layout.seniority[i] == rank]
        total = claims[group[0]]
        for i in group[1:]:
            total = total + claims[i]
        paid = xp.minimum(pool, total)
        positive = total > 0.0
        safe_total = xp.where(positive, total, 1.0)
        for i in group:
            share = xp.where(positive, paid * claims[i] / safe_total, 0.0)
            claims[i] = claims[i] - share
            recovered[i] = recovered[i] + share
        pool = pool - paid
    return pool


def recovery_waterfall(
    exposure: Any,
    marks: Any,
    dumped: Any,
    tight: Any,
    units: Any,
    pledged: Any,
    crypto_net_price: Any,
    cash: Any,
    layout: Layout,
    m: MarketParams,
    c: CreditParams,
    xp: Any,
    data_centres: Any = None,
    fleet: Any = None,
) -> Any:
    """Recovery of each instrument if its borrower is liquidated now, (I, n) (docs/model.md 7).

    Proceeds are fleets at the fire-sale price (set by the step's dump Q^g `dumped`, or by the
    borrower's own fleet with the chain off), crypto at the slipped price and cash, less the
    workout cost (a share of exposure, taken from all proceeds pro rata). Secured lenders are
    paid first from their own collateral (by rank, pro rata within a rank); what is left of
    every pool joins the unencumbered assets, which pay all remaining claims by rank. The
    borrower's data centres sell for `data_centres` (D, n) (data_centre_proceeds; None without any).
    `fleet` (B, G, n) are the GPUs owned on each path (none: the fleets at t_0).
    """
    claims = [exposure[i] for i in range(layout.n_instruments)]
    recovered = [xp.zeros_like(exposure[0]) for _ in range(layout.n_instruments)]
    fleet_count = c.fleet_count[:, :, None] if fleet is None else fleet
    for b in range(layout.n_borrowers):
        members = layout.instruments_of(b)
        fire_sale = fire_sale_price(marks, liquidation_dump(dumped, fleet_count[b], m), tight, m, xp)
        fleets = [(g, fleet_count[b, g] * fire_sale[g]) for g in range(layout.n_generations)]
        gross = cash[b]
        for _, value in fleets:
            gross = gross + value
        for a in range(layout.n_assets):
            gross = gross + units[b, a] * crypto_net_price[a]
        sites = layout.data_centres_of(b)
        for d in sites:
            gross = gross + data_centres[d]
        owed = exposure[members[0]]
        for i in members[1:]:
            owed = owed + exposure[i]
        after_cost = xp.where(gross > 0.0, xp.maximum(1.0 - c.workout_cost * owed / xp.where(gross > 0.0, gross, 1.0), 0.0), 0.0)

        general = cash[b] * after_cost
        for g, value in fleets:
            claimants = [i for i in members if g in layout.collateral_fleets[i]]
            pool = value * after_cost
            general = general + (share_pool(pool, claimants, claims, recovered, layout, xp) if claimants else pool)
        for a in range(layout.n_assets):
            claimants = [i for i in members if a in layout.collateral_assets[i]]
            secured = pledged[b, a] * crypto_net_price[a] * after_cost
            free = (units[b, a] - pledged[b, a]) * crypto_net_price[a] * after_cost
            general = general + free + (share_pool(secured, claimants, claims, recovered, layout, xp) if claimants else secured)
        for d in sites:
            claimants = [i for i in members if d in layout.collateral_data_centres[i]]
            pool = data_centres[d] * after_cost
            general = general + (share_pool(pool, claimants, claims, recovered, layout, xp) if claimants else pool)
        share_pool(general, list(members), claims, recovered, layout, xp)
    return xp.stack(recovered, axis=0)
