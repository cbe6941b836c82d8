// model.cuh: the model of MODEL.md sections 4-7 for ONE path, as device functions.
//
// Mirrors the numpy reference function by function, in the same order of operations so that
// float64 paths agree to rounding and float32 default steps agree on nearly every path:
//   Market / advance_market / observe / close_step   <-> gpusim/factors.py
//   cfads                                             <-> gpusim/borrowers.py
//   scheduled_principal, recovery_waterfall, ...      <-> gpusim/debt.py
//   Credit / credit_step                              <-> gpusim/credit.py
// Sizes, slot offsets, parameter offsets and the portfolio structure come from the generated
// header of constants (config.cuh: the generated gpusim_config.cuh, or bench.yaml's), included before this file.
// Parameters are one flat array `prm` of the working dtype; `PRM(name)` points at one of them.
// Every function is __host__ __device__ so the host tests compile this file with g++.
#pragma once

#include "philox.cuh"

namespace gpusim {

using real = GPUSIM_REAL;
using namespace cfg;

#define PRM(name) (prm + P_##name)

// Array extents: zero-sized arrays are not C++, so a scenario without borrowers keeps one
// (unused) slot.
constexpr int A = N_ASSETS;
constexpr int G = N_GENERATIONS;
constexpr int B = N_BORROWERS > 0 ? N_BORROWERS : 1;
constexpr int I = N_INSTRUMENTS > 0 ? N_INSTRUMENTS : 1;
constexpr int W = WINDOW;
constexpr int NO_DEFAULT = -1;                       // credit.NO_DEFAULT
constexpr double UNBOUNDED_RATIO = 1e9;              // credit.UNBOUNDED_RATIO
constexpr double DSCR_WITHOUT_DEBT_SERVICE = 1e9;    // credit.DSCR_WITHOUT_DEBT_SERVICE
constexpr double HOURS_PER_STEP = 8760.0 * DT;       // params.HOURS_PER_YEAR * dt
constexpr double DAYS_PER_STEP = 365.0 * DT;         // borrowers.DAYS_PER_YEAR * dt

// The working dtype's math, as numpy evaluates it (minimum/maximum without NaN handling: the
// model never feeds them NaN).
__host__ __device__ __forceinline__ float m_exp(float x) { return expf(x); }
__host__ __device__ __forceinline__ double m_exp(double x) { return exp(x); }
__host__ __device__ __forceinline__ float m_log(float x) { return logf(x); }
__host__ __device__ __forceinline__ double m_log(double x) { return log(x); }
__host__ __device__ __forceinline__ float m_floor(float x) { return floorf(x); }
__host__ __device__ __forceinline__ double m_floor(double x) { return floor(x); }
__host__ __device__ __forceinline__ float m_rint(float x) { return rintf(x); }  // numpy round: half to even
__host__ __device__ __forceinline__ double m_rint(double x) { return rint(x); }
__host__ __device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__host__ __device__ __forceinline__ double m_pow(double x, double y) { return pow(x, y); }
__host__ __device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
__host__ __device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__host__ __device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__host__ __device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__host__ __device__ __forceinline__ real m_min(real a, real b) { return b < a ? b : a; }
__host__ __device__ __forceinline__ real m_max(real a, real b) { return b > a ? b : a; }
__host__ __device__ __forceinline__ real R(double x) { return static_cast<real>(x); }
// quiet NaN of the working dtype (a defaulted borrower's ratios)
#ifdef __CUDA_ARCH__
__device__ __forceinline__ float m_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double m_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }
#else
__host__ __device__ __forceinline__ float m_nan(float) { return nanf(""); }
__host__ __device__ __forceinline__ double m_nan(double) { return nan(""); }
#endif
// numerator / denominator, UNBOUNDED_RATIO where the denominator is not positive (credit.ratio)
__host__ __device__ __forceinline__ real ratio(real num, real den) { return den > R(0.0) ? num / den : R(UNBOUNDED_RATIO); }

// ---------------------------------------------------------------------------------------------
// Random draws of one step (MODEL.md 3; factors.draw_step): the Philox blocks of the step turned
// into the uniforms and Box-Muller normals named by the slot table.
// ---------------------------------------------------------------------------------------------
struct Draws {
    real u[4 * N_BLOCKS];     // uniform of every slot
    real crypto_diffusion[A]; // independent normals, correlated below
    real jump_size[A];
    real market_shocks[2];    // own part of Z_X, Z_P
    real revenue_shock[B];
};

// Normals of a slot entry: pair i from slots (start + 2i, start + 2i + 1), cosine draw first.
template <int COUNT>
__host__ __device__ __forceinline__ void entry_normals(const real* u, int start, real* out) {
    GPUSIM_UNROLL
    for (int i = 0; 2 * i < COUNT; ++i) {
        real z0, z1;
        box_muller(u[start + 2 * i], u[start + 2 * i + 1], z0, z1);
        out[2 * i] = z0;
        if (2 * i + 1 < COUNT) out[2 * i + 1] = z1;
    }
}

