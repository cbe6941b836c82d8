"""The numpy backend: the reference implementation and CPU fallback."""

from __future__ import annotations

import platform

import array_api_compat.numpy as xnp

from gpusim.backends import cpu_count, host_available_bytes
from gpusim.backends.array_model import simulate_chunk
from gpusim.spec import ChunkResult, RunSpec


class NumpyBackend:
    name = "numpy"

    @property
    def device(self) -> str:
        return f"cpu ({platform.processor() or platform.machine()})"

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        # measured on the 2-core development machine: arrays that stay in L2 run fastest
        return 16384

    def bytes_per_path(self, spec: RunSpec) -> int:
        layout = spec.layout
        item = 4 if spec.dtype == "float32" else 8
        per_step = 8 * 4 * layout.slots.n_blocks * 4 + item * 12 * (layout.n_assets + 4 * layout.n_generations + 6)
        return per_step + 8 * 16  # fan indices and counters

    def memory_bytes(self) -> int:
        return host_available_bytes()

    def default_workers(self) -> int:
        return cpu_count()

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        return simulate_chunk(spec, seed, path_start, n_paths, save_paths, xnp)
