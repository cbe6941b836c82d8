"""What the tests share: the small scenario, specs of it and of the shipped configs, and the host
build of the fused CUDA kernels (run through ctypes), so that no test module builds them its own way."""

from __future__ import annotations

import copy
import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpusim.backends import kernel_config
from gpusim.backends.agreement import compare_chunks, tolerance
from gpusim.backends.kernel_config import KernelBuffers
from gpusim.model.params import MarketParams, without_contagion
from gpusim.scenario import load_scenario, validate_mapping
from gpusim.spec import ChunkResult, DType, RunSpec, build_spec

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"

SMALL: dict[str, Any] = {
    "name": "small",
    "time": {"start": "2026-01-01", "steps_per_year": 12, "n_steps": 24},
    "regime": {"initial": "easy", "p_easy_to_tight": 0.03, "p_tight_to_easy": 0.10},
    "crypto": {
        "assets": [
            {
                "name": "BTC",
                "spot": 90000.0,
                "drift": {"easy": 0.15, "tight": -0.20},
                "vol": {"easy": 0.50, "tight": 0.85},
                "jump_rate": {"easy": 15.0, "tight": 25.0},
                "jump_mean": {"easy": -0.01, "tight": -0.07},
                "jump_std": {"easy": 0.135, "tight": 0.15},
                "sale_slippage": {"easy": 0.01, "tight": 0.05},
            },
            {
                "name": "ETH",
                "spot": 3000.0,
                "drift": 0.10,
                "vol": {"easy": 0.70, "tight": 1.0},
                "jump_rate": 10.0,
                "jump_mean": -0.02,
                "jump_std": 0.15,
                "sale_slippage": 0.02,
            },
        ],
        "correlation": {"easy": [[1.0, 0.7], [0.7, 1.0]], "tight": [[1.0, 0.85], [0.85, 1.0]]},
    },
    "compute": {
        "generations": [
            {
                "name": "H100",
                "release": "2023-03-01",
                "rental_rate": 2.2,
                "kw_per_gpu": 1.3,
                "economic_life_years": 6.0,
                "scrap_value": 500.0,
                "new_price": 30000.0,
                "market_depth": {"easy": 20000, "tight": 5000},
                "exogenous_distressed_supply": {"easy": 500, "tight": 3000},
            },
            {
                "name": "B200",
                "release": "2025-01-01",
                "rental_rate": 3.2,
                "kw_per_gpu": 1.7,
                "economic_life_years": 6.0,
                "scrap_value": 800.0,
                "new_price": 47000.0,
                "market_depth": {"easy": 10000, "tight": 2500},
                "exogenous_distressed_supply": {"easy": 200, "tight": 1500},
            },
        ],
        "deflation": {"easy": 0.25, "tight": 0.40},
        "shock": {"mean_reversion": 1.5, "vol": 0.30, "corr_btc": {"easy": 0.2, "tight": 0.6}},
        "utilization": {"max": 0.95, "level": {"easy": 2.0, "tight": 1.0}, "sensitivity": 2.0},
        "obsolescence": {
            "drop": 0.10,
            "curvature": 1.5,
            "random_launch_rate": 0.2,
            "launches": [{"name": "Rubin", "date": "2026-09-01"}, {"name": "Feynman", "date": "2028-06-01"}],
        },
        "valuation": {"expected_deflation": 0.25, "discount_yield": {"easy": 0.12, "tight": 0.18}, "pue": 1.3},
    },
    "power": {"price": 0.07, "long_run": 0.07, "mean_reversion": 1.0, "vol": 0.2},
    "secondary_market": {
        "integration_discount": 0.3,
        "price_impact": {"easy": 0.5, "tight": 1.5},
        "mark_impact": 0.5,
        "memory_years": 0.25,
    },
    "mining": {"hashprice": 45.0, "difficulty_growth": 0.3, "halvings": ["2028-04-15"]},
    "rates": {"base_curve": [{"years": 0, "rate": 0.043}, {"years": 5, "rate": 0.04}]},
    "recovery": {"workout_cost": 0.05},
    "borrowers": [
        {
            "name": "Neo",
            "type": "neocloud",
            "cash": 2.0e8,
            "fixed_opex_per_month": 5.0e6,
            "pue": 1.3,
            "revenue_shock": {"vol": 0.2, "mean_reversion": 2.0},
            "fleets": [
                {
                    "generation": "H100",
                    "count": 20000,
                    "purchase_date": "2024-06-01",
                    "purchase_price": 30000.0,
                    "contracted_share": 0.7,
                    "contract_rate": 2.4,
                    "contract_expiry": "2028-06-01",
                }
            ],
            "debt": [
                {
                    "name": "Neo-DDTL",
                    "kind": "term_loan",
                    "principal": 4.0e8,
                    "amortization": "level_principal",
                    "rate_type": "floating",
                    "coupon": 0.065,
                    "issue_date": "2024-06-01",
                    "maturity_date": "2029-06-01",
                    "collateral": {"fleets": ["H100"]},
                    "covenants": {"dscr_min": 1.2, "ltv_max": 0.8},
                    "market_spread_bps": 650,
                }
            ],
        }
    ],
}


