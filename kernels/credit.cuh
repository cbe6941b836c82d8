// credit.cuh: steps 5-9 of docs/model.md 7 for every borrower of one path (gpusim/model/credit.py):
// cash flows, payments, covenants, maturities, defaults, fire sales and recoveries.
//
// Functions named as in credit.py compute the same operations in the same order as their numpy
// twins, one borrower b or instrument i at a time. credit_step runs the phases of a step in
// order: debt_service_due and pay_debt_service (5-6), covenant_tests (7), refinance_or_repay (8),
// settle_defaults (9); they share the step's working values through CreditStepValues.
#pragma once

#include "borrowers.cuh"
#include "debt.cuh"

#if GPUSIM_HAS_CREDIT
namespace gpusim {

constexpr int NO = N_ORDERS > 0 ? N_ORDERS : 1;  // extent of per-order arrays (one unused slot without capex orders)

// Credit state at t_k (credit.CreditState).
struct CreditState {
    bool alive[B];
    int default_step[B];      // NO_DEFAULT while alive
    int reason[B];            // REASON_*, index into credit.REASONS
    real cash[B];
    real eps[B];              // revenue shock
    real units[B][A];         // treasury crypto held (its pledged part never changes while alive)
    real outstanding[I];
    real maturity_step[I];
    real spread_add[I];
    real dscr_breaches[I];
    real ltv_breaches[I];
    real cfads_window[B][W];  // ring buffers: slot (head + j) % W is the j-th oldest
    real service_window[B][W];
    int head;
    real loss[I];
    real loss_nominal[I];
    real exposure[I];
    real annuity[I];
    real tenant_default_step[TN];  // step each tenant defaulted in, NO_DEFAULT while it performs
    real cures_used[I];       // sponsor equity cures used (covenant remedies)
    real added[B][G];         // GPUs delivered by capex orders so far (docs/model.md 5.8)
    real order_paid[NO];      // USD paid for each delivered capex order, 0 until delivered (or when cancelled)
    real hashrate_added[B];   // PH/s miners orders added less PH/s they retired
    real kw_added[B];         // kW of the miners added less kW of those retired
};

// Working values of one credit step (the locals of credit.credit_step), passed between its
// phases; the state at t_k stays untouched in CreditState until next_credit_state.
struct CreditStepValues {
    real net_price[A];    // crypto price after the regime's slippage
    real pledged[B][A];   // units under a lien at t_k (pledged_units)
    real interest[I];
    real principal[I];
    bool matures[I];
    real outstanding[I];  // after this step's payments, draws, cures and repayments
    real headroom[I];
    real drawn[I];
    real coll_mark[I];
    real coll_book[I];
    real available[B];    // cash + CFADS before paying
    real cash[B];
    real units[B][A];
    bool payment_default[B];
    bool covenant_dscr[B];
    bool covenant_ltv[B];
    bool maturity_default[B];
    bool newly[B];        // defaults of this step
    bool access_open[B];  // the borrower's capital-market window is open this step (docs/model.md 7.10)
    real added[B][G];     // GPUs delivered by capex orders, this step's included
    real order_paid[NO];
    real hashrate_added[B];
    real kw_added[B];
};

// The borrowers alive at t_k as a bit set: the phases of a step visit them in index order and skip
// the defaulted ones (keep_defaulted) without testing every borrower in every phase.
constexpr int ALIVE_WORDS = (B + 31) / 32;
struct AliveSet {
    unsigned int bits[ALIVE_WORDS];
};

__host__ __device__ __forceinline__ int lowest_bit(unsigned int m) {
#ifdef __CUDA_ARCH__
    return __ffs(m) - 1;
#else
    return __builtin_ctz(m);
#endif
}

// for (each borrower b in `alive`, in index order): a loop header (a statement follows); a macro rather
// than a function taking a lambda, which compilers need not inline
#define GPUSIM_FOR_ALIVE(alive, b)                                                                             \
    for (int alive_word = 0; alive_word < ALIVE_WORDS; ++alive_word)                                          \
        for (unsigned int alive_bits = (alive).bits[alive_word]; alive_bits != 0u; alive_bits &= alive_bits - 1u) \
            if (const int b = 32 * alive_word + lowest_bit(alive_bits); true)

// numerator / denominator, and UNBOUNDED_RATIO where there is nothing to divide by (e.g. LTV without collateral).
__host__ __device__ __forceinline__ real ratio(real numerator, real denominator) {
    return denominator > R(0.0) ? numerator / denominator : R(UNBOUNDED_RATIO);
}

// Units of borrower b's asset a under a lien: the pledged share nu_b,a while some instrument i secured
// on it is live (`live(i)`); a pledge whose loans have all matured is released (docs/model.md 6.5).
template <typename Live>
__host__ __device__ __forceinline__ real pledged_units(Live live, const real* prm, int b, int a) {
    const real nu = PRM(C_treasury0)[b * A + a] * PRM(C_pledged_share)[b * A + a];
    if (nu == R(0.0)) return nu;  // nothing pledged (most borrowers hold no crypto): no lien to look up
    bool held = false;
    for (int i = first_of(b); i < end_of(b) && !held; ++i) held = COLLATERAL_ASSET[i * A + a] != 0 && live(i);
    return held ? nu : R(0.0);
}

// Sell borrower's unpledged treasury crypto, asset by asset in listed order, until `need` is met;
// `units` is updated in place, the need left is returned.
__host__ __device__ __forceinline__ real sell_crypto(real need, real* units, const real* pledged, const real* net_price) {
    if (need == R(0.0)) return R(0.0);  // nothing to sell (the common case): every sale is min(0, value) = 0
    for (int a = 0; a < A; ++a) {
        const real price = net_price[a];
        const real sold = m_min(need, m_max(units[a] - pledged[a], R(0.0)) * price);
        units[a] = units[a] - sold / (price > R(0.0) ? price : R(1.0));
        need = need - sold;
    }
    return need;
}

// Draw borrower b's facilities for `need`, pro rata to their headroom; returns the need left.
__host__ __device__ __forceinline__ real draw_facilities(real need, const real* headroom, real* drawn, int b) {
    const real total = sum_by_owner(headroom, b);
    const real amount = m_min(need, total);
    const real safe_total = total > R(0.0) ? total : R(1.0);
    for (int i = first_of(b); i < end_of(b); ++i) drawn[i] = amount * (headroom[i] / safe_total);
    return need - amount;
}

// CFADS over debt service due in the trailing window of borrower b, summed oldest first;
// DSCR_WITHOUT_DEBT_SERVICE with no debt service.
__host__ __device__ __forceinline__ real trailing_dscr(const CreditState& c, int b) {
    real flow = c.cfads_window[b][c.head], service = c.service_window[b][c.head];
    for (int slot = c.head + 1; slot < W; ++slot) {  // oldest first: head + 1 .. W - 1, then 0 .. head - 1
        flow = flow + c.cfads_window[b][slot];
        service = service + c.service_window[b][slot];
    }
    for (int slot = 0; slot < c.head; ++slot) {
        flow = flow + c.cfads_window[b][slot];
        service = service + c.service_window[b][slot];
    }
    return service > R(0.0) ? flow / service : R(DSCR_WITHOUT_DEBT_SERVICE);
}

// Debt of borrower b over its fleets at mark plus its treasury at market plus its data centres at
// t_{k+1}: the LTV of the fan charts and of the refinancing test of unsecured debt; 0 without debt.
// `added` (B x G) are the GPUs capex delivered (owned_fleet).
__host__ __device__ __forceinline__ real borrower_ltv(const MarketView& v, const real* units, const real* outstanding, int step_next,
                                                      const real* prm, int b, const real* added) {
    const real debt = sum_by_owner(outstanding, b);
    if (!(debt > R(0.0))) return R(0.0);  // without debt (the assets are not needed)
    real fleets = R(0.0), treasury = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real part = owned_fleet(added, prm, b, g) * v.gpu_mark[g];
        fleets = g == 0 ? part : fleets + part;
    }
    for (int a = 0; a < A; ++a) {
        const real part = units[a] * v.crypto[a];
        treasury = a == 0 ? part : treasury + part;
    }
    const real assets = fleets + treasury + PRM(C_data_centre_value_by_borrower)[step_next * N_BORROWERS + b];
    return ratio(debt, assets);
}

