"""Host checks of the fused CUDA kernels (kernels/simulate.cu, kernels/draws_only.cu) against numpy.

The kernel sources compile as plain C++ (through kernels/host_shim.h) into a shared library,
tests/host/model_host.cpp, with the generated header of gpusim.backends.kernel_config, exactly
as the cupy backend compiles them for the GPU. ctypes runs them on numpy buffers and
kernel_config assembles the same ChunkResult the cupy backend returns, which is compared path
by path with the numpy backend (array_model.simulate_chunk): factor paths, regimes, fan
histograms, regime counts and credit outcomes with and without the fire-sale chain. Needs a C++
compiler, not a GPU; the device build is checked with nvcc -ptx where nvcc exists.
"""

from __future__ import annotations

import copy
import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from conftest import SMALL, small_mapping

from gpusim.backends import kernel_config
from gpusim.backends.array_model import simulate_chunk
from gpusim.backends.kernel_config import KernelBuffers as Buffers
from gpusim.model.market import draw_step
from gpusim.model.params import MarketParams, without_contagion
from gpusim.scenario import load_scenario, validate_mapping
from gpusim.spec import ChunkResult, CreditOutcomes, DType, RunSpec, build_spec

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
DRIVER = ROOT / "tests" / "host" / "model_host.cpp"
COMPILE_TIMEOUT_S = 300
SEED = 20261126

MINER: dict[str, Any] = {
    "name": "Hash",
    "type": "miner",
    "cash": 3.0e7,
    "fixed_opex_per_month": 3.0e6,
    "pue": 1.05,
    "power_price_ratio": 0.4,
    "revenue_shock": {"vol": 0.1, "mean_reversion": 2.0},
    "mining": {"hashrate": 5000, "efficiency": 20},
    "treasury": [{"asset": "BTC", "units": 2000, "pledged_share": 0.5}, {"asset": "ETH", "units": 20000, "pledged_share": 0.3}],
    "fleets": [
        {
            "generation": "B200",
            "count": 3000,
            "purchase_date": "2025-03-01",
            "purchase_price": 47000.0,
            "contracted_share": 0.5,
            "contract_rate": 3.0,
            "contract_expiry": "2027-01-01",
        }
    ],
    "debt": [
        {
            "name": "Hash Line",
            "kind": "facility",
            "principal": 1.0e8,
            "commitment": 2.0e8,
            "advance_rate": 0.5,
            "amortization": "bullet",
            "rate_type": "floating",
            "coupon": 0.05,
            "payments_per_year": 12,
            "issue_date": "2025-04-01",
            "maturity_date": "2027-04-01",
            "seniority": 1,
            "collateral": {"crypto": ["BTC"], "fleets": ["B200"]},
            "covenants": {"ltv_max": 0.7, "ltv_basis": "mark", "test_every_months": 1, "cure_periods": 0},
            "refinancing": {"max_ltv": 0.5, "min_dscr": 1.0, "tenor_years": 1, "spread_step_up": 0.01},
            "market_spread_bps": 500,
        },
        {
            "name": "Hash Loan",
            "kind": "term_loan",
            "principal": 0.8e8,
            "rate_type": "fixed",
            "coupon": 0.08,
            "payments_per_year": 4,
            "issue_date": "2025-01-01",
            "maturity_date": "2029-01-01",
            "seniority": 1,
            "amortization": "annuity",
            "collateral": {"crypto": ["ETH"]},
            "market_spread_bps": 600,
        },
        {
            "name": "Hash Converts",
            "kind": "convertible",
            "principal": 1.5e8,
            "rate_type": "fixed",
            "coupon": 0.03,
            "payments_per_year": 2,
            "issue_date": "2024-06-01",
            "maturity_date": "2027-06-01",
            "seniority": 2,
            "conversion_price": 10,
            "market_spread_bps": 800,
        },
    ],
}
"""A leveraged miner added to the small scenario, so that its two years see defaults of every
kind: a crypto- and fleet-secured facility that can refinance, an annuity loan on pledged ETH, a
junior convertible maturing inside the horizon."""


