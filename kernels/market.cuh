// market.cuh: the market factors of docs/model.md section 4 for one path (gpusim/model/market.py).
//
// One function per equation, named as its numpy twin and computing it with the same operations
// in the same order, so that float64 agrees with numpy bit for bit. Where the numpy function
// takes arrays over components (assets, generations), its twin here takes one component's
// scalars and the component index last; `prm` stands for the MarketParams.
#pragma once

#include "draws.cuh"

namespace gpusim {

// Market state at t_k (market.MarketState).
struct MarketState {
    bool tight;              // R_k
    real log_crypto[A];      // ln S_k
    real cum_deflation;      // sum_{j<k} delta_{R_j} dt
    real compute_shock;      // X_k
    real obsolescence[G];    // O^g_k
    real launches;           // launches so far
    real log_power;          // ln power price
    real distress_memory[G]; // L^g_k
    real hashrate_deviation; // y_k: the random part of the log network hashrate
};

// Observable factors at t_k (market.MarketView).
struct MarketView {
    real crypto[A];
    real rental_rate[G];
    real utilization;
    real power_price;
    real gpu_value[G];
    real gpu_mark[G];
    real network_hashrate;
};

// What the fan-chart histograms bin (market.fan_coordinates): the MarketView fields, as log
// levels except utilization.
struct FanCoordinates {
    real crypto[A];
    real rental_rate[G];
    real utilization;
    real power_price;
    real gpu_value[G];
    real gpu_mark[G];
    real network_hashrate;
};

// The regime-R_k part of a regime-indexed parameter (leading axis 2, `size` values per regime).
__host__ __device__ __forceinline__ const real* by_regime(const real* pair, bool tight, int size = 1) { return pair + (tight ? size : 0); }

// ---------------------------------------------------------------------------------------------
// Equations of section 4
// ---------------------------------------------------------------------------------------------

// R_{k+1}: leave the current regime with its per-step switching probability.
__host__ __device__ __forceinline__ bool next_regime(bool tight, real u, const real* switch_prob) {
    return tight != (u < by_regime(switch_prob, tight)[0]);
}

// Z_S = L_R z, summed over the lower triangle in a fixed order.
__host__ __device__ __forceinline__ void correlated_crypto_shocks(const real* z, bool tight, const real* cholesky, real* z_s) {
    const real* chol = by_regime(cholesky, tight, A * A);
    for (int i = 0; i < A; ++i) {
        real acc = chol[i * A] * z[0];
        for (int j = 1; j <= i; ++j) acc = acc + chol[i * A + j] * z[j];
        z_s[i] = acc;
    }
}

// Poisson jump counts per asset by inverse CDF on the regime's table.
__host__ __device__ __forceinline__ void jump_counts(const real* u, bool tight, const real* cdf, real* n_jumps) {
    const real* table = by_regime(cdf, tight, A * POISSON_CAP);
    for (int a = 0; a < A; ++a) n_jumps[a] = static_cast<real>(poisson_inverse_cdf(u[a], table + a * POISSON_CAP));
}

// Merton jump diffusion: ln S += (mu - sigma^2/2 - lambda kbar) dt + sigma sqrt(dt) Z_S + N mu_J + sqrt(N) sigma_J Z_J.
__host__ __device__ __forceinline__ real log_crypto_step(real log_s, real z_s, real n_jumps, real z_jump, bool tight, const real* prm,
                                                         int a) {
    const real jump_mean = by_regime(PRM(M_jump_mean), tight, A)[a];
    const real jump_std = by_regime(PRM(M_jump_std), tight, A)[a];
    const real jump = n_jumps * jump_mean + rng_sqrt(n_jumps) * jump_std * z_jump;
    return log_s + by_regime(PRM(M_crypto_drift_step), tight, A)[a] + by_regime(PRM(M_crypto_vol_step), tight, A)[a] * z_s + jump;
}

// Exact OU step of X with corr(Z_X, Z_S,BTC) = rho_R.
__host__ __device__ __forceinline__ real compute_shock_step(real x, real z_btc, real z_own, bool tight, const real* prm) {
    const real rho = by_regime(PRM(M_shock_corr_btc), tight)[0];
    const real z_x = rho * z_btc + rng_sqrt(R(1.0) - rho * rho) * z_own;
    return x * PRM(M_shock_decay)[0] + PRM(M_shock_vol_step)[0] * z_x;
}

// Total log-drop of a generation `behind` newest when n_launches newer ones arrive in a step:
// the j-th costs theta (behind + j)^eta, read from the table launch_drop; MAX_LAUNCHES bounds j.
__host__ __device__ __forceinline__ real obsolescence_drop(real behind, real n_launches, const real* prm) {
    real total = R(0.0);
    for (int j = 1; j <= MAX_LAUNCHES; ++j) {
        const real hit = n_launches >= R(j) ? R(1.0) : R(0.0);
        const int index = static_cast<int>(m_min(behind + R(j), R(LAUNCH_DROP_LAST)));
        total = total + hit * PRM(M_launch_drop)[index];
    }
    return total;
}

// Exact log-OU step of the power price around its long-run level.
__host__ __device__ __forceinline__ real log_power_step(real log_power, real z, const real* prm) {
    const real mean = PRM(M_log_power_mean)[0];
    return mean + (log_power - mean) * PRM(M_power_decay)[0] + PRM(M_power_vol_step)[0] * z;
}

// ln r^g_k = ln r^g_0 - sum_{j<k} delta_{R_j} dt + X_k - O^g_k.
__host__ __device__ __forceinline__ real log_rental_rate(real cum_deflation, real x, real obsolescence, const real* prm, int g) {
    return PRM(M_log_rate0)[g] - cum_deflation + x - obsolescence;
}

// u = u_max / (1 + exp(-(a_R + b X + s_u))), s_u the dated shock of the logit (4.13).
__host__ __device__ __forceinline__ real utilization(real x, bool tight, real shock, const real* prm) {
    return PRM(M_util_max)[0] / (R(1.0) + m_exp(-(by_regime(PRM(M_util_level), tight)[0] + PRM(M_util_sensitivity)[0] * x + shock)));
}

// Income-approach value of one GPU of generation g: remaining net rent, cut off when rent < power.
// V = max(scrap, h [u r a (1 - a^n*) / (1 - a) - c d (1 - d^n*) / (1 - d)]), c = kW PUE power,
// n* = min(n, floor(ln(u r / c) / (dbar dt))), 0 when rent does not pay for power.
__host__ __device__ __forceinline__ real income_value(real rate, real util, real power_price, real remaining_steps, bool tight,
                                                      int step, const real* prm, int g) {
    const real cost = PRM(M_kw_per_gpu)[g] * PRM(M_valuation_pue)[0] * power_price;
    const real gross = util * rate;
    const bool pays = gross > cost;
    // with dbar = 0 rent never falls below power: the tiny floor makes the cut-off infinite
    const real cutoff = m_floor(m_log(pays ? gross / cost : R(1.0)) / m_max(PRM(M_valuation_deflation)[0] * R(DT), R(1e-30)));
    const real n_star = pays ? m_min(remaining_steps, cutoff) : R(0.0);
    const real log_a = by_regime(PRM(M_log_income_discount), tight)[0];
    const real log_d = by_regime(PRM(M_log_cost_discount), tight)[0];
    const real a = by_regime(PRM(D_income_discount), tight)[0];  // exp(log_a), exp(log_d): host tables (kernel_config.derived_tables)
    const real d = by_regime(PRM(D_cost_discount), tight)[0];
    // rent that pays to the end of life (n* = the life left, the common case): a^n*, d^n* from host tables
    const bool whole_life = pays && cutoff >= remaining_steps;
    const int at = (2 * step + (tight ? 1 : 0)) * G + g;
    const real a_n = whole_life ? PRM(D_income_discount_life)[at] : m_exp(n_star * log_a);
    const real d_n = whole_life ? PRM(D_cost_discount_life)[at] : m_exp(n_star * log_d);
    const real income = gross * a * (R(1.0) - a_n) / (R(1.0) - a);
    const real power = cost * d * (R(1.0) - d_n) / (R(1.0) - d);
    return m_max(PRM(M_scrap_value)[g], PRM(M_hours_per_step)[0] * (income - power));
}

// Whole steps of economic life left at t_step for generation g.
__host__ __device__ __forceinline__ real remaining_life_steps(int step, const real* prm, int g) {
    return m_max(m_floor(PRM(M_life_end_step)[g] - R(step)), R(0.0));
}

// M = V exp(-alpha_mark L): distressed supply remembered by the market depresses marks.
__host__ __device__ __forceinline__ real gpu_mark(real value, real memory, const real* prm) {
    return value * m_exp(-PRM(M_mark_impact)[0] * memory);
}

// D^g_R exp(s^D,g_k): regime R's market depth of generation g with the dated shock of t_step (4.13).
__host__ __device__ __forceinline__ real shocked_depth(const real* prm, bool tight, int step, int g) {
    return PRM(D_market_depth)[(2 * step + (tight ? 1 : 0)) * G + g];  // host table (kernel_config.derived_tables)
}

// L_{k+1} = L_k exp(-dt/tau) + (Q_k + 12 dt q_exo,R) / D_R for generation g, D_R the depth of t_step = t_{k+1}.
__host__ __device__ __forceinline__ real distress_memory_step(real memory, real dumped, bool tight, int step, const real* prm, int g) {
    const real inflow = (dumped + by_regime(PRM(M_exogenous_supply_step), tight, G)[g]) / shocked_depth(prm, tight, step, g);
    return memory * PRM(M_memory_decay)[0] + inflow;
}

// y_{k+1} = y_k + m_R dt + sigma_H sqrt(dt) Z_H + e (ln S_{k+1} - ln S_k): the random part of ln H.
__host__ __device__ __forceinline__ real log_hashrate_step(real deviation, real z, real log_btc_return, bool tight, const real* prm) {
    return deviation + by_regime(PRM(M_hashrate_drift_step), tight)[0] + PRM(M_hashrate_vol_step)[0] * z +
           PRM(M_hashrate_btc_elasticity)[0] * log_btc_return;
}

// H_0 exp(g_d t_k): the network hashrate without its random part.
__host__ __device__ __forceinline__ real network_hashrate_trend(int step, const real* prm) {
    return PRM(D_hashrate_trend)[step];  // host table (kernel_config.derived_tables)
}

// H_k = trend_k exp(y_k), EH/s; exactly the trend where y = 0, so that trend / H = 1 keeps hashprice unchanged.
__host__ __device__ __forceinline__ real network_hashrate(real deviation, int step, const real* prm) {
    return network_hashrate_trend(step, prm) * m_exp(deviation);
}

// ---------------------------------------------------------------------------------------------
// State transitions
// ---------------------------------------------------------------------------------------------

__host__ __device__ __forceinline__ void initial_state(const real* prm, MarketState& s) {
    s.tight = PRM(M_regime_initial_tight)[0] > R(0.5);
    for (int a = 0; a < A; ++a) s.log_crypto[a] = PRM(M_log_spot)[a] + R(0.0);
    s.cum_deflation = R(0.0);
    s.compute_shock = R(0.0);
    s.launches = R(0.0);
    s.log_power = PRM(M_log_power0)[0] + R(0.0);
    for (int g = 0; g < G; ++g) s.obsolescence[g] = s.distress_memory[g] = R(0.0);
    s.hashrate_deviation = R(0.0);
}

// Step 4 of docs/model.md 7: factor levels at t_step. Called after advance_market, the state still
// holds R_k and L_k, which set utilization, values and marks at t_{k+1}. The dated shocks of t_step
// (row `step` of the shock tables, 4.13) are added to the log levels here, so everything read from
// the view (values, marks, collateral, hashprice) sees them.
__host__ __device__ GPUSIM_STAGE void observe(const MarketState& s, int step, const real* prm, MarketView& v) {
    const real deviation = s.hashrate_deviation + PRM(M_hashrate_btc_elasticity)[0] * PRM(M_shock_crypto)[step * A + BTC];
    for (int a = 0; a < A; ++a) v.crypto[a] = m_exp(s.log_crypto[a] + PRM(M_shock_crypto)[step * A + a]);
    v.utilization = utilization(s.compute_shock, s.tight, PRM(M_shock_utilization)[step], prm);
    v.power_price = m_exp(s.log_power + PRM(M_shock_power_price)[step]);
    for (int g = 0; g < G; ++g) {
        const real log_rate = log_rental_rate(s.cum_deflation, s.compute_shock, s.obsolescence[g], prm, g);
        v.rental_rate[g] = m_exp(log_rate + PRM(M_shock_rental_rate)[step * G + g]);
        v.gpu_value[g] = income_value(v.rental_rate[g], v.utilization, v.power_price, remaining_life_steps(step, prm, g), s.tight, step, prm, g);
        v.gpu_mark[g] = gpu_mark(v.gpu_value[g], s.distress_memory[g], prm);
    }
    v.network_hashrate = network_hashrate(deviation, step, prm);
}

// The log levels are taken from the state and the shock tables of t_step where they already hold
// them, to save a log per component.
__host__ __device__ __forceinline__ void fan_coordinates(const MarketState& s, const MarketView& v, int step, const real* prm,
                                                         FanCoordinates& f) {
    for (int a = 0; a < A; ++a) f.crypto[a] = s.log_crypto[a] + PRM(M_shock_crypto)[step * A + a];
    for (int g = 0; g < G; ++g) {
        const real log_rate = log_rental_rate(s.cum_deflation, s.compute_shock, s.obsolescence[g], prm, g);
        f.rental_rate[g] = log_rate + PRM(M_shock_rental_rate)[step * G + g];
    }
    f.utilization = v.utilization;
    f.power_price = s.log_power + PRM(M_shock_power_price)[step];
    for (int g = 0; g < G; ++g) {
        f.gpu_value[g] = m_log(v.gpu_value[g]);
        f.gpu_mark[g] = f.gpu_value[g] - PRM(M_mark_impact)[0] * s.distress_memory[g];
    }
    f.network_hashrate = m_log(v.network_hashrate);
}

// Steps 2-3 of docs/model.md 7 for k -> k+1: launches, then crypto, X, rates, power under R_k. The
// regime and the distress memory stay at R_k and L_k until close_step.
__host__ __device__ GPUSIM_STAGE void advance_market(MarketState& s, const Draws& d, int step, const real* prm) {
    const bool tight = s.tight;
    const real n_launch = PRM(M_scheduled_launches)[step] + (d.u[SLOT_RANDOM_LAUNCH] < PRM(M_random_launch_prob)[0] ? R(1.0) : R(0.0));
    for (int g = 0; g < G; ++g) {
        const real behind = PRM(M_generations_behind0)[g] + s.launches;
        s.obsolescence[g] = s.obsolescence[g] + obsolescence_drop(behind, n_launch, prm);
    }
    s.launches = s.launches + n_launch;

    real z_s[A], n_jumps[A];
    correlated_crypto_shocks(d.crypto_diffusion, tight, PRM(M_crypto_cholesky), z_s);
    jump_counts(d.u + SLOT_JUMP_COUNT, tight, PRM(M_jump_cdf), n_jumps);
    const real log_btc_before = s.log_crypto[BTC];
    for (int a = 0; a < A; ++a) s.log_crypto[a] = log_crypto_step(s.log_crypto[a], z_s[a], n_jumps[a], d.jump_size[a], tight, prm, a);
    s.cum_deflation = s.cum_deflation + by_regime(PRM(M_deflation_step), tight)[0];
    s.compute_shock = compute_shock_step(s.compute_shock, z_s[BTC], d.market_shocks[0], tight, prm);
    s.log_power = log_power_step(s.log_power, d.market_shocks[1], prm);
    s.hashrate_deviation = log_hashrate_step(s.hashrate_deviation, d.hashrate_shock[0], s.log_crypto[BTC] - log_btc_before, tight, prm);
}

// Step 10 of docs/model.md 7: update L with this step's fire sales Q^g (`dumped`), then draw R_{k+1}.
__host__ __device__ GPUSIM_STAGE void close_step(MarketState& s, const real* dumped, const Draws& d, int step, const real* prm) {
    for (int g = 0; g < G; ++g) s.distress_memory[g] = distress_memory_step(s.distress_memory[g], dumped[g], s.tight, step, prm, g);
    s.tight = next_regime(s.tight, d.u[SLOT_REGIME], PRM(M_regime_switch_prob));
}

}  // namespace gpusim
