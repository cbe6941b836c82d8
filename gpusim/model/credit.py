"""Steps 5-9 of MODEL.md 7 for every borrower of a path: cash flows, payments, covenants,
maturities, defaults, fire sales and recoveries.

`credit_step` is a pure array-API function of the credit state, this step's market levels
(at t_{k+1}, with R_k and L_k), and the borrowers' revenue-shock draws. Loops run over the
static portfolio structure (instruments, borrowers, ranks); all path values are arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from gpusim.model.borrowers import cfads, revenue_shock_step, sum_over
from gpusim.model.constants import DSCR_WITHOUT_DEBT_SERVICE, NO_DEFAULT, UNBOUNDED_RATIO, DefaultReason
from gpusim.model.constants import REASONS as REASONS  # the labels, indexed by code
from gpusim.model.debt import (
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
from gpusim.model.market import MarketView, by_regime
from gpusim.model.params import CreditParams, Layout, MarketParams


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


def ratio(numerator: Any, denominator: Any, xp: Any) -> Any:
    """numerator / denominator, and UNBOUNDED_RATIO where there is nothing to divide by (e.g. LTV without collateral)."""
    positive = denominator > 0.0
    return xp.where(positive, numerator / xp.where(positive, denominator, 1.0), UNBOUNDED_RATIO)


def sell_crypto(need: Any, units: Any, pledged: Any, net_price: Any, xp: Any) -> tuple[Any, Any]:
    """Sell each borrower's unpledged treasury crypto, asset by asset in listed order, until
    `need` (B, n) is met; returns (need left, units left (B, A, n)).

    Pledged units stay with the lenders' collateral until a default: a living borrower cannot
    sell them to pay other debt, opex or an LTV cure."""
    left = []
    for a in range(units.shape[1]):
        held = units[:, a, :]
        price = net_price[a][None, :]
        sold = xp.minimum(need, (held - pledged[:, a, :]) * price)
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


def recoveries_where(
    any_default: Any,
    exposure: Any,
    fire: Any,
    units: Any,
    pledged: Any,
    net_price: Any,
    cash: Any,
    layout: Layout,
    c: CreditParams,
    xp: Any,
    index: Any = None,
) -> Any:
    """The recovery waterfall evaluated only on paths where some borrower defaults this step.

    Defaults are rare in any one step, so gathering those paths first saves most of the
    waterfall's work. `index` lists the defaulting paths in order, first (it may have unused
    entries after them); by default it is found here, with a data-dependent size, which eager
    backends (numpy, cupy) allow; the JAX backend passes a fixed-size one.
    """
    if index is None:
        index = xp.nonzero(any_default)[0]
        if int(index.shape[0]) == 0:
            return xp.zeros_like(exposure)

    def pick(x: Any) -> Any:
        return xp.take(x, index, axis=x.ndim - 1)

    recovered = recovery_waterfall(pick(exposure), pick(fire), pick(units), pick(pledged), pick(net_price), pick(cash), layout, c, xp)
    position = xp.clip(xp.cumulative_sum(xp.astype(any_default, xp.int64)) - 1, 0, None)
    return xp.where(any_default, xp.take(recovered, position, axis=1), 0.0)


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
    recoveries: Callable[..., Any] = recoveries_where,
) -> tuple[CreditState, Any, CreditView]:
    """One step k -> k+1 of every borrower; returns the new state, the GPUs dumped per
    generation by this step's defaults Q^g (G, n), and the ratios for fan charts.
    `recoveries` has the signature of `recoveries_where` (a backend may bound its gather)."""
    dt = layout.dt
    alive = cs.alive
    pledged = (c.treasury0 * c.pledged_share)[:, :, None]  # units pledged, fixed while the borrower lives
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
    cash = xp.maximum(available - service, 0.0)
    need, units = sell_crypto(xp.maximum(service - available, 0.0), cs.units, pledged, net_price, xp)
    coll_mark, coll_book = collateral_value(view.gpu_mark, step + 1, pledged, prices, layout, c, xp)
    headroom = facility_headroom(cs.outstanding, coll_mark, c, xp)
    need, drawn = draw_facilities(need, headroom, layout, xp)
    outstanding = cs.outstanding - principal + drawn
    headroom = headroom - drawn
    payment_default = alive & (need > 0.0)

    cfads_window = xp.concat((cs.cfads_window[:, 1:, :], flow[:, None, :]), axis=1)
    service_window = xp.concat((cs.service_window[:, 1:, :], service[:, None, :]), axis=1)
    dscr = trailing_dscr(cfads_window, service_window, xp)

    # 7. covenant tests (while the loan is outstanding). LTV breaches are cured by prepaying
    # from cash and unpledged crypto, all of a borrower's breaches at once or none.
    test = (c.covenant_test[step][:, None] > 0.0) & (cs.outstanding > 0.0)
    on_mark = c.ltv_on_mark[:, None]
    basis = on_mark * coll_mark + (1.0 - on_mark) * coll_book
    liquidity_short = by_owner(cash < c.min_liquidity[:, None], layout, xp)
    dscr_breach = test & (((c.dscr_min[:, None] > 0.0) & (by_owner(dscr, layout, xp) < c.dscr_min[:, None])) | liquidity_short)
    excess = xp.where(test, xp.maximum(outstanding - c.ltv_max[:, None] * basis, 0.0), 0.0)
    excess_b = sum_by_owner(excess, layout, xp)
    free_crypto = sum_over((units - pledged) * net_price[None, :, :], axis=1)
    cure_b = (excess_b > 0.0) & (cash + free_crypto >= excess_b)
    prepay_b = xp.where(cure_b, excess_b, 0.0)
    from_cash = xp.minimum(cash, prepay_b)
    cash = cash - from_cash
    _, units = sell_crypto(prepay_b - from_cash, units, pledged, net_price, xp)
    cured = by_owner(cure_b, layout, xp)
    outstanding = outstanding - xp.where(cured, excess, 0.0)
    ltv_breach = (excess > 0.0) & ~cured
    dscr_breaches = xp.where(test, xp.where(dscr_breach, cs.dscr_breaches + 1.0, 0.0), cs.dscr_breaches)
    ltv_breaches = xp.where(test, xp.where(ltv_breach, cs.ltv_breaches + 1.0, 0.0), cs.ltv_breaches)
    cure_periods = c.cure_periods[:, None]
    covenant_dscr = sum_by_owner(xp.astype(dscr_breaches > cure_periods, flow.dtype), layout, xp) > 0.0
    covenant_ltv = sum_by_owner(xp.astype(ltv_breaches > cure_periods, flow.dtype), layout, xp) > 0.0

    # 8. maturities: refinance in the easy regime when LTV and DSCR meet the terms, else repay
    # from cash, crypto and the headroom of facilities not maturing now; short = maturity default
    treasury_value = sum_over(units * prices[None, :, :], axis=1)
    assets_at_mark = sum_over(c.fleet_count[:, :, None] * view.gpu_mark[None, :, :], axis=1) + treasury_value
    debt = sum_by_owner(outstanding, layout, xp)
    own_ltv = ratio(outstanding, coll_mark, xp)
    borrower_ltv = by_owner(ratio(debt, assets_at_mark, xp), layout, xp)
    ltv_refi = xp.where(c.secured[:, None] > 0.0, own_ltv, borrower_ltv)
    due = matures & by_owner(alive, layout, xp)
    refinance = (
        due
        & (c.refinanceable[:, None] > 0.0)
        & ~tight
        & (ltv_refi <= c.refi_max_ltv[:, None])
        & (by_owner(dscr, layout, xp) >= c.refi_min_dscr[:, None])
    )
    maturity_step = xp.where(refinance, step + c.refi_tenor_steps[:, None], cs.maturity_step)
    spread_add = xp.where(refinance, cs.spread_add + c.refi_step_up[:, None], cs.spread_add)
    repay = due & ~refinance
    owed = sum_by_owner(xp.where(repay, outstanding, 0.0), layout, xp)
    from_cash = xp.minimum(cash, owed)
    short, units_after = sell_crypto(owed - from_cash, units, pledged, net_price, xp)
    short, drawn = draw_facilities(short, xp.where(matures, 0.0, headroom), layout, xp)
    maturity_default = short > 0.0
    # a borrower that cannot repay in full repays nothing: it enters the workout with the
    # cash and crypto it had, owing what it owed
    cash = xp.where(maturity_default, cash, cash - from_cash)
    units = xp.where(maturity_default[:, None, :], units, units_after)
    repaid = repay & ~by_owner(maturity_default, layout, xp)
    outstanding = xp.where(repaid, 0.0, xp.where(by_owner(maturity_default, layout, xp), outstanding, outstanding + drawn))

    # 9. defaults of this step: fire sales, recovery waterfall, losses
    # a borrower whose debt is all repaid has no lender left to default on
    owes = sum_by_owner(cs.outstanding, layout, xp) > 0.0
    newly = alive & owes & (payment_default | covenant_dscr | covenant_ltv | maturity_default)
    # the first test that failed, in DefaultReason's order
    reason = xp.where(
        payment_default,
        DefaultReason.PAYMENT.value,
        xp.where(
            covenant_dscr,
            DefaultReason.COVENANT_DSCR.value,
            xp.where(covenant_ltv, DefaultReason.COVENANT_LTV.value, DefaultReason.MATURITY.value),
        ),
    )
    newly_f = xp.astype(newly, flow.dtype)
    dumped = sum_over(c.fleet_count[:, :, None] * newly_f[:, None, :], axis=0)
    fire = fire_sale_price(view.gpu_mark, dumped, tight, m, xp)
    # a borrower that cannot pay in full goes into the workout with what it had before paying
    paid_nothing = by_owner(payment_default, layout, xp)
    exposure = xp.where(paid_nothing, cs.outstanding + interest, outstanding)
    workout_cash = xp.where(payment_default, xp.maximum(available, 0.0), cash)
    workout_units = xp.where(payment_default[:, None, :], cs.units, units)
    newly_i = by_owner(newly, layout, xp)
    recovery = xp.minimum(
        recoveries(
            sum_over(newly_f, axis=0) > 0.0,
            exposure,
            fire,
            workout_units,
            xp.broadcast_to(pledged, workout_units.shape),
            net_price,
            workout_cash,
            layout,
            c,
            xp,
        ),
        exposure,
    )
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
        maturity_step=maturity_step,
        spread_add=spread_add,
        dscr_breaches=dscr_breaches,
        ltv_breaches=ltv_breaches,
        cfads_window=cfads_window,
        service_window=service_window,
        loss=cs.loss + loss_now * c.discount[step + 1],
        loss_nominal=cs.loss_nominal + loss_now,
        exposure=cs.exposure + xp.where(newly_i, exposure, 0.0) * c.discount[step + 1],
        annuity=cs.annuity + c.discount[step] * cs.outstanding * dt * alive_i,
    )
    return new_state, dumped, credit_ratios(new_state, view, c, layout, xp)


def trailing_dscr(cfads_window: Any, service_window: Any, xp: Any) -> Any:
    """CFADS over debt service due in the trailing 12 months, (B, n); 1e9 with no debt service."""
    service = sum_over(service_window, axis=1)
    return xp.where(service > 0.0, sum_over(cfads_window, axis=1) / xp.where(service > 0.0, service, 1.0), DSCR_WITHOUT_DEBT_SERVICE)


def credit_ratios(cs: CreditState, view: MarketView, c: CreditParams, layout: Layout, xp: Any) -> CreditView:
    """Trailing DSCR and LTV on marks per borrower (NaN once defaulted), for the fan charts."""
    dscr = trailing_dscr(cs.cfads_window, cs.service_window, xp)
    assets = sum_over(c.fleet_count[:, :, None] * view.gpu_mark[None, :, :], axis=1) + sum_over(cs.units * view.crypto[None, :, :], axis=1)
    ltv = ratio(sum_by_owner(cs.outstanding, layout, xp), assets, xp)
    return CreditView(dscr=xp.where(cs.alive, dscr, xp.nan), ltv=xp.where(cs.alive, ltv, xp.nan))