def stressed_borrowers() -> list[dict[str, Any]]:
    """The small scenario's neocloud, thinner in cash and more indebted, plus MINER."""
    neo = copy.deepcopy(SMALL["borrowers"][0])
    neo["cash"], neo["debt"][0]["principal"] = 2.0e8, 5.0e8
    return [neo, copy.deepcopy(MINER)]


GENERATED = "-DGPUSIM_GENERATED_CONFIG"
"""Builds with the generated gpusim_config.cuh (kernels/config.cuh), as the cupy backend does."""


def _cxx() -> str | None:
    return shutil.which("g++") or shutil.which("c++")


def _write_config(spec: RunSpec, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gpusim_config.cuh").write_text(kernel_config.config_header(spec))
    return directory


class HostModel:
    """The host build of the kernels for one spec: run chunks and the floor kernel on numpy buffers."""

    def __init__(self, spec: RunSpec, build_dir: Path):
        cxx = _cxx()
        if cxx is None:
            pytest.skip("no C++ compiler (g++ or c++) on PATH: host checks of the fused kernels not run")
        config = _write_config(spec, build_dir)
        library = build_dir / "libmodel_host.so"
        cmd = [cxx, "-O2", "-std=c++17", "-Wall", "-Wextra", "-shared", "-fPIC", GENERATED, "-I", str(config), "-I", str(KERNELS)]
        done = subprocess.run([*cmd, str(DRIVER), "-o", str(library)], capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
        assert not done.stderr.strip(), f"host build of the kernels has compiler warnings:\n{done.stderr}"
        self.spec = spec
        self.lib = ctypes.CDLL(str(library))
        assert self.lib.host_real_size() == np.dtype(spec.dtype).itemsize

    def for_spec(self, spec: RunSpec) -> HostModel:
        """The same compiled kernels for another spec of the same shape (only parameters differ)."""
        assert kernel_config.config_header(spec) == kernel_config.config_header(self.spec), "a different shape needs its own build"
        other = object.__new__(HostModel)
        other.spec, other.lib = spec, self.lib
        return other

    @staticmethod
    def _ptr(array: np.ndarray) -> ctypes.c_void_p:
        return array.ctypes.data_as(ctypes.c_void_p)

    def launch(self, market: MarketParams, seed: int, path_start: int, n_paths: int, n_saved: int, record: bool, blocks: int) -> Buffers:
        prm = kernel_config.pack_params(self.spec, market, np.dtype(self.spec.dtype))
        buffers = kernel_config.allocate_buffers(self.spec, n_paths, n_saved, record, np)
        self.lib.host_simulate_paths(
            ctypes.c_uint(blocks),
            ctypes.c_ulonglong(seed),
            ctypes.c_ulonglong(path_start),
            ctypes.c_int(n_paths),
            ctypes.c_int(n_saved),
            ctypes.c_int(int(record)),
            self._ptr(prm),
            *(self._ptr(a) for a in buffers.kernel_args()),
        )
        return buffers

    def run_chunk(self, seed: int, path_start: int, n_paths: int, save_paths: int, blocks: int = 3) -> ChunkResult:
        """What CupyBackend.run_chunk computes, on the host: the recorded launch, then the
        attribution launch with the fire-sale chain off."""
        spec = self.spec
        n_saved = kernel_config.saved_count(path_start, n_paths, save_paths)
        recorded = self.launch(spec.market, seed, path_start, n_paths, n_saved, True, blocks)
        off = self.launch(without_contagion(spec.market), seed, path_start, n_paths, 0, False, blocks) if spec.attribution else None
        return kernel_config.chunk_from_buffers(spec, path_start, n_paths, recorded, off)

    def floor_sums(self, seed: int, path_start: int, n_paths: int, blocks: int = 2) -> np.ndarray:
        sums = np.zeros(n_paths, dtype=np.dtype(self.spec.dtype))
        self.lib.host_sum_draws(
            ctypes.c_uint(blocks), ctypes.c_ulonglong(seed), ctypes.c_ulonglong(path_start), ctypes.c_int(n_paths), self._ptr(sums)
        )
        return sums


def _small_spec(dtype: DType, **changes: object) -> RunSpec:
    """The small scenario with the stressed borrowers unless `changes` says otherwise."""
    mapping = small_mapping(**{"borrowers": stressed_borrowers(), **changes})
    return build_spec(validate_mapping(mapping, "small"), dtype)


@pytest.fixture(scope="module")
def small64(tmp_path_factory: pytest.TempPathFactory) -> HostModel:
    return HostModel(_small_spec("float64"), tmp_path_factory.mktemp("small64"))


@pytest.fixture(scope="module")
def small32(tmp_path_factory: pytest.TempPathFactory) -> HostModel:
    return HostModel(_small_spec("float32"), tmp_path_factory.mktemp("small32"))


@pytest.fixture(scope="module")
def baseline32(tmp_path_factory: pytest.TempPathFactory) -> HostModel:
    return HostModel(build_spec(load_scenario(ROOT / "configs" / "baseline.yaml"), "float32"), tmp_path_factory.mktemp("baseline32"))


@pytest.fixture(scope="module")
def baseline64(tmp_path_factory: pytest.TempPathFactory) -> HostModel:
    return HostModel(build_spec(load_scenario(ROOT / "configs" / "baseline.yaml"), "float64"), tmp_path_factory.mktemp("baseline64"))


# --- comparisons ----------------------------------------------------------------------------------


def _assert_factor_paths(got: ChunkResult, ref: ChunkResult, rtol: float) -> None:
    assert set(got.saved) == set(ref.saved)
    for name, expected in ref.saved.items():
        actual = got.saved[name]
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
        if name == "regime":
            np.testing.assert_array_equal(actual, expected)
        else:
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0, err_msg=name)


def _assert_fans(got: ChunkResult, ref: ChunkResult, max_moved: float) -> None:
    """Fan histograms: every count present, at most a share `max_moved` of them in another bin."""
    np.testing.assert_array_equal(got.tight_count, ref.tight_count)
    assert set(got.fan_counts) == set(ref.fan_counts)
    for name, expected in ref.fan_counts.items():
        actual = got.fan_counts[name]
        assert actual.shape == expected.shape and actual.dtype == np.int64, name
        np.testing.assert_array_equal(actual.sum(axis=-1), expected.sum(axis=-1), err_msg=name)
        moved = np.abs(actual - expected).sum() / 2
        assert moved <= max_moved * expected.sum(), f"{name}: {moved} of {expected.sum()} counts in another bin"


def _assert_outcomes(got: CreditOutcomes | None, ref: CreditOutcomes | None, same_share: float, rtol: float) -> None:
    assert got is not None and ref is not None
    for field in CreditOutcomes._fields:
        assert getattr(got, field).shape == getattr(ref, field).shape, field
        assert getattr(got, field).dtype == getattr(ref, field).dtype, field
    same_path = np.all(got.default_step == ref.default_step, axis=1)
    assert same_path.mean() >= same_share, f"default steps identical on {same_path.mean():.4%} of paths"
    assert np.any(ref.default_step >= 0), "the comparison needs some defaults"
    np.testing.assert_array_equal(got.default_reason[same_path], ref.default_reason[same_path])
    for field in ("loss", "exposure", "risky_annuity", "portfolio_loss_nominal"):
        actual, expected = getattr(got, field)[same_path], getattr(ref, field)[same_path]
        scale = max(float(np.max(np.abs(expected))), 1.0)
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=field)


