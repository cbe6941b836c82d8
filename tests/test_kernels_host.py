"""Host checks of the CUDA random-number contract (kernels/philox.cuh, docs/model.md section 3).

kernels/philox.cuh is compiled as plain C++ (through kernels/host_shim.h) into the driver
tests/host/philox_host.cpp, whose plain-text output is compared with the numpy reference
gpusim/rng.py: Random123 known answers, slot words and uniforms bit for bit, Box-Muller normals
to a few ulps, Poisson counts exactly. Needs a C++ compiler, not a GPU; the kernels themselves
are only compile-checked here (nvcc -ptx); running them is for the GPU tests (cupy.RawModule).
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from kat_vectors import PHILOX_KAT

from gpusim.model import rng

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
DRIVER = ROOT / "tests" / "host" / "philox_host.cpp"

COMPILE_TIMEOUT_S = 300
RUN_TIMEOUT_S = 60


# (seed, path_start, n_paths, step): seeds and paths on both sides of 2**32, the last step.
STREAMS = [
    (0, 0, 6, 0),
    (1, 0, 5, 1),
    (20240611, 1000, 7, 3),
    (2**32 + 7, 2**32 - 3, 6, 2),
    (2**64 - 1, 5 * 2**32 + 11, 4, 2**32 - 1),
    (0x9E3779B97F4A7C15, 2**62 + 2**32 - 1, 3, 119),
]
N_SLOTS = 11  # not a multiple of 4: the last block is cut short

# Uniform edge words: 0, the float32 rounding boundary at 2**9, the top of the range.
EDGE_WORDS = [0, 1, 255, 256, 511, 512, 513, 2**31 - 1, 2**31, 2**32 - 513, 2**32 - 512, 2**32 - 2, 2**32 - 1]


def _cxx() -> str | None:
    return shutil.which("g++") or shutil.which("c++")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/host/philox_host.cpp built with g++ -O2 -std=c++17 into pytest's tmp dir."""
    cxx = _cxx()
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or c++) on PATH: host checks of kernels/philox.cuh not run")
    exe = tmp_path_factory.mktemp("philox_host") / "philox_host"
    cmd = [cxx, "-O2", "-std=c++17", "-Wall", "-Wextra", "-I", str(KERNELS), str(DRIVER), "-o", str(exe)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    if done.stderr.strip():
        warnings.warn(f"host build of philox.cuh has compiler warnings:\n{done.stderr}", stacklevel=1)
    return exe


def _run(driver: Path, *commands: str) -> list[list[str]]:
    """Feed commands to the driver, one per line; one list of tokens per command."""
    done = subprocess.run([str(driver)], input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(commands), done.stdout
    return [line.split() for line in lines]


def _u32(tokens: list[str]) -> np.ndarray:
    return np.array([int(t, 16) for t in tokens], dtype=np.uint32)


def _f32(tokens: list[str]) -> np.ndarray:
    return _u32(tokens).view(np.float32)


def _f64(tokens: list[str]) -> np.ndarray:
    return np.array([int(t, 16) for t in tokens], dtype=np.uint64).view(np.float64)


def _hex_f64(values: np.ndarray) -> str:
    return " ".join(f"{b:016x}" for b in np.asarray(values, dtype=np.float64).view(np.uint64))


def _ref_words(seed: int, path_start: int, n_paths: int, step: int, n_slots: int) -> np.ndarray:
    words = rng.step_words(seed, path_start, n_paths, step, -(-n_slots // 4), np)
    return np.asarray(words)[:n_slots]


def _step_args(seed: int, path_start: int, n_paths: int, step: int) -> str:
    return f"{seed} {path_start} {n_paths} {step}"


# --- (a) Philox4x32-10 known answers -------------------------------------------------------------


@pytest.mark.parametrize(("counter", "key", "expected"), PHILOX_KAT)
def test_philox_known_answers(driver: Path, counter: tuple, key: tuple, expected: tuple) -> None:
    words = " ".join(f"{w:08x}" for w in (*counter, *key))
    (out,) = _run(driver, f"kat {words}")
    assert _u32(out).tolist() == list(expected)


def test_numpy_reference_known_answers() -> None:
    """The reference the host output is compared with passes the same vectors."""
    for counter, key, expected in PHILOX_KAT:
        got = rng.philox4x32_10(counter, key, np)
        assert [int(w) for w in got] == list(expected)


# --- (b) slot words of a step ---------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "path_start", "n_paths", "step"), STREAMS)
def test_slot_words_match_reference(driver: Path, seed: int, path_start: int, n_paths: int, step: int) -> None:
    (out,) = _run(driver, f"words {_step_args(seed, path_start, n_paths, step)} {N_SLOTS}")
    got = _u32(out).reshape(N_SLOTS, n_paths)
    np.testing.assert_array_equal(got, _ref_words(seed, path_start, n_paths, step, N_SLOTS))


# --- (c) uniforms, normals, Poisson counts ---------------------------------------------------------


@pytest.mark.parametrize(("seed", "path_start", "n_paths", "step"), STREAMS)
def test_uniforms_bitwise(driver: Path, seed: int, path_start: int, n_paths: int, step: int) -> None:
    args = f"{_step_args(seed, path_start, n_paths, step)} {N_SLOTS}"
    out32, out64 = _run(driver, f"uniform_f32 {args}", f"uniform_f64 {args}")
    words = _ref_words(seed, path_start, n_paths, step, N_SLOTS)
    ref32 = rng.uniform(words, np.float32, np)
    ref64 = rng.uniform(words, np.float64, np)
    assert ref32.dtype == np.float32 and ref64.dtype == np.float64
    np.testing.assert_array_equal(_f32(out32).reshape(N_SLOTS, n_paths).view(np.uint32), ref32.view(np.uint32))
    np.testing.assert_array_equal(_f64(out64).reshape(N_SLOTS, n_paths).view(np.uint64), ref64.view(np.uint64))


def test_uniform_edge_words(driver: Path) -> None:
    hex_words = " ".join(f"{w:08x}" for w in EDGE_WORDS)
    out32, out64 = _run(driver, f"u01_f32 {hex_words}", f"u01_f64 {hex_words}")
    words = np.array(EDGE_WORDS, dtype=np.uint32)
    got32, got64 = _f32(out32), _f64(out64)
    np.testing.assert_array_equal(got32.view(np.uint32), rng.uniform(words, np.float32, np).view(np.uint32))
    np.testing.assert_array_equal(got64.view(np.uint64), rng.uniform(words, np.float64, np).view(np.uint64))
    for got in (got32, got64):
        assert np.all((got > 0) & (got < 1))
    assert got32[0] == np.float32(2.0**-24) and got32[-1] == np.float32(1 - 2.0**-24)


@pytest.mark.parametrize(
    ("dtype", "command", "rtol"),
    [(np.float32, "normal_f32", 1e-6), (np.float64, "normal_f64", 1e-13)],
    ids=["float32", "float64"],
)
def test_box_muller_normals(driver: Path, dtype: type, command: str, rtol: float) -> None:
    n_pairs = 4
    streams = [(7, 0, 2000, 0), (2**32 + 7, 2**32 - 1000, 2000, 5)]
    outs = _run(driver, *(f"{command} {_step_args(*s)} {n_pairs}" for s in streams))
    parse = _f32 if dtype == np.float32 else _f64
    for (seed, path_start, n_paths, step), out in zip(streams, outs, strict=True):
        got = parse(out).reshape(2 * n_pairs, n_paths)
        u = rng.uniform(_ref_words(seed, path_start, n_paths, step, 2 * n_pairs), dtype, np)
        z0, z1 = rng.box_muller(u[0::2], u[1::2], np)
        assert z0.dtype == dtype
        ref = np.empty_like(got)
        ref[0::2], ref[1::2] = z0, z1  # row 2i: cosine draw, row 2i + 1: sine draw (gpusim/slots.py)
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=0)


POISSON_MEANS = [0.0, 0.05, 1.0, 3.7, 12.0, 40.0]  # 0: all mass at 0; 12 and 40 hit the cap of 16


@pytest.mark.parametrize("mean", POISSON_MEANS)
def test_poisson_counts(driver: Path, mean: float) -> None:
    seed, path_start, n_paths, step, slot = 99, 2**32 - 500, 1000, 4, 6
    cdf = rng.poisson_cdf_table(np.array([mean]))[0]
    assert cdf.shape == (rng.POISSON_CAP,)
    _check_poisson(driver, (seed, path_start, n_paths, step), slot, cdf)


def test_poisson_counts_at_ties(driver: Path) -> None:
    """A table built from the draws themselves: u == F(n) must give n (min{n : F(n) >= u})."""
    stream, slot = (5, 2**33, 64, 1), 3
    words = _ref_words(*stream, slot + 1)[slot]
    for dtype in (np.float32, np.float64):
        draws = rng.uniform(words, dtype, np).astype(np.float64)
        cdf = np.sort(draws[:: len(draws) // rng.POISSON_CAP][: rng.POISSON_CAP])
        _check_poisson(driver, stream, slot, cdf)


def _check_poisson(driver: Path, stream: tuple[int, int, int, int], slot: int, cdf: np.ndarray) -> None:
    table = _hex_f64(cdf)
    args = f"{_step_args(*stream)} {slot} {table}"
    out32, out64 = _run(driver, f"poisson_f32 {args}", f"poisson_f64 {args}")
    words = _ref_words(*stream, slot + 1)[slot]
    for dtype, out in ((np.float32, out32), (np.float64, out64)):
        ref = rng.poisson_inverse_cdf(rng.uniform(words, dtype, np), cdf, np)
        got = np.array([int(t) for t in out])
        np.testing.assert_array_equal(got, ref.astype(np.int64), err_msg=f"Poisson counts in {np.dtype(dtype)}")


# --- every kernel compiles for the device ------------------------------------------------------------


STANDALONE_SOURCES = sorted(KERNELS.glob("*.cu"))
"""Every kernel compiles on its own (the fused ones with bench.yaml's constants, config.cuh);
tests/test_kernels_model_host.py compiles them as the cupy backend does, per config shape."""


def test_standalone_constants_are_bench_yaml_in_float32() -> None:
    """kernels/bench_config.cuh is what kernel_config generates today for bench.yaml (float32):
    regenerate it with `python -m gpusim.backends.kernel_config` when the generator or bench.yaml changes."""
    from gpusim.backends.kernel_config import config_header
    from gpusim.scenario import load_scenario
    from gpusim.spec import build_spec

    shipped = (KERNELS / "bench_config.cuh").read_text()
    generated = config_header(build_spec(load_scenario("bench"), "float32"))
    assert shipped.endswith(generated) and all(line.startswith("//") for line in shipped[: -len(generated)].splitlines())


def test_shipped_constants_header_is_generated() -> None:
    """kernels/constants.cuh is exactly what kernel_config generates from gpusim/model/constants.py
    (regenerate both shipped headers with `python -m gpusim.backends.kernel_config`)."""
    from gpusim.backends.kernel_config import constants_header

    assert (KERNELS / "constants.cuh").read_text() == constants_header()


@pytest.mark.parametrize("source", STANDALONE_SOURCES, ids=lambda p: p.name)
def test_kernel_compiles_to_ptx(source: Path, tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: CUDA kernels not compile-checked")
    cmd = [nvcc, "-ptx", "-arch=sm_90", "-I", str(KERNELS), str(source), "-o", str(tmp_path / f"{source.stem}.ptx")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
