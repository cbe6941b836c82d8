"""The cupy backend (fused CUDA kernels) on a GPU, beyond agreement with numpy (that is
tests/test_backend_agreement.py, for every backend): no NaN on bench.yaml, results independent
of the chunking, the floor kernel's draws, a 10-million-path run of bench.yaml to HDF5. Marked
`gpu`; skipped with the reason where cupy sees no GPU. The same kernels are checked without a
GPU in tests/test_kernels_model_host.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import array_api_compat.numpy as xnp
import h5py
import numpy as np
import pytest
from helpers import shipped_spec

from gpusim.backends import get_backend, gpu_unavailable_reason
from gpusim.engine import run
from gpusim.model.market import draw_step
from gpusim.runs import run_to_file
from gpusim.spec import CreditOutcomes

if TYPE_CHECKING:
    from gpusim.backends.cupy_backend import CupyBackend

REASON = gpu_unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"no GPU for the cupy backend: {REASON}")]
SEED = 424242


@pytest.fixture(scope="module")
def backend() -> CupyBackend:
    from gpusim.backends.cupy_backend import CupyBackend  # needs cupy: imported only where a GPU is

    backend = get_backend("cupy")
    assert isinstance(backend, CupyBackend)
    return backend


def test_bench_outputs_are_finite(backend: CupyBackend) -> None:
    spec = shipped_spec("bench", "float32")
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
    spec = shipped_spec("bench", "float32")
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
    spec = shipped_spec("baseline", "float32")
    a = run(spec, backend, n_paths=100_000, seed=SEED, save_paths=10, chunk_paths=100_000, show_progress=False)
    b = run(spec, backend, n_paths=100_000, seed=SEED, save_paths=10, chunk_paths=12_345, show_progress=False)
    assert a.risk is not None and b.risk is not None
    for key, value in a.risk.items():
        np.testing.assert_allclose(np.asarray(b.risk[key], dtype=float), np.asarray(value, dtype=float), rtol=1e-9, err_msg=key)


def test_floor_kernel_draws_the_model_random_numbers(backend: CupyBackend) -> None:
    spec = shipped_spec("bench", "float64")
    n_paths, path_start = 256, 2**32 - 128
    expected = 0.0
    for k in range(spec.layout.n_steps):
        expected += sum(float(np.sum(value)) for value in draw_step(SEED, path_start, n_paths, k, spec.layout, xnp.float64, xnp))
    assert backend.run_floor(spec, SEED, path_start, n_paths) == pytest.approx(expected, rel=1e-10)


def test_ten_million_paths_to_hdf5(backend: CupyBackend, tmp_path: Path) -> None:
    spec = shipped_spec("bench", "float32")
    out = tmp_path / "bench10m.h5"
    result = run_to_file(spec, backend, out, n_paths=10_000_000, save_paths=1000, seed=SEED, show_progress=False)
    assert result.n_paths == 10_000_000 and result.risk is not None
    assert np.isfinite(result.risk["portfolio_el"]) and result.risk["portfolio_el"] > 0
    assert 0 < result.risk["portfolio_el_se"] < result.risk["portfolio_el"]
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_paths"]) == 10_000_000
        assert f.attrs["backend"] == "cupy"
