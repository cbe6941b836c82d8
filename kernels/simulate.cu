// simulate.cu: the fused kernel of the cupy backend. One thread owns one path (grid-stride loop)
// and runs it through every step of docs/model.md 7 with its whole state in registers and local
// arrays (the model headers market.cuh, credit.cuh, ...); only what the outputs need leaves the kernel:
//   - per-path credit outcomes (docs/model.md 8), path last: default_step, reason (B, n),
//     loss, exposure, annuity (I, n), portfolio nominal loss (n),
//   - the saved factor paths of the paths below n_saved, (n_saved, steps+1, SAVE_WIDTH) and the
//     regime (n_saved, steps+1), in ChunkResult's layout,
//   - the per-step fan-chart histograms (steps+1, FAN_TOTAL_BINS), FanCounter's joint layout,
//   - the number of paths in the tight regime at each t_k (steps+1).
// Regime counts, and the fan counts of defaulted borrowers where they fit, are accumulated per
// block in shared memory and added to global memory once per block.
// Compiled once per config shape and dtype with the generated gpusim_config.cuh
// (gpusim/backends/kernel_config.py); `record` = 0 skips fans, saved paths and regime counts
// (the attribution pass with the fire-sale chain off keeps only the outcomes).
#include "config.cuh"  // first: the model headers read its constants
#include "credit.cuh"

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

// Fan coordinates of one step (market.fan_coordinates, credit.credit_ratios). A defaulted
// borrower's DSCR and LTV both fall in their not-applicable bins; where `defaulted` (this step's
// per-borrower block counters in shared memory) is given, it is counted there once instead of
// twice in the global histogram, whose not-applicable bins are the hottest addresses late in a
// run (most borrowers of most paths have defaulted).
__host__ __device__ GPUSIM_STAGE void count_fans(const real* prm, const MarketState& s, const MarketView& v, int step, const void* credit,
                                                    unsigned int* step_counts, unsigned int* defaulted) {
    FanCoordinates f;
    fan_coordinates(s, v, step, prm, f);
    for (int a = 0; a < A; ++a) GPUSIM_COUNT_FAN(CRYPTO, a, f.crypto[a]);
    for (int g = 0; g < G; ++g) GPUSIM_COUNT_FAN(RENTAL_RATE, g, f.rental_rate[g]);
    GPUSIM_COUNT_FAN(UTILIZATION, 0, f.utilization);
    GPUSIM_COUNT_FAN(POWER_PRICE, 0, f.power_price);
    for (int g = 0; g < G; ++g) {
        GPUSIM_COUNT_FAN(GPU_VALUE, g, f.gpu_value[g]);
        GPUSIM_COUNT_FAN(GPU_MARK, g, f.gpu_mark[g]);
    }
    GPUSIM_COUNT_FAN(NETWORK_HASHRATE, 0, f.network_hashrate);
#if GPUSIM_HAS_CREDIT
    const CreditState& c = *static_cast<const CreditState*>(credit);
    for (int b = 0; b < N_BORROWERS; ++b) {
        if (!c.alive[b] && defaulted != nullptr) {
            count_one(&defaulted[b]);
            continue;
        }
        real dscr, ltv;
        credit_ratios(c, v, step, prm, b, dscr, ltv);
        GPUSIM_COUNT_FAN(DSCR, b, dscr);
        GPUSIM_COUNT_FAN(LTV, b, ltv);
    }
#else
    (void)credit, (void)defaulted, (void)step;
#endif
}

// Saved factor levels and regime of path j at t_k: the factors in the columns of
// kernel_config.saved_columns, (n_saved, steps+1, SAVE_WIDTH), the regime (n_saved, steps+1).
__host__ __device__ __forceinline__ void save_view(const MarketView& v, bool tight, int j, int k, real* saved, signed char* saved_regime) {
    const long long at = static_cast<long long>(j) * (N_STEPS + 1) + k;
    real* row = saved + at * SAVE_WIDTH;
    for (int a = 0; a < A; ++a) row[SAVE_COL_CRYPTO + a] = v.crypto[a];
    for (int g = 0; g < G; ++g) row[SAVE_COL_RENTAL_RATE + g] = v.rental_rate[g];
    row[SAVE_COL_UTILIZATION] = v.utilization;
    row[SAVE_COL_POWER_PRICE] = v.power_price;
    for (int g = 0; g < G; ++g) row[SAVE_COL_GPU_VALUE + g] = v.gpu_value[g];
    for (int g = 0; g < G; ++g) row[SAVE_COL_GPU_MARK + g] = v.gpu_mark[g];
    row[SAVE_COL_NETWORK_HASHRATE] = v.network_hashrate;
    saved_regime[at] = tight ? 1 : 0;
}

