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
from gpusim.backends.sizing import array_model_bytes_per_path, item_bytes
from gpusim.spec import ChunkResult, RunSpec

MARKET_ARRAYS_IN_FLIGHT = 16
"""Float arrays of the market's width alive at once in a step: the carry old and new and the
step's temporaries, which cupy's memory pool keeps until the step ends."""

CREDIT_ARRAYS_IN_FLIGHT = 24
"""Float arrays per borrower and per instrument alive at once in a credit step."""


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
        credit_arrays = CREDIT_ARRAYS_IN_FLIGHT * (layout.n_borrowers + layout.n_instruments) if spec.has_credit else 0
        return array_model_bytes_per_path(layout, spec.dtype, MARKET_ARRAYS_IN_FLIGHT, item_bytes(spec.dtype) * credit_arrays)

    def memory_bytes(self) -> int:
        return self._cuda.free_bytes()

    def default_workers(self) -> int:
        return 2

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        with cupy.cuda.Device(self._device_id):
            return simulate_chunk(spec, seed, path_start, n_paths, save_paths, xcp)
