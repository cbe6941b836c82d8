// philox.cuh: the random-number contract of docs/model.md section 3, in CUDA C++.
//
// Mirrors gpusim/model/rng.py (the numpy reference) function by function:
//   philox4x32_10          <-> rng.philox4x32_10     Philox4x32-10 (Salmon et al., SC'11)
//   philox_step_block      <-> rng.step_words        counter (p mod 2^32, k, b, p div 2^32)
//   philox_slot            <-> one row of rng.step_words
//   u01_f32 / u01_f64      <-> rng.uniform           uniforms in (0, 1), never 0 or 1
//   box_muller             <-> rng.box_muller        normal pair from slots (2i, 2i+1)
//   poisson_inverse_cdf    <-> rng.poisson_inverse_cdf  count capped at 16
//
// Every function is __host__ __device__: nvcc/NVRTC compile it for the GPU, and g++ compiles
// it for the host tests through host_shim.h (tests/test_kernels_host.py). No standard headers
// are included under CUDA, so the file also compiles with NVRTC (cupy.RawModule).
#pragma once

#ifndef __CUDACC__
#include "host_shim.h"
#endif
#include "constants.cuh"

// Loop unrolling hint for the device pass only; host compilers (g++, nvcc's host pass) would
// warn about an unknown pragma.
#ifdef __CUDA_ARCH__
#define GPUSIM_UNROLL _Pragma("unroll")
#else
#define GPUSIM_UNROLL
#endif

// A stage of the path-step (docs/model.md 7): inlined like every device function, except in the
// host build that benchmarks/instruction_budget.py profiles, which keeps each stage a real call so
// that callgrind can count it (GPUSIM_PROFILE_SPLIT).
#ifdef GPUSIM_PROFILE_SPLIT
#define GPUSIM_STAGE inline __attribute__((noinline))
#else
#define GPUSIM_STAGE __forceinline__
#endif

