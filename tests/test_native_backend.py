"""The native backend: kernels/ built by the host C++ compiler, OpenMP threads over paths.

float64 chunks equal numpy's bit for bit on every shipped agreement case (exp, log, expm1 and
log1p through numpy's own loops, no FMA contraction); any thread count and chunking give the
same bits; two builds of different shapes live in one process; builds are cached on disk; a
missing compiler is a clear error and `auto` falls back with the reason. The float32 agreement
with numpy is checked in tests/test_backend_agreement.py with every other backend.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import host_compiler, small_mapping, small_spec_for
from test_backend_agreement import CASES, CPU_CASES

import gpusim.backends
from gpusim.backends import NATIVE_SWITCH, BackendUnavailable, get_backend
from gpusim.backends.kernel_config import config_header
from gpusim.backends.native_backend import NativeBackend
from gpusim.backends.native_build import LIBRARY, build_key, cache_root, compiler_version, flags
from gpusim.backends.numpy_backend import NumpyBackend
from gpusim.cli import main
from gpusim.engine import run
from gpusim.spec import ChunkResult

pytestmark = pytest.mark.skipif(host_compiler() is None, reason="no C++ compiler (g++ or c++) on PATH: the native backend is not built")

FLOAT64_CASES = tuple(name for name in CPU_CASES if "float64" in CASES[name].dtypes)


@pytest.fixture(scope="module")
def native() -> NativeBackend:
    return NativeBackend(threads=2)


def chunk_arrays(chunk: ChunkResult) -> dict[str, np.ndarray]:
    """Every array of a chunk, by a name saying where it is."""
    arrays = {"tight_count": chunk.tight_count}
    arrays.update({f"saved.{k}": v for k, v in chunk.saved.items()})
    arrays.update({f"fan.{k}": v for k, v in chunk.fan_counts.items()})
    for prefix, outcomes in (("on", chunk.outcomes), ("off", chunk.outcomes_without_chain)):
        if outcomes is not None:
            arrays.update({f"{prefix}.{k}": v for k, v in outcomes._asdict().items()})
    return arrays


def assert_same_bits(got: ChunkResult, expected: ChunkResult) -> None:
    a, b = chunk_arrays(got), chunk_arrays(expected)
    assert a.keys() == b.keys()
    differing = [name for name in b if a[name].shape != b[name].shape or not np.array_equal(a[name], b[name], equal_nan=True)]
    assert not differing, f"not bit for bit: {differing}"


@pytest.mark.parametrize("case", FLOAT64_CASES)
def test_float64_is_numpy_bit_for_bit(case: str, native: NativeBackend) -> None:
    c = CASES[case]
    spec = c.spec("float64")
    expected = NumpyBackend().run_chunk(spec, c.seed, c.path_start, c.n_paths, c.save_paths)
    got = native.run_chunk(spec, c.seed, c.path_start, c.n_paths, c.save_paths)
    assert native.math_note == ""
    assert_same_bits(got, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_and_chunking_do_not_change_a_bit(dtype: str) -> None:
    spec = small_spec_for(dtype, stressed=True)
    whole = NativeBackend(threads=1).run_chunk(spec, 5, 0, 300, 40)
    for threads in (2, 3):
        assert_same_bits(NativeBackend(threads=threads).run_chunk(spec, 5, 0, 300, 40), whole)
    first, second = (NativeBackend(threads=2).run_chunk(spec, 5, start, count, 40) for start, count in ((0, 130), (130, 170)))
    assert np.array_equal(np.concatenate([first.outcomes.loss, second.outcomes.loss]), whole.outcomes.loss)
    for name, counts in whole.fan_counts.items():
        assert np.array_equal(first.fan_counts[name].astype(np.int64) + second.fan_counts[name], counts), name


def test_engine_runs_equal_numpy_for_any_workers() -> None:
    """Whole runs (fans, tight shares, risk summaries) as numpy's, with one chunk at a time on
    two threads and with two chunks at once on one thread each."""
    spec = small_spec_for("float64", stressed=True)
    expected = run(spec, NumpyBackend(), 700, 3, save_paths=20, chunk_paths=256, show_progress=False)
    for workers in (1, 2):
        got = run(spec, NativeBackend(threads=2), 700, 3, save_paths=20, chunk_paths=256, workers=workers, show_progress=False)
        for name, (values, se) in expected.fan.items():
            assert np.array_equal(got.fan[name][0], values, equal_nan=True) and np.array_equal(got.fan[name][1], se, equal_nan=True)
        assert np.array_equal(got.tight_share, expected.tight_share)
        assert got.risk.keys() == expected.risk.keys()
        assert all(np.array_equal(got.risk[k], expected.risk[k], equal_nan=True) for k in expected.risk)


def test_two_builds_live_in_one_process(native: NativeBackend) -> None:
    """Libraries of two shapes loaded together compute what each computes alone, and export
    nothing but their entry points (no GNU-unique globals shared between them)."""
    with_borrowers, without = small_spec_for("float32", stressed=True), small_spec_for("float32", borrowers=[])
    alone = NativeBackend(threads=2).run_chunk(with_borrowers, 9, 0, 200, 10)
    other = native.run_chunk(without, 9, 0, 200, 10)
    assert_same_bits(native.run_chunk(with_borrowers, 9, 0, 200, 10), alone)
    assert_same_bits(native.run_chunk(without, 9, 0, 200, 10), other)
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm here to list the exported symbols")
    for spec in (with_borrowers, without):
        header = config_header(spec)
        library = cache_root() / build_key(header, native.compiler, flags(spec.dtype)) / LIBRARY
        listed = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True).stdout
        exported = {line.split()[-1] for line in listed.splitlines() if line.strip()}
        assert exported == {"native_simulate_paths", "native_use_numpy_math", "native_real_size"}, exported
        assert " u " not in listed  # GNU-unique binding


def test_a_build_is_cached_on_disk(native: NativeBackend) -> None:
    spec = small_spec_for("float32", stressed=True)
    native.run_chunk(spec, 1, 0, 8, 0)
    fresh = NativeBackend(threads=1)
    fresh.run_chunk(spec, 1, 0, 8, 0)
    assert fresh.compile_seconds == 0.0
    header = config_header(spec)
    key = build_key(header, native.compiler, flags("float32"))
    assert key != build_key(header, native.compiler, flags("float64")) and key != build_key(
        header + "\n", native.compiler, flags("float32")
    )
    assert compiler_version(native.compiler) in fresh.device


def test_without_a_compiler_native_says_why_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv(NATIVE_SWITCH, raising=False)
    with pytest.raises(BackendUnavailable, match="the native backend needs a C\\+\\+ compiler"):
        get_backend("native")
    monkeypatch.setattr(gpusim.backends, "gpu_unavailable_reason", lambda: "no GPU in this test")
    assert get_backend("auto").name == "numpy"
    assert "backend auto: skipped native: the native backend needs a C++ compiler" in capsys.readouterr().err


def test_auto_takes_native_where_a_compiler_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NATIVE_SWITCH, raising=False)
    monkeypatch.setattr(gpusim.backends, "gpu_unavailable_reason", lambda: "no GPU in this test")
    monkeypatch.setattr(gpusim.backends, "AUTO_CHAIN", tuple(c for c in gpusim.backends.AUTO_CHAIN if c.name != "jax"))
    assert get_backend("auto", announce=None).name == "native"
    monkeypatch.setenv(NATIVE_SWITCH, "0")
    with pytest.raises(BackendUnavailable, match=f"switched off here \\({NATIVE_SWITCH}=0\\)"):
        get_backend("native")


def test_bench_times_native_beside_numpy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`gpusim bench --backends numpy,native`: native checked against numpy, then timed, its compile time apart."""
    monkeypatch.delenv(NATIVE_SWITCH, raising=False)
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(small_mapping()))
    out = tmp_path / "bench.json"
    args = ["bench", "--config", str(config), "--backends", "numpy,native", "--paths", "300", "--repeats", "1", "--json", str(out)]
    result = CliRunner().invoke(main, [*args, "--workload", "model"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(out.read_text())["backends"]}
    native = rows["native"]
    assert native["available"] and native["agreement"]["ok"] and native["agreement"]["default_step_agreement"] == 1.0
    assert native["kernel_s"] > 0 and native["speedup_vs_numpy"] > 0 and native["device"].startswith("cpu (")
