"""The Pallas market-step kernel, interpreted on the CPU, against the shared functions it fuses,
step by step; and when the backend uses it. A whole run with the kernel against numpy is in
tests/test_backend_agreement.py."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import small_shocks, small_spec_for

jax = pytest.importorskip("jax", reason="jax is not installed: the Pallas kernel tests need it (pip install 'gpusim[jax]')")

import jax.numpy as jnp  # noqa: E402

from gpusim.backends.jax_backend import JaxBackend  # noqa: E402
from gpusim.backends.pallas_market import fused_market_step  # noqa: E402
from gpusim.model.market import advance_market, draw_step, initial_state, observe  # noqa: E402
from gpusim.model.params import cast_params  # noqa: E402

SEED = 2**40 + 5


@pytest.fixture(scope="module")
def spec():
    JaxBackend()  # switches JAX to 64-bit types, as the backend always runs
    return small_spec_for("float64")


@pytest.fixture(scope="module")
def shocked_spec(spec):
    return small_spec_for("float64", shocks=small_shocks())


@pytest.mark.parametrize(("dtype", "rtol", "shocked"), [("float64", 1e-13, False), ("float32", 1e-5, False), ("float64", 1e-13, True)])
def test_fused_step_equals_the_shared_functions(spec, shocked_spec, dtype, rtol, shocked):
    """200 paths in blocks of 64 (the last one padded), starting past 2**32 paths, at step 5
    of a state already moved off its start: every state, level and draw the step returns
    (with dated shock paths, the levels read the shock tables' row of t_6)."""
    spec = shocked_spec if shocked else spec
    layout = spec.layout
    p = cast_params(spec.market, jnp, getattr(jnp, dtype))
    n, path_start, k = 200, 2**32 - 100, jnp.int32(5)
    state = initial_state(n, p, layout, jnp)
    state = advance_market(state, draw_step(SEED, path_start, n, 4, layout, p.log_spot.dtype, jnp), 4, p, layout, jnp)
    draws = draw_step(SEED, path_start, n, k, layout, p.log_spot.dtype, jnp)
    expected_state = advance_market(state, draws, k, p, layout, jnp)
    expected_view = observe(expected_state, k + 1, p, layout, jnp)

    fused = jax.jit(lambda s, start, step: fused_market_step(s, SEED, start, step, p, layout, block=64, interpret=True))
    got_state, got_view, got_draws = fused(state, jnp.int64(path_start), k)
    for name in expected_state._fields:
        a, b = np.asarray(getattr(got_state, name)), np.asarray(getattr(expected_state, name))
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=name)
    for name in expected_view._fields:
        np.testing.assert_allclose(np.asarray(getattr(got_view, name)), np.asarray(getattr(expected_view, name)), rtol=rtol, err_msg=name)
    np.testing.assert_array_equal(np.asarray(got_draws.regime), np.asarray(draws.regime))
    np.testing.assert_array_equal(np.asarray(got_draws.revenue_shock), np.asarray(draws.revenue_shock))


def test_auto_uses_plain_jit_on_a_cpu(spec):
    backend = JaxBackend()
    if backend.on_accelerator:
        pytest.skip("JAX sees a GPU here: the choice is timed there (tests/test_gpu_backends.py)")
    assert backend.market_variant(spec, SEED, 0, 100, 0) == "jit"
    assert JaxBackend(market_kernel="pallas").market_variant(spec, SEED, 0, 100, 0) == "pallas"
    with pytest.raises(ValueError, match="market_kernel"):
        JaxBackend(market_kernel="triton")
