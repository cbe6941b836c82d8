// native.cpp: the fused kernel of simulate.cu compiled by the host C++ compiler for
// `--backend native` (gpusim/backends/native_backend.py), with OpenMP threads over the paths of
// a chunk. Each thread runs batches of paths in step (start_path, step_path, finish_path: a GPU thread's
// simulate_path, with the paths of a batch interleaved step by step) and counts its fan
// histograms, tight regimes and defaulted borrowers into its own buffers; they are merged once,
// at the end of the chunk. Nothing global: the launch geometry of host_shim.h is per thread,
// and only the functions below are exported (the library is built with -fvisibility=hidden),
// so builds of several config shapes can be loaded in one process.
//
// Build (gpusim/backends/native_build.py): c++ -O3 -march=native -ffp-contract=off -fopenmp
//   -std=c++17 -shared -fPIC -fvisibility=hidden -DGPUSIM_GENERATED_CONFIG -I CONFIG_DIR -I kernels
//   kernels/native.cpp
#include "host_shim.h"
#include "config.cuh"  // before numpy_math below: it needs the working dtype

#include <omp.h>
#include <sys/mman.h>

#include <cmath>

// numpy's float64 exp, log, expm1 and log1p differ from the C library's in the last bit on up to
// a few per cent of arguments (numpy has its own SIMD implementations), so that a float64 native build is
// numpy's bit for bit only where it calls numpy's. With GPUSIM_NUMPY_MATH (float64 builds) the
// model's exp, log, expm1 and log1p, declared here in namespace gpusim where they hide the C
// library's for math.cuh, go through numpy's own ufunc loops once the backend has passed their
// addresses (native_use_numpy_math); until then they are the C library's.
#ifdef GPUSIM_NUMPY_MATH
namespace gpusim {
using UfuncLoop = void (*)(char** args, const long* dimensions, const long* steps, void* data);
struct NumpyFunction {
    UfuncLoop loop = nullptr;
    void* data = nullptr;
};
static NumpyFunction numpy_exp, numpy_log, numpy_expm1, numpy_log1p;

static inline double numpy_call(const NumpyFunction& f, double x, double (*fallback)(double)) {
    if (f.loop == nullptr) return fallback(x);
    double y;
    char* args[2] = {reinterpret_cast<char*>(&x), reinterpret_cast<char*>(&y)};
    const long n = 1, steps[2] = {sizeof(double), sizeof(double)};
    f.loop(args, &n, steps, f.data);
    return y;
}
static inline double exp(double x) { return numpy_call(numpy_exp, x, ::exp); }
static inline double log(double x) { return numpy_call(numpy_log, x, ::log); }
static inline double expm1(double x) { return numpy_call(numpy_expm1, x, ::expm1); }
static inline double log1p(double x) { return numpy_call(numpy_log1p, x, ::log1p); }
}  // namespace gpusim
#endif

#include "simulate.cu"

#include <cstddef>
#include <vector>

#define GPUSIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using namespace gpusim;

constexpr int STEP_POINTS = N_STEPS + 1;
constexpr int DEFAULTED_COUNTERS = DEFAULTED_IN_SHARED ? STEP_POINTS * N_BORROWERS : 1;
constexpr long long CHUNK_FAN_BINS = static_cast<long long>(STEP_POINTS) * FAN_TOTAL_BINS;
// Paths a thread runs in step, one step of each in turn (about 4 kB of state each on bench.yaml).
// A path's fan counts of one step land in a different 0.8 MB slice of the histograms (bench.yaml)
// from the last step's, so a path alone misses the cache on nearly every count across the 95 MB;
// a batch's counts of one step fall in the same slice, mostly in the same lines. Measured on 2
// threads, 16,384 paths, bench.yaml float32: about a fifth less CPU time than one path at a time
// (docs/benchmarks.md, "Native backend"); 128 to 512 paths differ by less than the noise.
constexpr int PATHS_IN_STEP = 256;

// One path of a batch between steps (simulate_path's locals).
struct PathState {
    PathId id;
    MarketState s;
    MarketView v;
    Draws d;
    PathCredit c;
};