def _compare(model: HostModel, n_paths: int, path_start: int, save_paths: int, tolerances: tuple[float, float, float, float]) -> None:
    rtol_paths, same_share, rtol_money, max_moved = tolerances
    spec = model.spec
    got = model.run_chunk(SEED, path_start, n_paths, save_paths)
    ref = simulate_chunk(spec, SEED, path_start, n_paths, save_paths, xnp)
    _assert_factor_paths(got, ref, rtol_paths)
    _assert_fans(got, ref, max_moved)
    _assert_outcomes(got.outcomes, ref.outcomes, same_share, rtol_money)
    _assert_outcomes(got.outcomes_without_chain, ref.outcomes_without_chain, same_share, rtol_money)


FLOAT64 = (1e-12, 0.9999, 1e-9, 1e-4)
FLOAT32 = (1e-5, 0.999, 1e-4, 2e-3)


# --- the model, path by path ----------------------------------------------------------------------


def test_small_float64_matches_numpy(small64: HostModel) -> None:
    # a chunk that starts inside the saved range: paths 5..24 saved, the rest not
    _compare(small64, n_paths=400, path_start=5, save_paths=25, tolerances=FLOAT64)


def test_small_float32_matches_numpy(small32: HostModel) -> None:
    _compare(small32, n_paths=1500, path_start=2**32 - 700, save_paths=0, tolerances=FLOAT32)


