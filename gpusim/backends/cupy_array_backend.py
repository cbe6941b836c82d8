"""The cupy-array backend: the shared array-API model on cupy arrays, unfused, on one GPU.

Every model operation is a separate cupy kernel launch over (components x paths) arrays, so it
is far slower than the fused kernels of the cupy backend; it exists to show that the one
array-API model runs unchanged on a GPU array library, and as a cross-check of the kernels.
"""

from __future__ import annotations

import array_api_compat.cupy as xcp
import cupy

from gpusim.backends.array_model import simulate_chunk
from gpusim.backends.cuda_device import CudaDevice
from gpusim.spec import ChunkResult, RunSpec


class CupyArrayBackend:
    name = "cupy-array"

    def __init__(self) -> None:
        self._cuda = CudaDevice()
        self._device_id = self._cuda.id

    @property
    def device(self) -> str:
        return self._cuda.description

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        # large enough that launch overhead (hundreds of kernels a step) is amortized
        return 1 << 20

    def bytes_per_path(self, spec: RunSpec) -> int:
        layout = spec.layout
        item = 4 if spec.dtype == "float32" else 8
        per_step = 8 * 4 * layout.slots.n_blocks * 4 + item * 16 * (layout.n_assets + 4 * layout.n_generations + 6)
        credit = item * 24 * (layout.n_borrowers + layout.n_instruments) if spec.has_credit else 0
        return per_step + credit + 8 * 16

    def memory_bytes(self) -> int:
        return self._cuda.free_bytes()

    def default_workers(self) -> int:
        return 2

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        with cupy.cuda.Device(self._device_id):
            return simulate_chunk(spec, seed, path_start, n_paths, save_paths, xcp)