// Zeroed fan histograms for every thread but the first, which counts straight into the output.
// Fresh anonymous mappings are zero pages until written, so a thread's histogram costs memory only
// where it counts; huge pages (where the kernel allows them) take one page fault per 2 MB
// instead of one per 4 kB of the 95 MB.
struct ThreadHistograms {
    static constexpr std::size_t BYTES = static_cast<std::size_t>(CHUNK_FAN_BINS) * sizeof(unsigned int);
    std::vector<unsigned int*> counts;
    explicit ThreadHistograms(int threads, unsigned int* output) : counts(threads, nullptr) {
        counts[0] = output;
        for (int t = 1; t < threads; ++t) {
            void* mapped = mmap(nullptr, BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mapped == MAP_FAILED) continue;
            madvise(mapped, BYTES, MADV_HUGEPAGE);
            counts[t] = static_cast<unsigned int*>(mapped);
        }
    }
    ~ThreadHistograms() {
        for (std::size_t t = 1; t < counts.size(); ++t) {
            if (counts[t] != nullptr) munmap(counts[t], BYTES);
        }
    }
    bool complete() const {
        for (unsigned int* c : counts) {
            if (c == nullptr) return false;
        }
        return true;
    }
};

}  // namespace

// simulate_paths on `threads` OpenMP threads (0: OpenMP's default); arguments and outputs as in
// kernels/simulate.cu, `fan_counts` and `tight_count` zeroed by the caller. Returns 0, or 1 when
// the threads' histograms could not be allocated.
GPUSIM_EXPORT int native_simulate_paths(int threads, unsigned long long seed, unsigned long long path_start, int n_paths, int n_saved,
                                        int record, const real* prm, short* default_step, signed char* reason, real* loss, real* exposure,
                                        real* annuity, real* loss_nominal, unsigned int* fan_counts, unsigned int* tight_count, real* saved,
                                        signed char* saved_regime) {
    const int team = threads > 0 ? threads : omp_get_max_threads();
    ThreadHistograms histograms(record ? team : 1, fan_counts);
    if (record && !histograms.complete()) return 1;
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num();
        const int size = omp_get_num_threads();
        threadIdx.x = 0, blockDim.x = 1, blockIdx.x = static_cast<unsigned int>(t), gridDim.x = static_cast<unsigned int>(size);
        std::vector<unsigned int> tight(STEP_POINTS, 0u), defaulted(DEFAULTED_COUNTERS, 0u);
        unsigned int* fans = record ? histograms.counts[t] : nullptr;
        const PathSinks sinks{seed, path_start, n_paths, n_saved, record, prm, default_step, reason, loss, exposure, annuity, loss_nominal,
                              fans, tight.data(), DEFAULTED_IN_SHARED ? defaulted.data() : nullptr, saved, saved_regime};
        std::vector<PathState> batch(PATHS_IN_STEP);
#pragma omp for schedule(dynamic, 1)
        for (int first = 0; first < n_paths; first += PATHS_IN_STEP) {
            const int count = n_paths - first < PATHS_IN_STEP ? n_paths - first : PATHS_IN_STEP;
            for (int i = 0; i < count; ++i) {
                PathState& p = batch[i];
                start_path(sinks, first + i, p.id, p.s, p.v, p.c);
            }
            for (int k = 0; k < N_STEPS; ++k) {
                for (int i = 0; i < count; ++i) {
                    PathState& p = batch[i];
                    step_path(sinks, k, p.id, p.s, p.v, p.d, p.c);
                }
            }
            for (int i = 0; i < count; ++i) finish_path(sinks, batch[i].id, batch[i].c);
        }
        if (record) {
            // this thread's counters into its own histogram; tight counts into the shared output
            flush_block_counts(tight.data(), defaulted.data(), DEFAULTED_COUNTERS, tight_count, fans);
#pragma omp barrier
            // merge: each thread adds a slice of the bins of every other thread's histogram
            const int others = size - 1;
#pragma omp for schedule(static)
            for (long long i = 0; i < CHUNK_FAN_BINS; ++i) {
                unsigned int sum = fan_counts[i];
                for (int u = 1; u <= others; ++u) sum += histograms.counts[u][i];
                fan_counts[i] = sum;
            }
        }
    }
    return 0;
}

// Route exp, log, expm1 and log1p through numpy's ufunc loops (`loops` and `data`: their float64
// inner loops and loop data, in that order). Returns 1 where the build has GPUSIM_NUMPY_MATH, else 0.
GPUSIM_EXPORT int native_use_numpy_math(void* const* loops, void* const* data) {
#ifdef GPUSIM_NUMPY_MATH
    gpusim::NumpyFunction* functions[4] = {&gpusim::numpy_exp, &gpusim::numpy_log, &gpusim::numpy_expm1, &gpusim::numpy_log1p};
    for (int i = 0; i < 4; ++i) *functions[i] = gpusim::NumpyFunction{reinterpret_cast<gpusim::UfuncLoop>(loops[i]), data[i]};
    return 1;
#else
    (void)loops, (void)data;
    return 0;
#endif
}

// sizeof(real), so the caller can check it passes arrays of the compiled dtype.
GPUSIM_EXPORT int native_real_size() { return static_cast<int>(sizeof(real)); }