__host__ __device__ __forceinline__ void draw_step(unsigned long long seed, unsigned long long path, int step, Draws& d) {
    GPUSIM_UNROLL
    for (int b = 0; b < N_BLOCKS; ++b) {
        const uint4 w = philox_step_block(seed, path, static_cast<unsigned int>(step), static_cast<unsigned int>(b));
        d.u[4 * b] = u01<real>(w.x);
        d.u[4 * b + 1] = u01<real>(w.y);
        d.u[4 * b + 2] = u01<real>(w.z);
        d.u[4 * b + 3] = u01<real>(w.w);
    }
    entry_normals<A>(d.u, SLOT_CRYPTO_DIFFUSION, d.crypto_diffusion);
    entry_normals<A>(d.u, SLOT_JUMP_SIZE, d.jump_size);
    entry_normals<2>(d.u, SLOT_MARKET_SHOCKS, d.market_shocks);
    entry_normals<N_BORROWERS>(d.u, SLOT_REVENUE_SHOCK, d.revenue_shock);
}

// ---------------------------------------------------------------------------------------------
// Market factors (MODEL.md 4; factors.MarketState / MarketView)
// ---------------------------------------------------------------------------------------------
struct Market {
    bool tight;              // R_k
    real log_crypto[A];      // ln S_k
    real cum_deflation;      // sum_{j<k} delta_{R_j} dt
    real compute_shock;      // X_k
    real obsolescence[G];    // O^g_k
    real launches;           // launches so far
    real log_power;          // ln power price
    real distress_memory[G]; // L^g_k
};

struct View {
    real crypto[A];
    real rental_rate[G];
    real utilization;
    real power_price;
    real gpu_value[G];
    real gpu_mark[G];
};

__host__ __device__ __forceinline__ void initial_market(const real* prm, Market& s) {
    s.tight = PRM(M_regime_initial_tight)[0] > R(0.5);
    for (int a = 0; a < A; ++a) s.log_crypto[a] = PRM(M_log_spot)[a] + R(0.0);
    s.cum_deflation = R(0.0);
    s.compute_shock = R(0.0);
    s.launches = R(0.0);
    s.log_power = PRM(M_log_power0)[0] + R(0.0);
    for (int g = 0; g < G; ++g) s.obsolescence[g] = s.distress_memory[g] = R(0.0);
}

// ln r^g = ln r^g_0 - sum delta dt + X - O^g (MODEL.md 4, compute rental rates)
__host__ __device__ __forceinline__ real log_rental_rate(const real* prm, const Market& s, int g) {
    return PRM(M_log_rate0)[g] - s.cum_deflation + s.compute_shock - s.obsolescence[g];
}

// Steps 2-3 of MODEL.md 7 for k -> k+1 under R_k (factors.advance_market).
__host__ __device__ __forceinline__ void advance_market(const real* prm, const Draws& d, int step, Market& s) {
    const int r = s.tight ? 1 : 0;
    // 2. launches: each older generation takes theta (behind + j)^eta per launch j of the step
    const real n_launch = PRM(M_scheduled_launches)[step] + (d.u[SLOT_RANDOM_LAUNCH] < PRM(M_random_launch_prob)[0] ? R(1.0) : R(0.0));
    for (int g = 0; g < G; ++g) {
        const real behind = PRM(M_generations_behind0)[g] + s.launches;
        real drop = R(0.0);
        for (int j = 1; j <= MAX_LAUNCHES; ++j) {
            const real hit = n_launch >= R(j) ? R(1.0) : R(0.0);
            const int index = static_cast<int>(m_min(behind + R(j), R(LAUNCH_DROP_LAST)));
            drop = drop + hit * PRM(M_launch_drop)[index];
        }
        s.obsolescence[g] = s.obsolescence[g] + drop;
    }
    s.launches = s.launches + n_launch;

    // 3. crypto: Z_S = L_R z (lower triangle, fixed order), Merton jump diffusion
    real z_s[A];
    for (int i = 0; i < A; ++i) {
        const real* chol = PRM(M_crypto_cholesky) + (r * A + i) * A;
        real acc = chol[0] * d.crypto_diffusion[0];
        for (int j = 1; j <= i; ++j) acc = acc + chol[j] * d.crypto_diffusion[j];
        z_s[i] = acc;
    }
    for (int a = 0; a < A; ++a) {
        const int ra = r * A + a;
        const real n_jumps = static_cast<real>(poisson_inverse_cdf(d.u[SLOT_JUMP_COUNT + a], PRM(M_jump_cdf) + ra * POISSON_CAP));
        // jump sum = N mu_J + sqrt(N) sigma_J Z_J
        const real jump = n_jumps * PRM(M_jump_mean)[ra] + rng_sqrt(n_jumps) * PRM(M_jump_std)[ra] * d.jump_size[a];
        // ln S += (mu - sigma^2/2 - lambda kbar) dt + sigma sqrt(dt) Z_S + jumps
        s.log_crypto[a] = s.log_crypto[a] + PRM(M_crypto_drift_step)[ra] + PRM(M_crypto_vol_step)[ra] * z_s[a] + jump;
    }
    s.cum_deflation = s.cum_deflation + PRM(M_deflation_step)[r];
    // X: exact OU step with corr(Z_X, Z_S,BTC) = rho_R
    const real rho = PRM(M_shock_corr_btc)[r];
    const real z_x = rho * z_s[BTC] + rng_sqrt(R(1.0) - rho * rho) * d.market_shocks[0];
    s.compute_shock = s.compute_shock * PRM(M_shock_decay)[0] + PRM(M_shock_vol_step)[0] * z_x;
    // power: exact log-OU step around the long-run level
    const real mean = PRM(M_log_power_mean)[0];
    s.log_power = mean + (s.log_power - mean) * PRM(M_power_decay)[0] + PRM(M_power_vol_step)[0] * d.market_shocks[1];
}