// CFADS and debt service per step of borrower b at t_0 run rates: they fill the DSCR windows at
// the start, so the first tests see a year of history at today's levels.
__host__ __device__ __forceinline__ void run_rate_windows(const MarketView& v, const real* prm, int b, real& flow, real& service) {
    real performing[TN];  // every tenant performs at t_0
    for (int t = 0; t < TN; ++t) performing[t] = R(NO_DEFAULT);
    flow = cfads(v, performing, R(0.0), 0, 0, prm, b, nullptr, nullptr, nullptr);
    service = R(0.0);
    for (int i = first_of(b); i < end_of(b); ++i) {
        const real outstanding = PRM(C_principal0)[i] + R(0.0);
        const real rate = coupon_rate(0, R(0.0), prm, i);
        const real remaining = remaining_payments(PRM(C_maturity_step0)[i] + R(0.0), 0, prm, i);
        const real per_payment = scheduled_principal(outstanding, rate, remaining, prm, i);
        const real per_step = outstanding * rate * R(DT) + per_payment * PRM(C_payments_per_year)[i] * R(DT);
        service = i == first_of(b) ? per_step : service + per_step;
    }
}

// Credit state at t_0 given the market at t_0 (which sets the DSCR history, see run_rate_windows).
__host__ __device__ __forceinline__ void initial_credit_state(const MarketView& v, const real* prm, CreditState& c) {
    c.head = 0;
    for (int b = 0; b < N_BORROWERS; ++b) {
        c.alive[b] = true;
        c.default_step[b] = NO_DEFAULT;
        c.reason[b] = 0;
        c.cash[b] = PRM(C_cash0)[b] + R(0.0);
        c.eps[b] = R(0.0);
        for (int a = 0; a < A; ++a) c.units[b][a] = PRM(C_treasury0)[b * A + a] + R(0.0);
        real flow, service;
        run_rate_windows(v, prm, b, flow, service);
        for (int j = 0; j < W; ++j) {
            c.cfads_window[b][j] = flow;
            c.service_window[b][j] = service;
        }
    }
    for (int i = 0; i < N_INSTRUMENTS; ++i) {
        c.outstanding[i] = PRM(C_principal0)[i] + R(0.0);
        c.maturity_step[i] = PRM(C_maturity_step0)[i] + R(0.0);
        c.spread_add[i] = c.dscr_breaches[i] = c.ltv_breaches[i] = R(0.0);
        c.loss[i] = c.loss_nominal[i] = c.exposure[i] = c.annuity[i] = R(0.0);
        c.cures_used[i] = R(0.0);
    }
    for (int t = 0; t < TN; ++t) c.tenant_default_step[t] = R(NO_DEFAULT);
    for (int b = 0; b < B; ++b)
        for (int g = 0; g < G; ++g) c.added[b][g] = R(0.0);
    for (int o = 0; o < NO; ++o) c.order_paid[o] = R(0.0);
    for (int b = 0; b < B; ++b) c.hashrate_added[b] = c.kw_added[b] = R(0.0);
}

// Trailing DSCR and LTV on marks of borrower b at t_{k+1}, NaN once defaulted, for the fan charts.
__host__ __device__ __forceinline__ void credit_ratios(const CreditState& c, const MarketView& v, int step_next, const real* prm, int b,
                                                       real& dscr, real& ltv) {
    if (!c.alive[b]) {
        dscr = ltv = m_nan(R(0.0));
        return;
    }
    dscr = trailing_dscr(c, b);
    ltv = borrower_ltv(v, c.units[b], c.outstanding, step_next, prm, b, &c.added[0][0]);
}

