// debt.cuh: debt instruments of docs/model.md section 6 for one path (gpusim/model/debt.py): coupons,
// schedules, collateral, fire sales, recoveries.
//
// One function per equation, named as its numpy twin, with the same operations in the same
// order; each takes one instrument i (of borrower b) where the numpy function takes arrays over
// all of them. Which instruments a borrower owns, their ranks and their collateral are
// compile-time tables of the generated header (FIRST_INSTRUMENT, SENIORITY, RANKS, COLLATERAL_*).
#pragma once

#include "market.cuh"

#if GPUSIM_HAS_CREDIT
namespace gpusim {

// Borrower b owns instruments first_of(b) .. end_of(b) - 1 (Layout.instruments_of).
__host__ __device__ __forceinline__ int first_of(int b) { return FIRST_INSTRUMENT[b]; }
__host__ __device__ __forceinline__ int end_of(int b) { return FIRST_INSTRUMENT[b + 1]; }

// Per-instrument values x summed over borrower b's instruments, in a fixed order.
__host__ __device__ __forceinline__ real sum_by_owner(const real* x, int b) {
    real total = x[first_of(b)];
    for (int i = first_of(b) + 1; i < end_of(b); ++i) total = total + x[i];
    return total;
}

// Annual rate of instrument i: fixed coupon, or base rate at t_k plus spread; plus refinancing step-ups.
__host__ __device__ __forceinline__ real coupon_rate(int step, real spread_add, const real* prm, int i) {
    return PRM(C_coupon)[i] + PRM(C_floating)[i] * PRM(C_base_rate)[step] + spread_add;
}

// Scheduled payments from the end of step k to maturity, this one included (at least 1).
__host__ __device__ __forceinline__ real remaining_payments(real maturity_step, int step, const real* prm, int i) {
    return m_max(m_rint((maturity_step - R(step)) * R(DT) * PRM(C_payments_per_year)[i]) + R(1.0), R(1.0));
}

// Principal due at a payment date: level O/m, annuity O r / (1 - (1 + r)^-m) - O r, or none; with
// 1 - (1 + r)^-m = -expm1(-m log1p(r)), which stays positive for tiny r in float32.
__host__ __device__ __forceinline__ real scheduled_principal(real outstanding, real rate, real remaining, const real* prm, int i) {
    const real level = outstanding / remaining;
    // the annuity term is a multiple of amortizes_annuity: not evaluated (expm1, log1p) for other loans
    if (PRM(C_amortizes_annuity)[i] == R(0.0)) return PRM(C_amortizes_level)[i] * level + R(0.0);
    const real r = rate / PRM(C_payments_per_year)[i];
    const bool positive = r > R(1e-12);
    const real safe_r = positive ? r : R(1.0);
    const real annuity = positive ? outstanding * safe_r / -m_expm1(-remaining * m_log1p(safe_r)) - outstanding * safe_r : level;
    return PRM(C_amortizes_level)[i] * level + PRM(C_amortizes_annuity)[i] * annuity;
}

// Value of the owner's pledged crypto (units `pledged` per asset) securing instrument i at market prices.
__host__ __device__ __forceinline__ real pledged_crypto_value(const real* pledged, const real* prices, const real* prm, int i) {
    real total = R(0.0);
    for (int a = 0; a < A; ++a) {
        const real part = PRM(C_collateral_crypto)[i * A + a] * pledged[a] * prices[a];
        total = a == 0 ? part : total + part;
    }
    return total;
}

// GPUs of generation g pledged to instrument i, of the owner's `fleet` of that generation.
__host__ __device__ __forceinline__ real pledged_fleet_weights(real fleet, const real* prm, int i, int g) {
    return PRM(C_collateral_fleet)[i * G + g] * fleet;
}

// GPUs of generation g borrower b owns: its fleet at t_0 plus what its capex orders delivered on
// the path (`added`, B x G); the fleet at t_0 in a portfolio without capex orders.
__host__ __device__ __forceinline__ real owned_fleet(const real* added, const real* prm, int b, int g) {
    return N_ORDERS > 0 ? PRM(C_fleet_count)[b * G + g] + added[b * G + g] : PRM(C_fleet_count)[b * G + g];
}

// Book value of the delivered GPUs securing instrument i: USD paid for each pledged order times its
// straight-line factor at t_{k+1}, in order of the orders.
__host__ __device__ __forceinline__ real delivered_book_value(const real* order_paid, int step_next, const real* prm, int i) {
    real total = R(0.0);
    for (int o = 0; o < N_ORDERS; ++o) {
        const real part = PRM(C_order_pledged)[i * N_ORDERS + o] * (order_paid[o] * PRM(C_order_book_factor)[step_next * N_ORDERS + o]);
        total = o == 0 ? part : total + part;
    }
    return total;
}

// Collateral of instrument i of borrower b at marks and at book: pledged fleets + pledged crypto +
// pledged data centres (the same value on both bases; 0 for an instrument without any). `added` are
// the GPUs capex delivered (owned_fleet), counted at book for what was paid (`order_paid`).
__host__ __device__ __forceinline__ void collateral_value(const real* marks, int step_next, const real* pledged, const real* prices,
                                                          const real* prm, int i, int b, real& at_mark, real& at_book, const real* added,
                                                          const real* order_paid) {
    const real crypto = pledged_crypto_value(pledged, prices, prm, i);
    real fleets_at_mark = R(0.0);
    for (int g = 0; g < G; ++g) {
        // without capex orders the GPUs pledged are those of t_0: a host table (kernel_config.derived_tables)
        const real pledged_gpus = N_ORDERS > 0 ? pledged_fleet_weights(owned_fleet(added, prm, b, g), prm, i, g) : PRM(D_pledged_gpus)[i * G + g];
        const real mark = pledged_gpus * marks[g];
        fleets_at_mark = g == 0 ? mark : fleets_at_mark + mark;
    }
    const real fleets_at_book = PRM(C_pledged_fleet_book)[step_next * N_INSTRUMENTS + i];  // a host table (params.pledged_fleet_book)
    const real sites = PRM(C_pledged_data_centre_value)[step_next * N_INSTRUMENTS + i];
    at_mark = fleets_at_mark + crypto;
    at_book = fleets_at_book + crypto;
    if (N_ORDERS > 0) at_book = at_book + delivered_book_value(order_paid, step_next, prm, i);
    at_mark = at_mark + sites;
    at_book = at_book + sites;
}

// Borrower b owns data centres first_data_centre(b) .. first_data_centre(b + 1) - 1 (Layout.data_centres_of).
__host__ __device__ __forceinline__ int first_data_centre(int b) { return FIRST_DATA_CENTRE[b]; }

// What a workout sale of data centre d raises at t_{k+1}: value x (1 - haircut_R).
__host__ __device__ __forceinline__ real data_centre_proceeds(int step_next, bool tight, const real* prm, int d) {
    const real haircut = by_regime(PRM(C_data_centre_haircut), tight, N_DATA_CENTRES)[d];
    return PRM(C_data_centre_value)[step_next * N_DATA_CENTRES + d] * (R(1.0) - haircut);
}

// Undrawn availability of facility i: min(commitment, advance rate x collateral mark) - drawn, >= 0.
__host__ __device__ __forceinline__ real facility_headroom(real outstanding, real collateral_at_mark, const real* prm, int i) {
    const real base = m_min(PRM(C_commitment)[i], PRM(C_advance_rate)[i] * collateral_at_mark);
    return PRM(C_is_facility)[i] * m_max(base - outstanding, R(0.0));
}

// P^g = M^g (1 - h_int) exp(-alpha_R Q^g / D^g_R): what a liquidating lender receives per GPU of generation g,
// D^g_R the depth of t_step (with its dated shock, 4.13).
__host__ __device__ __forceinline__ real fire_sale_price(real mark, real dumped, bool tight, int step, const real* prm, int g) {
    const real impact = by_regime(PRM(M_price_impact), tight)[0] * dumped / shocked_depth(prm, tight, step, g);
    return mark * (R(1.0) - PRM(M_integration_discount)[0]) * m_exp(-impact);
}

// GPUs of a generation whose sale sets a borrower's fire-sale price: the step's whole dump Q^g with
// the fire-sale chain on, only the borrower's own `fleet` with it off (the other defaulters' sales removed).
__host__ __device__ __forceinline__ real liquidation_dump(real dumped, real fleet, const real* prm) {
    return PRM(M_chain)[0] * dumped + (R(1.0) - PRM(M_chain)[0]) * fleet;
}

// Pay claimants (instruments of b flagged in `claimant`) from a pool by seniority, pro rata
// within a rank; returns what is left of the pool (debt.share_pool).
__host__ __device__ __forceinline__ real share_pool(real pool, const bool* claimant, real* claims, real* recovered, int b) {
    for (int k = 0; k < N_RANKS; ++k) {
        real total = R(0.0);
        bool any = false;
        for (int i = first_of(b); i < end_of(b); ++i) {
            if (!claimant[i] || SENIORITY[i] != RANKS[k]) continue;
            total = any ? total + claims[i] : claims[i];
            any = true;
        }
        if (!any) continue;
        const real paid = m_min(pool, total);
        const bool positive = total > R(0.0);
        const real safe_total = positive ? total : R(1.0);
        for (int i = first_of(b); i < end_of(b); ++i) {
            if (!claimant[i] || SENIORITY[i] != RANKS[k]) continue;
            const real share = positive ? paid * claims[i] / safe_total : R(0.0);
            claims[i] = claims[i] - share;
            recovered[i] = recovered[i] + share;
        }
        pool = pool - paid;
    }
    return pool;
}

// Recovery of borrower b's instruments if it is liquidated now (docs/model.md 7): fleets at fire-sale
// prices (set by the step's dump `dumped`, or by b's own fleet with the chain off), crypto at the
// slipped price, data centres for `data_centres` (data_centre_proceeds, indexed by data centre) and
// cash, less the workout cost; secured lenders first on their own collateral, then everything left
// pays all claims by rank, pro rata within a rank.
__host__ __device__ __forceinline__ void recovery_waterfall(const real* exposure, const real* marks, const real* dumped, bool tight,
                                                            const real* units, const real* pledged, const real* crypto_net_price, real cash,
                                                            const real* data_centres, int step, const real* prm, int b, real* recovered,
                                                            const real* added) {
    real claims[I];
    bool claimant[I];
    for (int i = first_of(b); i < end_of(b); ++i) {
        claims[i] = exposure[i];
        recovered[i] = R(0.0);
    }
    real fire_sale[G];
    for (int g = 0; g < G; ++g)
        fire_sale[g] = fire_sale_price(marks[g], liquidation_dump(dumped[g], owned_fleet(added, prm, b, g), prm), tight, step, prm, g);
    real gross = cash;
    for (int g = 0; g < G; ++g) gross = gross + owned_fleet(added, prm, b, g) * fire_sale[g];
    for (int a = 0; a < A; ++a) gross = gross + units[a] * crypto_net_price[a];
    for (int d = first_data_centre(b); d < first_data_centre(b + 1); ++d) gross = gross + data_centres[d];
    const real owed = sum_by_owner(exposure, b);
    const real after_cost = gross > R(0.0) ? m_max(R(1.0) - PRM(C_workout_cost)[0] * owed / gross, R(0.0)) : R(0.0);

    real general = cash * after_cost;
    for (int g = 0; g < G; ++g) {
        bool any = false;
        for (int i = first_of(b); i < end_of(b); ++i) any |= (claimant[i] = COLLATERAL_FLEET[i * G + g] != 0);
        const real pool = owned_fleet(added, prm, b, g) * fire_sale[g] * after_cost;
        general = general + (any ? share_pool(pool, claimant, claims, recovered, b) : pool);
    }
    for (int a = 0; a < A; ++a) {
        bool any = false;
        for (int i = first_of(b); i < end_of(b); ++i) any |= (claimant[i] = COLLATERAL_ASSET[i * A + a] != 0);
        const real secured = pledged[a] * crypto_net_price[a] * after_cost;
        const real free = (units[a] - pledged[a]) * crypto_net_price[a] * after_cost;
        general = general + free + (any ? share_pool(secured, claimant, claims, recovered, b) : secured);
    }
    for (int d = first_data_centre(b); d < first_data_centre(b + 1); ++d) {
        bool any = false;
        for (int i = first_of(b); i < end_of(b); ++i) any |= (claimant[i] = COLLATERAL_DATA_CENTRE[i * N_DATA_CENTRES + d] != 0);
        const real pool = data_centres[d] * after_cost;
        general = general + (any ? share_pool(pool, claimant, claims, recovered, b) : pool);
    }
    for (int i = first_of(b); i < end_of(b); ++i) claimant[i] = true;
    share_pool(general, claimant, claims, recovered, b);
}

}  // namespace gpusim
#endif  // GPUSIM_HAS_CREDIT
