"""Engine contracts: chunking, seeds, threads and NaN guards (docs/model.md section 3)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import small_mapping

import gpusim.model.market as factors
from gpusim.backends import get_backend
from gpusim.engine import SimulationError, choose_chunk_paths, fit_workers, histogram_bytes, run
from gpusim.scenario import validate_mapping
from gpusim.spec import build_spec


def _run(spec, n_paths=600, seed=7, **kwargs):
    kwargs.setdefault("save_paths", n_paths)
    return run(spec, get_backend("numpy"), n_paths=n_paths, seed=seed, show_progress=False, **kwargs)


def _assert_identical(a, b):
    assert a.saved.keys() == b.saved.keys()
    for name in a.saved:
        np.testing.assert_array_equal(a.saved[name], b.saved[name], err_msg=name)
    for name in a.fan:
        np.testing.assert_array_equal(a.fan[name][0], b.fan[name][0], err_msg=name)
    np.testing.assert_array_equal(a.tight_share, b.tight_share)


def test_results_do_not_depend_on_chunk_size_or_threads(small_spec):
    reference = _run(small_spec, chunk_paths=600, workers=1)
    for chunk, workers in ((37, 2), (256, 2), (599, 1)):
        _assert_identical(reference, _run(small_spec, chunk_paths=chunk, workers=workers))
    single = _run(small_spec, n_paths=12, chunk_paths=12)
    _assert_identical(single, _run(small_spec, n_paths=12, chunk_paths=1, workers=2))


def test_float32_results_do_not_depend_on_chunk_size(small_scenario):
    spec = build_spec(small_scenario, "float32")
    _assert_identical(_run(spec, chunk_paths=600), _run(spec, chunk_paths=111, workers=2))
    assert _run(spec, n_paths=10).saved["crypto"].dtype == np.float32


def test_same_seed_repeats_and_other_seeds_differ(small_spec):
    a, b, c = _run(small_spec, seed=42), _run(small_spec, seed=42), _run(small_spec, seed=43)
    _assert_identical(a, b)
    assert not np.array_equal(a.saved["crypto"], c.saved["crypto"])


def test_a_path_is_the_same_whatever_the_path_count(small_spec):
    few, many = _run(small_spec, n_paths=50), _run(small_spec, n_paths=900, chunk_paths=300)
    for name in few.saved:
        np.testing.assert_array_equal(few.saved[name], many.saved[name][:50], err_msg=name)


def test_float32_paths_track_float64_paths(small_scenario):
    f64 = _run(build_spec(small_scenario, "float64"), n_paths=200)
    f32 = _run(build_spec(small_scenario, "float32"), n_paths=200)
    # same uniforms up to float32 rounding: the regime path is identical almost everywhere
    assert (f64.saved["regime"] == f32.saved["regime"]).mean() > 0.99
    np.testing.assert_allclose(f32.saved["power_price"], f64.saved["power_price"], rtol=1e-4)


def test_saved_paths_start_at_the_config_levels(small_spec, small_scenario):
    res = _run(small_spec, n_paths=20)
    spots = [a.spot for a in small_scenario.crypto.assets]
    np.testing.assert_allclose(res.saved["crypto"][:, 0, :], np.broadcast_to(spots, (20, 2)))
    rates = [g.rental_rate for g in small_scenario.compute.generations]
    np.testing.assert_allclose(res.saved["rental_rate"][:, 0, :], np.broadcast_to(rates, (20, 2)))
    assert (res.saved["regime"][:, 0] == 0).all()
    assert res.saved["crypto"].shape == (20, small_scenario.time.n_steps + 1, 2)


def test_save_paths_limits_what_is_kept(small_spec):
    res = _run(small_spec, n_paths=300, save_paths=10, chunk_paths=7)
    assert res.saved["gpu_mark"].shape[0] == 10
    full = _run(small_spec, n_paths=300, save_paths=300)
    np.testing.assert_array_equal(res.saved["gpu_mark"], full.saved["gpu_mark"][:10])


def test_nan_in_a_factor_is_an_error_naming_it(small_spec, monkeypatch):
    real = factors.utilization

    def broken(x, tight, shock, p, xp):
        return real(x, tight, shock, p, xp) * np.nan

    monkeypatch.setattr(factors, "utilization", broken)
    with pytest.raises(SimulationError, match="utilization"):
        _run(small_spec, n_paths=20)


def test_chunk_size_is_bounded_by_memory_and_request(small_spec, monkeypatch):
    backend = get_backend("numpy")
    assert choose_chunk_paths(backend, small_spec, 10_000_000, workers=2) == backend.preferred_chunk_paths(small_spec)
    assert choose_chunk_paths(backend, small_spec, 100, workers=2) == 100
    assert choose_chunk_paths(backend, small_spec, 10_000, workers=2, requested=333) == 333
    monkeypatch.setattr(backend, "memory_bytes", lambda: 64 * 2**20)
    small = choose_chunk_paths(backend, small_spec, 10_000_000, workers=2)
    assert small < backend.preferred_chunk_paths(small_spec)
    assert 4 * (small * backend.bytes_per_path(small_spec) + histogram_bytes(small_spec)) <= 0.25 * 64 * 2**20 or small == 256
    with pytest.raises(ValueError, match="chunk-paths"):
        choose_chunk_paths(backend, small_spec, 100, workers=1, requested=0)


def test_many_borrowers_run_fewer_chunks_at_once(small_spec, monkeypatch):
    """A chunk's fan histograms do not shrink with its paths: with 128 borrowers over 520
    weekly steps (several GB of counts a chunk) and 8 GiB free, one chunk runs at a time."""
    template = small_mapping()["borrowers"][0]
    borrowers = []
    for i in range(128):
        borrower = copy.deepcopy(template)
        borrower["name"] = f"B{i}"
        borrower["debt"][0]["name"] = f"B{i}-loan"
        borrowers.append(borrower)
    data = small_mapping(borrowers=borrowers, time={"start": "2026-01-01", "steps_per_year": 52, "n_steps": 520})
    spec = build_spec(validate_mapping(data, "many"))
    backend = get_backend("numpy")
    monkeypatch.setattr(backend, "memory_bytes", lambda: 8 * 2**30)
    assert histogram_bytes(spec) > 0.25 * 8 * 2**30 / 2
    assert fit_workers(backend, spec, 16) == 1
    assert fit_workers(backend, small_spec, 16) == 16
    assert choose_chunk_paths(backend, spec, 10**6, workers=1) == 256  # the smallest chunk: histograms take the share


def test_weekly_grid_runs(small_scenario):
    data = small_mapping()
    data["time"] = {"start": "2026-01-01", "steps_per_year": 52, "n_steps": 104}
    spec = build_spec(validate_mapping(data, "weekly"))
    res = _run(spec, n_paths=100)
    assert res.saved["crypto"].shape == (100, 105, 2)
    assert np.isfinite(res.saved["gpu_value"]).all()


class _Uint32Fans:
    """numpy's chunks with the fan counts as uint32, as the fused backends return them (views of their histogram)."""

    name = "numpy-uint32-fans"

    def __init__(self):
        self.inner = get_backend("numpy")
        self.workers_told = None

    def __getattr__(self, attribute):
        return getattr(self.inner, attribute)

    def use_workers(self, workers):
        self.workers_told = workers

    def run_chunk(self, spec, seed, path_start, n_paths, save_paths):
        chunk = self.inner.run_chunk(spec, seed, path_start, n_paths, save_paths)
        return chunk._replace(fan_counts={name: counts.astype(np.uint32) for name, counts in chunk.fan_counts.items()})


def test_uint32_fan_counts_fold_into_the_same_results_and_workers_are_told(small_spec):
    """The run's totals are int64 whatever integer type a chunk's counts have; a backend with
    threads of its own learns how many chunks the engine runs at once."""
    backend = _Uint32Fans()
    got = run(small_spec, backend, n_paths=600, seed=7, save_paths=600, chunk_paths=256, workers=2, show_progress=False)
    _assert_identical(_run(small_spec, chunk_paths=256, workers=2), got)
    assert backend.workers_told == 2