// 1 where an instrument is in breach (a failed test not passed since), else 0.
__host__ __device__ __forceinline__ real in_breach(real dscr_breaches, real ltv_breaches) {
    return dscr_breaches + ltv_breaches > R(0.0) ? R(1.0) : R(0.0);
}

// Debt service due in the trailing window of borrower b, summed oldest first.
__host__ __device__ __forceinline__ real trailing_service(const CreditState& c, int b) {
    real service = c.service_window[b][c.head];
    for (int slot = c.head + 1; slot < W; ++slot) service = service + c.service_window[b][slot];  // oldest first (trailing_dscr)
    for (int slot = 0; slot < c.head; ++slot) service = service + c.service_window[b][slot];
    return service;
}

__host__ __device__ __forceinline__ void sweep_breached(const CreditState& c, const real* prm, int b, CreditStepValues& w);

// Remedies of borrower b's failed tests, instrument by instrument (each may spend or bring cash):
// in the easy regime a waiver for a fee of the outstanding when cash covers it, else a sponsor
// equity cure of a DSCR / liquidity breach while cures are left; then the breach counters (a
// remedied test counts as passed); then cash above the floor sweeps into each instrument still in
// breach.
__host__ __device__ __forceinline__ void covenant_remedies(CreditState& c, bool tight, const bool* tested, const bool* dscr_breach,
                                                           const bool* ltv_breach, real dscr, const real* prm, int b, CreditStepValues& w) {
    const real service = trailing_service(c, b);
    for (int i = first_of(b); i < end_of(b); ++i) {
        const real fee = PRM(C_waiver_fee)[i] * w.outstanding[i];
        const bool waived = (dscr_breach[i] || ltv_breach[i]) && !tight && PRM(C_has_waiver)[i] > R(0.0) && w.cash[b] >= fee;
        w.cash[b] = w.cash[b] - (waived ? fee : R(0.0));
        real shortfall = PRM(C_dscr_min)[i] > R(0.0) ? m_max((PRM(C_dscr_min)[i] - dscr) * service, R(0.0)) : R(0.0);
        shortfall = shortfall + m_max(PRM(C_min_liquidity)[b] - w.cash[b], R(0.0));
        const bool cured = dscr_breach[i] && !waived && !tight && c.cures_used[i] < PRM(C_equity_cures)[i];
        w.cash[b] = w.cash[b] + (cured ? shortfall : R(0.0));
        if (tested[i]) {
            c.dscr_breaches[i] = dscr_breach[i] && !waived && !cured ? c.dscr_breaches[i] + R(1.0) : R(0.0);
            c.ltv_breaches[i] = ltv_breach[i] && !waived ? c.ltv_breaches[i] + R(1.0) : R(0.0);
        }
        c.cures_used[i] = c.cures_used[i] + (cured ? R(1.0) : R(0.0));
    }
    sweep_breached(c, prm, b, w);
}

// Cash above the floor sweeps into each of borrower b's instruments still in breach.
__host__ __device__ __forceinline__ void sweep_breached(const CreditState& c, const real* prm, int b, CreditStepValues& w) {
    for (int i = first_of(b); i < end_of(b); ++i) {
        if (PRM(C_has_sweep)[i] == R(0.0)) continue;  // the sweep is a multiple of has_sweep
        const real breached = in_breach(c.dscr_breaches[i], c.ltv_breaches[i]);
        const real sweep = PRM(C_has_sweep)[i] * breached * m_min(m_max(w.cash[b] - PRM(C_sweep_floor)[i], R(0.0)), w.outstanding[i]);
        w.cash[b] = w.cash[b] - sweep;
        w.outstanding[i] = w.outstanding[i] - sweep;
    }
}

// ---------------------------------------------------------------------------------------------
// The phases of credit_step, for borrower b
// ---------------------------------------------------------------------------------------------

// 5. Debt service due in (t_k, t_k+1]: coupons on payment dates (with the margin step-up of an
// instrument in breach), scheduled principal before maturity. The annuity's pow is only evaluated on payment dates (due_now * principal is 0
// off them, the principal being finite).
__host__ __device__ GPUSIM_STAGE real debt_service_due(const CreditState& c, int step, const real* prm, int b, CreditStepValues& w) {
    real service = R(0.0);
    for (int i = first_of(b); i < end_of(b); ++i) {
        const real due_now = PRM(C_payment_due)[step * N_INSTRUMENTS + i];
        w.matures[i] = c.maturity_step[i] == R(step);
        if (due_now == R(0.0)) {  // not a payment date: coupon and principal are multiples of due_now
            w.interest[i] = w.principal[i] = R(0.0);
            if (i == first_of(b)) service = R(0.0);
            continue;
        }
        const real spread = c.spread_add[i] + PRM(C_breach_step_up)[i] * in_breach(c.dscr_breaches[i], c.ltv_breaches[i]);
        const real rate = coupon_rate(step, spread, prm, i);
        w.interest[i] = c.outstanding[i] * rate / PRM(C_payments_per_year)[i] * due_now;
        const bool pays_now = !w.matures[i] && due_now != R(0.0);
        // a bullet (neither level nor annuity) owes no scheduled principal
        const bool amortizes = PRM(C_amortizes_level)[i] != R(0.0) || PRM(C_amortizes_annuity)[i] != R(0.0);
        const real remaining = pays_now && amortizes ? remaining_payments(c.maturity_step[i], step, prm, i) : R(1.0);
        const real scheduled = pays_now && amortizes ? due_now * scheduled_principal(c.outstanding[i], rate, remaining, prm, i) : R(0.0);
        w.principal[i] = m_min(scheduled, c.outstanding[i]);
        const real part = w.interest[i] + w.principal[i];
        service = i == first_of(b) ? part : service + part;
    }
    return service;
}

