// host_shim.h: lets the kernel headers (philox.cuh, ...) compile as plain host C++ with g++,
// so the host tests can check them against the numpy reference without a GPU.
//
// Under nvcc or NVRTC (__CUDACC__ defined) this file must not be included: CUDA provides all
// of these itself. philox.cuh includes it only when __CUDACC__ is not defined.
#pragma once

#ifdef __CUDACC__
#error "host_shim.h is for host compilers only; CUDA already defines these"
#endif

#include <cmath>
#include <cstdint>
#include <math.h>  // logf, cosf, ... in the global namespace, as in device code

// Function and kernel qualifiers: plain inline host functions.
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline __attribute__((always_inline))

// CUDA's built-in vector types (same members and alignment as vector_types.h).
struct alignas(8) uint2 {
    unsigned int x, y;
};
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};

inline uint2 make_uint2(unsigned int x, unsigned int y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) {
    return uint4{x, y, z, w};
}

// Integer intrinsics, through 64-bit arithmetic.
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return static_cast<unsigned int>((static_cast<std::uint64_t>(a) * b) >> 32);
}

// Launch geometry per host thread: a host driver runs a kernel one (block, thread) at a time on
// each of its threads, setting these before each call (tests/host/model_host.cpp, native.cpp).
// `static thread_local`: each build and each thread has its own copy, none is exported (an
// `inline` global would be a GNU-unique symbol that two builds loaded in one process share).
// With one thread per block, __syncthreads has nothing to wait for and block-shared arrays are
// per-thread function statics.
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
static thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __shared__ static thread_local
inline void __syncthreads() {}

// Atomics are real (relaxed) read-modify-writes: host threads may share the buffer added to.
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
