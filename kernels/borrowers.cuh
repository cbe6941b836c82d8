// borrowers.cuh: borrower cash flows of docs/model.md section 5 for one path (gpusim/model/borrowers.py).
//
// One function per equation, named as its numpy twin, with the same operations in the same
// order; each takes one borrower b (and generation g) where the numpy function takes arrays over
// all of them. Sums over generations run in the fixed order of borrowers.sum_over.
#pragma once

#include "market.cuh"

#if GPUSIM_HAS_CREDIT
namespace gpusim {

constexpr int TN = N_TENANTS > 0 ? N_TENANTS : 1;  // extent of per-tenant arrays (one unused slot without tenants)

// Exact log-OU step of borrower b's idiosyncratic revenue shock eps^b.
__host__ __device__ GPUSIM_STAGE real revenue_shock_step(real eps, real z, const real* prm, int b) {
    return eps * PRM(C_shock_decay)[b] + PRM(C_shock_vol_step)[b] * z;
}

// s_g e_g: share of borrower b's fleet of generation g earning its contract rate in this step.
__host__ __device__ __forceinline__ real contracted_share(int step, const real* prm, int b, int g) {
    return PRM(D_contracted_share)[(step * B + b) * G + g];  // a host table (kernel_config.derived_tables)
}

// sum_g n_g h [s_g e_g rc_g + (1 - s_g e_g) u r^g e^eps]: contract plus spot rent.
__host__ __device__ __forceinline__ real fleet_revenue(const real* rental_rate, real utilization, real eps, int step, const real* prm,
                                                       int b) {
    const real shock = m_exp(eps);
    real fleet = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real share = contracted_share(step, prm, b, g);
        const real contract = share * PRM(C_contract_rate)[b * G + g];
        const real spot = (R(1.0) - share) * utilization * rental_rate[g] * shock;
        const real part = PRM(C_free_fleet_count)[b * G + g] * (contract + spot);
        fleet = g == 0 ? part : fleet + part;
    }
    return R(HOURS_PER_YEAR * DT) * fleet;
}

// hp_k = hp_0 (S / S_0) (H_0 / H) 0.5^halvings: the calendar of step k times BTC and the network
// hashrate observed at t_{levels_step}; without a hashrate process trend / H = 1 exactly.
__host__ __device__ __forceinline__ real hashprice(real btc_price, real network_hashrate, int step, int levels_step, const real* prm) {
    return PRM(C_hashprice_per_btc)[step] * btc_price * (network_hashrate_trend(levels_step, prm) / network_hashrate);
}

// Borrower b's miners on the path: hashrate H_b + dH_b (PH/s), power kW_b + dkW_b, and 24 e' with
// e' = kW / H (the break-even of curtailment; 0 with no hashrate left); those of t_0 without miners
// orders, or at t_0 (`hashrate_added` nullptr) (docs/model.md 5.9).
__host__ __device__ __forceinline__ void mining_capacity(const real* hashrate_added, const real* kw_added, const real* prm, int b,
                                                         real& hashrate, real& kw, real& breakeven) {
    if (!MINER_ORDERS || hashrate_added == nullptr) {
        hashrate = PRM(C_hashrate)[b];
        kw = PRM(C_mining_kw)[b];
        breakeven = PRM(C_breakeven_kwh_per_day)[b];
        return;
    }
    hashrate = PRM(C_hashrate)[b] + hashrate_added[b];
    kw = PRM(C_mining_kw)[b] + kw_added[b];
    const real efficiency = hashrate > R(0.0) ? kw / hashrate : R(0.0);
    breakeven = R(24.0) * efficiency;
}

// 1 while borrower b's miners run, 0 in a step they are curtailed: hashprice per kWh, hp / (24 e),
// below the borrower's power price (only for borrowers that curtail); `breakeven` is 24 e (mining_capacity).
__host__ __device__ __forceinline__ real miners_running(real price, real power_price, const real* prm, int b, real breakeven) {
    const bool loses_money = price < breakeven * (power_price * PRM(C_power_price_ratio)[b]);
    return R(1.0) - PRM(C_curtails)[b] * (loses_money ? R(1.0) : R(0.0));
}

// Hashrate x hashprice x days while the miners run.
__host__ __device__ __forceinline__ real mining_revenue(real price, real running, real hashrate) {
    return hashrate * price * R(DAYS_PER_YEAR * DT) * running;
}