// 6. Pay `service`: cash (with this step's `flow`) first, then unpledged crypto at the slipped
// price, then facility headroom; a shortfall is a payment default.
__host__ __device__ GPUSIM_STAGE void pay_debt_service(const CreditState& c, const MarketView& v, real flow, real service, int step,
                                                          const real* prm, int b, CreditStepValues& w) {
    w.available[b] = c.cash[b] + flow;
    w.cash[b] = m_max(w.available[b] - service, R(0.0));
    for (int a = 0; a < A; ++a) w.units[b][a] = c.units[b][a];
    real need = sell_crypto(m_max(service - w.available[b], R(0.0)), w.units[b], w.pledged[b], w.net_price);
    for (int i = first_of(b); i < end_of(b); ++i) {
        // nothing pledged (secured = 0, no capex orders): every term of the collateral is a zero weight
        if (PRM(C_secured)[i] > R(0.0) || N_ORDERS > 0)
            collateral_value(v.gpu_mark, step + 1, w.pledged[b], v.crypto, prm, i, b, w.coll_mark[i], w.coll_book[i], &c.added[0][0],
                             c.order_paid);
        else
            w.coll_mark[i] = w.coll_book[i] = R(0.0);
        w.headroom[i] = PRM(C_is_facility)[i] > R(0.0) ? facility_headroom(c.outstanding[i], w.coll_mark[i], prm, i) : R(0.0);
        w.outstanding[i] = c.outstanding[i] - w.principal[i];  // paid without the facilities (the common case), nothing is drawn
    }
    if (need > R(0.0)) {
        need = draw_facilities(need, w.headroom, w.drawn, b);
        for (int i = first_of(b); i < end_of(b); ++i) {
            w.outstanding[i] = c.outstanding[i] - w.principal[i] + w.drawn[i];
            w.headroom[i] = w.headroom[i] - w.drawn[i];
        }
    }
    w.payment_default[b] = c.alive[b] && need > R(0.0);
}

// Copy what borrower b's capex has delivered (GPUs by generation, miners' PH/s and kW) from the state
// to the step's values or back; without capex orders nothing is ever delivered (owned_fleet and
// mining_capacity do not read it), and nothing is copied.
__host__ __device__ __forceinline__ void carry_capex(const real* added, real hashrate_added, real kw_added, real* to_added, real& to_hashrate,
                                                     real& to_kw) {
    if constexpr (N_ORDERS > 0) {
        for (int g = 0; g < G; ++g) to_added[g] = added[g];
        to_hashrate = hashrate_added;
        to_kw = kw_added;
    } else {
        (void)added, (void)hashrate_added, (void)kw_added, (void)to_added, (void)to_hashrate, (void)to_kw;
    }
}

// Whether borrower b can issue this step: its access uniform below the regime's per-step probability
// (0 without market access, and in a freeze) and its LTV at marks at most max_ltv (docs/model.md 7.10).
__host__ __device__ __forceinline__ bool market_access_open(real u, real ltv, bool tight, const real* prm, int b) {
    return u < by_regime(PRM(C_access_prob), tight, B)[b] && ltv <= PRM(C_access_max_ltv)[b];
}

// 6b. Market access and borrower b's capex orders due this step (docs/model.md 5.9, 7.10), after debt
// service. Each order due of a living borrower not in payment default costs count x price (fixed, or
// the generation's mark at t_k+1), met from its sources in order: cash; a draw on its facility, whose
// borrowing base counts the GPUs delivered; at-the-market equity while the window is open, within the
// step's limit, raising gross x (1 - cost). Funded in full, the order is paid and delivered; otherwise
// nothing is paid, and a committed order is a payment default while an uncommitted one is cancelled.
// Spread add-on of an instrument after new debt `issued` at `step_up` joins its `outstanding` principal
// at `spread_add`: the principal-weighted mean (the interest equals the sum of the tranches'); unchanged
// where nothing is issued.
__host__ __device__ __forceinline__ real blended_spread(real outstanding, real spread_add, real issued, real step_up) {
    const real total = outstanding + issued;
    return issued > R(0.0) ? (outstanding * spread_add + issued * step_up) / total : spread_add;
}

