"""Steps 5-9 of docs/model.md 7 for every borrower of a path: cash flows, payments, covenants,
maturities, defaults, fire sales and recoveries.

`credit_step` is a pure array-API function of the credit state, this step's market levels
(at t_{k+1}, with R_k and L_k), and the borrowers' revenue-shock draws. Loops run over the
static portfolio structure (instruments, borrowers, ranks); all path values are arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from gpusim.model.borrowers import cfads, revenue_shock_step, sum_over, tenant_defaults
from gpusim.model.constants import DSCR_WITHOUT_DEBT_SERVICE, NO_DEFAULT, UNBOUNDED_RATIO, DefaultReason
from gpusim.model.constants import REASONS as REASONS  # the labels, indexed by code
from gpusim.model.debt import (
    by_owner,
    collateral_value,
    coupon_rate,
    data_centre_proceeds,
    facility_headroom,
    owned_fleet,
    recovery_waterfall,
    remaining_payments,
    scheduled_principal,
    sum_by_owner,
)
from gpusim.model.market import MarketView, by_regime, shocked_depth
from gpusim.model.params import FUNDING_SOURCES, CreditParams, Layout, MarketParams


class CreditState(NamedTuple):
    alive: Any  # (B, n) bool
    default_step: Any  # (B, n) int32, -1 while alive
    reason: Any  # (B, n) int32, a DefaultReason code
    cash: Any  # (B, n) USD
    eps: Any  # (B, n) revenue shock
    units: Any  # (B, A, n) treasury crypto held (its pledged part never changes while alive)
    outstanding: Any  # (I, n) principal (drawn amount for facilities)
    maturity_step: Any  # (I, n) step holding the maturity date (moves on refinancing)
    spread_add: Any  # (I, n) coupon step-ups from refinancing
    dscr_breaches: Any  # (I, n) consecutive failed DSCR / liquidity tests
    ltv_breaches: Any  # (I, n) consecutive failed LTV tests
    cfads_window: Any  # (B, W, n) CFADS of the trailing 12 months
    service_window: Any  # (B, W, n) debt service due in the trailing 12 months
    loss: Any  # (I, n) discounted loss
    loss_nominal: Any  # (I, n)
    exposure: Any  # (I, n) exposure at default, discounted like the loss (so LGD = loss / exposure)
    annuity: Any  # (I, n) risky annuity: sum of DF x outstanding x dt while alive
    tenant_default_step: Any  # (T, n) step each tenant defaulted in, NO_DEFAULT while it performs (docs/model.md 5.7)
    cures_used: Any  # (I, n) sponsor equity cures used (covenant remedies)
    added: Any  # (B, G, n) GPUs delivered by capex orders so far (docs/model.md 5.8)
    order_paid: Any  # (O, n) USD paid for each delivered capex order, 0 until delivered (or when cancelled)
    hashrate_added: Any  # (B, n) PH/s miners orders added less PH/s they retired
    kw_added: Any  # (B, n) kW of the miners added less kW of those retired


class CreditView(NamedTuple):
    """Per-borrower ratios at t_{k+1} for fan charts; NaN once the borrower has defaulted."""

    dscr: Any  # (B, n) trailing-12-month CFADS / debt service
    ltv: Any  # (B, n) debt outstanding / (fleets at mark + treasury at market)


class CreditStepValues(NamedTuple):
    """Working values of one credit step, handed from phase to phase (CreditStepValues in
    kernels/credit.cuh); each phase fills its fields, the state at t_k stays as it was."""

    net_price: Any  # (A, n) crypto price after the regime's slippage
    pledged: Any  # (B, A, n) units under a lien at t_k (pledged_units)
    interest: Any = None  # (I, n) coupon due this step
    principal: Any = None  # (I, n) scheduled principal due this step
    matures: Any = None  # (I, n) bool
    outstanding: Any = None  # (I, n) after this step's payments, draws, cures and repayments
    headroom: Any = None  # (I, n) facility headroom left after paying debt service
    coll_mark: Any = None  # (I, n) collateral at marks
    coll_book: Any = None  # (I, n) collateral at book
    available: Any = None  # (B, n) cash + CFADS before paying
    cash: Any = None  # (B, n)
    units: Any = None  # (B, A, n)
    payment_default: Any = None  # (B, n) bool
    covenant_dscr: Any = None  # (B, n) bool
    covenant_ltv: Any = None  # (B, n) bool
    maturity_default: Any = None  # (B, n) bool
    newly: Any = None  # (B, n) bool: defaults of this step
    access_open: Any = None  # (B, n) bool: the borrower's capital-market window is open this step (docs/model.md 7.10)
    added: Any = None  # (B, G, n) GPUs delivered by capex orders, this step's included
    order_paid: Any = None  # (O, n)
    hashrate_added: Any = None  # (B, n)
    kw_added: Any = None  # (B, n)


def run_rate_windows(view: MarketView, m: MarketParams, c: CreditParams, layout: Layout, xp: Any) -> tuple[Any, Any]:
    """CFADS and debt service per step at t_0 run rates, (B, n) each.

    They fill the trailing-12-month DSCR windows at the start, so the first tests see a year of
    history at today's levels (the loans were running before t_0) rather than a partial window.
    """
    dt = layout.dt
    n = view.utilization.shape[0]
    eps = xp.zeros((layout.n_borrowers, n), dtype=view.utilization.dtype)
    tenants = xp.full((layout.n_tenants, n), NO_DEFAULT, dtype=view.utilization.dtype)  # every tenant performs at t_0
    flow = cfads(view, tenants, eps, 0, 0, m, c, layout, xp)
    outstanding = c.principal0[:, None] + xp.zeros_like(eps[:1])
    rate = coupon_rate(0, 0.0, c)
    maturity = c.maturity_step0[:, None] + xp.zeros_like(eps[:1])
    per_payment = scheduled_principal(outstanding, rate, remaining_payments(maturity, 0, dt, c, xp), c, xp)
    per_step = outstanding * rate * dt + per_payment * c.payments_per_year[:, None] * dt
    return flow, sum_by_owner(per_step, layout, xp)


def initial_credit_state(view: MarketView, m: MarketParams, c: CreditParams, layout: Layout, xp: Any) -> CreditState:
    """Credit state at t_0 given the market at t_0 (which sets the DSCR history, see run_rate_windows)."""
    dtype = c.cash0.dtype
    n_paths = view.utilization.shape[0]
    B, I, W = layout.n_borrowers, layout.n_instruments, layout.window_steps  # noqa: E741
    zeros_per_borrower = xp.zeros((B, n_paths), dtype=dtype)
    zeros_per_instrument = xp.zeros((I, n_paths), dtype=dtype)
    flow0, service0 = run_rate_windows(view, m, c, layout, xp)
    return CreditState(
        alive=xp.ones((B, n_paths), dtype=xp.bool),
        default_step=xp.full((B, n_paths), NO_DEFAULT, dtype=xp.int32),
        reason=xp.zeros((B, n_paths), dtype=xp.int32),
        cash=c.cash0[:, None] + zeros_per_borrower,
        eps=zeros_per_borrower,
        units=c.treasury0[:, :, None] + xp.zeros((B, layout.n_assets, n_paths), dtype=dtype),
        outstanding=c.principal0[:, None] + zeros_per_instrument,
        maturity_step=c.maturity_step0[:, None] + zeros_per_instrument,
        spread_add=zeros_per_instrument,
        dscr_breaches=zeros_per_instrument,
        ltv_breaches=zeros_per_instrument,
        cfads_window=flow0[:, None, :] + xp.zeros((B, W, n_paths), dtype=dtype),
        service_window=service0[:, None, :] + xp.zeros((B, W, n_paths), dtype=dtype),
        loss=zeros_per_instrument,
        loss_nominal=zeros_per_instrument,
        exposure=zeros_per_instrument,
        annuity=zeros_per_instrument,
        tenant_default_step=xp.full((layout.n_tenants, n_paths), NO_DEFAULT, dtype=dtype),
        cures_used=zeros_per_instrument,
        added=xp.zeros((B, layout.n_generations, n_paths), dtype=dtype),
        order_paid=xp.zeros((layout.n_orders, n_paths), dtype=dtype),
        hashrate_added=zeros_per_borrower,
        kw_added=zeros_per_borrower,
    )


def ratio(numerator: Any, denominator: Any, xp: Any) -> Any:
    """numerator / denominator, and UNBOUNDED_RATIO where there is nothing to divide by (e.g. LTV without collateral)."""
    positive = denominator > 0.0
    return xp.where(positive, numerator / xp.where(positive, denominator, 1.0), UNBOUNDED_RATIO)


def pledged_units(live: Any, c: CreditParams, layout: Layout, xp: Any) -> Any:
    """Units of each borrower's treasury under a lien, (B, A, n): the pledged share nu_b,a while
    some instrument secured on it is `live` (I, n) bool; a pledge whose loans have all matured
    is released (docs/model.md 6.5)."""
    nu = c.treasury0 * c.pledged_share
    no_lien = xp.zeros((live.shape[-1],), dtype=nu.dtype)
    rows = []
    for b in range(layout.n_borrowers):
        per_asset = []
        for a in range(layout.n_assets):
            secured = [i for i in layout.instruments_of(b) if a in layout.collateral_assets[i]]
            if not secured:  # pledged to no instrument: no lien (nu 1{false} = 0)
                per_asset.append(no_lien)
                continue
            held = live[secured[0]]
            for i in secured[1:]:
                held = held | live[i]
            per_asset.append(nu[b, a] * xp.astype(held, nu.dtype))
        rows.append(xp.stack(per_asset, axis=0))
    return xp.stack(rows, axis=0)


def sell_crypto(need: Any, units: Any, pledged: Any, net_price: Any, xp: Any) -> tuple[Any, Any]:
    """Sell each borrower's unpledged treasury crypto, asset by asset in listed order, until
    `need` (B, n) is met; returns (need left, units left (B, A, n)).

    Units under a lien (`pledged`) stay with the lenders' collateral: a living borrower cannot
    sell them to pay other debt, opex or an LTV cure, only to repay the loans they secure at
    maturity (refinance_or_repay passes the liens left after that repayment). A holding sold
    down to a rounding residual below its lien sells nothing (never a negative amount)."""
    left = []
    for a in range(units.shape[1]):
        held = units[:, a, :]
        price = net_price[a][None, :]
        sold = xp.minimum(need, xp.maximum(held - pledged[:, a, :], 0.0) * price)
        left.append(held - sold / xp.where(price > 0.0, price, 1.0))
        need = need - sold
    return need, xp.stack(left, axis=1)


def draw_facilities(need: Any, headroom: Any, layout: Layout, xp: Any) -> tuple[Any, Any]:
    """Draw each borrower's facilities for `need` (B, n), pro rata to their headroom (I, n);
    returns (need left, drawn per instrument)."""
    total = sum_by_owner(headroom, layout, xp)
    drawn = xp.minimum(need, total)
    share = headroom / by_owner(xp.where(total > 0.0, total, 1.0), layout, xp)
    return need - drawn, by_owner(drawn, layout, xp) * share


def trailing_dscr(cfads_window: Any, service_window: Any, xp: Any) -> Any:
    """CFADS over debt service due in the trailing 12 months, (B, n); 1e9 with no debt service."""
    service = sum_over(service_window, axis=1)
    return xp.where(service > 0.0, sum_over(cfads_window, axis=1) / xp.where(service > 0.0, service, 1.0), DSCR_WITHOUT_DEBT_SERVICE)


def borrower_ltv(
    view: MarketView, units: Any, outstanding: Any, step_next: Any, c: CreditParams, layout: Layout, xp: Any, fleet: Any = None
) -> Any:
    """Debt of each borrower over its fleets at mark plus its treasury (B, A, n) at market plus its
    data centres at t_{k+1}, (B, n): the LTV of the fan charts and of the refinancing test of
    unsecured debt. 0 without debt, so a borrower that has repaid everything and sold its treasury
    down to a rounding residual has no LTV of 1e9 (nor one that flips between 0 and 1e9 with the
    residual's last bit). `fleet` (B, G, n) are the GPUs owned on the path (owned_fleet; none: the
    fleets at t_0)."""
    fleet = c.fleet_count[:, :, None] if fleet is None else fleet
    fleets = sum_over(fleet * view.gpu_mark[None, :, :], axis=1)
    treasury = sum_over(units * view.crypto[None, :, :], axis=1)
    assets = fleets + treasury
    if layout.n_data_centres:  # (adding 0 changes nothing: CUDA always adds it)
        assets = assets + c.data_centre_value_by_borrower[step_next][:, None]
    debt = sum_by_owner(outstanding, layout, xp)
    return xp.where(debt > 0.0, ratio(debt, assets, xp), 0.0)


def credit_ratios(cs: CreditState, view: MarketView, step_next: Any, c: CreditParams, layout: Layout, xp: Any) -> CreditView:
    """Trailing DSCR and LTV on marks per borrower at t_{k+1} (NaN once defaulted), for the fan charts."""
    dscr = trailing_dscr(cs.cfads_window, cs.service_window, xp)
    ltv = borrower_ltv(view, cs.units, cs.outstanding, step_next, c, layout, xp, owned_fleet(cs.added, layout, c))
    return CreditView(dscr=xp.where(cs.alive, dscr, xp.nan), ltv=xp.where(cs.alive, ltv, xp.nan))


def debt_service_due(
    cs: CreditState, step: int, c: CreditParams, layout: Layout, xp: Any, w: CreditStepValues
) -> tuple[Any, CreditStepValues]:
    """5. Debt service due in (t_k, t_k+1] per borrower (B, n): coupons on payment dates (with
    the margin step-up of an instrument in breach), scheduled principal before maturity; fills
    interest, principal and matures."""
    spread = cs.spread_add
    if layout.covenant_remedies:  # (a step-up of 0 adds exactly 0: CUDA always adds it)
        spread = spread + c.breach_step_up[:, None] * in_breach(cs.dscr_breaches, cs.ltv_breaches, xp)
    rate = coupon_rate(step, spread, c)
    due_now = c.payment_due[step][:, None]
    matures = cs.maturity_step == step
    interest = cs.outstanding * rate / c.payments_per_year[:, None] * due_now
    remaining = remaining_payments(cs.maturity_step, step, layout.dt, c, xp)
    principal = xp.where(matures, 0.0, due_now * scheduled_principal(cs.outstanding, rate, remaining, c, xp))
    principal = xp.minimum(principal, cs.outstanding)
    service = sum_by_owner(interest + principal, layout, xp)
    return service, w._replace(interest=interest, principal=principal, matures=matures)


def pay_debt_service(
    cs: CreditState, view: MarketView, flow: Any, service: Any, step: int, c: CreditParams, layout: Layout, xp: Any, w: CreditStepValues
) -> CreditStepValues:
    """6. Pay `service`: cash (with this step's CFADS `flow`) first, then unpledged crypto at the
    slipped price, then facility headroom; a shortfall is a payment default."""
    available = cs.cash + flow
    need, units = sell_crypto(xp.maximum(service - available, 0.0), cs.units, w.pledged, w.net_price, xp)
    fleet = owned_fleet(cs.added, layout, c)
    coll_mark, coll_book = collateral_value(view.gpu_mark, step + 1, w.pledged, view.crypto, layout, c, xp, fleet, cs.order_paid)
    headroom = facility_headroom(cs.outstanding, coll_mark, c, xp)
    need, drawn = draw_facilities(need, headroom, layout, xp)
    return w._replace(
        available=available,
        cash=xp.maximum(available - service, 0.0),
        units=units,
        coll_mark=coll_mark,
        coll_book=coll_book,
        outstanding=cs.outstanding - w.principal + drawn,
        headroom=headroom - drawn,
        payment_default=cs.alive & (need > 0.0),
    )


def market_access_open(u: Any, ltv: Any, tight: Any, c: CreditParams, xp: Any) -> Any:
    """Whether each borrower can issue this step, (B, n): its access uniform (B, n) below the
    regime's per-step probability (0 without market access, and in a freeze) and its LTV at marks
    at most max_ltv (docs/model.md 7.10)."""
    return (u < by_regime(c.access_prob, tight, xp)) & (ltv <= c.access_max_ltv[:, None])


def blended_spread(outstanding: Any, spread_add: Any, issued: Any, step_up: Any, xp: Any) -> Any:
    """Spread add-on of an instrument after new debt `issued` at `step_up` joins its `outstanding`
    principal at `spread_add`: the principal-weighted mean, so the interest equals the sum of the
    tranches' (docs/model.md 7.10); unchanged where nothing is issued."""
    total = outstanding + issued
    return xp.where(issued > 0.0, (outstanding * spread_add + issued * step_up) / xp.where(issued > 0.0, total, 1.0), spread_add)


def fund_capex(
    cs: CreditState, view: MarketView, u_access: Any, tight: Any, step: int, c: CreditParams, layout: Layout, xp: Any, w: CreditStepValues
) -> tuple[CreditState, CreditStepValues]:
    """6b. Market access and the capex orders due this step (docs/model.md 5.9, 7.10), after debt
    service. Each order due of a living borrower not in payment default costs count x price (its
    fixed price, or the generation's mark at t_k+1), met from its sources in order: cash; a draw
    on its facility, whose borrowing base counts the GPUs delivered; at-the-market equity while
    the window is open, within the step's limit, raising gross x (1 - cost); new debt while the
    window is open, within the step's limit and the instrument's commitment, raising gross x
    (1 - cost) and adding gross to the instrument's principal at its blended spread. Funded in
    full, the order is paid and delivered (GPUs, collateral at mark and book, USD paid; or miners'
    PH/s and kW); otherwise nothing is paid, and a committed order is a payment default while an
    uncommitted one is cancelled. Returns the state with the spreads after new debt, and the values."""
    if layout.market_access:  # static: without market access no borrower issues
        ltv = borrower_ltv(view, w.units, w.outstanding, step + 1, c, layout, xp, owned_fleet(cs.added, layout, c))
        access_open = market_access_open(u_access, ltv, tight, c, xp)
    else:
        access_open = xp.zeros(w.cash.shape, dtype=xp.bool)
    w = w._replace(
        access_open=access_open, added=cs.added, order_paid=cs.order_paid, hashrate_added=cs.hashrate_added, kw_added=cs.kw_added
    )
    if not layout.n_orders:
        return cs, w
    B, I = layout.n_borrowers, layout.n_instruments  # noqa: E741
    cash, default = [w.cash[b] for b in range(B)], [w.payment_default[b] for b in range(B)]
    equity_left = [c.equity_limit_step[b] + xp.zeros_like(w.cash[b]) for b in range(B)]
    outstanding, headroom = [w.outstanding[i] for i in range(I)], [w.headroom[i] for i in range(I)]
    coll_mark, coll_book = [w.coll_mark[i] for i in range(I)], [w.coll_book[i] for i in range(I)]
    added = [[cs.added[b, g] for g in range(layout.n_generations)] for b in range(B)]
    paid = [cs.order_paid[o] for o in range(layout.n_orders)]
    hashrate_added, kw_added = [cs.hashrate_added[b] for b in range(B)], [cs.kw_added[b] for b in range(B)]
    debt_left = [c.debt_limit_step[b] + xp.zeros_like(w.cash[b]) for b in range(B)]
    spread, step_up = [cs.spread_add[i] for i in range(I)], by_regime(c.debt_step_up, tight, xp)
    for o in range(layout.n_orders):
        b, g, count = layout.order_owner[o], layout.order_generation[o], c.order_count[o]
        due = (c.order_step[o] == step) & cs.alive[b] & ~w.payment_default[b]
        mark = view.gpu_mark[g]
        cost = count * xp.where(c.order_at_mark[o] > 0.0, mark, c.order_price[o])
        need = xp.where(due, cost, 0.0)
        cash_left, equity, draws = cash[b], equity_left[b], []
        debt, issued, j = debt_left[b], xp.zeros_like(need), layout.issuance_instrument[b]
        for source in (FUNDING_SOURCES[code] for code in layout.order_funding[o]):
            if source == "cash":
                use = xp.minimum(cash_left, need)
                cash_left = cash_left - use
            elif source == "facility":
                f = layout.order_facility[o]
                base = xp.minimum(c.commitment[f], c.advance_rate[f] * (coll_mark[f] + c.order_pledged[f, o] * count * mark))
                use = xp.minimum(need, c.is_facility[f] * xp.maximum(base - outstanding[f], 0.0))
                draws.append((f, use))
            elif source == "equity":  # at the market
                use = xp.where(access_open[b], xp.minimum(need, equity * (1.0 - c.equity_cost[b])), 0.0)
                equity = equity - use / (1.0 - c.equity_cost[b])
            else:  # "debt": new debt into the instrument of market_access.debt
                room = xp.minimum(debt, xp.maximum(c.commitment[j] - outstanding[j] - issued, 0.0))
                use = xp.where(access_open[b], xp.minimum(need, room * (1.0 - c.debt_cost[b])), 0.0)
                debt, issued = debt - use / (1.0 - c.debt_cost[b]), issued + use / (1.0 - c.debt_cost[b])
            need = need - use
        funded = due & (need <= 0.0)
        cash[b], equity_left[b] = xp.where(funded, cash_left, cash[b]), xp.where(funded, equity, equity_left[b])
        for f, use in draws:
            outstanding[f] = xp.where(funded, outstanding[f] + use, outstanding[f])
            headroom[f] = xp.where(funded, xp.maximum(headroom[f] - use, 0.0), headroom[f])
        if j >= 0:  # static: the borrower can issue debt
            issued = xp.where(funded, issued, 0.0)
            spread[j] = blended_spread(outstanding[j], spread[j], issued, step_up[b], xp)
            outstanding[j], debt_left[b] = outstanding[j] + issued, xp.where(funded, debt, debt_left[b])
        if layout.order_miners[o]:  # static: miners add hashrate and power, not collateral
            hashrate_added[b] = hashrate_added[b] + xp.where(funded, c.order_hashrate_delta[o], 0.0)
            kw_added[b] = kw_added[b] + xp.where(funded, c.order_kw_delta[o], 0.0)
        else:
            for i in layout.instruments_of(b):
                coll_mark[i] = coll_mark[i] + xp.where(funded, c.order_pledged[i, o] * count * mark, 0.0)
                coll_book[i] = coll_book[i] + xp.where(funded, c.order_pledged[i, o] * cost * c.order_book_factor[step + 1][o], 0.0)
            added[b][g] = added[b][g] + xp.where(funded, count, 0.0)
        paid[o] = xp.where(funded, cost, paid[o])
        default[b] = default[b] | (due & ~funded & (c.order_committed[o] > 0.0))
    return cs._replace(spread_add=xp.stack(spread, axis=0)), w._replace(
        cash=xp.stack(cash, axis=0),
        outstanding=xp.stack(outstanding, axis=0),
        headroom=xp.stack(headroom, axis=0),
        coll_mark=xp.stack(coll_mark, axis=0),
        coll_book=xp.stack(coll_book, axis=0),
        payment_default=xp.stack(default, axis=0),
        added=xp.stack([xp.stack(row, axis=0) for row in added], axis=0),
        order_paid=xp.stack(paid, axis=0),
        hashrate_added=xp.stack(hashrate_added, axis=0),
        kw_added=xp.stack(kw_added, axis=0),
    )


def in_breach(dscr_breaches: Any, ltv_breaches: Any, xp: Any) -> Any:
    """1 where an instrument is in breach (a failed test not passed since), else 0, (I, n)."""
    return xp.astype(dscr_breaches + ltv_breaches > 0.0, dscr_breaches.dtype)


def trailing_service(service_window: Any) -> Any:
    """Debt service due in the trailing 12 months per borrower, (B, n), summed oldest first."""
    return sum_over(service_window, axis=1)


def covenant_remedies(
    cs: CreditState,
    dscr: Any,
    tested: Any,
    dscr_breach: Any,
    ltv_breach: Any,
    tight: Any,
    c: CreditParams,
    layout: Layout,
    xp: Any,
    w: CreditStepValues,
) -> tuple[Any, Any, Any, Any, Any]:
    """Remedies of this step's failed tests, instrument by instrument in listed order (each may
    spend or bring the borrower's cash): in the easy regime a waiver for a fee of the outstanding
    when cash covers it, else a sponsor equity cure of a DSCR / liquidity breach while cures are
    left; then the breach counters (a remedied test counts as passed); then, every step, cash
    above the floor sweeps into each instrument still in breach. Returns the breach counters,
    equity cures used, cash (B, n) and outstanding (I, n)."""
    easy = ~tight
    service = trailing_service(cs.service_window)
    cash = [w.cash[b] for b in range(layout.n_borrowers)]
    dscr_rows, ltv_rows, cures_rows = [], [], []
    for i in range(layout.n_instruments):
        b = layout.instrument_owner[i]
        fee = c.waiver_fee[i] * w.outstanding[i]
        waived = (dscr_breach[i] | ltv_breach[i]) & easy & (c.has_waiver[i] > 0.0) & (cash[b] >= fee)
        cash[b] = cash[b] - xp.where(waived, fee, 0.0)
        shortfall = xp.where(c.dscr_min[i] > 0.0, xp.maximum((c.dscr_min[i] - dscr[b]) * service[b], 0.0), 0.0)
        shortfall = shortfall + xp.maximum(c.min_liquidity[b] - cash[b], 0.0)
        cured = dscr_breach[i] & ~waived & easy & (cs.cures_used[i] < c.equity_cures[i])
        cash[b] = cash[b] + xp.where(cured, shortfall, 0.0)
        dscr_rows.append(
            xp.where(tested[i], xp.where(dscr_breach[i] & ~waived & ~cured, cs.dscr_breaches[i] + 1.0, 0.0), cs.dscr_breaches[i])
        )
        ltv_rows.append(xp.where(tested[i], xp.where(ltv_breach[i] & ~waived, cs.ltv_breaches[i] + 1.0, 0.0), cs.ltv_breaches[i]))
        cures_rows.append(cs.cures_used[i] + xp.astype(cured, cs.cures_used.dtype))
    dscr_breaches, ltv_breaches = xp.stack(dscr_rows, axis=0), xp.stack(ltv_rows, axis=0)
    breached = in_breach(dscr_breaches, ltv_breaches, xp)
    outstanding = []
    for i in range(layout.n_instruments):
        b = layout.instrument_owner[i]
        sweep = c.has_sweep[i] * breached[i] * xp.minimum(xp.maximum(cash[b] - c.sweep_floor[i], 0.0), w.outstanding[i])
        cash[b] = cash[b] - sweep
        outstanding.append(w.outstanding[i] - sweep)
    return dscr_breaches, ltv_breaches, xp.stack(cures_rows, axis=0), xp.stack(cash, axis=0), xp.stack(outstanding, axis=0)


def ltv_excess(outstanding: Any, coll_mark: Any, coll_book: Any, test: Any, c: CreditParams, xp: Any) -> Any:
    """Principal of each instrument above its LTV covenant (on marks, at book or a mix), 0 when not tested."""
    on_mark = c.ltv_on_mark[:, None]
    basis = on_mark * coll_mark + (1.0 - on_mark) * coll_book
    return xp.where(test, xp.maximum(outstanding - c.ltv_max[:, None] * basis, 0.0), 0.0)


def covenant_tests(
    cs: CreditState, dscr: Any, tight: Any, step: int, c: CreditParams, layout: Layout, xp: Any, w: CreditStepValues
) -> tuple[CreditState, CreditStepValues]:
    """7. Covenant tests (while a loan is outstanding) against the trailing `dscr` (B, n).

    LTV breaches are cured by prepaying from cash and unpledged crypto, all of a borrower's
    breaches at once or none; the configured remedies (waiver, equity cure, cash sweep) follow
    (covenant_remedies, skipped where no instrument has one); a breach counter beyond its cure
    periods is a covenant default (an acceleration after the remedies failed). Returns the state
    with the new breach counters, and the values after the cures."""
    test = (c.covenant_test[step][:, None] > 0.0) & (cs.outstanding > 0.0)
    liquidity_short = by_owner(w.cash < c.min_liquidity[:, None], layout, xp)
    dscr_breach = test & (((c.dscr_min[:, None] > 0.0) & (by_owner(dscr, layout, xp) < c.dscr_min[:, None])) | liquidity_short)
    excess = ltv_excess(w.outstanding, w.coll_mark, w.coll_book, test, c, xp)
    excess_by_borrower = sum_by_owner(excess, layout, xp)
    free_crypto = sum_over(xp.maximum(w.units - w.pledged, 0.0) * w.net_price[None, :, :], axis=1)
    cured_by_borrower = (excess_by_borrower > 0.0) & (w.cash + free_crypto >= excess_by_borrower)
    prepayment_by_borrower = xp.where(cured_by_borrower, excess_by_borrower, 0.0)
    from_cash = xp.minimum(w.cash, prepayment_by_borrower)
    _, units = sell_crypto(prepayment_by_borrower - from_cash, w.units, w.pledged, w.net_price, xp)
    cured = by_owner(cured_by_borrower, layout, xp)
    ltv_breach = (excess > 0.0) & ~cured
    cash, outstanding, cures_used = w.cash - from_cash, w.outstanding - xp.where(cured, excess, 0.0), cs.cures_used
    if layout.covenant_remedies:
        after_cures = w._replace(cash=cash, outstanding=outstanding)
        dscr_breaches, ltv_breaches, cures_used, cash, outstanding = covenant_remedies(
            cs, dscr, test, dscr_breach, ltv_breach, tight, c, layout, xp, after_cures
        )
    else:
        dscr_breaches = xp.where(test, xp.where(dscr_breach, cs.dscr_breaches + 1.0, 0.0), cs.dscr_breaches)
        ltv_breaches = xp.where(test, xp.where(ltv_breach, cs.ltv_breaches + 1.0, 0.0), cs.ltv_breaches)
    cure_periods = c.cure_periods[:, None]
    covenant_dscr = sum_by_owner(xp.astype(dscr_breaches > cure_periods, dscr_breaches.dtype), layout, xp) > 0.0
    covenant_ltv = sum_by_owner(xp.astype(ltv_breaches > cure_periods, ltv_breaches.dtype), layout, xp) > 0.0
    values = w._replace(cash=cash, units=units, outstanding=outstanding, covenant_dscr=covenant_dscr, covenant_ltv=covenant_ltv)
    return cs._replace(dscr_breaches=dscr_breaches, ltv_breaches=ltv_breaches, cures_used=cures_used), values


def refinance_or_repay(
    cs: CreditState, view: MarketView, tight: Any, dscr: Any, step: int, c: CreditParams, layout: Layout, xp: Any, w: CreditStepValues
) -> tuple[CreditState, CreditStepValues]:
    """8. Maturities: within the refinancing window before its maturity, a loan is refinanced
    in a regime its lenders refinance in when LTV (the loan's own collateral's if secured, else
    the borrower's) and DSCR meet the terms; at maturity an instrument not refinanced is repaid
    from cash, crypto (the units pledged to it included: their lien ends with the repayment)
    and the headroom of facilities not maturing now. A borrower that cannot repay in full
    repays nothing (a maturity default): it enters the workout with the cash and crypto it had,
    owing what it owed. Returns the state with refinanced maturities and spreads, and the values after repaying."""
    ltv_refi = xp.where(
        c.secured[:, None] > 0.0,
        ratio(w.outstanding, w.coll_mark, xp),
        by_owner(borrower_ltv(view, w.units, w.outstanding, step + 1, c, layout, xp, owned_fleet(w.added, layout, c)), layout, xp),
    )
    alive = by_owner(cs.alive, layout, xp)
    in_window = (cs.maturity_step - step <= c.refi_window_steps[:, None]) & (cs.maturity_step >= step)
    refinance = (
        in_window
        & alive
        & (c.refinanceable[:, None] > 0.0)
        & (~tight | (c.refi_in_tight[:, None] > 0.0))
        & (ltv_refi <= c.refi_max_ltv[:, None])
        & (by_owner(dscr, layout, xp) >= c.refi_min_dscr[:, None])
    )
    if layout.market_access:  # static: refinancing in the capital markets needs the window open (docs/model.md 7.10)
        refinance = refinance & ((c.refi_via_access[:, None] == 0.0) | by_owner(w.access_open, layout, xp))
    maturity_step = xp.where(refinance, step + c.refi_tenor_steps[:, None], cs.maturity_step)
    step_up = xp.where(tight, c.refi_step_up_tight[:, None], c.refi_step_up[:, None])
    repay = w.matures & alive & ~refinance
    owed = sum_by_owner(xp.where(repay, w.outstanding, 0.0), layout, xp)
    from_cash = xp.minimum(w.cash, owed)
    liens_left = pledged_units(maturity_step > step, c, layout, xp)
    short_by_borrower, units_after = sell_crypto(owed - from_cash, w.units, liens_left, w.net_price, xp)
    short_by_borrower, drawn = draw_facilities(short_by_borrower, xp.where(w.matures, 0.0, w.headroom), layout, xp)
    maturity_default = short_by_borrower > 0.0
    defaulted_by_instrument = by_owner(maturity_default, layout, xp)
    repaid = repay & ~defaulted_by_instrument
    values = w._replace(
        cash=xp.where(maturity_default, w.cash, w.cash - from_cash),
        units=xp.where(maturity_default[:, None, :], w.units, units_after),
        outstanding=xp.where(repaid, 0.0, xp.where(defaulted_by_instrument, w.outstanding, w.outstanding + drawn)),
        maturity_default=maturity_default,
    )
    refinanced = cs._replace(
        maturity_step=maturity_step,
        spread_add=xp.where(refinance, cs.spread_add + step_up, cs.spread_add),
    )
    return refinanced, values


def distribute(cs: CreditState, dscr: Any, c: CreditParams, layout: Layout, xp: Any, w: CreditStepValues) -> CreditStepValues:
    """8b. Distributions to equity: the share of cash above the floor leaves the borrower, unless
    locked up (trailing DSCR below the lock-up level, or an instrument in breach) or the borrower
    defaults this step (docs/model.md 7.5a). Returns the values with the cash after paying them."""
    breached = sum_by_owner(in_breach(cs.dscr_breaches, cs.ltv_breaches, xp), layout, xp) > 0.0
    lockup = c.lockup_dscr[:, None]
    locked = ((lockup > 0.0) & (dscr < lockup)) | ((c.lockup_on_breach[:, None] > 0.0) & breached)
    defaulting = w.payment_default | w.covenant_dscr | w.covenant_ltv | w.maturity_default
    paid = c.distribution_share[:, None] * xp.maximum(w.cash - c.distribution_floor[:, None], 0.0)
    return w._replace(cash=w.cash - xp.where(locked | defaulting, 0.0, paid))


def default_reason(payment_default: Any, covenant_dscr: Any, covenant_ltv: Any, xp: Any) -> Any:
    """Why each borrower defaults, the first of the reasons that apply in DefaultReason's order, (B, n)."""
    return xp.where(
        payment_default,
        DefaultReason.PAYMENT.value,
        xp.where(
            covenant_dscr,
            DefaultReason.COVENANT_DSCR.value,
            xp.where(covenant_ltv, DefaultReason.COVENANT_LTV.value, DefaultReason.MATURITY.value),
        ),
    )


def remembered_dump(dumped: Any, m: MarketParams) -> Any:
    """The GPUs of this step's fire sales that enter the distressed-supply memory L, (G, n): all
    of Q^g with the fire-sale chain on; none with it off, where the memory keeps only the
    outside supply q_exo (a defaulter has left, so only other borrowers could feel its dump)."""
    return m.chain * dumped


def gpus_dumped(newly: Any, fleet: Any, xp: Any) -> Any:
    """Q^g: GPUs of each generation that this step's defaults `newly` (B, n) put up for sale from
    the fleets `fleet` (B, G, n) (owned_fleet), (G, n)."""
    newly_defaulted_weight = xp.astype(newly, fleet.dtype)
    return sum_over(fleet * newly_defaulted_weight[:, None, :], axis=0)


def recoveries_where(
    any_default: Any,
    exposure: Any,
    marks: Any,
    dumped: Any,
    tight: Any,
    units: Any,
    pledged: Any,
    net_price: Any,
    cash: Any,
    layout: Layout,
    m: MarketParams,
    c: CreditParams,
    xp: Any,
    index: Any = None,
    data_centres: Any = None,
    fleet: Any = None,
) -> Any:
    """The recovery waterfall evaluated only on paths where some borrower defaults this step.

    Defaults are rare in any one step, so gathering those paths first saves most of the
    waterfall's work. `index` lists the defaulting paths in order, first (it may have unused
    entries after them); by default it is found here, with a data-dependent size, which eager
    backends (numpy, cupy) allow; the JAX backend passes a fixed-size one. `data_centres` (D, n)
    is what each data centre sells for (None without any).
    `fleet` (B, G, n) are the GPUs owned on each path where capex changes them (none: the fleets at t_0).
    """
    if index is None:
        index = xp.nonzero(any_default)[0]
        if int(index.shape[0]) == 0:
            return xp.zeros_like(exposure)

    def pick(x: Any) -> Any:
        return xp.take(x, index, axis=x.ndim - 1)

    picked = (pick(x) for x in (exposure, marks, dumped, tight, units, pledged, net_price, cash))
    sites = None if data_centres is None else pick(data_centres)
    recovered = recovery_waterfall(*picked, layout, m, c, xp, data_centres=sites, fleet=None if fleet is None else pick(fleet))
    position = xp.clip(xp.cumulative_sum(xp.astype(any_default, xp.int64)) - 1, 0, None)
    return xp.where(any_default, xp.take(recovered, position, axis=1), 0.0)


def settle_defaults(
    cs: CreditState,
    view: MarketView,
    tight: Any,
    step: int,
    m: MarketParams,
    c: CreditParams,
    layout: Layout,
    xp: Any,
    w: CreditStepValues,
    recoveries: Callable[..., Any] = recoveries_where,
) -> tuple[CreditState, CreditStepValues, Any]:
    """9. Defaults of this step: GPUs dumped per generation (Q^g), the recovery waterfall of each
    defaulting borrower at its fire-sale prices, losses and exposures. A borrower whose debt is
    all repaid has no lender left to default on. Returns the state with the defaults, losses
    and exposures booked, the values with `newly`, and the dump the distress memory sees (G, n)."""
    owes = sum_by_owner(cs.outstanding, layout, xp) > 0.0
    newly = cs.alive & owes & (w.payment_default | w.covenant_dscr | w.covenant_ltv | w.maturity_default)
    # a payment default undoes this step's deliveries with the rest of its payments
    fleet = owned_fleet(xp.where(w.payment_default[:, None, :], cs.added, w.added), layout, c)
    dumped = gpus_dumped(newly, fleet, xp)
    # a borrower that cannot pay in full goes into the workout with what it had before paying
    paid_nothing = by_owner(w.payment_default, layout, xp)
    exposure = xp.where(paid_nothing, cs.outstanding + w.interest, w.outstanding)
    workout_cash = xp.where(w.payment_default, xp.maximum(w.available, 0.0), w.cash)
    workout_units = xp.where(w.payment_default[:, None, :], cs.units, w.units)
    any_default = sum_over(xp.astype(newly, dumped.dtype), axis=0) > 0.0
    pledged = xp.broadcast_to(w.pledged, workout_units.shape)
    # fire sales at t_{k+1} meet the market depth of t_{k+1}, with its dated shock (docs/model.md 4.13)
    depth_now = m._replace(market_depth=shocked_depth(m, step + 1, xp))
    extra = {"fleet": xp.broadcast_to(fleet, (*fleet.shape[:2], exposure.shape[-1]))} if layout.n_orders else {}
    sites = {"data_centres": data_centre_proceeds(step + 1, tight, c, xp)} if layout.n_data_centres else {}
    recovered = recoveries(
        any_default, exposure, view.gpu_mark, dumped, tight, workout_units, pledged, w.net_price, workout_cash, layout, depth_now, c, xp,
        **sites,
        **extra,
    )
    newly_by_instrument = by_owner(newly, layout, xp)
    loss_now = xp.where(newly_by_instrument, exposure - xp.minimum(recovered, exposure), 0.0)
    settled = cs._replace(
        default_step=xp.where(newly, step, cs.default_step),
        reason=xp.where(newly, default_reason(w.payment_default, w.covenant_dscr, w.covenant_ltv, xp), cs.reason),
        loss=cs.loss + loss_now * c.discount[step + 1],
        loss_nominal=cs.loss_nominal + loss_now,
        exposure=cs.exposure + xp.where(newly_by_instrument, exposure, 0.0) * c.discount[step + 1],
    )
    return settled, w._replace(newly=newly), remembered_dump(dumped, m)


def next_credit_state(cs: CreditState, step: int, c: CreditParams, layout: Layout, xp: Any, w: CreditStepValues) -> CreditState:
    """The state at t_{k+1}: survivors keep this step's cash, crypto and debt, defaulted
    borrowers hold nothing; the risky annuity accrues DF x outstanding x dt while alive."""
    still_alive = cs.alive & ~w.newly
    alive_by_instrument = xp.astype(by_owner(cs.alive, layout, xp), cs.outstanding.dtype)
    return cs._replace(
        alive=still_alive,
        cash=xp.where(still_alive, w.cash, 0.0),
        units=xp.where(still_alive[:, None, :], w.units, 0.0),
        outstanding=xp.where(by_owner(still_alive, layout, xp), w.outstanding, 0.0),
        annuity=cs.annuity + c.discount[step] * cs.outstanding * layout.dt * alive_by_instrument,
        added=w.added,
        order_paid=w.order_paid,
        hashrate_added=w.hashrate_added,
        kw_added=w.kw_added,
    )


def credit_step(
    cs: CreditState,
    view: MarketView,
    tight: Any,
    z_eps: Any,
    u_tenant: Any,
    step: int,
    m: MarketParams,
    c: CreditParams,
    layout: Layout,
    xp: Any,
    recoveries: Callable[..., Any] = recoveries_where,
    u_access: Any = None,
) -> tuple[CreditState, Any, CreditView]:
    """One step k -> k+1 of every borrower (steps 5-9 of docs/model.md 7); returns the new state, the
    GPUs dumped by this step's defaults that the distress memory sees (remembered_dump, (G, n)),
    and the ratios for fan charts. `u_tenant` (T, n) are the tenants' default draws.
    `recoveries` has the signature of `recoveries_where` (a backend may bound its gather).
    `u_access` (B, n) are the market-access draws (absent without market access)."""
    w = CreditStepValues(
        net_price=view.crypto * (1.0 - by_regime(m.crypto_slippage, tight, xp)),
        pledged=pledged_units(cs.maturity_step >= step, c, layout, xp),
    )
    eps = revenue_shock_step(cs.eps, z_eps, c)
    tenants = tenant_defaults(cs.tenant_default_step, u_tenant, tight, step, c, xp)
    flow = cfads(view, tenants, eps, step, step + 1, m, c, layout, xp, cs.added, cs.hashrate_added, cs.kw_added)
    service, w = debt_service_due(cs, step, c, layout, xp, w)
    w = pay_debt_service(cs, view, flow, service, step, c, layout, xp, w)
    cs, w = fund_capex(cs, view, u_access, tight, step, c, layout, xp, w)
    cs = cs._replace(
        eps=eps,
        tenant_default_step=tenants,
        cfads_window=xp.concat((cs.cfads_window[:, 1:, :], flow[:, None, :]), axis=1),  # the oldest step drops out
        service_window=xp.concat((cs.service_window[:, 1:, :], service[:, None, :]), axis=1),
    )
    dscr = trailing_dscr(cs.cfads_window, cs.service_window, xp)
    cs, w = covenant_tests(cs, dscr, tight, step, c, layout, xp, w)
    cs, w = refinance_or_repay(cs, view, tight, dscr, step, c, layout, xp, w)
    if layout.distributions:  # (a share of 0 pays exactly 0: CUDA always runs it)
        w = distribute(cs, dscr, c, layout, xp, w)
    cs, w, dumped = settle_defaults(cs, view, tight, step, m, c, layout, xp, w, recoveries)
    new_state = next_credit_state(cs, step, c, layout, xp, w)
    return new_state, dumped, credit_ratios(new_state, view, step + 1, c, layout, xp)