// Step 4 of MODEL.md 7: factor levels at t_step under R_k and L_k (factors.observe).
__host__ __device__ __forceinline__ void observe(const real* prm, const Market& s, int step, View& v) {
    const int r = s.tight ? 1 : 0;
    for (int a = 0; a < A; ++a) v.crypto[a] = m_exp(s.log_crypto[a]);
    // u = u_max / (1 + exp(-(a_R + b X)))
    v.utilization = PRM(M_util_max)[0] / (R(1.0) + m_exp(-(PRM(M_util_level)[r] + PRM(M_util_sensitivity)[0] * s.compute_shock)));
    v.power_price = m_exp(s.log_power);
    const real log_a = PRM(M_log_income_discount)[r];
    const real log_d = PRM(M_log_cost_discount)[r];
    const real a = m_exp(log_a);
    const real d = m_exp(log_d);
    const real per_step_deflation = m_max(PRM(M_valuation_deflation)[0] * R(DT), R(1e-30));
    for (int g = 0; g < G; ++g) {
        v.rental_rate[g] = m_exp(log_rental_rate(prm, s, g));
        // income value V = max(scrap, h [u r a (1 - a^n*) / (1 - a) - c d (1 - d^n*) / (1 - d)]),
        // n* = min(n, floor(ln(u r / c) / (dbar dt))), 0 when rent does not pay for power
        const real remaining = m_max(m_floor(PRM(M_life_end_step)[g] - R(step)), R(0.0));
        const real cost = PRM(M_kw_per_gpu)[g] * PRM(M_valuation_pue)[0] * v.power_price;
        const real gross = v.utilization * v.rental_rate[g];
        const bool pays = gross > cost;
        const real cutoff = m_floor(m_log(pays ? gross / cost : R(1.0)) / per_step_deflation);
        const real n_star = pays ? m_min(remaining, cutoff) : R(0.0);
        const real income = gross * a * (R(1.0) - m_exp(n_star * log_a)) / (R(1.0) - a);
        const real power = cost * d * (R(1.0) - m_exp(n_star * log_d)) / (R(1.0) - d);
        v.gpu_value[g] = m_max(PRM(M_scrap_value)[g], PRM(M_hours_per_step)[0] * (income - power));
        // mark M = V exp(-alpha_mark L)
        v.gpu_mark[g] = v.gpu_value[g] * m_exp(-PRM(M_mark_impact)[0] * s.distress_memory[g]);
    }
}

// Step 10 of MODEL.md 7: L_{k+1} = L e^{-dt/tau} + (Q + 12 dt q_exo,R) / D_R, then draw R_{k+1}.
__host__ __device__ __forceinline__ void close_step(const real* prm, const real* dumped, const Draws& d, Market& s) {
    const int r = s.tight ? 1 : 0;
    for (int g = 0; g < G; ++g) {
        const real inflow = (dumped[g] + PRM(M_exogenous_supply_step)[r * G + g]) / PRM(M_market_depth)[r * G + g];
        s.distress_memory[g] = s.distress_memory[g] * PRM(M_memory_decay)[0] + inflow;
    }
    s.tight = s.tight != (d.u[SLOT_REGIME] < PRM(M_regime_switch_prob)[r]);
}

#if GPUSIM_HAS_CREDIT
// ---------------------------------------------------------------------------------------------
// Borrowers and debt (MODEL.md 5-7; credit.CreditState)
// ---------------------------------------------------------------------------------------------
struct Credit {
    bool alive[B];
    int default_step[B];
    int reason[B];            // index into credit.REASONS
    real cash[B];
    real eps[B];              // revenue shock
    real units[B][A];         // treasury crypto held
    real outstanding[I];
    real maturity_step[I];
    real spread_add[I];
    real dscr_breaches[I];
    real ltv_breaches[I];
    real cfads_window[B][W];  // ring buffers: slot (head + j) % W is the j-th oldest
    real service_window[B][W];
    int head;
    real dscr[B];             // trailing DSCR of the current windows (kept for the fan charts)
    real loss[I];
    real loss_nominal[I];
    real exposure[I];
    real annuity[I];
};

