// draws.cuh: the random draws of one step for one path (docs/model.md 3; market.Draws, market.draw_step):
// the Philox blocks of the step turned into the uniforms and Box-Muller normals that the slot
// table (gpusim/model/slots.py, SLOT_* in the generated header) names.
#pragma once

#include "math.cuh"

namespace gpusim {

// This step's random variables (market.Draws). The uniforms of the regime, launch and jump
// count slots are read from `u` at their SLOT_* offsets.
struct Draws {
    real u[4 * N_BLOCKS];     // uniform of every slot
    real crypto_diffusion[A]; // independent normals, correlated by correlated_crypto_shocks
    real jump_size[A];
    real market_shocks[2];    // own part of Z_X, Z_P
    real revenue_shock[B];    // each borrower's eps^b shock
    real hashrate_shock[1];   // Z_H of the log network hashrate
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

// The draws of the market factors (every uniform, the normals but the revenue shocks'): what the
// fused kernel draws before the credit step, which draws the revenue shocks of the borrowers
// still alive itself (credit.revenue_normals).
__host__ __device__ GPUSIM_STAGE void draw_market_step(unsigned long long seed, unsigned long long path, int step, Draws& d) {
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
    entry_normals<1>(d.u, SLOT_HASHRATE_SHOCK, d.hashrate_shock);
}

// Every draw of the step (market.draw_step).
__host__ __device__ __forceinline__ void draw_step(unsigned long long seed, unsigned long long path, int step, Draws& d) {
    draw_market_step(seed, path, step, d);
    entry_normals<N_BORROWERS>(d.u, SLOT_REVENUE_SHOCK, d.revenue_shock);
}

}  // namespace gpusim