#if GPUSIM_HAS_CREDIT
// Per-path credit outcomes of path j (docs/model.md 8), path last so that neighbouring threads write
// neighbouring words: default_step, reason (B, n), loss, exposure, annuity (I, n), portfolio
// nominal loss (n).
__host__ __device__ __forceinline__ void write_outcomes(const CreditState& c, int j, int n_paths, short* default_step, signed char* reason,
                                                        real* loss, real* exposure, real* annuity, real* loss_nominal) {
    for (int b = 0; b < N_BORROWERS; ++b) {
        default_step[static_cast<long long>(b) * n_paths + j] = static_cast<short>(c.default_step[b]);
        reason[static_cast<long long>(b) * n_paths + j] = static_cast<signed char>(c.reason[b]);
    }
    real total = R(0.0);
    for (int i = 0; i < N_INSTRUMENTS; ++i) {
        loss[static_cast<long long>(i) * n_paths + j] = c.loss[i];
        exposure[static_cast<long long>(i) * n_paths + j] = c.exposure[i];
        annuity[static_cast<long long>(i) * n_paths + j] = c.annuity[i];
        total = i == 0 ? c.loss_nominal[i] : total + c.loss_nominal[i];
    }
    loss_nominal[j] = total;
}
#endif

// Add this block's counters to global memory: tight paths per t_k, and the not-applicable DSCR
// and LTV fan bins of the defaulted borrowers counted in shared memory (`defaulted_count` of them).
__host__ __device__ __forceinline__ void flush_block_counts(const unsigned int* block_tight, const unsigned int* block_defaulted,
                                                            int defaulted_count, unsigned int* tight_count, unsigned int* fan_counts) {
    for (int k = threadIdx.x; k <= N_STEPS; k += blockDim.x) {
        if (block_tight[k] != 0u) atomicAdd(&tight_count[k], block_tight[k]);
    }
#if GPUSIM_HAS_CREDIT
    for (int i = threadIdx.x; DEFAULTED_IN_SHARED && i < defaulted_count; i += blockDim.x) {
        if (block_defaulted[i] == 0u) continue;
        const long long step_bins = static_cast<long long>(i / N_BORROWERS) * FAN_TOTAL_BINS;
        const int not_applicable = (i % N_BORROWERS) * (N_BINS + 1) + N_BINS;
        atomicAdd(&fan_counts[step_bins + FAN_DSCR + not_applicable], block_defaulted[i]);
        atomicAdd(&fan_counts[step_bins + FAN_LTV + not_applicable], block_defaulted[i]);
    }
#else
    (void)block_defaulted, (void)defaulted_count, (void)fan_counts;
#endif
}

// Where a path's results go: the kernel's arguments (outputs as in simulate_paths below) and the
// counters `simulate_path` adds to: its fan counts into `fan_counts` (steps+1, FAN_TOTAL_BINS),
// its tight regime into `tight` (steps+1) and, where `defaulted` is given, its defaulted
// borrowers per (t_k, borrower) (count_fans). The kernel passes its block's shared counters;
// the native build (kernels/native.cpp) each host thread's own.
struct PathSinks {
    unsigned long long seed, path_start;
    int n_paths, n_saved, record;
    const real* prm;
    short* default_step;
    signed char* reason;
    real *loss, *exposure, *annuity, *loss_nominal;
    unsigned int *fan_counts, *tight, *defaulted;
    real* saved;
    signed char* saved_regime;
};

// Which path of the chunk: j, its path index path_start + j, and whether its factor levels are saved.
struct PathId {
    unsigned long long path;
    int j;
    bool keep;
};

// A path's credit state between steps (nothing in a scenario without borrowers).
#if GPUSIM_HAS_CREDIT
using PathCredit = CreditState;
#else
struct PathCredit {};
#endif

// Path j at t_0: its initial state, counted and saved.
__host__ __device__ __forceinline__ void start_path(const PathSinks& o, int j, PathId& id, MarketState& s, MarketView& v, PathCredit& c) {
    const real* prm = o.prm;
    id = PathId{o.path_start + static_cast<unsigned long long>(j), j, o.record && j < o.n_saved};
    initial_state(prm, s);
    observe(s, 0, prm, v);
#if GPUSIM_HAS_CREDIT
    initial_credit_state(v, prm, c);
#endif
    if (o.record) {
        count_fans(prm, s, v, 0, &c, o.fan_counts, o.defaulted);
        if (s.tight) count_one(&o.tight[0]);
    }
    if (id.keep) save_view(v, s.tight, j, 0, o.saved, o.saved_regime);
}