// Power for running GPUs and miners plus fixed opex. Contracted GPUs run all the time, spot GPUs
// at the market utilization; idle GPUs draw no power. GPU power carries the borrower's PUE.
// Curtailed miners (running = 0) pay only the take-or-pay share of their power.
__host__ __device__ __forceinline__ real operating_cost(real utilization, real power_price, real running, int step, const real* prm,
                                                        int b, real mining_power) {
    real gpu_kw = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real share = contracted_share(step, prm, b, g);
        const real running = PRM(C_free_fleet_count)[b * G + g] * (share + (R(1.0) - share) * utilization);
        const real kw = running * PRM(M_kw_per_gpu)[g];
        gpu_kw = g == 0 ? kw : gpu_kw + kw;
    }
    const real price = power_price * PRM(C_power_price_ratio)[b];
    const real mining_kw = mining_power * (running + (R(1.0) - running) * PRM(C_power_take_or_pay)[b]);
    return R(HOURS_PER_YEAR * DT) * price * (gpu_kw * PRM(C_pue)[b] + mining_kw) + PRM(C_fixed_opex_step)[b];
}

// ---------------------------------------------------------------------------------------------
// Tenant contracts (docs/model.md 5.7); borrower b's tenants are FIRST_TENANT[b] .. FIRST_TENANT[b+1] - 1
// ---------------------------------------------------------------------------------------------

// Default step of tenant t after step k: a performing tenant whose contract is in force defaults
// when its uniform is below 1 - exp(-h_R dt); NO_DEFAULT while it performs.
__host__ __device__ GPUSIM_STAGE real tenant_defaults(real default_step, real u, bool tight, int step, const real* prm, int t) {
    const bool in_force = default_step < R(0.0) && PRM(C_tenant_active)[step * N_TENANTS + t] > R(0.0);
    const bool defaults = in_force && u < by_regime(PRM(C_tenant_default_prob), tight, N_TENANTS)[t];
    return defaults ? R(step) : default_step;
}

// (contract, spot) weight of tenant t's capacity in step k: a performing tenant pays its contract
// while in force, its capacity is at spot after expiry; a defaulted tenant's capacity earns
// nothing for the re-leasing lag, then is at spot. Before a tenant's start its capacity earns nothing.
__host__ __device__ __forceinline__ void tenant_shares(real default_step, int step, const real* prm, int t, real& contract, real& spot) {
    const bool performing = default_step < R(0.0);
    const real active = PRM(C_tenant_active)[step * N_TENANTS + t];
    const bool released = default_step >= R(0.0) && default_step + PRM(C_tenant_lag_steps)[t] <= R(step);
    contract = performing ? active : R(0.0);
    spot = performing ? PRM(C_tenant_started)[step * N_TENANTS + t] - active : (released ? R(1.0) : R(0.0));
}

// Per-tenant values x summed over borrower b's tenants in a fixed order; 0 without tenants.
__host__ __device__ __forceinline__ real sum_by_tenant(const real* x, int b) {
    if (FIRST_TENANT[b] == FIRST_TENANT[b + 1]) return R(0.0);
    real total = x[FIRST_TENANT[b]];
    for (int t = FIRST_TENANT[b] + 1; t < FIRST_TENANT[b + 1]; ++t) total = total + x[t];
    return total;
}

// Contract revenue of borrower b's performing tenants plus the spot revenue of released capacity
// (GPUs at u r^g e^eps, colocation at the spot colocation rate).
__host__ __device__ __forceinline__ real tenant_revenue(const real* rental_rate, real utilization, real eps, const real* contract,
                                                        const real* spot, int step, const real* prm, int b) {
    real per_tenant[TN];
    const real shock = m_exp(eps);
    for (int t = FIRST_TENANT[b]; t < FIRST_TENANT[b + 1]; ++t) {
        const real gpu_spot = PRM(C_tenant_gpus)[t] * utilization * rental_rate[TENANT_GENERATION[t]] * shock * R(HOURS_PER_YEAR * DT);
        per_tenant[t] = contract[t] * PRM(C_tenant_contract_revenue)[step * N_TENANTS + t] + spot[t] * (gpu_spot + PRM(C_tenant_spot_revenue)[t]);
    }
    return sum_by_tenant(per_tenant, b);
}

// Power of borrower b's tenants' GPUs, with the site PUE: contracted GPUs run all the time, GPUs at
// spot at the market utilization, idle ones (and colocation, whose tenant pays its power) draw nothing.
__host__ __device__ __forceinline__ real tenant_power_cost(real utilization, real power_price, const real* contract, const real* spot,
                                                           const real* prm, int b) {
    real per_tenant[TN];
    for (int t = FIRST_TENANT[b]; t < FIRST_TENANT[b + 1]; ++t)
        per_tenant[t] = PRM(C_tenant_gpus)[t] * PRM(C_tenant_kw_per_gpu)[t] * (contract[t] + spot[t] * utilization);
    const real kw = sum_by_tenant(per_tenant, b);
    return R(HOURS_PER_YEAR * DT) * (power_price * PRM(C_power_price_ratio)[b]) * (kw * PRM(C_pue)[b]);
}

