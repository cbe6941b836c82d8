"""Host checks of the fused CUDA kernels (kernels/simulate.cu, kernels/draws_only.cu) beyond agreement
with numpy.

The kernel sources compile as plain C++ (through kernels/host_shim.h) into a shared library with
the generated header of gpusim.backends.kernel_config, exactly as the cupy backend compiles them
for the GPU (tests/helpers.py: HostModel). Their agreement with the numpy backend, path by path
on every case, is tests/test_backend_agreement.py (variant host-kernels); here: counters in
global memory, one pass without the fire-sale chain, chunking and launch shape, the compile key,
the floor kernel, and the device build with nvcc -ptx where nvcc exists. Needs a C++ compiler,
not a GPU.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from helpers import (
    COMPILE_TIMEOUT_S,
    GENERATED,
    KERNELS,
    HostModel,
    assert_agrees_with_numpy,
    shipped_spec,
    small_spec_for,
    stressed_borrowers,
    write_kernel_config,
)

from gpusim.backends import kernel_config
from gpusim.backends.array_model import simulate_chunk
from gpusim.model.market import draw_step
from gpusim.spec import CreditOutcomes

SEED = 20261126


@pytest.fixture(scope="module")
def small64(tmp_path_factory: pytest.TempPathFactory) -> HostModel:
    return HostModel(small_spec_for("float64", stressed=True), tmp_path_factory.mktemp("small64"))


@pytest.fixture(scope="module")
def small32(tmp_path_factory: pytest.TempPathFactory) -> HostModel:
    return HostModel(small_spec_for("float32", stressed=True), tmp_path_factory.mktemp("small32"))


def test_defaulted_counts_in_global_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small64: HostModel) -> None:
    """Where the per-block counters of defaulted borrowers do not fit in shared memory, the
    kernel counts them in the global histogram, with the same result."""
    assert "DEFAULTED_IN_SHARED = true" in kernel_config.config_header(small64.spec)
    monkeypatch.setattr(kernel_config, "SHARED_COUNTER_BYTES", 0)
    spec = small_spec_for("float64", stressed=True)
    assert "DEFAULTED_IN_SHARED = false" in kernel_config.config_header(spec)
    got = HostModel(spec, tmp_path).run_chunk(SEED, 0, 200, 0)
    assert_agrees_with_numpy(got, simulate_chunk(spec, SEED, 0, 200, 0, xnp), "host-kernels", "float64")


def test_without_contagion_runs_one_pass(small64: HostModel) -> None:
    """`--no-contagion`: the chain off in the recorded pass, and no attribution pass; its
    outcomes are the attribution pass of a run with the chain on."""
    spec = small_spec_for("float64", stressed=True, contagion=False)
    got = small64.for_spec(spec).run_chunk(SEED, 0, 300, 0)
    assert got.outcomes_without_chain is None and got.outcomes is not None
    with_chain = small64.run_chunk(SEED, 0, 300, 0)
    assert with_chain.outcomes_without_chain is not None
    np.testing.assert_array_equal(got.outcomes.loss, with_chain.outcomes_without_chain.loss)


def test_fire_sale_chain_changes_outcomes(small64: HostModel) -> None:
    """The attribution launch really runs with the chain off: with both borrowers on one GPU
    generation, one's fire sale depresses the other's marks and recoveries only with the chain on;
    the launch agrees with numpy's attribution pass."""
    borrowers = stressed_borrowers()
    borrowers[0]["fleets"].append({**borrowers[1]["fleets"][0], "count": 6000})  # the miner's B200s, unpledged
    spec = small_spec_for("float64", name="shared", borrowers=borrowers)
    got = small64.for_spec(spec).run_chunk(SEED, 0, 400, 0)
    assert got.outcomes is not None and got.outcomes_without_chain is not None
    assert not np.array_equal(got.outcomes.loss, got.outcomes_without_chain.loss)
    assert_agrees_with_numpy(got, simulate_chunk(spec, SEED, 0, 400, 0, xnp), "host-kernels", "float64")


def test_covenant_remedies_agree_with_numpy(small64: HostModel) -> None:
    """Waivers, equity cures, margin step-ups and cash sweeps (an instrument with all four, one
    with a sweep only) in the kernels agree with numpy path by path, and change the outcomes."""
    borrowers = stressed_borrowers()
    borrowers[0]["debt"][0]["covenants"].update(waiver_fee=0.02, equity_cures=1, breach_step_up=0.03, cash_sweep_floor=5.0e7)
    borrowers[1]["debt"][0]["covenants"].update(cash_sweep_floor=1.0e6, breach_step_up=0.01)
    spec = small_spec_for("float64", name="remedies", borrowers=borrowers)
    got = small64.for_spec(spec).run_chunk(SEED, 0, 400, 0)
    assert_agrees_with_numpy(got, simulate_chunk(spec, SEED, 0, 400, 0, xnp), "host-kernels", "float64")
    plain = small64.run_chunk(SEED, 0, 400, 0)
    assert got.outcomes is not None and plain.outcomes is not None
    assert not np.array_equal(got.outcomes.default_step, plain.outcomes.default_step)


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


def test_one_kernel_per_shape_and_dtype() -> None:
    """The generated header (the compile key) depends on shape and dtype, not on the numbers or the name."""
    stressed = small_spec_for("float64", stressed=True)
    borrowers = stressed_borrowers()
    borrowers[0]["cash"] *= 2
    other = small_spec_for("float64", name="other", borrowers=borrowers)
    assert kernel_config.config_header(other) == kernel_config.config_header(stressed)
    assert kernel_config.config_header(small_spec_for("float32", stressed=True)) != kernel_config.config_header(stressed)


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
    "small-float64": lambda: small_spec_for("float64", stressed=True),
    "bench-float32": lambda: shipped_spec("bench", "float32"),
    "no-borrowers-float32": lambda: small_spec_for("float32", borrowers=[]),
}


@pytest.mark.parametrize("name", sorted(PTX_SPECS))
def test_kernels_compile_to_ptx(name: str, tmp_path: Path) -> None:
    """simulate.cu and draws_only.cu as the cupy backend compiles them (one unit, generated header)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: the fused kernels are not compile-checked for the GPU")
    config = write_kernel_config(PTX_SPECS[name](), tmp_path)
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
