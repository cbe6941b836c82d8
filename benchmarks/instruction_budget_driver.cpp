// instruction_budget_driver.cpp: a standalone host program around kernels/simulate.cu for
// benchmarks/instruction_budget.py, which runs it under valgrind's callgrind. It reads the packed
// parameters (kernel_config.pack_params) of the recorded launch and, where given, of the
// attribution launch with the fire-sale chain off, and runs both as CupyBackend.run_chunk does,
// on one-thread blocks. `run_chunk` is never inlined so that callgrind can count it alone
// (--toggle-collect=run_chunk): start-up, file reading and allocation stay out of the count.
//
// With GPUSIM_PROFILE_SPLIT the stages of the path-step (GPUSIM_STAGE, kernels/philox.cuh) are
// compiled as real calls, so that callgrind's inclusive counts split the path-step by stage; that
// build only attributes: its total is not the budget (calls and lost inlining cost instructions).
//
// Usage: driver N_PATHS N_SAVED SEED PRM_ON [PRM_OFF]
#include "host_shim.h"
#include "simulate.cu"

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

std::vector<real> read_params(const char* path) {
    std::vector<real> prm;
    std::FILE* file = std::fopen(path, "rb");
    if (file == nullptr) {
        std::fprintf(stderr, "cannot read %s\n", path);
        std::exit(2);
    }
    real value;
    while (std::fread(&value, sizeof value, 1, file) == 1) prm.push_back(value);
    std::fclose(file);
    return prm;
}

// One launch's outputs, zeroed (kernel_config.allocate_buffers).
struct Buffers {
    std::vector<short> default_step;
    std::vector<signed char> reason, saved_regime;
    std::vector<real> loss, exposure, annuity, loss_nominal, saved;
    std::vector<unsigned int> fan_counts, tight_count;

    Buffers(int n_paths, int n_saved, bool record)
        : default_step(static_cast<size_t>(gpusim::B) * n_paths),
          reason(static_cast<size_t>(gpusim::B) * n_paths),
          saved_regime(record ? static_cast<size_t>(n_saved) * (gpusim::N_STEPS + 1) : 1),
          loss(static_cast<size_t>(gpusim::I) * n_paths),
          exposure(static_cast<size_t>(gpusim::I) * n_paths),
          annuity(static_cast<size_t>(gpusim::I) * n_paths),
          loss_nominal(n_paths),
          saved(record ? static_cast<size_t>(n_saved) * (gpusim::N_STEPS + 1) * gpusim::SAVE_WIDTH : 1),
          fan_counts(record ? static_cast<size_t>(gpusim::N_STEPS + 1) * gpusim::FAN_TOTAL_BINS : 1),
          tight_count(record ? gpusim::N_STEPS + 1 : 1) {}
};

// One block of one thread runs every path (the kernel's grid-stride loop): the block's set-up and
// flush of its shared counters are paid once, as on a GPU where a block runs many paths, and not
// once per path.
void launch(unsigned long long seed, int n_paths, int n_saved, bool record, const real* prm, Buffers& out) {
    gridDim.x = blockDim.x = 1;
    blockIdx.x = threadIdx.x = 0;
    simulate_paths(seed, 0, n_paths, n_saved, record ? 1 : 0, prm, out.default_step.data(), out.reason.data(), out.loss.data(),
                   out.exposure.data(), out.annuity.data(), out.loss_nominal.data(), out.fan_counts.data(), out.tight_count.data(),
                   out.saved.data(), out.saved_regime.data());
}

}  // namespace

// The recorded launch, then the attribution launch where its parameters are given; returns a
// checksum so that nothing can be optimised away.
extern "C" __attribute__((noinline)) double run_chunk(unsigned long long seed, int n_paths, int n_saved, const real* on, const real* off,
                                                      Buffers* recorded, Buffers* without_chain) {
    launch(seed, n_paths, n_saved, true, on, *recorded);
    if (off != nullptr) launch(seed, n_paths, 0, false, off, *without_chain);
    double sum = 0.0;
    for (real x : recorded->loss) sum += static_cast<double>(x);
    for (unsigned int x : recorded->tight_count) sum += x;
    return sum;
}

int main(int argc, char** argv) {
    if (argc < 5 || argc > 6) {
        std::fprintf(stderr, "usage: %s N_PATHS N_SAVED SEED PRM_ON [PRM_OFF]\n", argv[0]);
        return 2;
    }
    const int n_paths = std::atoi(argv[1]);
    const int n_saved = std::atoi(argv[2]);
    const unsigned long long seed = std::strtoull(argv[3], nullptr, 10);
    const std::vector<real> on = read_params(argv[4]);
    const std::vector<real> off = argc == 6 ? read_params(argv[5]) : std::vector<real>();
    Buffers recorded(n_paths, n_saved, true), without_chain(n_paths, 0, false);
    const double checksum = run_chunk(seed, n_paths, n_saved, on.data(), argc == 6 ? off.data() : nullptr, &recorded, &without_chain);
    std::printf("checksum %.17g\n", checksum);
    return 0;
}