__host__ __device__ __forceinline__ int first_of(int b) { return FIRST_INSTRUMENT[b]; }
__host__ __device__ __forceinline__ int end_of(int b) { return FIRST_INSTRUMENT[b + 1]; }

// s_g e_g: share of a fleet earning its contract rate in this step
__host__ __device__ __forceinline__ real contracted(const real* prm, int step, int b, int g) {
    return PRM(C_contracted_share)[b * G + g] * PRM(C_contract_active)[(step * B + b) * G + g];
}

// CFADS = revenue - opex of borrower b (MODEL.md 5; borrowers.cfads)
__host__ __device__ __forceinline__ real cfads(const real* prm, const View& v, real eps, int step, int b) {
    // fleets: sum_g n_g h [s_g e_g rc_g + (1 - s_g e_g) u r^g e^eps]
    const real shock = m_exp(eps);
    real fleet = R(0.0), gpu_kw = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real share = contracted(prm, step, b, g);
        const real contract = share * PRM(C_contract_rate)[b * G + g];
        const real spot = (R(1.0) - share) * v.utilization * v.rental_rate[g] * shock;
        const real n_g = PRM(C_fleet_count)[b * G + g];
        const real part = n_g * (contract + spot);
        fleet = g == 0 ? part : fleet + part;
        // power for running GPUs: contracted all the time, spot at market utilization
        const real running = n_g * (share + (R(1.0) - share) * v.utilization);
        const real kw = running * PRM(M_kw_per_gpu)[g];
        gpu_kw = g == 0 ? kw : gpu_kw + kw;
    }
    const real revenue_fleet = R(HOURS_PER_STEP) * fleet;
    // mining: hashrate x hashprice_k x days, hashprice proportional to BTC
    const real hashprice = PRM(C_hashprice_per_btc)[step] * v.crypto[BTC];
    const real mining = PRM(C_hashrate)[b] * hashprice * R(DAYS_PER_STEP);
    const real price = v.power_price * PRM(C_power_price_ratio)[b];
    const real opex = R(HOURS_PER_STEP) * price * (gpu_kw * PRM(C_pue)[b] + PRM(C_mining_kw)[b]) + PRM(C_fixed_opex_step)[b];
    return revenue_fleet + mining - opex;
}

// Coupon per year: fixed, or base rate at t_k plus spread; plus refinancing step-ups (debt.coupon_rate)
__host__ __device__ __forceinline__ real coupon_rate(const real* prm, int step, int i, real spread_add) {
    return PRM(C_coupon)[i] + PRM(C_floating)[i] * PRM(C_base_rate)[step] + spread_add;
}

// Scheduled payments from the end of step k to maturity, this one included (debt.remaining_payments)
__host__ __device__ __forceinline__ real remaining_payments(const real* prm, real maturity_step, int step, int i) {
    return m_max(m_rint((maturity_step - R(step)) * R(DT) * PRM(C_payments_per_year)[i]) + R(1.0), R(1.0));
}

// Principal due at a payment date: level O/m, annuity O r / (1 - (1 + r)^-m) - O r, with
// 1 - (1 + r)^-m = -expm1(-m log1p(r)), which stays positive for tiny r (debt.scheduled_principal)
__host__ __device__ __forceinline__ real scheduled_principal(const real* prm, real outstanding, real rate, real remaining, int i) {
    const real level = outstanding / remaining;
    const real r = rate / PRM(C_payments_per_year)[i];
    const bool positive = r > R(1e-12);
    const real safe_r = positive ? r : R(1.0);
    const real annuity = positive ? outstanding * safe_r / -m_expm1(-remaining * m_log1p(safe_r)) - outstanding * safe_r : level;
    return PRM(C_amortizes_level)[i] * level + PRM(C_amortizes_annuity)[i] * annuity;
}

// DSCR = trailing-12-month CFADS / debt service, summed oldest first (credit.trailing_dscr)
__host__ __device__ __forceinline__ real trailing_dscr(const Credit& c, int b) {
    real flow = c.cfads_window[b][c.head], service = c.service_window[b][c.head];
    for (int j = 1, slot = c.head; j < W; ++j) {
        slot = slot + 1 == W ? 0 : slot + 1;  // (head + j) mod W without an integer division
        flow = flow + c.cfads_window[b][slot];
        service = service + c.service_window[b][slot];
    }
    return service > R(0.0) ? flow / service : R(DSCR_WITHOUT_DEBT_SERVICE);
}

// Sell unpledged treasury crypto asset by asset until `need` is met; returns the need left (credit.sell_crypto)
__host__ __device__ __forceinline__ real sell_crypto(real need, real* units, const real* pledged, const real* net_price) {
    for (int a = 0; a < A; ++a) {
        const real price = net_price[a];
        const real sold = m_min(need, (units[a] - pledged[a]) * price);
        units[a] = units[a] - sold / (price > R(0.0) ? price : R(1.0));
        need = need - sold;
    }
    return need;
}

