"""Every backend against the numpy reference, path by path, with one test body and one tolerance
table (gpusim.backends.agreement): same seed, same path indices, every number a chunk holds.

Backends: JAX under jit, JAX with the Pallas market kernel (interpreted on a CPU), the array
model on cupy, the fused CUDA kernels on cupy, and the same kernels compiled as host C++ and
run through ctypes, on one thread (host-kernels) or OpenMP threads (native). One that cannot
run here is skipped with the reason; the GPU ones are marked `gpu` (pytest.mark.gpu, and JAX
where it sees a GPU), so `pytest -m gpu` runs them.
Cases: the small scenario as shipped in the tests and with stressed borrowers (defaults of every
kind), with dated shock paths, with dated capex and market access, weekly steps, the fire-sale chain
off, no borrowers, and configs/baseline.yaml, each
in float64 and float32 where the old per-backend tests ran it. JAX compiles a whole chunk per
spec (15-40 s on a CPU, longer when Pallas interprets), so it runs the cases listed in
`JAX_CASES`; the host build and the GPU backends run them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import HostKernelBackend, assert_agrees_with_numpy, host_compiler, shipped_spec, small_shocks, small_spec_for
from test_capex import capex_spec
from test_collateral import collateral_spec

from gpusim.backends import Backend, get_backend, gpu_unavailable_reason
from gpusim.backends.agreement import (
    TOLERANCES,
    backend_key,
    compare_chunks,
    first_paths,
    loosest,
    relative_difference,
    tolerance,
)
from gpusim.backends.native_backend import NativeBackend
from gpusim.spec import ChunkResult, CreditOutcomes, DType, RunSpec

SEED = 20261126
WEEKLY = {"start": "2026-01-01", "steps_per_year": 52, "n_steps": 104}


@dataclass(frozen=True)
class Case:
    """A spec and the paths of one chunk: where it starts (past 2**32 exercises the 64-bit path
    index) and how many of the run's first paths are saved."""

    spec: Callable[[DType], RunSpec]
    dtypes: tuple[DType, ...]
    n_paths: int
    path_start: int = 0
    save_paths: int = 0
    seed: int = SEED


CASES: dict[str, Case] = {
    "small": Case(small_spec_for, ("float64", "float32"), n_paths=3000, save_paths=3000, seed=11),
    # a chunk that starts past 2**32 paths, inside the saved range (its first 25 paths saved)
    "small-stressed": Case(
        lambda d: small_spec_for(d, stressed=True), ("float64", "float32"), 1500, path_start=2**32 - 700, save_paths=2**32 - 675
    ),
    "small-weekly": Case(lambda d: small_spec_for(d, stressed=True, time=WEEKLY), ("float64",), 120, save_paths=5),
    "small-no-contagion": Case(lambda d: small_spec_for(d, stressed=True, contagion=False), ("float64",), 300),
    # data centres pledged and unpledged, distributions with lock-ups (tests/test_collateral.py)
    "small-collateral": Case(collateral_spec, ("float64", "float32"), 600, path_start=5, save_paths=20),
    # dated shock paths on every kind of factor (docs/model.md 4.13)
    "small-shocked": Case(lambda d: small_spec_for(d, stressed=True, shocks=small_shocks()), ("float64",), 600, save_paths=600),
    # dated capex (at the mark, on a facility, by ATM equity, committed or not), market access, converts rolled, later tenants
    "small-capex": Case(capex_spec, ("float64", "float32"), 400, save_paths=50),
    "small-no-borrowers": Case(lambda d: small_spec_for(d, borrowers=[]), ("float64",), 200, path_start=3, save_paths=50),
    "baseline": Case(lambda d: shipped_spec("baseline", d), ("float64", "float32"), 600, path_start=2**32 - 300, save_paths=2**32 - 250),
    # enough paths for the expected loss's standard error to mean something: GPU backends only
    "baseline-large": Case(lambda d: shipped_spec("baseline", d), ("float32",), 20_000, path_start=100, save_paths=500),
}
CPU_CASES = tuple(name for name in CASES if name != "baseline-large")


def _jax_platform() -> tuple[str | None, str | None]:
    """The platform JAX computes on, or None and why JAX cannot run here."""
    try:
        import jax
    except ImportError as exc:
        return None, f"jax is not installed ({exc}); install it with: pip install 'gpusim[jax]'"
    return jax.devices()[0].platform, None


JAX_PLATFORM, JAX_REASON = _jax_platform()
JAX_ON_GPU = JAX_PLATFORM not in (None, "cpu")
JAX_CASES = ("small", "small-shocked", "small-capex", "baseline", "baseline-large") if JAX_ON_GPU else (
    "small",
    "small-shocked",
    "small-capex",
    "baseline",
)
PALLAS_INTERPRETED_PATHS = 300
"""Pallas interprets its kernel on a CPU, block by block: the small scenario on 300 paths."""


