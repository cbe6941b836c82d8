"""Backends: each computes one chunk of paths of a `RunSpec` (same seed, same paths everywhere)."""

from __future__ import annotations

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

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult: ...


class BackendUnavailable(Exception):
    """The requested backend cannot run here (library or device missing)."""


BACKENDS = ("numpy", "jax")


def get_backend(name: str) -> Backend:
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
    raise BackendUnavailable(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