__host__ __device__ GPUSIM_STAGE void fund_capex(CreditState& c, const MarketView& v, bool tight, const real* u_access, int step,
                                                    const real* prm, int b, CreditStepValues& w) {
    w.access_open[b] = false;
    if (HAS_MARKET_ACCESS) {
        const real ltv = borrower_ltv(v, w.units[b], w.outstanding, step + 1, prm, b, &c.added[0][0]);
        w.access_open[b] = market_access_open(u_access[b], ltv, tight, prm, b);
    }
    carry_capex(c.added[b], c.hashrate_added[b], c.kw_added[b], w.added[b], w.hashrate_added[b], w.kw_added[b]);
    const bool in_payment_default = w.payment_default[b];
    real equity_left = PRM(C_equity_limit_step)[b] + R(0.0);
    real debt_left = PRM(C_debt_limit_step)[b] + R(0.0);
    const int j_debt = ISSUANCE_INSTRUMENT[b];
    const real step_up = by_regime(PRM(C_debt_step_up), tight, B)[b];
    for (int o = 0; o < N_ORDERS; ++o) {
        if (ORDER_OWNER[o] != b) continue;
        const int g = ORDER_GENERATION[o];
        const real count = PRM(C_order_count)[o];
        const bool due = PRM(C_order_step)[o] == R(step) && c.alive[b] && !in_payment_default;
        const real mark = v.gpu_mark[g];
        const real cost = count * (PRM(C_order_at_mark)[o] > R(0.0) ? mark : PRM(C_order_price)[o]);
        real need = due ? cost : R(0.0);
        real cash_left = w.cash[b], equity = equity_left, drawn = R(0.0);
        real debt = debt_left, issued = R(0.0);
        const int f = ORDER_FACILITY[o];
        for (int j = 0; j < MAX_FUNDING; ++j) {
            const int source = ORDER_FUNDING[o * MAX_FUNDING + j];
            if (source < 0) break;
            real use;
            if (source == FUNDING_CASH) {
                use = m_min(cash_left, need);
                cash_left = cash_left - use;
            } else if (source == FUNDING_FACILITY) {
                const real base =
                    m_min(PRM(C_commitment)[f], PRM(C_advance_rate)[f] * (w.coll_mark[f] + PRM(C_order_pledged)[f * N_ORDERS + o] * count * mark));
                use = m_min(need, PRM(C_is_facility)[f] * m_max(base - w.outstanding[f], R(0.0)));
                drawn = use;
            } else if (source == FUNDING_EQUITY) {
                use = w.access_open[b] ? m_min(need, equity * (R(1.0) - PRM(C_equity_cost)[b])) : R(0.0);
                equity = equity - use / (R(1.0) - PRM(C_equity_cost)[b]);
            } else {  // new debt into the instrument of market_access.debt
                const real room = m_min(debt, m_max(PRM(C_commitment)[j_debt] - w.outstanding[j_debt] - issued, R(0.0)));
                use = w.access_open[b] ? m_min(need, room * (R(1.0) - PRM(C_debt_cost)[b])) : R(0.0);
                debt = debt - use / (R(1.0) - PRM(C_debt_cost)[b]);
                issued = issued + use / (R(1.0) - PRM(C_debt_cost)[b]);
            }
            need = need - use;
        }
        const bool funded = due && need <= R(0.0);
        if (funded) {
            w.cash[b] = cash_left;
            equity_left = equity;
            if (f >= 0) {
                w.outstanding[f] = w.outstanding[f] + drawn;
                w.headroom[f] = m_max(w.headroom[f] - drawn, R(0.0));
            }
        }
        if (j_debt >= 0) {  // the borrower can issue debt
            issued = funded ? issued : R(0.0);
            c.spread_add[j_debt] = blended_spread(w.outstanding[j_debt], c.spread_add[j_debt], issued, step_up);
            w.outstanding[j_debt] = w.outstanding[j_debt] + issued;
            if (funded) debt_left = debt;
        }
        if (ORDER_MINERS[o]) {  // miners add hashrate and power, not collateral
            w.hashrate_added[b] = w.hashrate_added[b] + (funded ? PRM(C_order_hashrate_delta)[o] : R(0.0));
            w.kw_added[b] = w.kw_added[b] + (funded ? PRM(C_order_kw_delta)[o] : R(0.0));
        } else {
            for (int i = first_of(b); i < end_of(b); ++i) {
                w.coll_mark[i] = w.coll_mark[i] + (funded ? PRM(C_order_pledged)[i * N_ORDERS + o] * count * mark : R(0.0));
                w.coll_book[i] = w.coll_book[i] +
                                 (funded ? PRM(C_order_pledged)[i * N_ORDERS + o] * cost * PRM(C_order_book_factor)[(step + 1) * N_ORDERS + o] : R(0.0));
            }
            w.added[b][g] = w.added[b][g] + (funded ? count : R(0.0));
        }
        if (funded) w.order_paid[o] = cost;
        w.payment_default[b] = w.payment_default[b] || (due && !funded && PRM(C_order_committed)[o] > R(0.0));
    }
}

// Principal of instrument i above its LTV covenant (on marks, at book or a mix), 0 when not tested.
__host__ __device__ __forceinline__ real ltv_excess(real outstanding, real coll_mark, real coll_book, bool test, const real* prm, int i) {
    const real on_mark = PRM(C_ltv_on_mark)[i];
    const real basis = on_mark * coll_mark + (R(1.0) - on_mark) * coll_book;
    return test ? m_max(outstanding - PRM(C_ltv_max)[i] * basis, R(0.0)) : R(0.0);
}

__host__ __device__ __forceinline__ void covenant_breaches(CreditState& c, bool tight, const bool* test, const real* prm, int b,
                                                           CreditStepValues& w);

// 7. Covenant tests of borrower b (while a loan is outstanding). LTV breaches are cured by
// prepaying from cash and unpledged crypto, all of the borrower's breaches at once or none; the
// configured remedies follow (covenant_remedies); a breach counter beyond its cure periods is a
// covenant default (an acceleration after the remedies failed).
__host__ __device__ GPUSIM_STAGE void covenant_tests(CreditState& c, bool tight, int step, const real* prm, int b, CreditStepValues& w) {
    w.covenant_dscr[b] = w.covenant_ltv[b] = false;
    // never tested (no covenants): no breach opens, none is counted or remedied, nothing sweeps
    if (PRM(D_covenanted)[b] == R(0.0)) return;
    bool test[I], any_test = false;
    for (int i = first_of(b); i < end_of(b); ++i) {
        test[i] = PRM(C_covenant_test)[step * N_INSTRUMENTS + i] > R(0.0) && c.outstanding[i] > R(0.0);
        any_test = any_test || test[i];
    }
    if (any_test) covenant_breaches(c, tight, test, prm, b, w);
    else sweep_breached(c, prm, b, w);  // untested: nothing breaches, is waived or cured, open breaches still sweep
    for (int i = first_of(b); i < end_of(b); ++i) {
        w.covenant_dscr[b] |= c.dscr_breaches[i] > PRM(C_cure_periods)[i];
        w.covenant_ltv[b] |= c.ltv_breaches[i] > PRM(C_cure_periods)[i];
    }
}

