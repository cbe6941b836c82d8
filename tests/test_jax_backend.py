"""The JAX backend beyond agreement with numpy (tests/test_backend_agreement.py): compile once per
chunk size, results independent of the chunking, the CLI, the bounded gather of defaulting paths.

Runs on the CPU: JAX compiles the whole chunk (both passes of the attribution) once per chunk
size, which dominates this module's time, so the spec and the backend are shared by all tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers import small_mapping, small_spec_for

jax = pytest.importorskip("jax", reason="jax is not installed: the jax backend tests need it (pip install 'gpusim[jax]')")

import h5py  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from gpusim.backends import BACKENDS, get_backend  # noqa: E402
from gpusim.cli import main  # noqa: E402
from gpusim.engine import run  # noqa: E402

N_PATHS = 3000
SEED = 11


@pytest.fixture(scope="module")
def backend():
    return get_backend("jax")


@pytest.fixture(scope="module")
def spec():
    return small_spec_for("float64")


@pytest.fixture(scope="module")
def one_chunk(backend, spec):
    """N_PATHS paths in one chunk, every path saved."""
    return run(spec, backend, n_paths=N_PATHS, seed=SEED, save_paths=N_PATHS, chunk_paths=N_PATHS, workers=1, show_progress=False)


def test_jax_is_a_listed_backend(backend):
    assert "jax" in BACKENDS and backend.name == "jax"
    assert backend.device.startswith(jax.devices()[0].platform)
    assert backend.compile_seconds >= 0.0


def test_results_do_not_depend_on_chunk_size(backend, spec, one_chunk):
    reference = one_chunk  # the same paths as one chunk
    compiles = backend.compiles
    # 1100 + 1100 + 800: the last chunk runs padded to the compiled 1100 (masked from counts)
    chunked = run(spec, backend, n_paths=N_PATHS, seed=SEED, save_paths=N_PATHS, chunk_paths=1100, workers=2, show_progress=False)
    assert backend.compiles == compiles + 1
    for name in reference.saved:
        np.testing.assert_array_equal(chunked.saved[name], reference.saved[name], err_msg=name)
    for name in reference.fan:
        np.testing.assert_array_equal(chunked.fan[name][0], reference.fan[name][0], err_msg=name)
    np.testing.assert_array_equal(chunked.tight_share, reference.tight_share)
    for key in reference.risk:  # per-path outcomes agree; the engine sums chunks in another order
        np.testing.assert_allclose(chunked.risk[key], reference.risk[key], rtol=1e-12, err_msg=key)


def test_cli_run_records_the_jax_backend(tmp_path):
    config = tmp_path / "factors.yaml"
    config.write_text(yaml.safe_dump(small_mapping(borrowers=[])))  # factors only: quick to compile
    out = tmp_path / "jax.h5"
    args = ["run", config, "--paths", 500, "--seed", 3, "--out", out, "--save-paths", 10, "--backend", "jax", "--quiet"]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f.attrs["backend"] == "jax"


@pytest.mark.parametrize("n_defaulting", [0, 5, 64, 900])
def test_bounded_gather_of_defaulting_paths_matches_numpy(backend, spec, n_defaulting):
    """Under jit the waterfall runs on a fixed-size gather of the defaulting paths (64 here) and
    on every path when more default in one step: both branches equal the numpy gather (the
    backend fixture switches JAX to 64-bit)."""
    from gpusim.backends.jax_backend import bounded_recoveries
    from gpusim.model.credit import recoveries_where

    layout, m, c = spec.layout, spec.market, spec.credit
    n, B, G, A, I = 1000, layout.n_borrowers, layout.n_generations, layout.n_assets, layout.n_instruments  # noqa: E741
    rng = np.random.default_rng(n_defaulting)
    any_default = np.zeros(n, dtype=bool)
    any_default[rng.choice(n, n_defaulting, replace=False)] = True
    units = rng.uniform(0, 5e3, (B, A, n))
    inputs = (
        any_default,
        rng.uniform(0, 5e8, (I, n)),  # exposure
        rng.uniform(0, 5e4, (G, n)),  # GPU marks
        rng.uniform(0, 5e4, (G, n)),  # GPUs dumped this step
        rng.uniform(0, 1, n) < 0.3,  # tight regime
        units,
        units * rng.uniform(0, 1, (B, A, 1)),  # pledged
        rng.uniform(0, 1e5, (A, n)),  # net crypto price
        rng.uniform(0, 1e8, (B, n)),  # cash
    )
    expected = recoveries_where(*inputs, layout, m, c, np)
    bounded = jax.jit(lambda *ops: bounded_recoveries(*ops, layout, m, c, jax.numpy))
    np.testing.assert_allclose(np.asarray(bounded(*inputs)), expected, rtol=1e-13, atol=1e-6)
    assert (expected[:, ~any_default] == 0.0).all()