def small_mapping(**changes: Any) -> dict[str, Any]:
    """A deep copy of SMALL with top-level sections replaced or merged."""
    data = copy.deepcopy(SMALL)
    for key, value in changes.items():
        data[key] = value
    return data


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


def token_note(name: str) -> dict[str, Any]:
    """A USD 1 zero-coupon bond due in 2040: a borrower must owe something to be simulated, and this
    debt never bites, so a test sees the borrower's cash flows alone."""
    return {
        "name": name,
        "kind": "bond",
        "principal": 1.0,
        "rate_type": "fixed",
        "coupon": 0.0,
        "issue_date": "2025-01-01",
        "maturity_date": "2040-01-01",
        "market_spread_bps": 0,
    }


def stressed_borrowers() -> list[dict[str, Any]]:
    """The small scenario's neocloud, thinner in cash and more indebted, plus MINER."""
    neo = copy.deepcopy(SMALL["borrowers"][0])
    neo["cash"], neo["debt"][0]["principal"] = 2.0e8, 5.0e8
    return [neo, copy.deepcopy(MINER)]


def small_spec_for(dtype: DType, stressed: bool = False, contagion: bool = True, **changes: Any) -> RunSpec:
    """The small scenario (with the stressed borrowers where asked), sections replaced by `changes`."""
    if stressed:
        changes = {"borrowers": stressed_borrowers(), **changes}
    return build_spec(validate_mapping(small_mapping(**changes), "small"), dtype, contagion=contagion)


def shipped_spec(config: str, dtype: DType, contagion: bool = True) -> RunSpec:
    """A spec of one of the shipped configs/ (by file name without .yaml)."""
    return build_spec(load_scenario(ROOT / "configs" / f"{config}.yaml"), dtype, contagion=contagion)


def assert_agrees_with_numpy(got: ChunkResult, reference: ChunkResult, backend: str, dtype: DType) -> None:
    """`got` within `backend`'s tolerance (gpusim.backends.agreement) of numpy's chunk of the same paths."""
    agreement = compare_chunks("numpy", got, reference, tolerance(backend, dtype))
    assert agreement.ok, f"{backend} disagrees with numpy: " + "; ".join(agreement.problems)


# --- the host build of the fused kernels ----------------------------------------------------------

HOST_DRIVER = ROOT / "tests" / "host" / "model_host.cpp"
"""The C++ unit that includes the kernel sources through kernels/host_shim.h and exports them to ctypes."""

GENERATED = "-DGPUSIM_GENERATED_CONFIG"
"""Builds with the generated gpusim_config.cuh (kernels/config.cuh), as the cupy backend does."""

COMPILE_TIMEOUT_S = 300


def host_compiler() -> str | None:
    return shutil.which("g++") or shutil.which("c++")