// The tests of a step where some instrument of borrower b is tested (`test`): LTV prepayment, breaches, remedies.
__host__ __device__ __forceinline__ void covenant_breaches(CreditState& c, bool tight, const bool* test, const real* prm, int b,
                                                           CreditStepValues& w) {
    const bool liquidity_short = w.cash[b] < PRM(C_min_liquidity)[b];
    real excess[I];
    real excess_by_borrower = R(0.0);
    for (int i = first_of(b); i < end_of(b); ++i) {
        excess[i] = ltv_excess(w.outstanding[i], w.coll_mark[i], w.coll_book[i], test[i], prm, i);
        excess_by_borrower = i == first_of(b) ? excess[i] : excess_by_borrower + excess[i];
    }
    real free_crypto = R(0.0);
    for (int a = 0; a < A; ++a) {
        const real part = m_max(w.units[b][a] - w.pledged[b][a], R(0.0)) * w.net_price[a];
        free_crypto = a == 0 ? part : free_crypto + part;
    }
    const bool cured_by_borrower = excess_by_borrower > R(0.0) && w.cash[b] + free_crypto >= excess_by_borrower;
    const real prepayment_by_borrower = cured_by_borrower ? excess_by_borrower : R(0.0);
    const real from_cash = m_min(w.cash[b], prepayment_by_borrower);
    w.cash[b] = w.cash[b] - from_cash;
    sell_crypto(prepayment_by_borrower - from_cash, w.units[b], w.pledged[b], w.net_price);
    bool dscr_breach[I], ltv_breach[I];
    const real dscr = trailing_dscr(c, b);
    for (int i = first_of(b); i < end_of(b); ++i) {
        if (cured_by_borrower) w.outstanding[i] = w.outstanding[i] - excess[i];
        dscr_breach[i] = test[i] && ((PRM(C_dscr_min)[i] > R(0.0) && dscr < PRM(C_dscr_min)[i]) || liquidity_short);
        ltv_breach[i] = excess[i] > R(0.0) && !cured_by_borrower;
    }
    covenant_remedies(c, tight, test, dscr_breach, ltv_breach, dscr, prm, b, w);
}

// 8. Maturities of borrower b: within the refinancing window before its maturity, a loan is
// refinanced in a regime its lenders refinance in when LTV (its own collateral's if secured, else
// the borrower's) and DSCR meet the terms; at maturity one not refinanced is repaid from cash,
// crypto (the units pledged to it included: their lien ends with the repayment) and the headroom
// of facilities not maturing now. A borrower that cannot repay in full repays nothing (a maturity
// default): it enters the workout with the cash and crypto it had, owing what it owed.
__host__ __device__ GPUSIM_STAGE void refinance_or_repay(CreditState& c, const MarketView& v, bool tight, int step, const real* prm,
                                                            int b, CreditStepValues& w) {
    bool event = false;  // some instrument in its refinancing window (a window of 0 steps or more holds the maturity)
    for (int i = first_of(b); i < end_of(b); ++i)
        event = event || (c.maturity_step[i] - R(step) <= PRM(C_refi_window_steps)[i] && c.maturity_step[i] >= R(step));
    w.maturity_default[b] = false;
    if (!event) return;  // nothing refinances or is repaid: nothing is owed, sold or drawn
    const real dscr = trailing_dscr(c, b);
    const real ltv = borrower_ltv(v, w.units[b], w.outstanding, step + 1, prm, b, &w.added[0][0]);
    real owed = R(0.0);
    bool repay[I], live[I];
    for (int i = first_of(b); i < end_of(b); ++i) {
        const real ltv_refi = PRM(C_secured)[i] > R(0.0) ? ratio(w.outstanding[i], w.coll_mark[i]) : ltv;
        const bool in_window = c.maturity_step[i] - R(step) <= PRM(C_refi_window_steps)[i] && c.maturity_step[i] >= R(step);
        const bool refinance = in_window && c.alive[b] && PRM(C_refinanceable)[i] > R(0.0) && (!tight || PRM(C_refi_in_tight)[i] > R(0.0)) &&
                               ltv_refi <= PRM(C_refi_max_ltv)[i] && dscr >= PRM(C_refi_min_dscr)[i] &&
                               (!HAS_MARKET_ACCESS || PRM(C_refi_via_access)[i] == R(0.0) || w.access_open[b]);
        if (refinance) {
            c.maturity_step[i] = R(step) + PRM(C_refi_tenor_steps)[i];
            c.spread_add[i] = c.spread_add[i] + (tight ? PRM(C_refi_step_up_tight)[i] : PRM(C_refi_step_up)[i]);
        }
        live[i] = c.maturity_step[i] > R(step);
        repay[i] = w.matures[i] && c.alive[b] && !refinance;
        const real part = repay[i] ? w.outstanding[i] : R(0.0);
        owed = i == first_of(b) ? part : owed + part;
        if (w.matures[i]) w.headroom[i] = R(0.0);
    }
    const real from_cash = m_min(w.cash[b], owed);
    real units_after[A], liens_left[A];
    for (int a = 0; a < A; ++a) {
        units_after[a] = w.units[b][a];
        liens_left[a] = pledged_units([&](int i) { return live[i]; }, prm, b, a);
    }
    real short_by_borrower = sell_crypto(owed - from_cash, units_after, liens_left, w.net_price);
    short_by_borrower = draw_facilities(short_by_borrower, w.headroom, w.drawn, b);
    w.maturity_default[b] = short_by_borrower > R(0.0);
    if (w.maturity_default[b]) return;
    w.cash[b] = w.cash[b] - from_cash;
    for (int a = 0; a < A; ++a) w.units[b][a] = units_after[a];
    for (int i = first_of(b); i < end_of(b); ++i) w.outstanding[i] = repay[i] ? R(0.0) : w.outstanding[i] + w.drawn[i];
}

