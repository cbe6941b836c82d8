"""Steps 5-9 of MODEL.md 7 for every borrower of a path: cash flows, payments, covenants,
maturities, defaults, fire sales and recoveries.

`credit_step` is a pure array-API function of the credit state, this step's market levels
(at t_{k+1}, with R_k and L_k), and the borrowers' revenue-shock draws. Loops run over the
static portfolio structure (instruments, borrowers, ranks); all path values are arrays.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gpusim.borrowers import cfads, revenue_shock_step, sum_over
from gpusim.debt import (
    by_owner,
    collateral_value,
    coupon_rate,
    facility_headroom,
    fire_sale_price,
    recovery_waterfall,
    remaining_payments,
    scheduled_principal,
    sum_by_owner,
)
from gpusim.factors import MarketView, by_regime
from gpusim.params import CreditParams, Layout, MarketParams

NO_DEFAULT = -1
REASONS = ("none", "payment", "covenant_dscr", "covenant_ltv", "maturity")
DSCR_WITHOUT_DEBT_SERVICE = 1e9
"""DSCR reported when no debt service fell due in the trailing window (a test it always passes)."""


class CreditState(NamedTuple):
    alive: Any  # (B, n) bool
    default_step: Any  # (B, n) int32, -1 while alive
    reason: Any  # (B, n) int32, index into REASONS
    cash: Any  # (B, n) USD
    eps: Any  # (B, n) revenue shock
    units: Any  # (B, A, n) treasury crypto
    outstanding: Any  # (I, n) principal (drawn amount for facilities)
    maturity_step: Any  # (I, n) step holding the maturity date (moves on refinancing)
    spread_add: Any  # (I, n) coupon step-ups from refinancing
    dscr_breaches: Any  # (I, n) consecutive failed DSCR / liquidity tests
    ltv_breaches: Any  # (I, n) consecutive failed LTV tests
    cfads_window: Any  # (B, W, n) CFADS of the trailing 12 months
    service_window: Any  # (B, W, n) debt service due in the trailing 12 months
    loss: Any  # (I, n) discounted loss
    loss_nominal: Any  # (I, n)
    exposure: Any  # (I, n) exposure at default
    annuity: Any  # (I, n) risky annuity: sum of DF x outstanding x dt while alive


class CreditView(NamedTuple):
    """Per-borrower ratios at t_{k+1} for fan charts; NaN once the borrower has defaulted."""

    dscr: Any  # (B, n) trailing-12-month CFADS / debt service
    ltv: Any  # (B, n) debt outstanding / (fleets at mark + treasury at market)


def run_rate_windows(view: MarketView, m: MarketParams, c: CreditParams, layout: Layout, xp: Any) -> tuple[Any, Any]:
    """CFADS and debt service per step at t_0 run rates, (B, n) each.

    They fill the trailing-12-month DSCR windows at the start, so the first tests see a year of
    history at today's levels (the loans were running before t_0) rather than a partial window.
    """
    dt = layout.dt
    n = view.utilization.shape[0]
    eps = xp.zeros((layout.n_borrowers, n), dtype=view.utilization.dtype)
    flow = cfads(view.rental_rate, view.utilization, view.power_price, view.crypto[layout.btc_index], eps, 0, dt, m, c, xp)
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
    zeros_b = xp.zeros((B, n_paths), dtype=dtype)
    zeros_i = xp.zeros((I, n_paths), dtype=dtype)
    flow0, service0 = run_rate_windows(view, m, c, layout, xp)
    return CreditState(
        alive=xp.ones((B, n_paths), dtype=xp.bool),
        default_step=xp.full((B, n_paths), NO_DEFAULT, dtype=xp.int32),
        reason=xp.zeros((B, n_paths), dtype=xp.int32),
        cash=c.cash0[:, None] + zeros_b,
        eps=zeros_b,
        units=c.treasury0[:, :, None] + xp.zeros((B, layout.n_assets, n_paths), dtype=dtype),
        outstanding=c.principal0[:, None] + zeros_i,
        maturity_step=c.maturity_step0[:, None] + zeros_i,
        spread_add=zeros_i,
        dscr_breaches=zeros_i,
        ltv_breaches=zeros_i,
        cfads_window=flow0[:, None, :] + xp.zeros((B, W, n_paths), dtype=dtype),
        service_window=service0[:, None, :] + xp.zeros((B, W, n_paths), dtype=dtype),
        loss=zeros_i,
        loss_nominal=zeros_i,
        exposure=zeros_i,
        annuity=zeros_i,
    )


def _sell_crypto(need: Any, units: list[Any], net_price: Any, xp: Any, sellable: Any = 1.0) -> tuple[Any, list[Any]]:
    """Sell treasury crypto of one borrower, asset by asset, until `need` is met; returns (need left, units).

    `sellable` (per asset) is the share of each holding that may be sold (1 - pledged share
    for an LTV cure, which must not sell the collateral it is curing)."""
    left = []
    for a, held in enumerate(units):
        price = net_price[a]
        share = sellable if isinstance(sellable, float) else sellable[a]
        sold = xp.minimum(need, held * share * price)
        left.append(held - sold / xp.where(price > 0.0, price, 1.0))
        need = need - sold
    return need, left


def credit_step(
    cs: CreditState,
    view: MarketView,
    tight: Any,
    z_eps: Any,
    step: int,
    m: MarketParams,
    c: CreditParams,
    layout: Layout,
    xp: Any,
) -> tuple[CreditState, Any, CreditView]:
    """One step k -> k+1 of every borrower; returns the new state, the GPUs dumped per
    generation by this step's defaults Q^g (G, n), and the ratios for fan charts."""
    dt = layout.dt
    B, I, A = layout.n_borrowers, layout.n_instruments, layout.n_assets  # noqa: E741
    owner = layout.instrument_owner
    alive = cs.alive
    prices = view.crypto
    net_price = prices * (1.0 - by_regime(m.crypto_slippage, tight, xp))

    # 5. cash flows
    eps = revenue_shock_step(cs.eps, z_eps, c)
    flow = cfads(view.rental_rate, view.utilization, view.power_price, prices[layout.btc_index], eps, step, dt, m, c, xp)

    # debt service due in (t_k, t_k+1]: coupons on payment dates, scheduled principal before maturity
    rate = coupon_rate(step, cs.spread_add, c)
    due_now = c.payment_due[step][:, None]
    matures = cs.maturity_step == step
    interest = cs.outstanding * rate / c.payments_per_year[:, None] * due_now
    remaining = remaining_payments(cs.maturity_step, step, dt, c, xp)
    principal = xp.where(matures, 0.0, due_now * scheduled_principal(cs.outstanding, rate, remaining, c, xp))
    principal = xp.minimum(principal, cs.outstanding)
    service = sum_by_owner(interest + principal, layout, xp)

    # 6. pay: cash first, then treasury crypto at the slipped price, then facility headroom
    available = cs.cash + flow
    need_all = service - available
    cash_rows = [xp.maximum(-need_all[b], 0.0) for b in range(B)]
    need_rows, units_rows = [], []
    for b in range(B):
        need, left = _sell_crypto(xp.maximum(need_all[b], 0.0), [cs.units[b, a] for a in range(A)], net_price, xp)
        need_rows.append(need)
        units_rows.append(left)
    units = xp.stack([xp.stack(row, axis=0) for row in units_rows], axis=0)
    coll_mark, coll_book = collateral_value(view.gpu_mark, step + 1, units, prices, layout, c, xp)
    headroom = facility_headroom(cs.outstanding, coll_mark, c, xp)
    out_rows = [cs.outstanding[i] - principal[i] for i in range(I)]
    head_rows = {i: headroom[i] for i in layout.facilities}
    for i in layout.facilities:
        draw = xp.minimum(need_rows[owner[i]], head_rows[i])
        out_rows[i] = out_rows[i] + draw
        head_rows[i] = head_rows[i] - draw
        need_rows[owner[i]] = need_rows[owner[i]] - draw
    payment_default = alive & (xp.stack(need_rows, axis=0) > 0.0)

    cfads_window = xp.concat((cs.cfads_window[:, 1:, :], flow[:, None, :]), axis=1)
    service_window = xp.concat((cs.service_window[:, 1:, :], service[:, None, :]), axis=1)
    service_12m = sum_over(service_window, axis=1)
    dscr = xp.where(
        service_12m > 0.0, sum_over(cfads_window, axis=1) / xp.where(service_12m > 0.0, service_12m, 1.0), DSCR_WITHOUT_DEBT_SERVICE
    )

    # 7. covenant tests; an LTV breach is cured by prepaying from cash and unpledged crypto where possible
    test = (c.covenant_test[step][:, None] > 0.0) & (cs.outstanding > 0.0)  # tests run while the loan is outstanding
    on_mark = c.ltv_on_mark[:, None]
    basis = on_mark * coll_mark + (1.0 - on_mark) * coll_book
    cash_now = xp.stack(cash_rows, axis=0)
    liquidity_short = by_owner(cash_now < c.min_liquidity[:, None], layout, xp)
    dscr_breach = test & (((c.dscr_min[:, None] > 0.0) & (by_owner(dscr, layout, xp) < c.dscr_min[:, None])) | liquidity_short)
    ltv_breach_rows = {}
    for i in layout.ltv_covenanted:
        b = owner[i]
        excess = xp.maximum(out_rows[i] - c.ltv_max[i] * basis[i], 0.0)
        breach = test[i] & (excess > 0.0)
        free = 1.0 - c.pledged_share[b]
        free_crypto = units_rows[b][0] * free[0] * net_price[0]
        for a in range(1, A):
            free_crypto = free_crypto + units_rows[b][a] * free[a] * net_price[a]
        cure = breach & (cash_rows[b] + free_crypto >= excess)
        prepay = xp.where(cure, excess, 0.0)
        from_cash = xp.minimum(cash_rows[b], prepay)
        cash_rows[b] = cash_rows[b] - from_cash
        _, units_rows[b] = _sell_crypto(prepay - from_cash, units_rows[b], net_price, xp, sellable=free)
        out_rows[i] = out_rows[i] - prepay
        ltv_breach_rows[i] = breach & ~cure
    no_breach = xp.zeros_like(test[0] & alive[0])
    ltv_breach = xp.stack([ltv_breach_rows.get(i, no_breach) for i in range(I)], axis=0)
    dscr_breaches = xp.where(test, xp.where(dscr_breach, cs.dscr_breaches + 1.0, 0.0), cs.dscr_breaches)
    ltv_breaches = xp.where(test, xp.where(ltv_breach, cs.ltv_breaches + 1.0, 0.0), cs.ltv_breaches)
    cure_periods = c.cure_periods[:, None]
    covenant_dscr = sum_by_owner(xp.astype(dscr_breaches > cure_periods, flow.dtype), layout, xp) > 0.0
    covenant_ltv = sum_by_owner(xp.astype(ltv_breaches > cure_periods, flow.dtype), layout, xp) > 0.0

    # 8. maturities: refinance in the easy regime when LTV and DSCR meet the terms, else repay
    treasury_value = xp.stack([sum(units_rows[b][a] * prices[a] for a in range(A)) for b in range(B)], axis=0)
    assets_at_mark = sum_over(c.fleet_count[:, :, None] * view.gpu_mark[None, :, :], axis=1) + treasury_value
    maturity_rows = [cs.maturity_step[i] for i in range(I)]
    spread_rows = [cs.spread_add[i] for i in range(I)]
    maturity_short = [xp.zeros_like(flow[0]) > 1.0 for _ in range(B)]
    for i in range(I):
        b = owner[i]
        due = matures[i] & alive[b]
        debt_b = out_rows[layout.instruments_of(b)[0]]
        for j in layout.instruments_of(b)[1:]:
            debt_b = debt_b + out_rows[j]
        if layout.collateral_fleets[i] or layout.collateral_assets[i]:
            ltv_refi = out_rows[i] / xp.where(coll_mark[i] > 0.0, coll_mark[i], 1e-30)
        else:
            ltv_refi = debt_b / xp.where(assets_at_mark[b] > 0.0, assets_at_mark[b], 1e-30)
        refinance = due & (c.refinanceable[i] > 0.0) & ~tight & (ltv_refi <= c.refi_max_ltv[i]) & (dscr[b] >= c.refi_min_dscr[i])
        maturity_rows[i] = xp.where(refinance, step + c.refi_tenor_steps[i], maturity_rows[i])
        spread_rows[i] = xp.where(refinance, spread_rows[i] + c.refi_step_up[i], spread_rows[i])
        repay = due & ~refinance
        owed = xp.where(repay, out_rows[i], 0.0)
        from_cash = xp.minimum(cash_rows[b], owed)
        cash_rows[b] = cash_rows[b] - from_cash
        need, units_rows[b] = _sell_crypto(owed - from_cash, units_rows[b], net_price, xp)
        for j in layout.facilities:
            if owner[j] == b and j != i:
                draw = xp.minimum(need, head_rows[j])
                out_rows[j] = out_rows[j] + draw
                head_rows[j] = head_rows[j] - draw
                need = need - draw
        maturity_short[b] = maturity_short[b] | (repay & (need > 0.0))
        out_rows[i] = xp.where(repay & (need <= 0.0), 0.0, out_rows[i])
    maturity_default = xp.stack(maturity_short, axis=0)

    # 9. defaults of this step: fire sales, recovery waterfall, losses
    # a borrower whose debt is all repaid has no lender left to default on
    owes = sum_by_owner(cs.outstanding, layout, xp) > 0.0
    newly = alive & owes & (payment_default | covenant_dscr | covenant_ltv | maturity_default)
    reason = xp.where(payment_default, 1, xp.where(covenant_dscr, 2, xp.where(covenant_ltv, 3, 4)))
    newly_f = xp.astype(newly, flow.dtype)
    dumped = sum_over(c.fleet_count[:, :, None] * newly_f[:, None, :], axis=0)
    fire = fire_sale_price(view.gpu_mark, dumped, tight, m, xp)
    outstanding = xp.stack(out_rows, axis=0)
    cash = xp.stack(cash_rows, axis=0)
    units = xp.stack([xp.stack(row, axis=0) for row in units_rows], axis=0)
    # a borrower that cannot pay in full goes into the workout with what it had before paying
    paid_nothing = by_owner(payment_default, layout, xp)
    exposure = xp.where(paid_nothing, cs.outstanding + interest, outstanding)
    workout_cash = xp.where(payment_default, xp.maximum(available, 0.0), cash)
    workout_units = xp.where(payment_default[:, None, :], cs.units, units)
    recovery = xp.minimum(recovery_waterfall(exposure, fire, workout_units, net_price, workout_cash, layout, c, xp), exposure)
    newly_i = by_owner(newly, layout, xp)
    loss_now = xp.where(newly_i, exposure - recovery, 0.0)
    alive_i = xp.astype(by_owner(alive, layout, xp), flow.dtype)

    still_alive = alive & ~newly
    still_i = by_owner(still_alive, layout, xp)
    new_state = CreditState(
        alive=still_alive,
        default_step=xp.where(newly, step, cs.default_step),
        reason=xp.where(newly, reason, cs.reason),
        cash=xp.where(still_alive, cash, 0.0),
        eps=eps,
        units=xp.where(still_alive[:, None, :], units, 0.0),
        outstanding=xp.where(still_i, outstanding, 0.0),
        maturity_step=xp.stack(maturity_rows, axis=0),
        spread_add=xp.stack(spread_rows, axis=0),
        dscr_breaches=dscr_breaches,
        ltv_breaches=ltv_breaches,
        cfads_window=cfads_window,
        service_window=service_window,
        loss=cs.loss + loss_now * c.discount[step + 1],
        loss_nominal=cs.loss_nominal + loss_now,
        exposure=cs.exposure + xp.where(newly_i, exposure, 0.0),
        annuity=cs.annuity + c.discount[step] * cs.outstanding * dt * alive_i,
    )
    debt = sum_by_owner(new_state.outstanding, layout, xp)
    ratios = CreditView(
        dscr=xp.where(still_alive, dscr, xp.nan),
        ltv=xp.where(still_alive, debt / xp.where(assets_at_mark > 0.0, assets_at_mark, 1e-30), xp.nan),
    )
    return new_state, dumped, ratios
