"""The native backend: the fused kernels of kernels/ compiled by the host C++ compiler, OpenMP over paths.

The same source as the cupy backend's GPU kernel (kernels/simulate.cu, one path per thread with
its whole state in registers), built for this CPU by `native_build` once per config shape and
dtype and cached on disk. A chunk is one call into the library: its threads share the chunk's
paths, each counts its own fan histograms and the library merges them once at the end. Like
the cupy backend, a chunk runs the recorded pass and, for attribution, the pass with the
fire-sale chain off; `chunk_from_buffers` turns the outputs into the ChunkResult every backend
returns.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
import warnings

import numpy as np

from gpusim.backends.kernel_config import KernelBuffers, allocate_buffers, chunk_from_buffers, config_header, pack_params, saved_count
from gpusim.backends.native_build import NativeBuildError, build_library, compiler_version, cpu_name, find_compiler
from gpusim.backends.sizing import cpu_count, host_available_bytes, item_bytes
from gpusim.model.params import MarketParams, without_contagion
from gpusim.spec import ChunkResult, RunSpec

CHUNK_PATHS = 1 << 16
"""Paths per chunk at least: a chunk's fan histograms (fixed size: 95 MB on bench.yaml) are
merged across threads and folded into the run's totals once per chunk, so large chunks keep
that cost small next to the paths' work (docs/benchmarks.md, "Engine ceiling")."""
CHUNK_PATHS_PER_THREAD = 1 << 13
"""And at least this many per thread, so that the merge, which reads every thread's histogram,
stays small next to the chunk's compute on many cores."""

BORROWER_OUTCOME_BYTES = 2 + 1
FLOATS_PER_INSTRUMENT = 3
FLOATS_PER_PORTFOLIO = 1
COPY_FACTOR = 2
"""The outcomes in the kernel's dtype and, for float32 runs, their float64 copies in the ChunkResult."""


def default_threads() -> int:
    """OMP_NUM_THREADS where set, else every core."""
    named = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(named) if named.isdigit() and int(named) > 0 else cpu_count()


class _Ufunc(ctypes.Structure):
    """The leading fields of numpy's PyUFuncObject (numpy/ufuncobject.h), as far as its loop table."""

    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", ctypes.c_void_p),
        ("nin", ctypes.c_int),
        ("nout", ctypes.c_int),
        ("nargs", ctypes.c_int),
        ("identity", ctypes.c_int),
        ("functions", ctypes.POINTER(ctypes.c_void_p)),
        ("data", ctypes.POINTER(ctypes.c_void_p)),
        ("ntypes", ctypes.c_int),
        ("reserved1", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("types", ctypes.POINTER(ctypes.c_char)),
    ]


NUMPY_MATH = (np.exp, np.log, np.expm1, np.log1p)
"""The float64 functions whose numpy results differ from the C library's (in the order of native_use_numpy_math)."""
_UnaryLoop = ctypes.CFUNCTYPE(
    None, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ssize_t), ctypes.POINTER(ctypes.c_ssize_t), ctypes.c_void_p
)


def _float64_loop(ufunc: np.ufunc) -> tuple[int, int]:
    """(inner loop, loop data) numpy calls for `ufunc` on float64 (its first d->d loop), checked
    by calling it on arguments across the range and comparing with the ufunc bit for bit."""
    table = _Ufunc.from_address(id(ufunc))
    name = (table.name or b"").decode()
    if (name, table.nin, table.nout) != (ufunc.__name__, 1, 1):
        raise RuntimeError(f"numpy's ufunc layout is not the one expected ({name!r})")
    index = ufunc.types.index("d->d")
    loop, data = table.functions[index], table.data[index]
    x = np.concatenate([np.linspace(-40.0, 40.0, 4001), np.geomspace(1e-12, 700.0, 2001), [-0.5, 0.0, 1e-300, 700.0]])
    x = x[x > -1.0] if ufunc is np.log1p else x[x > 0.0] if ufunc is np.log else x
    call = _UnaryLoop(loop)
    one = (ctypes.c_ssize_t * 1)(1)
    steps = (ctypes.c_ssize_t * 2)(8, 8)
    out = np.empty(1)
    got = np.empty_like(x)
    cell = np.empty(1)
    args = (ctypes.c_void_p * 2)(cell.ctypes.data, out.ctypes.data)
    for i, value in enumerate(x):
        cell[0] = value
        call(args, one, steps, data)
        got[i] = out[0]
    if not np.array_equal(got, ufunc(x)):
        raise RuntimeError(f"numpy's float64 {name} loop called on one value differs from numpy.{name}")
    return loop, data


@functools.cache
def numpy_loops() -> tuple[ctypes.Array[ctypes.c_void_p], ctypes.Array[ctypes.c_void_p]] | str:
    """numpy's float64 exp, log, expm1 and log1p loops for native_use_numpy_math, or why they cannot be used."""
    try:
        pairs = [_float64_loop(u) for u in NUMPY_MATH]
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    loops = (ctypes.c_void_p * len(pairs))(*(loop for loop, _ in pairs))
    data = (ctypes.c_void_p * len(pairs))(*(d for _, d in pairs))
    return loops, data


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    return array.ctypes.data_as(ctypes.c_void_p)


