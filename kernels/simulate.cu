// simulate.cu: the fused kernel of the cupy backend. One thread owns one path (grid-stride loop)
// and runs it through every step of MODEL.md 7 with its whole state in registers and local
// arrays (model.cuh); only what the outputs need leaves the kernel:
//   - per-path credit outcomes (MODEL.md 8), path last: default_step, reason (B, n),
//     loss, exposure, annuity (I, n), portfolio nominal loss (n),
//   - the saved factor paths of the paths below n_saved, (n_saved, steps+1, SAVED_WIDTH) and the
//     regime (n_saved, steps+1), in ChunkResult's layout,
//   - the per-step fan-chart histograms (steps+1, FAN_TOTAL_BINS), FanCounter's joint layout,
//   - the number of paths in the tight regime at each t_k (steps+1).
// Regime counts, and the fan counts of defaulted borrowers where they fit, are accumulated per
// block in shared memory and added to global memory once per block.
// Compiled once per config shape and dtype with the generated gpusim_config.cuh
// (gpusim/backends/kernel_config.py); `record` = 0 skips fans, saved paths and regime counts
// (the attribution pass with the fire-sale chain off keeps only the outcomes).
#include "philox.cuh"
#include "config.cuh"
#include "model.cuh"

namespace gpusim {

// Add one to a counter, one atomic per group of lanes of a warp that hit the same counter
// (fan bins of neighbouring paths often coincide). The host build runs one thread at a time.
__host__ __device__ __forceinline__ void count_one(unsigned int* counter) {
#ifdef __CUDA_ARCH__
    const unsigned int active = __activemask();
    const unsigned int peers = __match_any_sync(active, reinterpret_cast<unsigned long long>(counter));
    if ((threadIdx.x & 31u) == static_cast<unsigned int>(__ffs(peers) - 1)) atomicAdd(counter, static_cast<unsigned int>(__popc(peers)));
#else
    *counter += 1u;
#endif
}

// Bin one coordinate of a fan factor (statistics.bin_index): floor(coord / width + offset),
// clipped to the grid; NaN (a defaulted borrower) lands in the extra bin N_BINS.
__host__ __device__ __forceinline__ void count_fan(const real* prm, unsigned int* step_counts, int first_bin, int first_component,
                                                   int factor, int component, real coord) {
    const real position = m_floor(coord * PRM(F_inverse_width)[factor] + PRM(F_offset)[first_component + component]);
    int bin;
    if (position != position) bin = N_BINS;
    else bin = static_cast<int>(m_min(m_max(position, R(0.0)), R(N_BINS - 1)));
    count_one(step_counts + first_bin + component * (N_BINS + 1) + bin);
}

#define GPUSIM_COUNT_FAN(NAME, component, coord) \
    count_fan(prm, step_counts, FAN_##NAME, FAN_COMPONENT_##NAME, FAN_INDEX_##NAME, component, coord)

// Fan coordinates of one step (factors.fan_coordinates, credit.credit_ratios). A defaulted
// borrower's DSCR and LTV both fall in their not-applicable bins; where `defaulted` (this step's
// per-borrower block counters in shared memory) is given, it is counted there once instead of
// twice in the global histogram, whose not-applicable bins are the hottest addresses late in a
// run (most borrowers of most paths have defaulted).
__host__ __device__ __forceinline__ void count_fans(const real* prm, const Market& s, const View& v, const void* credit,
                                                    unsigned int* step_counts, unsigned int* defaulted) {
    for (int a = 0; a < A; ++a) GPUSIM_COUNT_FAN(CRYPTO, a, s.log_crypto[a]);
    for (int g = 0; g < G; ++g) GPUSIM_COUNT_FAN(RENTAL_RATE, g, log_rental_rate(prm, s, g));
    GPUSIM_COUNT_FAN(UTILIZATION, 0, v.utilization);
    GPUSIM_COUNT_FAN(POWER_PRICE, 0, s.log_power);
    for (int g = 0; g < G; ++g) {
        const real log_value = m_log(v.gpu_value[g]);
        GPUSIM_COUNT_FAN(GPU_VALUE, g, log_value);
        GPUSIM_COUNT_FAN(GPU_MARK, g, log_value - PRM(M_mark_impact)[0] * s.distress_memory[g]);
    }
#if GPUSIM_HAS_CREDIT
    const Credit& c = *static_cast<const Credit*>(credit);
    for (int b = 0; b < N_BORROWERS; ++b) {
        if (!c.alive[b] && defaulted != nullptr) {
            count_one(&defaulted[b]);
            continue;
        }
        real dscr, ltv;
        credit_ratios(prm, c, v, b, dscr, ltv);
        GPUSIM_COUNT_FAN(DSCR, b, dscr);
        GPUSIM_COUNT_FAN(LTV, b, ltv);
    }
#else
    (void)credit, (void)defaulted;
#endif
}

// Saved factor levels of one path at one step, in the columns of kernel_config.saved_columns.
__host__ __device__ __forceinline__ void save_view(const View& v, real* row) {
    int col = 0;
    for (int a = 0; a < A; ++a) row[col++] = v.crypto[a];
    for (int g = 0; g < G; ++g) row[col++] = v.rental_rate[g];
    row[col++] = v.utilization;
    row[col++] = v.power_price;
    for (int g = 0; g < G; ++g) row[col++] = v.gpu_value[g];
    for (int g = 0; g < G; ++g) row[col++] = v.gpu_mark[g];
}

}  // namespace gpusim

using gpusim::real;

extern "C" __global__ void simulate_paths(unsigned long long seed, unsigned long long path_start, int n_paths, int n_saved, int record,
                                          const real* __restrict__ prm, short* __restrict__ default_step,
                                          signed char* __restrict__ reason, real* __restrict__ loss, real* __restrict__ exposure,
                                          real* __restrict__ annuity, real* __restrict__ loss_nominal, unsigned int* __restrict__ fan_counts,
                                          unsigned int* __restrict__ tight_count, real* __restrict__ saved,
                                          signed char* __restrict__ saved_regime) {
    using namespace gpusim;
    constexpr int STEPS = N_STEPS;
    __shared__ unsigned int block_tight[STEPS + 1];  // tight paths per t_k in this block
    // defaulted borrowers per (t_k, borrower) in this block, where they fit (DEFAULTED_IN_SHARED)
    constexpr int DEFAULTED = DEFAULTED_IN_SHARED ? (STEPS + 1) * N_BORROWERS : 1;
    __shared__ unsigned int block_defaulted[DEFAULTED];
    for (int k = threadIdx.x; k <= STEPS; k += blockDim.x) block_tight[k] = 0u;
    for (int i = threadIdx.x; i < DEFAULTED; i += blockDim.x) block_defaulted[i] = 0u;
    __syncthreads();

    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n_paths; j += gridDim.x * blockDim.x) {
        const unsigned long long path = path_start + static_cast<unsigned long long>(j);
        const bool keep = record && j < n_saved;
        Market s;
        View v;
        Draws d;
        real dumped[G];
        initial_market(prm, s);
        observe(prm, s, 0, v);
#if GPUSIM_HAS_CREDIT
        Credit c;
        initial_credit(prm, v, c);
        const void* credit = &c;
#else
        const void* credit = nullptr;
#endif
        if (record) {
            count_fans(prm, s, v, credit, fan_counts, DEFAULTED_IN_SHARED ? block_defaulted : nullptr);
            if (s.tight) count_one(&block_tight[0]);
        }
        if (keep) {
            save_view(v, saved + static_cast<long long>(j) * (STEPS + 1) * SAVED_WIDTH);
            saved_regime[static_cast<long long>(j) * (STEPS + 1)] = s.tight ? 1 : 0;
        }
        for (int k = 0; k < STEPS; ++k) {
            // MODEL.md 7: 1. draws, 2-3. market under R_k, 4. values and marks, 5-9. borrowers,
            // 10. distress memory with this step's fire sales, then R_{k+1}
            draw_step(seed, path, k, d);
            advance_market(prm, d, k, s);
            observe(prm, s, k + 1, v);
            for (int g = 0; g < G; ++g) dumped[g] = R(0.0);
#if GPUSIM_HAS_CREDIT
            credit_step(prm, v, s.tight, d, k, c, dumped);
#endif
            if (record) {
                unsigned int* defaulted = DEFAULTED_IN_SHARED ? block_defaulted + (k + 1) * N_BORROWERS : nullptr;
                count_fans(prm, s, v, credit, fan_counts + static_cast<long long>(k + 1) * FAN_TOTAL_BINS, defaulted);
            }
            close_step(prm, dumped, d, s);
            if (record && s.tight) count_one(&block_tight[k + 1]);
            if (keep) {
                save_view(v, saved + (static_cast<long long>(j) * (STEPS + 1) + k + 1) * SAVED_WIDTH);
                saved_regime[static_cast<long long>(j) * (STEPS + 1) + k + 1] = s.tight ? 1 : 0;
            }
        }
#if GPUSIM_HAS_CREDIT
        // per-path outcomes, path last so that neighbouring threads write neighbouring words
        real total = R(0.0);
        for (int b = 0; b < N_BORROWERS; ++b) {
            default_step[static_cast<long long>(b) * n_paths + j] = static_cast<short>(c.default_step[b]);
            reason[static_cast<long long>(b) * n_paths + j] = static_cast<signed char>(c.reason[b]);
        }
        for (int i = 0; i < N_INSTRUMENTS; ++i) {
            loss[static_cast<long long>(i) * n_paths + j] = c.loss[i];
            exposure[static_cast<long long>(i) * n_paths + j] = c.exposure[i];
            annuity[static_cast<long long>(i) * n_paths + j] = c.annuity[i];
            total = i == 0 ? c.loss_nominal[i] : total + c.loss_nominal[i];
        }
        loss_nominal[j] = total;
#else
        (void)default_step, (void)reason, (void)loss, (void)exposure, (void)annuity, (void)loss_nominal;
#endif
    }

    __syncthreads();
    if (record) {
        for (int k = threadIdx.x; k <= STEPS; k += blockDim.x) {
            if (block_tight[k] != 0u) atomicAdd(&tight_count[k], block_tight[k]);
        }
#if GPUSIM_HAS_CREDIT
        for (int i = threadIdx.x; DEFAULTED_IN_SHARED && i < DEFAULTED; i += blockDim.x) {
            if (block_defaulted[i] == 0u) continue;
            const long long step_bins = static_cast<long long>(i / N_BORROWERS) * FAN_TOTAL_BINS;
            const int not_applicable = (i % N_BORROWERS) * (N_BINS + 1) + N_BINS;
            atomicAdd(&fan_counts[step_bins + FAN_DSCR + not_applicable], block_defaulted[i]);
            atomicAdd(&fan_counts[step_bins + FAN_LTV + not_applicable], block_defaulted[i]);
        }
#endif
    }
}