def test_baseline_float64_matches_numpy(baseline64: HostModel) -> None:
    _compare(baseline64, n_paths=200, path_start=0, save_paths=10, tolerances=FLOAT64)


def test_baseline_float32_matches_numpy(baseline32: HostModel) -> None:
    _compare(baseline32, n_paths=300, path_start=1000, save_paths=1010, tolerances=FLOAT32)


def test_weekly_steps_float64_match_numpy(tmp_path: Path) -> None:
    """Another shape: 52 steps a year, so a 52-step DSCR window and 104 steps."""
    spec = _small_spec("float64", time={"start": "2026-01-01", "steps_per_year": 52, "n_steps": 104})
    _compare(HostModel(spec, tmp_path), n_paths=120, path_start=0, save_paths=5, tolerances=FLOAT64)


def test_defaulted_counts_in_global_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small64: HostModel) -> None:
    """Where the per-block counters of defaulted borrowers do not fit in shared memory, the
    kernel counts them in the global histogram, with the same result."""
    assert "DEFAULTED_IN_SHARED = true" in kernel_config.config_header(small64.spec)
    monkeypatch.setattr(kernel_config, "SHARED_COUNTER_BYTES", 0)
    spec = _small_spec("float64")
    assert "DEFAULTED_IN_SHARED = false" in kernel_config.config_header(spec)
    _compare(HostModel(spec, tmp_path), n_paths=200, path_start=0, save_paths=0, tolerances=FLOAT64)


def test_without_contagion_runs_one_pass(small64: HostModel) -> None:
    """`--no-contagion`: the chain off in the recorded pass, and no attribution pass."""
    spec = build_spec(validate_mapping(small_mapping(borrowers=stressed_borrowers()), "small"), "float64", contagion=False)
    model = small64.for_spec(spec)
    got, ref = model.run_chunk(SEED, 0, 300, 0), simulate_chunk(spec, SEED, 0, 300, 0, xnp)
    assert got.outcomes_without_chain is None and ref.outcomes_without_chain is None
    _assert_outcomes(got.outcomes, ref.outcomes, 0.9999, 1e-9)
    with_chain = small64.run_chunk(SEED, 0, 300, 0)
    assert with_chain.outcomes_without_chain is not None and got.outcomes is not None
    np.testing.assert_array_equal(got.outcomes.loss, with_chain.outcomes_without_chain.loss)


def test_fire_sale_chain_changes_outcomes(small64: HostModel) -> None:
    """The attribution launch really runs with the chain off: marks differ once fleets are dumped."""
    got = small64.run_chunk(SEED, 0, 400, 0)
    assert got.outcomes is not None and got.outcomes_without_chain is not None
    assert not np.array_equal(got.outcomes.loss, got.outcomes_without_chain.loss)