@dataclass(frozen=True)
class Variant:
    """One backend as the agreement test builds it."""

    make: Callable[[Path], Backend]
    unavailable: Callable[[], str | None]
    gpu: bool
    cases: tuple[str, ...]
    max_paths: int | None = None


def _jax(market_kernel: str) -> Callable[[Path], Backend]:
    def make(_: Path) -> Backend:
        from gpusim.backends.jax_backend import JaxBackend

        backend = JaxBackend(market_kernel=market_kernel)
        assert backend.interpret == (not backend.on_accelerator)  # Pallas interprets on a CPU only
        return backend

    return make


def _no_compiler() -> str | None:
    return None if host_compiler() else "no C++ compiler (g++ or c++) on PATH: the host build of the fused kernels is not checked"


VARIANTS: dict[str, Variant] = {
    "jax": Variant(_jax("jit"), lambda: JAX_REASON, JAX_ON_GPU, JAX_CASES),
    "jax-pallas": Variant(
        _jax("pallas"),
        lambda: JAX_REASON,
        JAX_ON_GPU,
        JAX_CASES if JAX_ON_GPU else ("small",),
        None if JAX_ON_GPU else PALLAS_INTERPRETED_PATHS,
    ),
    "cupy-array": Variant(lambda _: get_backend("cupy-array"), gpu_unavailable_reason, True, tuple(CASES)),
    "cupy": Variant(lambda _: get_backend("cupy"), gpu_unavailable_reason, True, tuple(CASES)),
    "host-kernels": Variant(HostKernelBackend, _no_compiler, False, CPU_CASES),
    "native": Variant(lambda _: NativeBackend(threads=2), _no_compiler, False, CPU_CASES),
}


def _params() -> list[object]:
    return [
        pytest.param(variant, case, dtype, id=f"{variant}-{case}-{dtype}", marks=[pytest.mark.gpu] if VARIANTS[variant].gpu else [])
        for variant, v in VARIANTS.items()
        for case in v.cases
        for dtype in CASES[case].dtypes
    ]


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Backend]:
    """Each variant built once for the module (JAX keeps its compiled chunks, the host build its libraries)."""
    built: dict[str, Backend] = {}

    def backend(variant: str) -> Backend:
        if variant not in built:
            built[variant] = VARIANTS[variant].make(tmp_path_factory.mktemp(variant))
        return built[variant]

    return backend


@pytest.fixture(scope="module")
def reference() -> Callable[[str, DType, int], tuple[RunSpec, ChunkResult]]:
    """The numpy chunk of a case, computed once for all backends."""
    chunks: dict[tuple[str, DType, int], tuple[RunSpec, ChunkResult]] = {}
    numpy_backend = get_backend("numpy")

    def chunk(case: str, dtype: DType, n_paths: int) -> tuple[RunSpec, ChunkResult]:
        if (case, dtype, n_paths) not in chunks:
            c = CASES[case]
            spec = c.spec(dtype)
            chunks[case, dtype, n_paths] = spec, numpy_backend.run_chunk(spec, c.seed, c.path_start, n_paths, c.save_paths)
        return chunks[case, dtype, n_paths]

    return chunk


@pytest.mark.parametrize(("variant", "case", "dtype"), _params())
def test_backend_agrees_with_numpy(variant: str, case: str, dtype: DType, backends, reference) -> None:
    """Factor paths, regimes, fan counts, regime counts, default steps and reasons, losses,
    exposures and annuities with and without the fire-sale chain, expected loss: within the
    backend's tolerance of numpy on the same paths."""
    reason = VARIANTS[variant].unavailable()
    if reason is not None:
        pytest.skip(f"{variant}: {reason}")
    backend = backends(variant)
    if VARIANTS[variant].gpu:
        assert not backend.device.startswith("cpu"), backend.device
    c = CASES[case]
    n_paths = min(c.n_paths, VARIANTS[variant].max_paths or c.n_paths)
    spec, ref = reference(case, dtype, n_paths)
    got = backend.run_chunk(spec, c.seed, c.path_start, n_paths, c.save_paths)
    if ref.outcomes is not None:
        assert np.any(ref.outcomes.default_step >= 0), "the case needs some defaults to compare"
    assert_agrees_with_numpy(got, ref, backend_key(backend), dtype)
    assert got.saved.keys() == ref.saved.keys() and all(np.isfinite(v).all() for k, v in got.saved.items() if k != "regime")


# --- the comparator itself ------------------------------------------------------------------------


