"""The numpy backend: the reference implementation and CPU fallback."""

from __future__ import annotations

import platform

import array_api_compat.numpy as xnp

from gpusim.backends.array_model import simulate_chunk
from gpusim.backends.sizing import array_model_bytes_per_path, cpu_count, host_available_bytes
from gpusim.spec import ChunkResult, RunSpec

MARKET_ARRAYS_IN_FLIGHT = 12
"""Float arrays of the market's width alive at once in a numpy step: the carry, its successor
and the step's temporaries (numpy frees each temporary as soon as it is used)."""


class NumpyBackend:
    name = "numpy"

    @property
    def device(self) -> str:
        return f"cpu ({platform.processor() or platform.machine()})"

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        # measured on the 2-core development machine: arrays that stay in L2 run fastest
        return 16384

    def bytes_per_path(self, spec: RunSpec) -> int:
        return array_model_bytes_per_path(spec.layout, spec.dtype, MARKET_ARRAYS_IN_FLIGHT)

    def memory_bytes(self) -> int:
        return host_available_bytes()

    def default_workers(self) -> int:
        return cpu_count()

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        return simulate_chunk(spec, seed, path_start, n_paths, save_paths, xnp)
