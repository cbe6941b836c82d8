// borrowers.cuh: borrower cash flows of MODEL.md section 5 for one path (gpusim/model/borrowers.py).
//
// One function per equation, named as its numpy twin, with the same operations in the same
// order; each takes one borrower b (and generation g) where the numpy function takes arrays over
// all of them. Sums over generations run in the fixed order of borrowers.sum_over.
#pragma once

#include "market.cuh"

#if GPUSIM_HAS_CREDIT
namespace gpusim {

// Exact log-OU step of borrower b's idiosyncratic revenue shock eps^b.
__host__ __device__ __forceinline__ real revenue_shock_step(real eps, real z, const real* prm, int b) {
    return eps * PRM(C_shock_decay)[b] + PRM(C_shock_vol_step)[b] * z;
}

// s_g e_g: share of borrower b's fleet of generation g earning its contract rate in this step.
__host__ __device__ __forceinline__ real contracted_share(int step, const real* prm, int b, int g) {
    return PRM(C_contracted_share)[b * G + g] * PRM(C_contract_active)[(step * B + b) * G + g];
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
        const real part = PRM(C_fleet_count)[b * G + g] * (contract + spot);
        fleet = g == 0 ? part : fleet + part;
    }
    return R(HOURS_PER_YEAR * DT) * fleet;
}

// hp_k = hp_0 (S / S_0) (H_0 / H) 0.5^halvings: the calendar of step k times BTC and the network
// hashrate observed at t_{levels_step}; without a hashrate process trend / H = 1 exactly.
__host__ __device__ __forceinline__ real hashprice(real btc_price, real network_hashrate, int step, int levels_step, const real* prm) {
    return PRM(C_hashprice_per_btc)[step] * btc_price * (network_hashrate_trend(levels_step, prm) / network_hashrate);
}

// 1 while borrower b's miners run, 0 in a step they are curtailed: hashprice per kWh, hp / (24 e),
// below the borrower's power price (only for borrowers that curtail).
__host__ __device__ __forceinline__ real miners_running(real price, real power_price, const real* prm, int b) {
    const bool loses_money = price < PRM(C_breakeven_kwh_per_day)[b] * (power_price * PRM(C_power_price_ratio)[b]);
    return R(1.0) - PRM(C_curtails)[b] * (loses_money ? R(1.0) : R(0.0));
}

// Hashrate x hashprice x days while the miners run.
__host__ __device__ __forceinline__ real mining_revenue(real price, real running, const real* prm, int b) {
    return PRM(C_hashrate)[b] * price * R(DAYS_PER_YEAR * DT) * running;
}

// Power for running GPUs and miners plus fixed opex. Contracted GPUs run all the time, spot GPUs
// at the market utilization; idle GPUs draw no power. GPU power carries the borrower's PUE.
// Curtailed miners (running = 0) pay only the take-or-pay share of their power.
__host__ __device__ __forceinline__ real operating_cost(real utilization, real power_price, real running, int step, const real* prm,
                                                        int b) {
    real gpu_kw = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real share = contracted_share(step, prm, b, g);
        const real running = PRM(C_fleet_count)[b * G + g] * (share + (R(1.0) - share) * utilization);
        const real kw = running * PRM(M_kw_per_gpu)[g];
        gpu_kw = g == 0 ? kw : gpu_kw + kw;
    }
    const real price = power_price * PRM(C_power_price_ratio)[b];
    const real mining_kw = PRM(C_mining_kw)[b] * (running + (R(1.0) - running) * PRM(C_power_take_or_pay)[b]);
    return R(HOURS_PER_YEAR * DT) * price * (gpu_kw * PRM(C_pue)[b] + mining_kw) + PRM(C_fixed_opex_step)[b];
}

// Cash flow available for debt service of borrower b in step k (calendars of `step`), paid out of
// the market levels observed at t_{levels_step} (k + 1; 0 for the run rates): revenue - opex.
__host__ __device__ __forceinline__ real cfads(const MarketView& v, real eps, int step, int levels_step, const real* prm, int b) {
    const real price = hashprice(v.crypto[BTC], v.network_hashrate, step, levels_step, prm);
    const real running = miners_running(price, v.power_price, prm, b);
    const real revenue = fleet_revenue(v.rental_rate, v.utilization, eps, step, prm, b) + mining_revenue(price, running, prm, b);
    return revenue - operating_cost(v.utilization, v.power_price, running, step, prm, b);
}

}  // namespace gpusim
#endif  // GPUSIM_HAS_CREDIT