// 8b. Distributions of borrower b to equity: the share of cash above the floor leaves the borrower,
// unless locked up (trailing DSCR below the lock-up level, or an instrument in breach) or the
// borrower defaults this step (docs/model.md 7.5a).
__host__ __device__ GPUSIM_STAGE void distribute(const CreditState& c, const real* prm, int b, CreditStepValues& w) {
    if (PRM(C_distribution_share)[b] == R(0.0)) return;  // pays out nothing: the payout is a multiple of the share
    real breaches = R(0.0);
    for (int i = first_of(b); i < end_of(b); ++i) {
        const real part = in_breach(c.dscr_breaches[i], c.ltv_breaches[i]);
        breaches = i == first_of(b) ? part : breaches + part;
    }
    const real lockup = PRM(C_lockup_dscr)[b];
    const bool locked = (lockup > R(0.0) && trailing_dscr(c, b) < lockup) || (PRM(C_lockup_on_breach)[b] > R(0.0) && breaches > R(0.0));
    const bool defaulting = w.payment_default[b] || w.covenant_dscr[b] || w.covenant_ltv[b] || w.maturity_default[b];
    const real paid = PRM(C_distribution_share)[b] * m_max(w.cash[b] - PRM(C_distribution_floor)[b], R(0.0));
    w.cash[b] = w.cash[b] - (locked || defaulting ? R(0.0) : paid);
}

// Why borrower b defaults, the first of the reasons that apply.
__host__ __device__ __forceinline__ int default_reason(const CreditStepValues& w, int b) {
    return w.payment_default[b] ? REASON_PAYMENT : w.covenant_dscr[b] ? REASON_COVENANT_DSCR : w.covenant_ltv[b] ? REASON_COVENANT_LTV
                                                                                                                : REASON_MATURITY;
}

// The GPUs of this step's fire sales that enter the distressed-supply memory L: all of Q^g with the
// fire-sale chain on; none with it off, where the memory keeps only the outside supply q_exo.
__host__ __device__ __forceinline__ real remembered_dump(real dumped, const real* prm) { return PRM(M_chain)[0] * dumped; }

// Q^g: GPUs of generation g that this step's defaults (`newly`) put up for sale from the fleets
// (owned_fleet of `added`, B x G).
__host__ __device__ __forceinline__ void gpus_dumped(const bool* newly, const real* added, const real* prm, real* dumped) {
    for (int g = 0; g < G; ++g) {
        real q = R(0.0);
        for (int b = 0; b < N_BORROWERS; ++b) {
            const real part = owned_fleet(added, prm, b, g) * (newly[b] ? R(1.0) : R(0.0));
            q = b == 0 ? part : q + part;
        }
        dumped[g] = q;
    }
}

// 9. Defaults of this step: GPUs dumped per generation (Q^g), the recovery waterfall of each
// defaulting borrower at its fire-sale prices, losses and exposures; `dumped` receives the dump the
// distress memory sees (remembered_dump). A borrower whose debt is all repaid has no lender left to
// default on.
__host__ __device__ GPUSIM_STAGE void settle_defaults(CreditState& c, const MarketView& v, bool tight, int step, const real* prm,
                                                         CreditStepValues& w, real* dumped, const AliveSet& alive) {
    bool any_default = false;
    GPUSIM_FOR_ALIVE(alive, b) {
        w.newly[b] = (w.payment_default[b] || w.covenant_dscr[b] || w.covenant_ltv[b] || w.maturity_default[b]) &&
                     sum_by_owner(c.outstanding, b) > R(0.0);  // it owes something
        any_default |= w.newly[b];
    }
    // a payment default undoes this step's deliveries with the rest of its payments
    if (!any_default) {  // no dump (each GPU count times 0), and the waterfall only runs on paths where some borrower defaults
        for (int g = 0; g < G; ++g) dumped[g] = R(0.0);  // (credit.recoveries_where)
        return;
    }
    real workout_added[B][G];
    for (int b = 0; b < B; ++b)
        for (int g = 0; g < G; ++g) workout_added[b][g] = w.payment_default[b] || N_ORDERS == 0 ? c.added[b][g] : w.added[b][g];
    gpus_dumped(w.newly, &workout_added[0][0], prm, dumped);
    real exposure[I], recovered[I];
    constexpr int DN = N_DATA_CENTRES > 0 ? N_DATA_CENTRES : 1;  // (one unused slot without data centres)
    real sites[DN];
    for (int d = 0; d < N_DATA_CENTRES; ++d) sites[d] = data_centre_proceeds(step + 1, tight, prm, d);
    for (int b = 0; b < N_BORROWERS; ++b) {
        if (!w.newly[b]) continue;
        // a borrower that cannot pay in full goes into the workout with what it had before paying
        const bool paid_nothing = w.payment_default[b];
        for (int i = first_of(b); i < end_of(b); ++i) exposure[i] = paid_nothing ? c.outstanding[i] + w.interest[i] : w.outstanding[i];
        const real workout_cash = paid_nothing ? m_max(w.available[b], R(0.0)) : w.cash[b];
        const real* workout_units = paid_nothing ? c.units[b] : w.units[b];
        recovery_waterfall(exposure, v.gpu_mark, dumped, tight, workout_units, w.pledged[b], w.net_price, workout_cash, sites, step + 1, prm, b,
                           recovered, &workout_added[0][0]);
        for (int i = first_of(b); i < end_of(b); ++i) {
            const real loss_now = exposure[i] - m_min(recovered[i], exposure[i]);
            c.loss[i] = c.loss[i] + loss_now * PRM(C_discount)[step + 1];
            c.loss_nominal[i] = c.loss_nominal[i] + loss_now;
            c.exposure[i] = c.exposure[i] + exposure[i] * PRM(C_discount)[step + 1];
        }
        c.default_step[b] = step;
        c.reason[b] = default_reason(w, b);
    }
    for (int g = 0; g < G; ++g) dumped[g] = remembered_dump(dumped[g], prm);
}