class NativeBackend:
    name = "native"

    def __init__(self, threads: int | None = None) -> None:
        compiler = find_compiler()
        if compiler is None:
            raise NativeBuildError("the native backend needs a C++ compiler with OpenMP (g++ or clang++; or set CXX), and none is on PATH")
        if threads is not None and threads < 1:
            raise ValueError(f"native threads must be at least 1, got {threads}")
        self.compiler = compiler
        self.threads = threads or default_threads()
        self.threads_per_chunk = self.threads
        self._libraries: dict[str, ctypes.CDLL] = {}
        self._lock = threading.Lock()
        self.math_note = ""  # float64: why exp, log, expm1 and log1p are the C library's, where they are
        self.compile_seconds = 0.0  # the C++ compiler (zero when the library came from the disk cache)
        self.kernel_seconds = 0.0  # time inside the library, summed over chunks

    @property
    def device(self) -> str:
        return f"cpu ({cpu_name()}), {self.threads_per_chunk} thread(s) a chunk, kernels/ built by {compiler_version(self.compiler)}"

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        return max(CHUNK_PATHS, CHUNK_PATHS_PER_THREAD * self.threads_per_chunk)

    def bytes_per_path(self, spec: RunSpec) -> int:
        """Only the outputs: the model's state stays in each thread's registers and stack."""
        if not spec.has_credit:
            return 16
        layout = spec.layout
        floats = FLOATS_PER_INSTRUMENT * layout.n_instruments + FLOATS_PER_PORTFOLIO
        passes = 2 if spec.attribution else 1
        return COPY_FACTOR * passes * (BORROWER_OUTCOME_BYTES * layout.n_borrowers + 8 * floats) + 16

    def memory_bytes(self) -> int:
        return host_available_bytes()

    def default_workers(self) -> int:
        """One chunk computes on every thread while the engine folds the previous one."""
        return 1

    def use_workers(self, workers: int) -> None:
        """The engine runs `workers` chunks at once: share the threads among them."""
        self.threads_per_chunk = max(1, self.threads // max(1, workers))

    def warm_up(self) -> None:
        """Build and run the tiny warm-up spec, so that `auto` learns here whether a native build works."""
        from gpusim.backends.warm_up import WARM_UP_PATHS, warm_up_spec

        kernel = self.kernel_seconds
        self.run_chunk(warm_up_spec(), 1, 0, WARM_UP_PATHS, 0)
        self.kernel_seconds = kernel

    # -- compilation --------------------------------------------------------------------------

    def library(self, spec: RunSpec) -> ctypes.CDLL:
        """The library for this spec's shape and dtype (built, or loaded from the disk cache, on first use)."""
        header = config_header(spec)
        with self._lock:
            library = self._libraries.get(header)
            if library is None:
                started = time.perf_counter()
                path, compiled = build_library(spec, self.compiler)
                if compiled:
                    self.compile_seconds += time.perf_counter() - started
                library = ctypes.CDLL(str(path))
                library.native_simulate_paths.restype = ctypes.c_int
                if library.native_real_size() != item_bytes(spec.dtype):
                    raise NativeBuildError(f"native library {path} was built for another dtype than {spec.dtype}")
                if spec.dtype == "float64":
                    self._use_numpy_math(library)
                self._libraries[header] = library
        return library

    def _use_numpy_math(self, library: ctypes.CDLL) -> None:
        loops = numpy_loops()
        if isinstance(loops, str):
            self.math_note = f"exp, log, expm1 and log1p from the C library, not numpy's ({loops}): float64 within 1e-12, not bit for bit"
            warnings.warn(f"native backend: {self.math_note}", RuntimeWarning, stacklevel=3)
            return
        library.native_use_numpy_math(*loops)

    # -- chunks -------------------------------------------------------------------------------

    def _launch(
        self,
        library: ctypes.CDLL,
        spec: RunSpec,
        market: MarketParams,
        seed: int,
        path_start: int,
        n_paths: int,
        n_saved: int,
        record: bool,
    ) -> KernelBuffers:
        prm = pack_params(spec, market, np.dtype(spec.dtype))
        buffers = allocate_buffers(spec, n_paths, n_saved, record, np)
        status = library.native_simulate_paths(
            ctypes.c_int(self.threads_per_chunk),
            ctypes.c_ulonglong(seed),
            ctypes.c_ulonglong(path_start),
            ctypes.c_int(n_paths),
            ctypes.c_int(n_saved),
            ctypes.c_int(int(record)),
            _pointer(prm),
            *(_pointer(a) for a in buffers.kernel_args()),
        )
        if status != 0:
            raise MemoryError(f"native backend: no memory for {self.threads_per_chunk} threads' fan histograms")
        return buffers

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        library = self.library(spec)
        n_saved = saved_count(path_start, n_paths, save_paths)
        started = time.perf_counter()
        recorded = self._launch(library, spec, spec.market, seed, path_start, n_paths, n_saved, record=True)
        without_chain = None
        if spec.attribution:
            without_chain = self._launch(library, spec, without_contagion(spec.market), seed, path_start, n_paths, 0, record=False)
        elapsed = time.perf_counter() - started
        with self._lock:
            self.kernel_seconds += elapsed
        return chunk_from_buffers(spec, path_start, n_paths, recorded, without_chain)
