// math.cuh: what every model header shares: the working dtype `real`, the flat parameter array,
// the array extents of one path, and the working dtype's math as numpy evaluates it.
//
// Sizes, slot offsets, parameter offsets and the portfolio structure come from the generated
// header of constants (config.cuh: the generated gpusim_config.cuh, or bench.yaml's), which the
// kernel includes before this file. Every function is __host__ __device__, so the host tests
// compile the model headers with g++ (host_shim.h) and compare them with numpy.
#pragma once

#include "philox.cuh"
#include "constants.cuh"

namespace gpusim {

using real = GPUSIM_REAL;
using namespace cfg;

// Parameters are one flat array `prm` of the working dtype (kernel_config.pack_params);
// PRM(name) points at one of them.
#define PRM(name) (prm + P_##name)

// Array extents: zero-sized arrays are not C++, so a scenario without borrowers keeps one
// (unused) slot.
constexpr int A = N_ASSETS;
constexpr int G = N_GENERATIONS;
constexpr int B = N_BORROWERS > 0 ? N_BORROWERS : 1;
constexpr int I = N_INSTRUMENTS > 0 ? N_INSTRUMENTS : 1;
constexpr int W = WINDOW;

// The working dtype's math, as numpy evaluates it (minimum/maximum without NaN handling: the
// model never feeds them NaN).
__host__ __device__ __forceinline__ float m_exp(float x) { return expf(x); }
__host__ __device__ __forceinline__ double m_exp(double x) { return exp(x); }
__host__ __device__ __forceinline__ float m_log(float x) { return logf(x); }
__host__ __device__ __forceinline__ double m_log(double x) { return log(x); }
__host__ __device__ __forceinline__ float m_floor(float x) { return floorf(x); }
__host__ __device__ __forceinline__ double m_floor(double x) { return floor(x); }
__host__ __device__ __forceinline__ float m_rint(float x) { return rintf(x); }  // numpy round: half to even
__host__ __device__ __forceinline__ double m_rint(double x) { return rint(x); }
__host__ __device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
__host__ __device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__host__ __device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__host__ __device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__host__ __device__ __forceinline__ real m_min(real a, real b) { return b < a ? b : a; }
__host__ __device__ __forceinline__ real m_max(real a, real b) { return b > a ? b : a; }
__host__ __device__ __forceinline__ real R(double x) { return static_cast<real>(x); }
__host__ __device__ __forceinline__ real R(int x) { return static_cast<real>(x); }  // (step numbers: exact either way, one conversion)
// quiet NaN of the working dtype (a defaulted borrower's ratios)
#ifdef __CUDA_ARCH__
__device__ __forceinline__ float m_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double m_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }
#else
__host__ __device__ __forceinline__ float m_nan(float) { return nanf(""); }
__host__ __device__ __forceinline__ double m_nan(double) { return nan(""); }
#endif

}  // namespace gpusim