// Draw borrower b's facilities for `need`, pro rata to their headroom; returns the need left (credit.draw_facilities)
__host__ __device__ __forceinline__ real draw_facilities(real need, const real* headroom, real* drawn, int b) {
    real total = headroom[first_of(b)];
    for (int i = first_of(b) + 1; i < end_of(b); ++i) total = total + headroom[i];
    const real amount = m_min(need, total);
    const real safe_total = total > R(0.0) ? total : R(1.0);
    for (int i = first_of(b); i < end_of(b); ++i) drawn[i] = amount * (headroom[i] / safe_total);
    return need - amount;
}

// Pay claimants (instruments of b with flag set in `claimant`) from a pool by seniority, pro
// rata within a rank; returns what is left of the pool (debt._share_pool).
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

// Recovery of borrower b's instruments in a liquidation (MODEL.md 7, recovery waterfall;
// debt.recovery_waterfall): fleets at fire-sale prices, crypto at the slipped price and cash,
// less the workout cost; secured lenders first on their own collateral, then everything left
// pays all claims by rank, pro rata within a rank.
__host__ __device__ __forceinline__ void recovery_waterfall(const real* prm, const real* exposure, const real* fire_sale,
                                                            const real* units, const real* pledged, const real* net_price,
                                                            real cash, int b, real* recovered) {
    real claims[I];
    bool claimant[I];
    for (int i = first_of(b); i < end_of(b); ++i) {
        claims[i] = exposure[i];
        recovered[i] = R(0.0);
    }
    real gross = cash;
    for (int g = 0; g < G; ++g) gross = gross + PRM(C_fleet_count)[b * G + g] * fire_sale[g];
    for (int a = 0; a < A; ++a) gross = gross + units[a] * net_price[a];
    real owed = exposure[first_of(b)];
    for (int i = first_of(b) + 1; i < end_of(b); ++i) owed = owed + exposure[i];
    const real after_cost = gross > R(0.0) ? m_max(R(1.0) - PRM(C_workout_cost)[0] * owed / gross, R(0.0)) : R(0.0);

    real general = cash * after_cost;
    for (int g = 0; g < G; ++g) {
        bool any = false;
        for (int i = first_of(b); i < end_of(b); ++i) any |= (claimant[i] = COLLATERAL_FLEET[i * G + g] != 0);
        const real pool = PRM(C_fleet_count)[b * G + g] * fire_sale[g] * after_cost;
        general = general + (any ? share_pool(pool, claimant, claims, recovered, b) : pool);
    }
    for (int a = 0; a < A; ++a) {
        bool any = false;
        for (int i = first_of(b); i < end_of(b); ++i) any |= (claimant[i] = COLLATERAL_ASSET[i * A + a] != 0);
        const real secured = pledged[a] * net_price[a] * after_cost;
        const real free = (units[a] - pledged[a]) * net_price[a] * after_cost;
        general = general + free + (any ? share_pool(secured, claimant, claims, recovered, b) : secured);
    }
    for (int i = first_of(b); i < end_of(b); ++i) claimant[i] = true;
    share_pool(general, claimant, claims, recovered, b);
}

// CFADS and debt service per step at t_0 run rates: they fill the DSCR windows at the start
// (credit.run_rate_windows / initial_credit_state).
__host__ __device__ __forceinline__ void initial_credit(const real* prm, const View& v, Credit& c) {
    c.head = 0;
    for (int b = 0; b < N_BORROWERS; ++b) {
        c.alive[b] = true;
        c.default_step[b] = NO_DEFAULT;
        c.reason[b] = 0;
        c.cash[b] = PRM(C_cash0)[b] + R(0.0);
        c.eps[b] = R(0.0);
        for (int a = 0; a < A; ++a) c.units[b][a] = PRM(C_treasury0)[b * A + a] + R(0.0);
        const real flow = cfads(prm, v, R(0.0), 0, b);
        real service = R(0.0);
        for (int i = first_of(b); i < end_of(b); ++i) {
            const real outstanding = PRM(C_principal0)[i] + R(0.0);
            const real rate = coupon_rate(prm, 0, i, R(0.0));
            const real remaining = remaining_payments(prm, PRM(C_maturity_step0)[i] + R(0.0), 0, i);
            const real per_payment = scheduled_principal(prm, outstanding, rate, remaining, i);
            const real per_step = outstanding * rate * R(DT) + per_payment * PRM(C_payments_per_year)[i] * R(DT);
            service = i == first_of(b) ? per_step : service + per_step;
        }
        for (int j = 0; j < W; ++j) {
            c.cfads_window[b][j] = flow;
            c.service_window[b][j] = service;
        }
        c.dscr[b] = trailing_dscr(c, b);
    }
    for (int i = 0; i < N_INSTRUMENTS; ++i) {
        c.outstanding[i] = PRM(C_principal0)[i] + R(0.0);
        c.maturity_step[i] = PRM(C_maturity_step0)[i] + R(0.0);
        c.spread_add[i] = c.dscr_breaches[i] = c.ltv_breaches[i] = R(0.0);
        c.loss[i] = c.loss_nominal[i] = c.exposure[i] = c.annuity[i] = R(0.0);
    }
}

