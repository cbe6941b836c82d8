// draws_only.cu: the speed floor of the fused kernel. It draws exactly the random numbers the
// model draws (every Philox block of every step, draws.cuh draw_step) and only sums the draws
// per path, as market.draw_step names them (the regime, launch and jump count uniforms, every
// normal), so its throughput bounds what simulate_paths can reach with the same random streams;
// benchmarks/bench_floor.py sums the same on numpy and JAX. Compiled with the same generated
// gpusim_config.cuh as simulate.cu.
#include "config.cuh"  // first: the model headers read its constants
#include "draws.cuh"

using gpusim::real;

// sums (n,): per path, the sum over steps of the step's named draws.
extern "C" __global__ void sum_draws(unsigned long long seed, unsigned long long path_start, int n_paths, real* __restrict__ sums) {
    using namespace gpusim;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n_paths; j += gridDim.x * blockDim.x) {
        const unsigned long long path = path_start + static_cast<unsigned long long>(j);
        Draws d;
        real total = R(0.0);
        for (int k = 0; k < N_STEPS; ++k) {
            draw_step(seed, path, k, d);
            total += d.u[SLOT_REGIME] + d.u[SLOT_RANDOM_LAUNCH];
            for (int a = 0; a < A; ++a) total += d.u[SLOT_JUMP_COUNT + a] + d.crypto_diffusion[a] + d.jump_size[a];
            total += d.market_shocks[0] + d.market_shocks[1];
            for (int b = 0; b < N_BORROWERS; ++b) total += d.revenue_shock[b];
            total += d.hashrate_shock[0];
        }
        sums[j] = total;
    }
}
