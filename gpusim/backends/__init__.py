"""Backends: each computes one chunk of paths of a `RunSpec` (same seed, same paths everywhere).

- numpy: the shared array-API model on numpy; the reference and CPU fallback.
- jax: the same model under `jax.jit` (CPU, or GPU with gpusim[jax-cuda12]); a Pallas kernel fuses the
  market step where it is faster.
- cupy-array: the same model on cupy arrays, unfused, on an NVIDIA GPU.
- cupy: the fused CUDA kernels of kernels/ (one thread per path), on an NVIDIA GPU.
- native: the same fused kernels compiled by the host C++ compiler, OpenMP threads over paths.
- auto: the fastest of these that can run here (see `auto_backend`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gpusim.spec import ChunkResult, RunSpec


class Backend(Protocol):
    name: str

    @property
    def device(self) -> str:
        """Human-readable device the backend computes on (recorded in outputs)."""
        ...

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        """Chunk size at which this backend runs fastest (before the memory bound)."""
        ...

    def bytes_per_path(self, spec: RunSpec) -> int:
        """Working memory one path of a chunk needs, for sizing chunks to free memory."""
        ...

    def memory_bytes(self) -> int:
        """Free memory where chunks compute (host RAM, or the GPU's free memory)."""
        ...

    def default_workers(self) -> int:
        """Chunks in flight at once: one per core on a CPU, two on a GPU (one computes while
        the other's outcomes copy back)."""
        ...

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult: ...


class BackendUnavailable(Exception):
    """The requested backend cannot run here (library or device missing)."""


BACKENDS = ("numpy", "jax", "cupy-array", "cupy", "native")
CHOICES = ("auto", *BACKENDS)


def gpu_unavailable_reason() -> str | None:
    """None when cupy sees an NVIDIA GPU, else why not (for error messages and test skips)."""
    try:
        import cupy
    except ImportError as exc:
        return f"cupy is not installed ({exc}); install it with: pip install 'gpusim[cuda12]' ('gpusim[cuda13]' for a CUDA 13 driver)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when there is no driver or device
        return f"cupy finds no usable CUDA device ({exc})"
    return None if count > 0 else "cupy finds no CUDA device"


Announce = Callable[[str], None]
"""Where `auto` says which backends it skipped and why (one line each); None: nowhere."""


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def get_backend(name: str, announce: Announce | None = to_stderr) -> Backend:
    """The backend called `name` (one of CHOICES); BackendUnavailable says why it cannot run here."""
    if name == "auto":
        return auto_backend(announce)
    if name == "numpy":
        from gpusim.backends.numpy_backend import NumpyBackend

        return NumpyBackend()
    if name == "jax":
        try:
            from gpusim.backends.jax_backend import JaxBackend
        except ImportError as exc:
            raise BackendUnavailable(
                f"the jax backend needs jax, which is not installed here ({exc}); install it with: pip install 'gpusim[jax]'"
            ) from exc
        return JaxBackend()
    if name in ("cupy-array", "cupy"):
        reason = gpu_unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"the {name} backend needs an NVIDIA GPU: {reason}")
        if name == "cupy-array":
            from gpusim.backends.cupy_array_backend import CupyArrayBackend

            return CupyArrayBackend()
        from gpusim.backends.cupy_backend import CupyBackend

        return CupyBackend()
    if name == "native":
        if os.environ.get(NATIVE_SWITCH, "1") == "0":
            raise BackendUnavailable(f"the native backend is switched off here ({NATIVE_SWITCH}=0)")
        from gpusim.backends.native_backend import NativeBackend
        from gpusim.backends.native_build import NativeBuildError

        try:
            return NativeBackend()
        except NativeBuildError as exc:
            raise BackendUnavailable(str(exc)) from exc
    raise BackendUnavailable(f"unknown backend {name!r}; available: {', '.join(CHOICES)}")


NATIVE_SWITCH = "GPUSIM_NATIVE"
"""Environment variable: 0 switches the native backend off (`auto` then skips it, saying so), e.g.
where a compiler exists but builds should not run (the test suite's runs compare with numpy)."""


@dataclass(frozen=True)
class AutoCandidate:
    """One step of `auto`'s fallback chain: `start` builds the backend and warms it up, raising when it cannot run here."""

    name: str
    start: Callable[[], Backend]


def _warmed_cupy() -> Backend:
    backend = get_backend("cupy")
    backend.warm_up()  # type: ignore[attr-defined]
    return backend


def _warmed_native() -> Backend:
    backend = get_backend("native")
    backend.warm_up()  # type: ignore[attr-defined]
    return backend


def _warmed_jax_gpu() -> Backend:
    backend = get_backend("jax")
    if not getattr(backend, "on_accelerator", False):
        raise BackendUnavailable(f"JAX sees no GPU, only {backend.device}; for JAX on a GPU: pip install 'gpusim[jax-cuda12]'")
    backend.warm_up()  # type: ignore[attr-defined]
    return backend


AUTO_CHAIN: tuple[AutoCandidate, ...] = (
    AutoCandidate("cupy", _warmed_cupy),
    AutoCandidate("jax", _warmed_jax_gpu),
    AutoCandidate("native", _warmed_native),
    AutoCandidate("numpy", lambda: get_backend("numpy")),
)
"""What `auto` tries, fastest first. JAX counts only on a GPU: on a CPU it is not reliably faster
than numpy (docs/benchmarks.md). native needs a C++ compiler with OpenMP; its warm-up builds
and runs the tiny spec. numpy, last, always runs."""

SKIP_REASON_CHARS = 300
"""A skipped backend's reason is cut to one line of about this length (an NVRTC log runs to pages)."""


def skip_reason(exc: BaseException) -> str:
    """One line saying why a backend could not start: the exception's first line, with its type unless it is ours."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not isinstance(exc, BackendUnavailable):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= SKIP_REASON_CHARS else text[: SKIP_REASON_CHARS - 3] + "..."


def auto_backend(announce: Announce | None = to_stderr) -> Backend:
    """The fastest backend that runs here: each of AUTO_CHAIN in turn, after a warm-up compile and
    run (gpusim/backends/warm_up.py), so a GPU that cannot compile or launch falls back to the next.
    Each backend skipped gets one line with the reason (on stderr unless `announce` says otherwise)."""
    *fallible, last = AUTO_CHAIN
    for candidate in fallible:
        try:
            return candidate.start()
        except Exception as exc:  # whatever a GPU library raises (compile errors, driver errors): fall back
            if announce is not None:
                announce(f"backend auto: skipped {candidate.name}: {skip_reason(exc)}")
    return last.start()