def test_chunking_and_launch_shape_do_not_matter(small32: HostModel) -> None:
    """Two chunks on different grids give the same paths as one chunk (grid-stride loop,
    block-shared regime counts flushed per block)."""
    whole = small32.run_chunk(SEED, 0, 300, 40, blocks=1)
    first, second = small32.run_chunk(SEED, 0, 170, 40, blocks=4), small32.run_chunk(SEED, 170, 130, 40, blocks=7)
    assert whole.outcomes is not None and first.outcomes is not None and second.outcomes is not None
    for field in CreditOutcomes._fields:
        joined = np.concatenate([getattr(first.outcomes, field), getattr(second.outcomes, field)])
        np.testing.assert_array_equal(joined, getattr(whole.outcomes, field), err_msg=field)
    np.testing.assert_array_equal(first.tight_count + second.tight_count, whole.tight_count)
    for name, counts in whole.fan_counts.items():
        np.testing.assert_array_equal(first.fan_counts[name] + second.fan_counts[name], counts, err_msg=name)
    np.testing.assert_array_equal(first.saved["crypto"], whole.saved["crypto"])
    assert second.saved["crypto"].shape[0] == 0


def test_scenario_without_borrowers(tmp_path: Path) -> None:
    """Factors only: the kernel compiles without the credit model and matches numpy."""
    model = HostModel(_small_spec("float64", borrowers=[]), tmp_path)
    got = model.run_chunk(SEED, 3, 200, 50)
    ref = simulate_chunk(model.spec, SEED, 3, 200, 50, xnp)
    assert got.outcomes is None and ref.outcomes is None
    _assert_factor_paths(got, ref, 1e-12)
    _assert_fans(got, ref, 0.0)


def test_one_kernel_per_shape_and_dtype() -> None:
    """The generated header (the compile key) depends on shape and dtype, not on the numbers or the name."""
    borrowers = stressed_borrowers()
    borrowers[0]["cash"] *= 2
    other = build_spec(validate_mapping(small_mapping(name="other", borrowers=borrowers), "other"), "float64")
    assert kernel_config.config_header(other) == kernel_config.config_header(_small_spec("float64"))
    assert kernel_config.config_header(_small_spec("float32")) != kernel_config.config_header(_small_spec("float64"))


# --- the floor kernel -----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["small64", "small32"])
def test_floor_draws_the_model_random_numbers(fixture: str, request: pytest.FixtureRequest) -> None:
    """draws_only.cu sums exactly the draws that the model's draw_step produces."""
    model: HostModel = request.getfixturevalue(fixture)
    spec, n_paths, path_start = model.spec, 300, 2**32 - 100
    dtype = getattr(xnp, spec.dtype)
    expected = np.zeros(n_paths)
    for k in range(spec.layout.n_steps):
        for value in draw_step(SEED, path_start, n_paths, k, spec.layout, dtype, xnp):
            value = np.asarray(value, dtype=np.float64)
            expected += value if value.ndim == 1 else value.sum(axis=0)
    got = model.floor_sums(SEED, path_start, n_paths).astype(np.float64)
    rtol = 1e-12 if spec.dtype == "float64" else 1e-4
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale * 10)


# --- the device build -----------------------------------------------------------------------------


PTX_SPECS = {
    "small-float64": lambda: _small_spec("float64"),
    "bench-float32": lambda: build_spec(load_scenario(ROOT / "configs" / "bench.yaml"), "float32"),
    "no-borrowers-float32": lambda: _small_spec("float32", borrowers=[]),
}


@pytest.mark.parametrize("name", sorted(PTX_SPECS))
def test_kernels_compile_to_ptx(name: str, tmp_path: Path) -> None:
    """simulate.cu and draws_only.cu as the cupy backend compiles them (one unit, generated header)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: the fused kernels are not compile-checked for the GPU")
    config = _write_config(PTX_SPECS[name](), tmp_path)
    unit = tmp_path / "module.cu"
    unit.write_text('#include "simulate.cu"\n#include "draws_only.cu"\n')
    cmd = [
        nvcc,
        "-ptx",
        "-arch=sm_90",
        "-std=c++17",
        GENERATED,
        "-I",
        str(config),
        "-I",
        str(KERNELS),
        str(unit),
        "-o",
        str(tmp_path / "module.ptx"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    ptx = (tmp_path / "module.ptx").read_text()
    assert ".entry simulate_paths" in ptx and ".entry sum_draws" in ptx
