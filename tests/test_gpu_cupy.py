"""The cupy backend (fused CUDA kernels) on a GPU, against the numpy reference.

The cross-backend checks of the JAX issue, for the fused kernels: float32 factor paths to 1e-5
relative, default steps identical on at least 99.9 % of paths, expected loss within half a
standard error of numpy on the same paths; no NaN; results independent of the chunking; a
10-million-path run of bench.yaml to HDF5. Marked `gpu`; skipped with the reason where cupy
sees no GPU. The same kernels are checked without a GPU in tests/test_kernels_model_host.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import array_api_compat.numpy as xnp
import h5py
import numpy as np
import pytest

from gpusim.backends import get_backend, gpu_unavailable_reason
from gpusim.backends.array_model import simulate_chunk
from gpusim.engine import run
from gpusim.model.market import draw_step
from gpusim.runs import run_to_file
from gpusim.scenario import load_scenario
from gpusim.spec import ChunkResult, CreditOutcomes, DType, RunSpec, build_spec

if TYPE_CHECKING:
    from gpusim.backends.cupy_backend import CupyBackend

ROOT = Path(__file__).resolve().parents[1]
REASON = gpu_unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"no GPU for the cupy backend: {REASON}")]
SEED = 424242


def _spec(config: str, dtype: DType, contagion: bool = True) -> RunSpec:
    return build_spec(load_scenario(ROOT / "configs" / f"{config}.yaml"), dtype, contagion=contagion)


@pytest.fixture(scope="module")
def backend() -> CupyBackend:
    from gpusim.backends.cupy_backend import CupyBackend  # needs cupy: imported only where a GPU is

    backend = get_backend("cupy")
    assert isinstance(backend, CupyBackend)
    return backend


def _compare(got: ChunkResult, ref: ChunkResult, rtol: float, same_share: float) -> None:
    for name, expected in ref.saved.items():
        assert got.saved[name].shape == expected.shape, name
        if name == "regime":
            np.testing.assert_array_equal(got.saved[name], expected)
            continue
        actual, reference = got.saved[name].astype(np.float64), expected.astype(np.float64)
        scale = np.abs(reference)
        if name in ("gpu_value", "gpu_mark"):
            # income minus power cost cancels near the scrap value: the GPU's exp and log differ
            # from numpy's by an ulp, so those values are compared relative to the factor's size
            scale = np.maximum(scale, np.max(scale, axis=(0, 1), initial=0.0))
        assert np.all(np.abs(actual - reference) <= rtol * scale), name
    np.testing.assert_array_equal(got.tight_count, ref.tight_count)
    for name, expected in ref.fan_counts.items():
        np.testing.assert_array_equal(got.fan_counts[name].sum(axis=-1), expected.sum(axis=-1), err_msg=name)
        moved = np.abs(got.fan_counts[name] - expected).sum() / 2
        assert moved <= 2e-3 * expected.sum(), f"{name}: {moved} counts in another bin"
    for mine, theirs in ((got.outcomes, ref.outcomes), (got.outcomes_without_chain, ref.outcomes_without_chain)):
        assert mine is not None and theirs is not None
        same = np.all(mine.default_step == theirs.default_step, axis=1)
        assert same.mean() >= same_share, f"default steps identical on {same.mean():.4%} of paths"
        # expected loss on the same paths: within half a Monte Carlo standard error
        loss_mine, loss_ref = mine.loss.sum(axis=1), theirs.loss.sum(axis=1)
        standard_error = loss_ref.std(ddof=1) / np.sqrt(loss_ref.size)
        assert abs(loss_mine.mean() - loss_ref.mean()) <= 0.5 * standard_error


def test_float32_matches_numpy_path_by_path(backend: CupyBackend) -> None:
    spec = _spec("baseline", "float32")
    got = backend.run_chunk(spec, SEED, 100, 2000, 150)
    ref = simulate_chunk(spec, SEED, 100, 2000, 150, xnp)
    _compare(got, ref, rtol=1e-5, same_share=0.999)


def test_float64_matches_numpy_path_by_path(backend: CupyBackend) -> None:
    spec = _spec("baseline", "float64")
    start, saved_until = 2**32 - 300, 2**32 - 250  # the chunk's first 50 paths are saved ones
    got = backend.run_chunk(spec, SEED, start, 600, saved_until)
    ref = simulate_chunk(spec, SEED, start, 600, saved_until, xnp)
    _compare(got, ref, rtol=1e-10, same_share=0.9999)


def test_bench_outputs_are_finite(backend: CupyBackend) -> None:
    spec = _spec("bench", "float32")
    chunk = backend.run_chunk(spec, SEED, 0, 200_000, 100)
    assert chunk.outcomes is not None and chunk.outcomes_without_chain is not None
    for outcomes in (chunk.outcomes, chunk.outcomes_without_chain):
        for field in ("loss", "exposure", "risky_annuity", "portfolio_loss_nominal"):
            assert np.all(np.isfinite(getattr(outcomes, field))), field
        assert np.all((outcomes.default_step >= -1) & (outcomes.default_step < spec.layout.n_steps))
        assert np.any(outcomes.default_step >= 0)
    for name, values in chunk.saved.items():
        assert np.all(np.isfinite(values)), name
    assert int(chunk.tight_count[0]) in (0, 200_000)
    for name, counts in chunk.fan_counts.items():
        assert np.all(counts.sum(axis=-1) == 200_000), name


def test_chunking_does_not_change_results(backend: CupyBackend) -> None:
    spec = _spec("bench", "float32")
    whole = backend.run_chunk(spec, SEED, 0, 50_000, 64)
    parts = [backend.run_chunk(spec, SEED, start, count, 64) for start, count in ((0, 777), (777, 30_000), (30_777, 19_223))]
    assert whole.outcomes is not None
    for field in CreditOutcomes._fields:
        joined = np.concatenate([getattr(p.outcomes, field) for p in parts])
        np.testing.assert_array_equal(joined, getattr(whole.outcomes, field), err_msg=field)
    np.testing.assert_array_equal(sum(p.tight_count for p in parts), whole.tight_count)
    for name, counts in whole.fan_counts.items():
        np.testing.assert_array_equal(sum(p.fan_counts[name] for p in parts), counts, err_msg=name)
    np.testing.assert_array_equal(parts[0].saved["gpu_mark"], whole.saved["gpu_mark"][:64])


def test_engine_runs_are_independent_of_chunk_size(backend: CupyBackend) -> None:
    spec = _spec("baseline", "float32")
    a = run(spec, backend, n_paths=100_000, seed=SEED, save_paths=10, chunk_paths=100_000, show_progress=False)
    b = run(spec, backend, n_paths=100_000, seed=SEED, save_paths=10, chunk_paths=12_345, show_progress=False)
    assert a.risk is not None and b.risk is not None
    for key, value in a.risk.items():
        np.testing.assert_allclose(np.asarray(b.risk[key], dtype=float), np.asarray(value, dtype=float), rtol=1e-9, err_msg=key)


def test_floor_kernel_draws_the_model_random_numbers(backend: CupyBackend) -> None:
    spec = _spec("bench", "float64")
    n_paths, path_start = 256, 2**32 - 128
    expected = 0.0
    for k in range(spec.layout.n_steps):
        expected += sum(float(np.sum(value)) for value in draw_step(SEED, path_start, n_paths, k, spec.layout, xnp.float64, xnp))
    assert backend.run_floor(spec, SEED, path_start, n_paths) == pytest.approx(expected, rel=1e-10)


def test_ten_million_paths_to_hdf5(backend: CupyBackend, tmp_path: Path) -> None:
    spec = _spec("bench", "float32")
    out = tmp_path / "bench10m.h5"
    result = run_to_file(spec, backend, out, n_paths=10_000_000, save_paths=1000, seed=SEED, show_progress=False)
    assert result.n_paths == 10_000_000 and result.risk is not None
    assert np.isfinite(result.risk["portfolio_el"]) and result.risk["portfolio_el"] > 0
    assert 0 < result.risk["portfolio_el_se"] < result.risk["portfolio_el"]
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_paths"]) == 10_000_000
        assert f.attrs["backend"] == "cupy"