// ---------------------------------------------------------------------------------------------
// GPUs delivered by capex orders (docs/model.md 5.9); `added` is B x G
// ---------------------------------------------------------------------------------------------

// a_g - l_g: GPUs of generation g capex delivered to borrower b less those leased to tenants that
// started after t_0 (their GPUs leave the spot pool at the start).
__host__ __device__ __forceinline__ real delivered_spot_gpus(const real* added, int step, const real* prm, int b, int g) {
    return added[b * G + g] - PRM(C_tenant_leased_later)[(step * B + b) * G + g];
}

// sum_g (a_g - l_g) h u r^g e^eps: borrower b's delivered GPUs not leased to later tenants rent at spot.
__host__ __device__ __forceinline__ real delivered_revenue(const real* rental_rate, real utilization, real eps, const real* added, int step,
                                                           const real* prm, int b) {
    const real shock = m_exp(eps);
    real total = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real part = delivered_spot_gpus(added, step, prm, b, g) * (utilization * rental_rate[g] * shock);
        total = g == 0 ? part : total + part;
    }
    return R(HOURS_PER_YEAR * DT) * total;
}

// Power of those GPUs running at the market utilization, with the site PUE.
__host__ __device__ __forceinline__ real delivered_power_cost(real utilization, real power_price, const real* added, int step, const real* prm,
                                                              int b) {
    real kw = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real part = delivered_spot_gpus(added, step, prm, b, g) * utilization * PRM(M_kw_per_gpu)[g];
        kw = g == 0 ? part : kw + part;
    }
    return R(HOURS_PER_YEAR * DT) * (power_price * PRM(C_power_price_ratio)[b]) * (kw * PRM(C_pue)[b]);
}

// Cash flow available for debt service of borrower b in step k (calendars of `step`), paid out of
// the market levels observed at t_{levels_step} (k + 1; 0 for the run rates), the tenants'
// default steps, the GPUs capex has delivered by t_k (`added`, B x G) and the miners' PH/s and kW it
// has added (`hashrate_added`, `kw_added`, B each); nullptr at t_0: revenue - opex.
__host__ __device__ GPUSIM_STAGE real cfads(const MarketView& v, const real* tenant_default_step, real eps, int step, int levels_step,
                                               const real* prm, int b, const real* added, const real* hashrate_added, const real* kw_added) {
    real hashrate, mining_kw, breakeven;
    mining_capacity(hashrate_added, kw_added, prm, b, hashrate, mining_kw, breakeven);
    // without miners (no hashrate, no kW) the mining terms are multiples of 0 whatever the hashprice
    const bool mines = hashrate != R(0.0) || mining_kw != R(0.0);
    const real price = mines ? hashprice(v.crypto[BTC], v.network_hashrate, step, levels_step, prm) : R(0.0);
    const real running = mines ? miners_running(price, v.power_price, prm, b, breakeven) : R(1.0);
    real revenue = fleet_revenue(v.rental_rate, v.utilization, eps, step, prm, b) + mining_revenue(price, running, hashrate);
    real cost = operating_cost(v.utilization, v.power_price, running, step, prm, b, mining_kw);
    if (N_TENANTS > 0) {  // a portfolio without tenants skips the tenant terms (as the Python model)
        real contract[TN], spot[TN];
        for (int t = FIRST_TENANT[b]; t < FIRST_TENANT[b + 1]; ++t) tenant_shares(tenant_default_step[t], step, prm, t, contract[t], spot[t]);
        revenue = revenue + tenant_revenue(v.rental_rate, v.utilization, eps, contract, spot, step, prm, b);
        cost = cost + tenant_power_cost(v.utilization, v.power_price, contract, spot, prm, b);
    }
    if ((N_ORDERS > 0 || LATER_TENANTS) && added != nullptr) {  // without capex or later tenants these terms are skipped (as in Python)
        revenue = revenue + delivered_revenue(v.rental_rate, v.utilization, eps, added, step, prm, b);
        cost = cost + delivered_power_cost(v.utilization, v.power_price, added, step, prm, b);
    }
    return revenue - cost;
}

}  // namespace gpusim
#endif  // GPUSIM_HAS_CREDIT
