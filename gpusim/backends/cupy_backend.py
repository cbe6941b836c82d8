"""The cupy backend: the fused CUDA kernels of kernels/ (one thread per path) on one NVIDIA GPU.

`simulate_paths` (kernels/simulate.cu) runs a whole chunk in one launch; only per-path
outcomes, the saved paths, regime counts and fan histograms come back. The kernel is compiled
by NVRTC through `cupy.RawModule`, once per config shape and dtype (the generated header of
`kernel_config.config_header` fixes every size), and cached on the backend and on disk by cupy.
Each chunk runs on its own stream; its outcomes copy back on a second stream while the
attribution launch (fire-sale chain off) computes, and with the engine's two workers one
chunk's copies overlap the next chunk's kernels. For the benchmarks, compile time, kernel time
and copy time (cuda events) are kept apart in `compile_seconds`, `kernel_seconds` and
`transfer_seconds`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import cupy
import cupyx
import numpy as np

from gpusim.backends.cuda_device import CudaDevice
from gpusim.backends.kernel_config import (
    KernelBuffers,
    allocate_buffers,
    chunk_from_buffers,
    config_header,
    kernels_dir,
    pack_params,
    saved_count,
    source_digest,
)
from gpusim.backends.sizing import item_bytes
from gpusim.backends.warm_up import WARM_UP_PATHS, warm_up_spec
from gpusim.model.params import MarketParams, without_contagion
from gpusim.spec import ChunkResult, RunSpec

THREADS_PER_BLOCK = 128
"""Default threads per block (a multiple of 32: the fan counts aggregate within warps). The
kernel holds about 170 registers a thread in float32, so 128 keeps three blocks resident per
SM; benchmarks/bench_gpu.py times 64 and 256 beside it."""
BLOCKS_PER_SM = 16
"""Grid size cap in blocks per SM; beyond it threads take several paths (grid-stride loop)."""

BORROWER_OUTCOME_BYTES = 2 + 1
"""Per path and borrower: the default step (int16) and the default reason (int8)."""
FLOATS_PER_INSTRUMENT = 3
"""Per path and instrument: loss, exposure and risky annuity."""
FLOATS_PER_PORTFOLIO = 1
"""Per path: the undiscounted portfolio loss."""
OTHER_BYTES_PER_PATH = 16
"""Allowance per path for device memory besides the outcomes (e.g. the floor kernel's per-path sums)."""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpusim" / "kernels"


class CupyBackend:
    name = "cupy"

    def __init__(self, threads_per_block: int = THREADS_PER_BLOCK) -> None:
        self._cuda = CudaDevice()
        self._device_id = self._cuda.id
        self._sm_count = int(self._cuda.properties["multiProcessorCount"])
        self.threads_per_block = threads_per_block
        self._modules: dict[str, cupy.RawModule] = {}
        self._lock = threading.Lock()
        self.compile_seconds = 0.0  # NVRTC (or cupy's disk cache) building the modules
        self.kernel_seconds = 0.0  # simulate_paths launches, cuda-event time, summed over chunks
        self.transfer_seconds = 0.0  # copies of the outputs to the host, cuda-event time
        self.floor_seconds = 0.0  # sum_draws launches

    @property
    def device(self) -> str:
        return self._cuda.description

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        # large enough to fill every SM many times over; the fan histograms (fixed size) and the
        # launch overhead are then small next to the paths' work
        return 1 << 20

    def bytes_per_path(self, spec: RunSpec) -> int:
        """Only the outputs live in device memory: the model's state stays in each thread's registers."""
        layout = spec.layout
        floats = FLOATS_PER_INSTRUMENT * layout.n_instruments + FLOATS_PER_PORTFOLIO
        outcomes = BORROWER_OUTCOME_BYTES * layout.n_borrowers + item_bytes(spec.dtype) * floats if spec.has_credit else 0
        passes = 2 if spec.attribution else 1
        return passes * outcomes + OTHER_BYTES_PER_PATH

    def memory_bytes(self) -> int:
        return self._cuda.free_bytes()

    def default_workers(self) -> int:
        return 2

    # -- compilation --------------------------------------------------------------------------

    def module(self, spec: RunSpec) -> cupy.RawModule:
        """The compiled kernels for this spec's shape and dtype (compiled on first use)."""
        header = config_header(spec)
        key = source_digest(header)
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                # the header goes into a directory named by the digest, so cupy's own cache (keyed
                # on code and options) never serves a kernel built from older sources
                config_dir = _cache_dir() / key
                config_dir.mkdir(parents=True, exist_ok=True)
                (config_dir / "gpusim_config.cuh").write_text(header)
                code = '#include "simulate.cu"\n#include "draws_only.cu"\n'
                options = ("-DGPUSIM_GENERATED_CONFIG", f"--include-path={config_dir}", f"--include-path={kernels_dir()}", "--std=c++17")
                started = time.perf_counter()
                module = cupy.RawModule(code=code, options=options)
                module.get_function("simulate_paths")  # compiles the module now, so the time is known
                self.compile_seconds += time.perf_counter() - started
                self._modules[key] = module
        return module

    def warm_up(self) -> None:
        """Compile and run the kernels on the tiny warm-up spec, so that a missing NVRTC or a driver
        too old for the compiled code fails here (where `auto` can fall back) rather than at a run's
        first chunk. The timing counters keep only the run's own work."""
        counters = (self.compile_seconds, self.kernel_seconds, self.transfer_seconds)
        self.run_chunk(warm_up_spec(), 1, 0, WARM_UP_PATHS, 0)
        self.compile_seconds, self.kernel_seconds, self.transfer_seconds = counters

    def _grid(self, n_paths: int) -> int:
        return max(1, min(-(-n_paths // self.threads_per_block), BLOCKS_PER_SM * self._sm_count))

    # -- chunks -------------------------------------------------------------------------------

    def _launch(
        self, kernel: Any, spec: RunSpec, market: MarketParams, seed: int, path_start: int, n_paths: int, n_saved: int, record: bool
    ) -> KernelBuffers:
        prm = cupy.asarray(pack_params(spec, market, np.dtype(spec.dtype)))
        buffers = allocate_buffers(spec, n_paths, n_saved, record, cupy)
        args = (np.uint64(seed), np.uint64(path_start), np.int32(n_paths), np.int32(n_saved), np.int32(int(record)), prm)
        kernel((self._grid(n_paths),), (self.threads_per_block,), (*args, *buffers.kernel_args()))
        return buffers

    @staticmethod
    def _copy_back(buffers: KernelBuffers, stream: cupy.cuda.Stream, timers: list[tuple[Any, Any]]) -> KernelBuffers:
        """Start copying every buffer into pinned host memory on `stream` (asynchronous); the
        copies' start and end events are appended to `timers`."""
        fields = {}
        start = stream.record()
        for name, array in vars(buffers).items():
            host = cupyx.empty_pinned(array.shape, dtype=array.dtype)
            if array.size:
                array.get(stream=stream, out=host, blocking=False)
            fields[name] = host
        timers.append((start, stream.record()))
        return KernelBuffers(**fields)

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        kernel = self.module(spec).get_function("simulate_paths")
        n_saved = saved_count(path_start, n_paths, save_paths)
        with cupy.cuda.Device(self._device_id):
            compute = cupy.cuda.Stream(non_blocking=True)
            copy = cupy.cuda.Stream(non_blocking=True)
            copies: list[tuple[Any, Any]] = []
            with compute:
                start = compute.record()
                recorded = self._launch(kernel, spec, spec.market, seed, path_start, n_paths, n_saved, record=True)
                copy.wait_event(compute.record())
                recorded_host = self._copy_back(recorded, copy, copies)
                without_chain = None
                if spec.attribution:
                    off = self._launch(kernel, spec, without_contagion(spec.market), seed, path_start, n_paths, 0, record=False)
                    end = compute.record()
                    copy.wait_event(end)
                    without_chain = self._copy_back(off, copy, copies)
                else:
                    end = compute.record()
            copy.synchronize()
            compute.synchronize()
            elapsed = cupy.cuda.get_elapsed_time(start, end) / 1000.0
            transfer = sum(cupy.cuda.get_elapsed_time(a, b) for a, b in copies) / 1000.0
        with self._lock:
            self.kernel_seconds += elapsed
            self.transfer_seconds += transfer
        # the pinned host copies belong to this chunk alone: the ChunkResult keeps views of them
        return chunk_from_buffers(spec, path_start, n_paths, recorded_host, without_chain)

    def run_floor(self, spec: RunSpec, seed: int, path_start: int, n_paths: int) -> float:
        """Launch the floor kernel (kernels/draws_only.cu: the model's random draws, summed per path)
        on paths [path_start, path_start + n_paths) and return the total, after synchronising."""
        kernel = self.module(spec).get_function("sum_draws")
        with cupy.cuda.Device(self._device_id):
            stream = cupy.cuda.Stream(non_blocking=True)
            with stream:
                sums = cupy.empty((n_paths,), dtype=np.dtype(spec.dtype))
                start = stream.record()
                args = (np.uint64(seed), np.uint64(path_start), np.int32(n_paths), sums)
                kernel((self._grid(n_paths),), (self.threads_per_block,), args)
                end = stream.record()
                total = float(cupy.sum(sums, dtype=np.float64).get(stream=stream))
            stream.synchronize()
            elapsed = cupy.cuda.get_elapsed_time(start, end) / 1000.0
        with self._lock:
            self.floor_seconds += elapsed
        return total
