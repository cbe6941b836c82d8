"""The JAX backend against the numpy reference, same seed (MODEL.md section 3; issue 5 point 5).

Runs on the CPU: JAX compiles the whole chunk (both passes of the attribution) once per chunk
size, which dominates this module's time, so specs and the backend are shared by all tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import small_mapping

jax = pytest.importorskip("jax", reason="jax is not installed: the jax backend tests need it (pip install 'gpusim[jax]')")

import h5py  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from gpusim.backends import BACKENDS, get_backend  # noqa: E402
from gpusim.cli import main  # noqa: E402
from gpusim.engine import run  # noqa: E402
from gpusim.scenario import validate_mapping  # noqa: E402
from gpusim.spec import build_spec  # noqa: E402

N_PATHS = 3000
SEED = 11


@pytest.fixture(scope="module")
def backends():
    return get_backend("jax"), get_backend("numpy")


@pytest.fixture(scope="module")
def specs():
    scenario = validate_mapping(small_mapping(), "small")
    return {dtype: build_spec(scenario, dtype) for dtype in ("float64", "float32")}


@pytest.fixture(scope="module")
def runs(backends, specs):
    """Both backends, both dtypes, one chunk of N_PATHS paths, every path saved."""
    jb, nb = backends
    out = {}
    for dtype, spec in specs.items():
        for b in (jb, nb):
            out[dtype, b.name] = run(
                spec, b, n_paths=N_PATHS, seed=SEED, save_paths=N_PATHS, chunk_paths=N_PATHS, workers=1, show_progress=False
            )
            out[dtype, b.name, "chunk"] = b.run_chunk(spec, SEED, 0, N_PATHS, N_PATHS)
    return out


def _assert_paths_close(a, b, rtol):
    """Every saved factor path to rtol relative. A value that is the small difference of two
    large ones (a GPU's income value just above its scrap value) is compared on the scale of
    its factor instead, where the cancellation would amplify ulp differences of exp and log."""
    assert a.keys() == b.keys()
    for name in b:
        if name == "regime":
            continue
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        scale = np.abs(y)
        if name in ("gpu_value", "gpu_mark"):
            scale = np.maximum(scale, np.max(scale, axis=(0, 1)))  # per generation
        error = np.abs(x - y) / scale
        assert error.max() <= rtol, f"{name}: largest relative difference {error.max():.3g}"


def _default_agreement(a, b):
    return float((a.outcomes.default_step == b.outcomes.default_step).mean())


def test_jax_is_a_listed_backend(backends):
    jb, _ = backends
    assert "jax" in BACKENDS and jb.name == "jax"
    assert jb.device.startswith(jax.devices()[0].platform)
    assert jb.compile_seconds >= 0.0


def test_float64_matches_numpy(runs):
    j, n = runs["float64", "jax"], runs["float64", "numpy"]
    _assert_paths_close(j.saved, n.saved, 1e-12)
    assert (j.saved["regime"] == n.saved["regime"]).mean() >= 0.9999
    assert _default_agreement(runs["float64", "jax", "chunk"], runs["float64", "numpy", "chunk"]) >= 0.9999
    np.testing.assert_array_equal(j.tight_share, n.tight_share)
    jc, nc = runs["float64", "jax", "chunk"], runs["float64", "numpy", "chunk"]
    for name in nc.fan_counts:  # a value on a bin edge may fall either side: a few per step at most
        assert np.abs(jc.fan_counts[name] - nc.fan_counts[name]).max() <= 2, name
    np.testing.assert_allclose(jc.outcomes.loss, nc.outcomes.loss, rtol=1e-9, atol=1e-3)
    np.testing.assert_allclose(jc.outcomes_without_chain.loss, nc.outcomes_without_chain.loss, rtol=1e-9, atol=1e-3)
    np.testing.assert_allclose(j.risk["portfolio_el"], n.risk["portfolio_el"], rtol=1e-9)


def test_float32_matches_numpy(runs):
    j, n = runs["float32", "jax"], runs["float32", "numpy"]
    assert j.saved["crypto"].dtype == np.float32
    _assert_paths_close(j.saved, n.saved, 1e-5)
    assert (j.saved["regime"] == n.saved["regime"]).mean() >= 0.999
    assert _default_agreement(runs["float32", "jax", "chunk"], runs["float32", "numpy", "chunk"]) >= 0.999
    jc, nc = runs["float32", "jax", "chunk"], runs["float32", "numpy", "chunk"]
    for name in nc.fan_counts:
        assert np.abs(jc.fan_counts[name] - nc.fan_counts[name]).max() <= 5, name
    el, el_n, se = (np.asarray(x, dtype=np.float64) for x in (j.risk["portfolio_el"], n.risk["portfolio_el"], n.risk["portfolio_el_se"]))
    assert np.all(np.abs(el - el_n) <= 0.5 * se)


def test_results_do_not_depend_on_chunk_size(backends, specs, runs):
    jb, _ = backends
    reference = runs["float64", "jax"]
    compiles = jb.compiles
    # 1100 + 1100 + 800: the last chunk runs padded to the compiled 1100 (masked from counts)
    chunked = run(specs["float64"], jb, n_paths=N_PATHS, seed=SEED, save_paths=N_PATHS, chunk_paths=1100, workers=2, show_progress=False)
    assert jb.compiles == compiles + 1
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
def test_bounded_gather_of_defaulting_paths_matches_numpy(backends, specs, n_defaulting):
    """Under jit the waterfall runs on a fixed-size gather of the defaulting paths (64 here) and
    on every path when more default in one step: both branches equal the numpy gather (the
    backend fixture switches JAX to 64-bit)."""
    from gpusim.backends.jax_backend import bounded_recoveries
    from gpusim.model.credit import recoveries_where

    spec = specs["float64"]
    layout, c = spec.layout, spec.credit
    n, B, G, A, I = 1000, layout.n_borrowers, layout.n_generations, layout.n_assets, layout.n_instruments  # noqa: E741
    rng = np.random.default_rng(n_defaulting)
    any_default = np.zeros(n, dtype=bool)
    any_default[rng.choice(n, n_defaulting, replace=False)] = True
    units = rng.uniform(0, 5e3, (B, A, n))
    inputs = (
        any_default,
        rng.uniform(0, 5e8, (I, n)),  # exposure
        rng.uniform(0, 5e4, (G, n)),  # fire-sale price
        units,
        units * rng.uniform(0, 1, (B, A, 1)),  # pledged
        rng.uniform(0, 1e5, (A, n)),  # net crypto price
        rng.uniform(0, 1e8, (B, n)),  # cash
    )
    expected = recoveries_where(*inputs, layout, c, np)
    bounded = jax.jit(lambda *ops: bounded_recoveries(*ops, layout, c, jax.numpy))
    np.testing.assert_allclose(np.asarray(bounded(*inputs)), expected, rtol=1e-13, atol=1e-6)
    assert (expected[:, ~any_default] == 0.0).all()