def _chunk(rng: np.random.Generator, n: int = 40) -> ChunkResult:
    """A synthetic chunk: two borrowers, three instruments, some defaults."""
    saved = {"crypto": rng.lognormal(size=(4, 5, 2)), "gpu_value": rng.lognormal(size=(4, 5, 3)), "regime": np.zeros((4, 5), np.int8)}
    default_step = np.where(rng.uniform(size=(n, 2)) < 0.3, rng.integers(0, 4, (n, 2)), -1).astype(np.int16)
    loss = rng.uniform(0, 1e8, (n, 3)) * (default_step[:, [0, 0, 1]] >= 0)
    outcomes = CreditOutcomes(
        default_step, (default_step >= 0).astype(np.int8), loss, loss * 2, rng.uniform(0, 1e8, (n, 3)), loss.sum(axis=1)
    )
    fans = {"crypto": np.full((5, 2, 8), n // 8, dtype=np.int64)}
    return ChunkResult(0, n, saved, fans, np.zeros(5, dtype=np.int64), outcomes, outcomes)


def test_comparator_tolerates_rounding_but_not_a_wrong_path() -> None:
    ref = _chunk(np.random.default_rng(0))
    close = ref._replace(saved={k: v * (1 + 1e-13) if k != "regime" else v for k, v in ref.saved.items()})
    assert compare_chunks("numpy", close, ref, TOLERANCES["float64"]).ok
    wrong = close._replace(saved=dict(close.saved, crypto=np.where(np.arange(2) == 1, np.nan, close.saved["crypto"])))
    agreement = compare_chunks("numpy", wrong, ref, TOLERANCES["float64"])
    assert not agreement.ok and agreement.max_relative_difference["crypto"] == np.inf
    assert agreement.problems == [f"crypto: largest relative difference inf > {TOLERANCES['float64'].path_rtol:g}"]


def test_comparator_names_every_kind_of_disagreement() -> None:
    ref = _chunk(np.random.default_rng(1))
    flipped_steps = ref.outcomes.default_step.copy()
    flipped_steps[0] = (5, 5)
    flipped = ref.outcomes._replace(default_step=flipped_steps)
    fans = {"crypto": ref.fan_counts["crypto"] + np.array([1, -1, 0, 0, 0, 0, 0, 0])}
    got = ref._replace(outcomes=flipped, fan_counts=fans, tight_count=ref.tight_count + 1)
    agreement = compare_chunks("numpy", got, ref, TOLERANCES["float64"])
    assert agreement.default_step_agreement == pytest.approx(1 - 1 / 40)
    text = "; ".join(agreement.problems)
    for what in ("default steps", "fan crypto", "tight count"):
        assert what in text
    assert "without chain" not in text  # the chain-off outcomes agree
    richer = ref.outcomes._replace(loss=ref.outcomes.loss * (1 + 1e-6))
    assert "loss: largest relative difference" in "; ".join(
        compare_chunks("numpy", ref._replace(outcomes=richer), ref, TOLERANCES["float64"]).problems
    )
    assert compare_chunks("numpy", ref._replace(outcomes=richer), ref, TOLERANCES["float32"]).ok


def test_gpu_values_on_their_generation_scale() -> None:
    """A value just above scrap is a small difference of large numbers: declared GPU backends compare it on its generation's scale."""
    reference = np.array([[[1000.0, 2.0]], [[1.0, 3.0]]])
    values = reference + np.array([[[0.0, 0.0]], [[1e-7, 0.0]]])
    assert relative_difference(values, reference) == pytest.approx(1e-7)
    assert relative_difference(values, reference, by_generation=True) == pytest.approx(1e-10)
    assert tolerance("cupy", "float64").generation_scale and not tolerance("jax", "float64").generation_scale


def test_tolerances_are_declared_per_backend_and_dtype() -> None:
    """Every declared tolerance keeps the table's ceilings where its old test held them; a pair
    of backends meets the looser of the two."""
    assert tolerance("host-kernels", "float64") == TOLERANCES["float64"]
    gpu = tolerance("cupy", "float64")
    assert gpu.path_rtol == 1e-10 and gpu.default_path_share == TOLERANCES["float64"].default_path_share
    pair = loosest(TOLERANCES["float64"], gpu)
    assert pair.path_rtol == 1e-10 and pair.fan_moved_share == gpu.fan_moved_share and pair.generation_scale


def test_first_paths_cut_runs_chunked_differently() -> None:
    """The first paths of a run, from chunks of any size, compare equal across chunkings."""
    whole = _chunk(np.random.default_rng(2), n=40)
    parts = [
        whole._replace(
            path_start=s, n_paths=n, outcomes=CreditOutcomes(*(f[s : s + n] for f in whole.outcomes)), outcomes_without_chain=None
        )
        for s, n in ((0, 16), (16, 24))
    ]
    whole = whole._replace(outcomes_without_chain=None)
    a, b = first_paths([whole], 20, whole.saved), first_paths(parts[::-1], 20, whole.saved)
    assert a.n_paths == b.n_paths == 20 and not a.fan_counts
    assert compare_chunks("numpy", b, a, TOLERANCES["float64"]).ok