// The state at t_{k+1}: survivors keep this step's cash, crypto and debt, defaulted borrowers
// hold nothing; the risky annuity accrues DF x outstanding x dt while alive.
// A borrower defaulted before t_k holds nothing, owes nothing and accrues no annuity (keep_defaulted).
__host__ __device__ GPUSIM_STAGE void next_credit_state(int step, const real* prm, const CreditStepValues& w, CreditState& c,
                                                           const AliveSet& alive) {
    GPUSIM_FOR_ALIVE(alive, b) {
        const bool still_alive = !w.newly[b];
        c.alive[b] = still_alive;
        c.cash[b] = still_alive ? w.cash[b] : R(0.0);
        for (int a = 0; a < A; ++a) c.units[b][a] = still_alive ? w.units[b][a] : R(0.0);
        for (int i = first_of(b); i < end_of(b); ++i) {
            c.annuity[i] = c.annuity[i] + PRM(C_discount)[step] * c.outstanding[i] * R(DT);
            c.outstanding[i] = still_alive ? w.outstanding[i] : R(0.0);
        }
        carry_capex(w.added[b], w.hashrate_added[b], w.kw_added[b], c.added[b], c.hashrate_added[b], c.kw_added[b]);
    }
    for (int o = 0; o < NO; ++o) c.order_paid[o] = w.order_paid[o];
}

// A borrower that has defaulted holds nothing and owes nothing (next_credit_state), and no phase of a
// later step changes what the outputs read of it: its default step, reason, losses, exposures and
// annuity stay as they are, its DSCR and LTV are NaN in the fans (credit.credit_step computes its
// phases anyway and masks them). Its phases are skipped: the step's working values of it are only
// what settle_defaults and next_credit_state read, unchanged; its revenue shock and DSCR window,
// which nothing reads any more, are left as they were.
__host__ __device__ __forceinline__ void keep_defaulted(const CreditState& c, int b, CreditStepValues& w) {
    w.payment_default[b] = w.covenant_dscr[b] = w.covenant_ltv[b] = w.maturity_default[b] = w.newly[b] = false;
    w.access_open[b] = false;
    carry_capex(c.added[b], c.hashrate_added[b], c.kw_added[b], w.added[b], w.hashrate_added[b], w.kw_added[b]);
}

// The revenue-shock normals of the step (market.Draws.revenue_shock) from their uniforms `u` (the
// slots from SLOT_REVENUE_SHOCK), Box-Muller pair by pair as draws.entry_normals, of the pairs with
// a borrower still alive: a defaulted borrower's shock is never read.
__host__ __device__ GPUSIM_STAGE void revenue_normals(const real* u, const bool* alive, real* z) {
    for (int i = 0; 2 * i < N_BORROWERS; ++i) {
        const bool second = 2 * i + 1 < N_BORROWERS;
        if (!alive[2 * i] && !(second && alive[2 * i + 1])) continue;
        real z0, z1;
        box_muller(u[2 * i], u[2 * i + 1], z0, z1);
        z[2 * i] = z0;
        if (second) z[2 * i + 1] = z1;
    }
}

// One step k -> k+1 of every borrower (steps 5-9 of docs/model.md 7) under the regime R_k (`tight`),
// with the uniforms of the borrowers' revenue shocks `u_revenue` (their normals are drawn here, for the
// borrowers alive: revenue_normals), the tenants' default draws `u_tenant` and the
// market-access draws `u_access` (read only with market access); writes the GPUs
// dumped by this step's defaults per generation that the distress memory sees (remembered_dump) into `dumped`.
__host__ __device__ GPUSIM_STAGE void credit_step(CreditState& c, const MarketView& v, bool tight, const real* u_revenue,
                                                     const real* u_tenant, int step, const real* prm, real* dumped, const real* u_access) {
    CreditStepValues w;
    for (int o = 0; o < NO; ++o) w.order_paid[o] = c.order_paid[o];
    for (int a = 0; a < A; ++a) w.net_price[a] = v.crypto[a] * (R(1.0) - by_regime(PRM(M_crypto_slippage), tight, A)[a]);
    AliveSet alive{};
    for (int b = 0; b < N_BORROWERS; ++b) {
        if (c.alive[b]) alive.bits[b / 32] |= 1u << (b % 32);
        else keep_defaulted(c, b, w);
    }
    real z_eps[B];
    revenue_normals(u_revenue, c.alive, z_eps);
    const auto live = [&](int i) { return c.maturity_step[i] >= R(step); };
    GPUSIM_FOR_ALIVE(alive, b) {
        for (int a = 0; a < A; ++a) w.pledged[b][a] = pledged_units(live, prm, b, a);
    }

    for (int t = 0; t < N_TENANTS; ++t) c.tenant_default_step[t] = tenant_defaults(c.tenant_default_step[t], u_tenant[t], tight, step, prm, t);
    GPUSIM_FOR_ALIVE(alive, b) {
        c.eps[b] = revenue_shock_step(c.eps[b], z_eps[b], prm, b);
        const real flow = cfads(v, c.tenant_default_step, c.eps[b], step, step + 1, prm, b, &c.added[0][0], c.hashrate_added, c.kw_added);
        const real service = debt_service_due(c, step, prm, b, w);
        pay_debt_service(c, v, flow, service, step, prm, b, w);
        c.cfads_window[b][c.head] = flow;  // the oldest slot of the window drops out
        c.service_window[b][c.head] = service;
    }
    c.head = c.head + 1 == W ? 0 : c.head + 1;

    // the trailing DSCR is summed where a test, a refinancing, a lock-up or a fan reads it
    GPUSIM_FOR_ALIVE(alive, b) {
        fund_capex(c, v, tight, u_access, step, prm, b, w);
        covenant_tests(c, tight, step, prm, b, w);
        refinance_or_repay(c, v, tight, step, prm, b, w);
        distribute(c, prm, b, w);
    }
    settle_defaults(c, v, tight, step, prm, w, dumped, alive);
    next_credit_state(step, prm, w, c, alive);
}

}  // namespace gpusim
#endif  // GPUSIM_HAS_CREDIT
