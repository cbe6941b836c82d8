// config.cuh: the compile-time constants the kernels are built with. The cupy backend and the
// host tests generate gpusim_config.cuh for the run's config shape and dtype and define
// GPUSIM_GENERATED_CONFIG; a kernel compiled on its own (nvcc -ptx kernels/simulate.cu) takes
// bench.yaml's shape in float32 instead.
#pragma once
#ifdef GPUSIM_GENERATED_CONFIG
#include "gpusim_config.cuh"
#else
#include "bench_config.cuh"
#endif