def write_kernel_config(spec: RunSpec, directory: Path) -> Path:
    """The generated header of `spec` in `directory` (the folder to put on the include path)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gpusim_config.cuh").write_text(kernel_config.config_header(spec))
    return directory


def build_host_library(spec: RunSpec, build_dir: Path) -> Path:
    """Compile the kernel sources as host C++ for `spec`'s shape into a shared library; skips the
    test where there is no C++ compiler, fails it on a compiler error or warning."""
    cxx = host_compiler()
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or c++) on PATH: host checks of the fused kernels not run")
    config = write_kernel_config(spec, build_dir)
    library = build_dir / "libmodel_host.so"
    cmd = [
        cxx,
        "-O2",
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-shared",
        "-fPIC",
        "-fvisibility=hidden",
        GENERATED,
        "-I",
        str(config),
        "-I",
        str(KERNELS),
    ]
    done = subprocess.run([*cmd, str(HOST_DRIVER), "-o", str(library)], capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    assert not done.stderr.strip(), f"host build of the kernels has compiler warnings:\n{done.stderr}"
    return library


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    return array.ctypes.data_as(ctypes.c_void_p)


class HostModel:
    """The host build of the kernels for one spec: run chunks and the floor kernel on numpy buffers."""

    def __init__(self, spec: RunSpec, build_dir: Path):
        self.spec = spec
        self.lib = ctypes.CDLL(str(build_host_library(spec, build_dir)))
        assert self.lib.host_real_size() == np.dtype(spec.dtype).itemsize

    def for_spec(self, spec: RunSpec) -> HostModel:
        """The same compiled kernels for another spec of the same shape (only parameters differ)."""
        assert kernel_config.config_header(spec) == kernel_config.config_header(self.spec), "a different shape needs its own build"
        other = object.__new__(HostModel)
        other.spec, other.lib = spec, self.lib
        return other

    def launch(
        self, market: MarketParams, seed: int, path_start: int, n_paths: int, n_saved: int, record: bool, blocks: int
    ) -> KernelBuffers:
        prm = kernel_config.pack_params(self.spec, market, np.dtype(self.spec.dtype))
        buffers = kernel_config.allocate_buffers(self.spec, n_paths, n_saved, record, np)
        self.lib.host_simulate_paths(
            ctypes.c_uint(blocks),
            ctypes.c_ulonglong(seed),
            ctypes.c_ulonglong(path_start),
            ctypes.c_int(n_paths),
            ctypes.c_int(n_saved),
            ctypes.c_int(int(record)),
            _pointer(prm),
            *(_pointer(a) for a in buffers.kernel_args()),
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
            ctypes.c_uint(blocks), ctypes.c_ulonglong(seed), ctypes.c_ulonglong(path_start), ctypes.c_int(n_paths), _pointer(sums)
        )
        return sums


class HostKernelBackend:
    """The host build as a backend: `run_chunk(spec, ...)` like the others, one build per
    generated header (the compile key: shape and dtype), kept for the session."""

    name = "host-kernels"
    device = "cpu (kernels/ compiled as host C++)"

    def __init__(self, build_root: Path) -> None:
        self.build_root = build_root
        self.models: dict[str, HostModel] = {}

    def model(self, spec: RunSpec) -> HostModel:
        header = kernel_config.config_header(spec)
        if header not in self.models:
            self.models[header] = HostModel(spec, self.build_root / f"build{len(self.models)}")
        return self.models[header].for_spec(spec)

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        return self.model(spec).run_chunk(seed, path_start, n_paths, save_paths)


def small_shocks(scale: float = 1.0) -> list[dict[str, Any]]:
    """Dated shock paths on every kind of factor of the small scenario (its 24 monthly steps from
    2026-01-01): a crash and a yearly decline of BTC, an ETH shock already at t_0, a rent shock of
    one generation and one of all, utilization on its logit, power, the secondary market's depth.
    `scale` 0 gives the same shocks with every change 0."""
    return [
        {
            "factor": "BTC",
            "points": [{"date": "2026-07-01", "level_change": -0.55 * scale}],
            "rates": [{"from": "2026-07-01", "to": "2027-07-01", "annual_rate": -0.30 * scale}],
        },
        {
            "factor": "ETH",
            "points": [{"date": "2026-01-01", "log_change": -0.4 * scale}, {"date": "2026-04-01", "log_change": 0.2 * scale}],
        },
        {"factor": "rental_rate", "generation": "B200", "points": [{"date": "2026-10-01", "level_change": -0.35 * scale}]},
        {"factor": "rental_rate", "rates": [{"from": "2026-03-01", "to": "2027-03-01", "annual_rate": -0.20 * scale}]},
        {"factor": "utilization", "points": [{"date": "2026-06-01", "log_change": -1.5 * scale}]},
        {"factor": "power_price", "points": [{"date": "2026-05-01", "level_change": 0.8 * scale}]},
        {"factor": "market_depth", "generation": "B200", "points": [{"date": "2026-04-01", "level_change": -0.9 * scale}]},
        {"factor": "market_depth", "rates": [{"from": "2026-01-01", "to": "2028-01-01", "annual_rate": -0.5 * scale}]},
    ]
