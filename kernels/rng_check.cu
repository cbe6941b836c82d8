// rng_check.cu: kernels that expose the random-number contract (philox.cuh, docs/model.md section 3)
// to tests, so the GPU streams can be compared with gpusim/model/rng.py. Loaded with
// cupy.RawModule(path=..., options=("-I", <kernels dir>)); every kernel is extern "C" so its
// name is not mangled.
//
// Output layout follows rng.step_words: row-major (rows, n_paths), row = slot, column = path
// path_start + j. Each thread handles whole paths (grid-stride loop), any launch shape works.
#include "philox.cuh"

// Every slot of one step: the raw words and their float32 / float64 uniforms.
// words, u_f32, u_f64: (n_slots, n_paths).
extern "C" __global__ void rng_check_step(unsigned long long seed, unsigned long long path_start, unsigned int n_paths,
                                          unsigned int step, unsigned int n_slots, unsigned int* words, float* u_f32,
                                          double* u_f64) {
    const unsigned int n_blocks = (n_slots + 3u) / 4u;
    for (unsigned int j = blockIdx.x * blockDim.x + threadIdx.x; j < n_paths; j += gridDim.x * blockDim.x) {
        for (unsigned int b = 0; b < n_blocks; ++b) {
            const uint4 block = gpusim::philox_step_block(seed, path_start + j, step, b);
            for (unsigned int i = 0; i < 4u && 4u * b + i < n_slots; ++i) {
                const unsigned int w = gpusim::uint4_word(block, i);
                const unsigned long long at = static_cast<unsigned long long>(4u * b + i) * n_paths + j;
                words[at] = w;
                u_f32[at] = gpusim::u01_f32(w);
                u_f64[at] = gpusim::u01_f64(w);
            }
        }
    }
}

// Box-Muller normals of one step: pair i uses slots (2i, 2i+1); row 2i holds the cosine draw
// and row 2i+1 the sine draw (the convention of gpusim/model/slots.py). z_f32, z_f64: (2 n_pairs, n_paths).
extern "C" __global__ void rng_check_normals(unsigned long long seed, unsigned long long path_start, unsigned int n_paths,
                                             unsigned int step, unsigned int n_pairs, float* z_f32, double* z_f64) {
    for (unsigned int j = blockIdx.x * blockDim.x + threadIdx.x; j < n_paths; j += gridDim.x * blockDim.x) {
        for (unsigned int i = 0; i < n_pairs; ++i) {
            const unsigned int w0 = gpusim::philox_slot(seed, path_start + j, step, 2u * i);
            const unsigned int w1 = gpusim::philox_slot(seed, path_start + j, step, 2u * i + 1u);
            const unsigned long long at0 = static_cast<unsigned long long>(2u * i) * n_paths + j;
            const unsigned long long at1 = at0 + n_paths;
            gpusim::box_muller(gpusim::u01_f32(w0), gpusim::u01_f32(w1), z_f32[at0], z_f32[at1]);
            gpusim::box_muller(gpusim::u01_f64(w0), gpusim::u01_f64(w1), z_f64[at0], z_f64[at1]);
        }
    }
}

// Poisson counts from the uniforms of one slot, against one float64 CDF table of POISSON_CAP
// entries (rng.poisson_cdf_table). n_f32, n_f64: (n_paths,), from float32 / float64 uniforms.
extern "C" __global__ void rng_check_poisson(unsigned long long seed, unsigned long long path_start, unsigned int n_paths,
                                             unsigned int step, unsigned int slot, const double* cdf, int* n_f32,
                                             int* n_f64) {
    for (unsigned int j = blockIdx.x * blockDim.x + threadIdx.x; j < n_paths; j += gridDim.x * blockDim.x) {
        const unsigned int w = gpusim::philox_slot(seed, path_start + j, step, slot);
        n_f32[j] = gpusim::poisson_inverse_cdf(gpusim::u01_f32(w), cdf);
        n_f64[j] = gpusim::poisson_inverse_cdf(gpusim::u01_f64(w), cdf);
    }
}