// Step k of docs/model.md 7 for one path: 1. draws, 2-3. market under R_k, 4. values and marks,
// 5-9. borrowers, 10. distress memory with this step's fire sales, then R_{k+1}.
__host__ __device__ __forceinline__ void step_path(const PathSinks& o, int k, const PathId& id, MarketState& s, MarketView& v, Draws& d,
                                                   PathCredit& c) {
    const real* prm = o.prm;
    real dumped[G];
    draw_market_step(o.seed, id.path, k, d);
    advance_market(s, d, k, prm);
    observe(s, k + 1, prm, v);
    for (int g = 0; g < G; ++g) dumped[g] = R(0.0);
#if GPUSIM_HAS_CREDIT
    credit_step(c, v, s.tight, d.u + SLOT_REVENUE_SHOCK, d.u + SLOT_TENANT_DEFAULT, k, prm, dumped, d.u + SLOT_MARKET_ACCESS);
#endif
    if (o.record) {
        unsigned int* step_defaulted = o.defaulted != nullptr ? o.defaulted + (k + 1) * N_BORROWERS : nullptr;
        count_fans(prm, s, v, k + 1, &c, o.fan_counts + static_cast<long long>(k + 1) * FAN_TOTAL_BINS, step_defaulted);
    }
    close_step(s, dumped, d, k + 1, prm);
    if (o.record && s.tight) count_one(&o.tight[k + 1]);
    if (id.keep) save_view(v, s.tight, id.j, k + 1, o.saved, o.saved_regime);
}

// A path after its last step: its credit outcomes into the output arrays.
__host__ __device__ __forceinline__ void finish_path(const PathSinks& o, const PathId& id, const PathCredit& c) {
#if GPUSIM_HAS_CREDIT
    write_outcomes(c, id.j, o.n_paths, o.default_step, o.reason, o.loss, o.exposure, o.annuity, o.loss_nominal);
#else
    (void)o, (void)id, (void)c;
#endif
}

// Path j of the chunk through every step: one GPU thread's work, its state in registers and
// local arrays. The native build runs the same three parts with a batch of paths in step
// (kernels/native.cpp).
__host__ __device__ __forceinline__ void simulate_path(const PathSinks& o, int j) {
    PathId id;
    MarketState s;
    MarketView v;
    Draws d;
    PathCredit c;
    start_path(o, j, id, s, v, c);
    for (int k = 0; k < N_STEPS; ++k) step_path(o, k, id, s, v, d, c);
    finish_path(o, id, c);
}

}  // namespace gpusim

using gpusim::real;

extern "C" __global__ void simulate_paths(unsigned long long seed, unsigned long long path_start, int n_paths, int n_saved, int record,
                                          const real* __restrict__ prm, short* __restrict__ default_step,
                                          signed char* __restrict__ reason, real* __restrict__ loss, real* __restrict__ exposure,
                                          real* __restrict__ annuity, real* __restrict__ loss_nominal,
                                          unsigned int* __restrict__ fan_counts, unsigned int* __restrict__ tight_count,
                                          real* __restrict__ saved, signed char* __restrict__ saved_regime) {
    using namespace gpusim;
    constexpr int STEPS = N_STEPS;
    __shared__ unsigned int block_tight[STEPS + 1];  // tight paths per t_k in this block
    // defaulted borrowers per (t_k, borrower) in this block, where they fit (DEFAULTED_IN_SHARED)
    constexpr int DEFAULTED = DEFAULTED_IN_SHARED ? (STEPS + 1) * N_BORROWERS : 1;
    __shared__ unsigned int block_defaulted[DEFAULTED];
    for (int k = threadIdx.x; k <= STEPS; k += blockDim.x) block_tight[k] = 0u;
    for (int i = threadIdx.x; i < DEFAULTED; i += blockDim.x) block_defaulted[i] = 0u;
    __syncthreads();

    const PathSinks sinks{seed, path_start, n_paths, n_saved, record, prm, default_step, reason, loss, exposure, annuity, loss_nominal,
                          fan_counts, block_tight, DEFAULTED_IN_SHARED ? block_defaulted : nullptr, saved, saved_regime};
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n_paths; j += gridDim.x * blockDim.x) {
        simulate_path(sinks, j);
    }

    __syncthreads();
    if (record) flush_block_counts(block_tight, block_defaulted, DEFAULTED, tight_count, fan_counts);
}
