// model_host.cpp: the fused kernels of kernels/simulate.cu and kernels/draws_only.cu compiled as host
// C++ (through kernels/host_shim.h) into a shared library, so tests/test_kernels_model_host.py
// can run them on numpy arrays through ctypes and compare them path by path with the numpy
// backend. The generated gpusim_config.cuh (gpusim/backends/kernel_config.py) comes first on the
// include path.
//
// Build: g++ -O2 -std=c++17 -shared -fPIC -fvisibility=hidden -I CONFIG_DIR -I kernels tests/host/model_host.cpp -o libmodel_host.so
// (hidden: only the host_* functions are exported, so builds of two shapes can be loaded in one process)
//
// A launch runs every (block, thread) of the grid one after another on the calling thread:
// blocks of one thread, so the kernels' block-shared counters and __syncthreads need no real
// concurrency (the launch geometry of host_shim.h is per thread).
#include "host_shim.h"
#include "simulate.cu"
#include "draws_only.cu"

namespace {

template <typename Kernel>
void launch(unsigned int blocks, Kernel&& kernel) {
    gridDim.x = blocks;
    blockDim.x = 1;
    threadIdx.x = 0;
    for (unsigned int b = 0; b < blocks; ++b) {
        blockIdx.x = b;
        kernel();
    }
}

}  // namespace

#define HOST_EXPORT __attribute__((visibility("default")))

extern "C" {

// simulate_paths on `blocks` one-thread blocks; arguments as in kernels/simulate.cu.
HOST_EXPORT void host_simulate_paths(unsigned int blocks, unsigned long long seed, unsigned long long path_start, int n_paths, int n_saved,
                         int record, const real* prm, short* default_step, signed char* reason, real* loss, real* exposure,
                         real* annuity, real* loss_nominal, unsigned int* fan_counts, unsigned int* tight_count, real* saved,
                         signed char* saved_regime) {
    launch(blocks, [&] {
        simulate_paths(seed, path_start, n_paths, n_saved, record, prm, default_step, reason, loss, exposure, annuity, loss_nominal,
                       fan_counts, tight_count, saved, saved_regime);
    });
}

// sum_draws on `blocks` one-thread blocks.
HOST_EXPORT void host_sum_draws(unsigned int blocks, unsigned long long seed, unsigned long long path_start, int n_paths, real* sums) {
    launch(blocks, [&] { sum_draws(seed, path_start, n_paths, sums); });
}

// sizeof(real), so the caller can check it passes arrays of the compiled dtype.
HOST_EXPORT int host_real_size() { return static_cast<int>(sizeof(real)); }
}
