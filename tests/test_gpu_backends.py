"""JAX on a GPU beyond agreement with numpy (that is tests/test_backend_agreement.py, for every
backend): the `auto` market kernel times plain jit and the Pallas kernel on the first chunk and
keeps the faster. Marked `gpu`: skipped, with the reason, where JAX sees no GPU."""

from __future__ import annotations

import pytest
from helpers import shipped_spec

pytestmark = pytest.mark.gpu

SEED = 20261126


def _jax_gpu_reason() -> str | None:
    try:
        import jax
    except ImportError as exc:
        return f"jax is not installed ({exc})"
    platforms = {d.platform for d in jax.devices()}
    return None if platforms & {"gpu", "cuda", "rocm"} else f"JAX sees no GPU (devices: {', '.join(sorted(platforms))})"


@pytest.mark.skipif(_jax_gpu_reason() is not None, reason=str(_jax_gpu_reason()))
def test_jax_auto_times_both_market_kernels():
    from gpusim.backends.jax_backend import JaxBackend

    spec32 = shipped_spec("baseline", "float32")
    backend = JaxBackend()
    chosen = backend.market_variant(spec32, SEED, 0, 65536, 0)
    assert backend.pallas_error is None, backend.pallas_error
    assert set(backend.market_kernel_seconds) == {"jit", "pallas"}
    assert chosen == min(backend.market_kernel_seconds, key=backend.market_kernel_seconds.get)