// Trailing DSCR and LTV on marks of borrower b, NaN once defaulted (credit.credit_ratios).
__host__ __device__ __forceinline__ void credit_ratios(const real* prm, const Credit& c, const View& v, int b, real& dscr, real& ltv) {
    if (!c.alive[b]) {
        dscr = ltv = m_nan(R(0.0));
        return;
    }
    dscr = c.dscr[b];
    real fleets = R(0.0), treasury = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real part = PRM(C_fleet_count)[b * G + g] * v.gpu_mark[g];
        fleets = g == 0 ? part : fleets + part;
    }
    for (int a = 0; a < A; ++a) {
        const real part = c.units[b][a] * v.crypto[a];
        treasury = a == 0 ? part : treasury + part;
    }
    real debt = c.outstanding[first_of(b)];
    for (int i = first_of(b) + 1; i < end_of(b); ++i) debt = debt + c.outstanding[i];
    ltv = ratio(debt, fleets + treasury);
}

// Steps 5-9 of MODEL.md 7 for every borrower of the path (credit.credit_step). `tight` is R_k;
// writes the GPUs dumped by this step's defaults per generation (Q^g) into `dumped`.
__host__ __device__ __forceinline__ void credit_step(const real* prm, const View& v, bool tight, const Draws& d, int step, Credit& c,
                                                     real* dumped) {
    const int r = tight ? 1 : 0;
    real net_price[A];
    for (int a = 0; a < A; ++a) net_price[a] = v.crypto[a] * (R(1.0) - PRM(M_crypto_slippage)[r * A + a]);
    real pledged[B][A];  // units pledged, fixed while the borrower lives
    for (int b = 0; b < N_BORROWERS; ++b)
        for (int a = 0; a < A; ++a) pledged[b][a] = PRM(C_treasury0)[b * A + a] * PRM(C_pledged_share)[b * A + a];

    // per-instrument working values of this step
    real old_outstanding[I], interest[I], principal[I], outstanding[I], headroom[I], drawn[I], coll_mark[I], coll_book[I];
    bool matures[I];
    // per-borrower working values
    real available[B], cash[B], need[B], units[B][A], old_units[B][A];
    bool payment_default[B];

    for (int b = 0; b < N_BORROWERS; ++b) {
        // 5. cash flows and the debt service due in (t_k, t_k+1]
        c.eps[b] = c.eps[b] * PRM(C_shock_decay)[b] + PRM(C_shock_vol_step)[b] * d.revenue_shock[b];
        const real flow = cfads(prm, v, c.eps[b], step, b);
        real service = R(0.0);
        for (int i = first_of(b); i < end_of(b); ++i) {
            old_outstanding[i] = c.outstanding[i];
            const real rate = coupon_rate(prm, step, i, c.spread_add[i]);
            const real due_now = PRM(C_payment_due)[step * N_INSTRUMENTS + i];
            matures[i] = c.maturity_step[i] == R(step);
            interest[i] = c.outstanding[i] * rate / PRM(C_payments_per_year)[i] * due_now;
            // due_now * principal is 0 off payment dates (the principal is finite), so the
            // annuity's pow is only evaluated on payment dates
            const bool pays_now = !matures[i] && due_now != R(0.0);
            const real scheduled =
                pays_now ? due_now * scheduled_principal(prm, c.outstanding[i], rate, remaining_payments(prm, c.maturity_step[i], step, i), i)
                         : R(0.0);
            principal[i] = m_min(scheduled, c.outstanding[i]);
            const real part = interest[i] + principal[i];
            service = i == first_of(b) ? part : service + part;
        }

        // 6. pay: cash first, then unpledged crypto at the slipped price, then facility headroom
        available[b] = c.cash[b] + flow;
        cash[b] = m_max(available[b] - service, R(0.0));
        for (int a = 0; a < A; ++a) old_units[b][a] = units[b][a] = c.units[b][a];
        need[b] = sell_crypto(m_max(service - available[b], R(0.0)), units[b], pledged[b], net_price);
        for (int i = first_of(b); i < end_of(b); ++i) {
            // collateral at marks and at book: pledged fleets + pledged crypto (debt.collateral_value)
            real crypto = R(0.0), at_mark = R(0.0), at_book = R(0.0);
            for (int a = 0; a < A; ++a) {
                const real part = PRM(C_collateral_crypto)[i * A + a] * pledged[b][a] * v.crypto[a];
                crypto = a == 0 ? part : crypto + part;
            }
            for (int g = 0; g < G; ++g) {
                const real weight = PRM(C_collateral_fleet)[i * G + g] * PRM(C_fleet_count)[b * G + g];
                const real mark = weight * v.gpu_mark[g];
                const real book = weight * PRM(C_book_value)[((step + 1) * B + b) * G + g];
                at_mark = g == 0 ? mark : at_mark + mark;
                at_book = g == 0 ? book : at_book + book;
            }
            coll_mark[i] = at_mark + crypto;
            coll_book[i] = at_book + crypto;
            // facility headroom: min(commitment, advance rate x collateral mark) - drawn, >= 0
            const real base = m_min(PRM(C_commitment)[i], PRM(C_advance_rate)[i] * coll_mark[i]);
            headroom[i] = PRM(C_is_facility)[i] * m_max(base - c.outstanding[i], R(0.0));
        }
        need[b] = draw_facilities(need[b], headroom, drawn, b);
        for (int i = first_of(b); i < end_of(b); ++i) {
            outstanding[i] = c.outstanding[i] - principal[i] + drawn[i];
            headroom[i] = headroom[i] - drawn[i];
        }
        payment_default[b] = c.alive[b] && need[b] > R(0.0);

        const int oldest = c.head;  // the ring slot that drops out of every borrower's window
        c.cfads_window[b][oldest] = flow;
        c.service_window[b][oldest] = service;
    }
    c.head = c.head + 1 == W ? 0 : c.head + 1;

    bool covenant_dscr[B], covenant_ltv[B], maturity_default[B];
    for (int b = 0; b < N_BORROWERS; ++b) {
        c.dscr[b] = trailing_dscr(c, b);

        // 7. covenant tests (while the loan is outstanding); LTV breaches cured by prepaying from
        // cash and unpledged crypto, all of a borrower's breaches at once or none
        const bool liquidity_short = cash[b] < PRM(C_min_liquidity)[b];
        real excess[I];
        bool test[I];
        real excess_b = R(0.0);
        for (int i = first_of(b); i < end_of(b); ++i) {
            test[i] = PRM(C_covenant_test)[step * N_INSTRUMENTS + i] > R(0.0) && old_outstanding[i] > R(0.0);
            const real on_mark = PRM(C_ltv_on_mark)[i];
            const real basis = on_mark * coll_mark[i] + (R(1.0) - on_mark) * coll_book[i];
            excess[i] = test[i] ? m_max(outstanding[i] - PRM(C_ltv_max)[i] * basis, R(0.0)) : R(0.0);
            excess_b = i == first_of(b) ? excess[i] : excess_b + excess[i];
        }
        real free_crypto = R(0.0);
        for (int a = 0; a < A; ++a) {
            const real part = (units[b][a] - pledged[b][a]) * net_price[a];
            free_crypto = a == 0 ? part : free_crypto + part;
        }
        const bool cure = excess_b > R(0.0) && cash[b] + free_crypto >= excess_b;
        const real prepay = cure ? excess_b : R(0.0);
        const real from_cash = m_min(cash[b], prepay);
        cash[b] = cash[b] - from_cash;
        sell_crypto(prepay - from_cash, units[b], pledged[b], net_price);
        covenant_dscr[b] = covenant_ltv[b] = false;
        for (int i = first_of(b); i < end_of(b); ++i) {
            if (cure) outstanding[i] = outstanding[i] - excess[i];
            const bool dscr_breach =
                test[i] && ((PRM(C_dscr_min)[i] > R(0.0) && c.dscr[b] < PRM(C_dscr_min)[i]) || liquidity_short);
            const bool ltv_breach = excess[i] > R(0.0) && !cure;
            if (test[i]) {
                c.dscr_breaches[i] = dscr_breach ? c.dscr_breaches[i] + R(1.0) : R(0.0);
                c.ltv_breaches[i] = ltv_breach ? c.ltv_breaches[i] + R(1.0) : R(0.0);
            }
            covenant_dscr[b] |= c.dscr_breaches[i] > PRM(C_cure_periods)[i];
            covenant_ltv[b] |= c.ltv_breaches[i] > PRM(C_cure_periods)[i];
        }

        // 8. maturities: refinance in the easy regime when LTV and DSCR meet the terms, else
        // repay from cash, crypto and the headroom of facilities not maturing now
        real treasury = R(0.0), fleets = R(0.0), debt = R(0.0);
        for (int a = 0; a < A; ++a) {
            const real part = units[b][a] * v.crypto[a];
            treasury = a == 0 ? part : treasury + part;
        }
        for (int g = 0; g < G; ++g) {
            const real part = PRM(C_fleet_count)[b * G + g] * v.gpu_mark[g];
            fleets = g == 0 ? part : fleets + part;
        }
        for (int i = first_of(b); i < end_of(b); ++i) debt = i == first_of(b) ? outstanding[i] : debt + outstanding[i];
        const real borrower_ltv = ratio(debt, fleets + treasury);
        real owed = R(0.0);
        bool repay[I];
        for (int i = first_of(b); i < end_of(b); ++i) {
            const real ltv_refi = PRM(C_secured)[i] > R(0.0) ? ratio(outstanding[i], coll_mark[i]) : borrower_ltv;
            const bool due = matures[i] && c.alive[b];
            const bool refinance = due && PRM(C_refinanceable)[i] > R(0.0) && !tight && ltv_refi <= PRM(C_refi_max_ltv)[i] &&
                                   c.dscr[b] >= PRM(C_refi_min_dscr)[i];
            if (refinance) {
                c.maturity_step[i] = R(step) + PRM(C_refi_tenor_steps)[i];
                c.spread_add[i] = c.spread_add[i] + PRM(C_refi_step_up)[i];
            }
            repay[i] = due && !refinance;
            const real part = repay[i] ? outstanding[i] : R(0.0);
            owed = i == first_of(b) ? part : owed + part;
            drawn[i] = R(0.0);
            if (matures[i]) headroom[i] = R(0.0);
        }
        const real from_cash_m = m_min(cash[b], owed);
        real units_after[A];
        for (int a = 0; a < A; ++a) units_after[a] = units[b][a];
        real short_b = sell_crypto(owed - from_cash_m, units_after, pledged[b], net_price);
        short_b = draw_facilities(short_b, headroom, drawn, b);
        maturity_default[b] = short_b > R(0.0);
        // a borrower that cannot repay in full repays nothing: it enters the workout with the
        // cash and crypto it had, owing what it owed
        if (!maturity_default[b]) {
            cash[b] = cash[b] - from_cash_m;
            for (int a = 0; a < A; ++a) units[b][a] = units_after[a];
        }
        for (int i = first_of(b); i < end_of(b); ++i) {
            if (repay[i] && !maturity_default[b]) outstanding[i] = R(0.0);
            else if (!maturity_default[b]) outstanding[i] = outstanding[i] + drawn[i];
        }
    }

    // 9. defaults of this step: fire sales Q^g, recovery waterfall, losses
    bool newly[B];
    bool any_default = false;
    for (int b = 0; b < N_BORROWERS; ++b) {
        real owes = old_outstanding[first_of(b)];
        for (int i = first_of(b) + 1; i < end_of(b); ++i) owes = owes + old_outstanding[i];
        newly[b] = c.alive[b] && owes > R(0.0) && (payment_default[b] || covenant_dscr[b] || covenant_ltv[b] || maturity_default[b]);
        any_default |= newly[b];
    }
    for (int g = 0; g < G; ++g) {
        real q = R(0.0);
        for (int b = 0; b < N_BORROWERS; ++b) {
            const real part = PRM(C_fleet_count)[b * G + g] * (newly[b] ? R(1.0) : R(0.0));
            q = b == 0 ? part : q + part;
        }
        dumped[g] = q;
    }
    if (any_default) {
        // P^g = M^g (1 - h_int) exp(-alpha_R Q^g / D^g_R)
        real fire_sale[G];
        for (int g = 0; g < G; ++g) {
            const real impact = PRM(M_price_impact)[r] * dumped[g] / PRM(M_market_depth)[r * G + g];
            fire_sale[g] = v.gpu_mark[g] * (R(1.0) - PRM(M_integration_discount)[0]) * m_exp(-impact);
        }
        real exposure[I], recovered[I];
        for (int b = 0; b < N_BORROWERS; ++b) {
            if (!newly[b]) continue;
            // a borrower that cannot pay in full goes into the workout with what it had before paying
            for (int i = first_of(b); i < end_of(b); ++i)
                exposure[i] = payment_default[b] ? old_outstanding[i] + interest[i] : outstanding[i];
            const real workout_cash = payment_default[b] ? m_max(available[b], R(0.0)) : cash[b];
            const real* workout_units = payment_default[b] ? old_units[b] : units[b];
            recovery_waterfall(prm, exposure, fire_sale, workout_units, pledged[b], net_price, workout_cash, b, recovered);
            for (int i = first_of(b); i < end_of(b); ++i) {
                const real loss_now = exposure[i] - m_min(recovered[i], exposure[i]);
                c.loss[i] = c.loss[i] + loss_now * PRM(C_discount)[step + 1];
                c.loss_nominal[i] = c.loss_nominal[i] + loss_now;
                c.exposure[i] = c.exposure[i] + exposure[i] * PRM(C_discount)[step + 1];
            }
            c.default_step[b] = step;
            c.reason[b] = payment_default[b] ? 1 : covenant_dscr[b] ? 2 : covenant_ltv[b] ? 3 : 4;
        }
    }
    for (int b = 0; b < N_BORROWERS; ++b) {
        const bool was_alive = c.alive[b];
        const bool still_alive = was_alive && !newly[b];
        c.alive[b] = still_alive;
        c.cash[b] = still_alive ? cash[b] : R(0.0);
        for (int a = 0; a < A; ++a) c.units[b][a] = still_alive ? units[b][a] : R(0.0);
        for (int i = first_of(b); i < end_of(b); ++i) {
            // risky annuity: DF x outstanding x dt while alive
            c.annuity[i] = c.annuity[i] + PRM(C_discount)[step] * old_outstanding[i] * R(DT) * (was_alive ? R(1.0) : R(0.0));
            c.outstanding[i] = still_alive ? outstanding[i] : R(0.0);
        }
    }
}
#endif  // GPUSIM_HAS_CREDIT

}  // namespace gpusim
