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

// Hashrate x hashprice x days, with hashprice_k = hp_0 (S_k / S_0) e^{-g_d t_k} halved at halvings.
__host__ __device__ __forceinline__ real mining_revenue(real btc_price, int step, const real* prm, int b) {
    const real hashprice = PRM(C_hashprice_per_btc)[step] * btc_price;
    return PRM(C_hashrate)[b] * hashprice * R(DAYS_PER_YEAR * DT);
}

// Power for running GPUs and miners plus fixed opex. Contracted GPUs run all the time, spot GPUs
// at the market utilization; idle GPUs draw no power. GPU power carries the borrower's PUE.
__host__ __device__ __forceinline__ real operating_cost(real utilization, real power_price, int step, const real* prm, int b) {
    real gpu_kw = R(0.0);
    for (int g = 0; g < G; ++g) {
        const real share = contracted_share(step, prm, b, g);
        const real running = PRM(C_fleet_count)[b * G + g] * (share + (R(1.0) - share) * utilization);
        const real kw = running * PRM(M_kw_per_gpu)[g];
        gpu_kw = g == 0 ? kw : gpu_kw + kw;
    }
    const real price = power_price * PRM(C_power_price_ratio)[b];
    return R(HOURS_PER_YEAR * DT) * price * (gpu_kw * PRM(C_pue)[b] + PRM(C_mining_kw)[b]) + PRM(C_fixed_opex_step)[b];
}

// Cash flow available for debt service of borrower b in the step: revenue - opex.
__host__ __device__ __forceinline__ real cfads(const real* rental_rate, real utilization, real power_price, real btc_price, real eps,
                                               int step, const real* prm, int b) {
    const real revenue = fleet_revenue(rental_rate, utilization, eps, step, prm, b) + mining_revenue(btc_price, step, prm, b);
    return revenue - operating_cost(utilization, power_price, step, prm, b);
}

}  // namespace gpusim
#endif  // GPUSIM_HAS_CREDIT