namespace gpusim {

// ---------------------------------------------------------------------------------------------
// Philox4x32-10 (docs/model.md 3, "Generator"). Constants as in Random123 and gpusim/model/rng.py.
// ---------------------------------------------------------------------------------------------
constexpr unsigned int PHILOX_M0 = 0xD2511F53u;  // multiplies counter word 0
constexpr unsigned int PHILOX_M1 = 0xCD9E8D57u;  // multiplies counter word 2
constexpr unsigned int PHILOX_W0 = 0x9E3779B9u;  // key bump, word 0 (golden ratio)
constexpr unsigned int PHILOX_W1 = 0xBB67AE85u;  // key bump, word 1 (sqrt(3) - 1)
constexpr int PHILOX_ROUNDS = 10;

// High word of the 32x32 -> 64-bit product. __umulhi is the device intrinsic on the GPU and
// host_shim.h's 64-bit multiply under g++; nvcc's host pass has no host __umulhi, so it gets
// the same 64-bit multiply spelled out.
__host__ __device__ __forceinline__ unsigned int mulhi32(unsigned int a, unsigned int b) {
#if defined(__CUDA_ARCH__) || !defined(__CUDACC__)
    return __umulhi(a, b);
#else
    return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
#endif
}

// One Philox4x32 round: c' = (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)).
__host__ __device__ __forceinline__ uint4 philox_round(uint4 c, uint2 k) {
    const unsigned int hi0 = mulhi32(PHILOX_M0, c.x);
    const unsigned int lo0 = PHILOX_M0 * c.x;
    const unsigned int hi1 = mulhi32(PHILOX_M1, c.z);
    const unsigned int lo1 = PHILOX_M1 * c.z;
    return make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

// Philox4x32-10: ten rounds, the key bumped by (W0, W1) between rounds. Passes the Random123
// known-answer vectors (tests/data/philox4x32_10_kat.txt).
__host__ __device__ __forceinline__ uint4 philox4x32_10(uint4 ctr, uint2 key) {
    GPUSIM_UNROLL
    for (int r = 0; r < PHILOX_ROUNDS; ++r) {
        if (r > 0) {
            key.x += PHILOX_W0;
            key.y += PHILOX_W1;
        }
        ctr = philox_round(ctr, key);
    }
    return ctr;
}

// ---------------------------------------------------------------------------------------------
// Streams (docs/model.md 3): key = 64-bit seed split low word first; the counter of path p, step k,
// block b is (p mod 2^32, k, b, p div 2^32); slot s of a step is word s mod 4 of block s div 4.
// Which slot feeds which variable is gpusim/model/slots.py's table, passed in as offsets.
// ---------------------------------------------------------------------------------------------
__host__ __device__ __forceinline__ uint2 philox_key(unsigned long long seed) {
    return make_uint2(static_cast<unsigned int>(seed), static_cast<unsigned int>(seed >> 32));
}

// The four words (slots 4b .. 4b+3) of block b of step k for path p.
__host__ __device__ GPUSIM_STAGE uint4 philox_step_block(unsigned long long seed, unsigned long long path,
                                                            unsigned int step, unsigned int block) {
    const uint4 ctr = make_uint4(static_cast<unsigned int>(path), step, block, static_cast<unsigned int>(path >> 32));
    return philox4x32_10(ctr, philox_key(seed));
}

// Word i (0..3) of a block; selects without indexing, so the block stays in registers.
__host__ __device__ __forceinline__ unsigned int uint4_word(uint4 v, unsigned int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Slot s of step k for path p. Costs a whole Philox call: a kernel drawing several slots of
// one block should call philox_step_block once and take the words with uint4_word.
__host__ __device__ __forceinline__ unsigned int philox_slot(unsigned long long seed, unsigned long long path,
                                                             unsigned int step, unsigned int slot) {
    return uint4_word(philox_step_block(seed, path, step, slot / 4u), slot % 4u);
}

// ---------------------------------------------------------------------------------------------
// Uniforms (docs/model.md 3), exact in their dtype and never 0 or 1:
//   float32: ((x >> 9) + 0.5) * 2^-23      float64: (x + 0.5) * 2^-32
// Both products are by a power of two and the sums fit the mantissa, so every backend
// produces the same bits.
// ---------------------------------------------------------------------------------------------
__host__ __device__ __forceinline__ float u01_f32(unsigned int x) {
    return (static_cast<float>(x >> 9) + 0.5f) * (1.0f / 8388608.0f);  // 2^-23
}

__host__ __device__ __forceinline__ double u01_f64(unsigned int x) {
    return (static_cast<double>(x) + 0.5) * (1.0 / 4294967296.0);  // 2^-32
}

// u01<T>: the uniform of the working dtype, for templated kernels.
template <typename T>
__host__ __device__ __forceinline__ T u01(unsigned int x);
template <>
__host__ __device__ __forceinline__ float u01<float>(unsigned int x) { return u01_f32(x); }
template <>
__host__ __device__ __forceinline__ double u01<double>(unsigned int x) { return u01_f64(x); }

// ---------------------------------------------------------------------------------------------
// Normals (docs/model.md 3): Box-Muller on the uniforms of slots (2i, 2i+1),
//   z0 = sqrt(-2 ln u0) cos(2 pi u1),   z1 = sqrt(-2 ln u0) sin(2 pi u1).
// Evaluated in T as rng.box_muller does in numpy (2 pi rounded to T first, then times u1), so
// the results agree to the last few ulps of the libraries' log/cos/sin.
// ---------------------------------------------------------------------------------------------
__host__ __device__ __forceinline__ float rng_sqrt(float x) { return sqrtf(x); }
__host__ __device__ __forceinline__ double rng_sqrt(double x) { return sqrt(x); }
__host__ __device__ __forceinline__ float rng_log(float x) { return logf(x); }
__host__ __device__ __forceinline__ double rng_log(double x) { return log(x); }
__host__ __device__ __forceinline__ float rng_cos(float x) { return cosf(x); }
__host__ __device__ __forceinline__ double rng_cos(double x) { return cos(x); }
__host__ __device__ __forceinline__ float rng_sin(float x) { return sinf(x); }
__host__ __device__ __forceinline__ double rng_sin(double x) { return sin(x); }

template <typename T>
__host__ __device__ __forceinline__ void box_muller(T u0, T u1, T& z0, T& z1) {
    const T radius = rng_sqrt(static_cast<T>(-2.0) * rng_log(u0));
    const T angle = static_cast<T>(6.283185307179586) * u1;  // 2 pi, rounded to T
    z0 = radius * rng_cos(angle);
    z1 = radius * rng_sin(angle);
}

// ---------------------------------------------------------------------------------------------
// Poisson counts (docs/model.md 3): inverse CDF on one uniform, capped at 16.
// cdf[n] = F(n) for n = 0..15, built once on the host by rng.poisson_cdf_table (float64).
// The count of entries below u equals min{n : F(n) >= u} capped at 16 (F is nondecreasing),
// and needs no branch on the data. The comparison runs in the wider of T and Table: with a
// float64 table (the reference) a float32 u is compared in float64, exactly as numpy does; a
// float32 table may differ from the reference when u falls between F(n) and its rounding.
// ---------------------------------------------------------------------------------------------
template <typename T, typename Table>
__host__ __device__ GPUSIM_STAGE int poisson_inverse_cdf(T u, const Table* cdf) {
    // the CDF never decreases, so the entries below u come first: counting stops at the first other
    int count = 0;
    while (count < cfg::POISSON_CAP && cdf[count] < u) ++count;
    return count;
}

}  // namespace gpusim
