"""The backend registry: `auto` and its fallback chain (warm-up, then the next backend, with the
reason on stderr), and clear failures for backends that cannot run here."""

from __future__ import annotations

import os

import h5py
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping

import gpusim.backends
from gpusim.backends import BACKENDS, CHOICES, NATIVE_SWITCH, AutoCandidate, BackendUnavailable, get_backend, gpu_unavailable_reason
from gpusim.backends.native_build import find_compiler
from gpusim.backends.warm_up import WARM_UP_PATHS, warm_up_spec
from gpusim.cli import main


def _jax_sees_gpu() -> bool:
    try:
        import jax
    except ImportError:
        return False
    return any(d.platform != "cpu" for d in jax.devices())


def test_auto_is_the_fastest_available_backend():
    """The fused kernels where cupy sees a GPU, else JAX on a GPU, else the native build where it
    is not switched off (the suite switches it off: tests/conftest.py), else numpy."""
    backend = get_backend("auto")
    if gpu_unavailable_reason() is None:
        assert backend.name == "cupy"
    elif _jax_sees_gpu():
        assert backend.name == "jax"
    elif os.environ.get(NATIVE_SWITCH) != "0" and find_compiler() is not None:
        assert backend.name == "native"
    else:
        assert backend.name == "numpy"
    assert set(CHOICES) == {"auto", *BACKENDS}


@pytest.mark.parametrize("name", ["cupy-array", "cupy"])
def test_gpu_backend_without_gpu_says_why(name):
    reason = gpu_unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is visible here: the backend is available")
    with pytest.raises(BackendUnavailable, match=f"the {name} backend needs an NVIDIA GPU"):
        get_backend(name)


def test_unknown_backend_lists_the_choices():
    with pytest.raises(BackendUnavailable, match="available: auto, numpy, jax, cupy-array, cupy"):
        get_backend("opencl")


def test_cli_run_records_backend_and_device(tmp_path):
    config = tmp_path / "factors.yaml"
    config.write_text(yaml.safe_dump(small_mapping(borrowers=[])))
    out = tmp_path / "auto.h5"
    result = CliRunner().invoke(main, ["run", str(config), "--paths", "200", "--out", str(out), "--save-paths", "5"])
    assert result.exit_code == 0, result.output
    chosen = get_backend("auto")
    assert f"backend {chosen.name} on {chosen.device} (chosen by --backend auto)" in result.output
    with h5py.File(out) as f:
        assert f.attrs["backend"] == chosen.name and f.attrs["device"] == chosen.device


def test_cli_gpu_backend_without_gpu_exits_2(tmp_path):
    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is visible here")
    out = tmp_path / "never.h5"
    result = CliRunner().invoke(main, ["run", "baseline", "--paths", "10", "--out", str(out), "--backend", "cupy-array"])
    assert result.exit_code == 2
    assert "cupy-array backend needs an NVIDIA GPU" in result.output
    assert not out.exists()


# -- auto's fallback chain ----------------------------------------------------------------------


class CompileException(Exception):
    """Stands in for cupy's NVRTC error: a multi-line log whose first line says what failed."""


class FakeGpuBackend:
    """A GPU backend that builds but whose warm-up compile fails (or succeeds, with `error=None`)."""

    device = "fake GPU"

    def __init__(self, name: str, error: Exception | None) -> None:
        self.name = name
        self.error = error
        self.warmed = False

    def warm_up(self) -> None:
        if self.error is not None:
            raise self.error
        self.warmed = True


def _candidate(backend: FakeGpuBackend) -> AutoCandidate:
    def start() -> FakeGpuBackend:
        backend.warm_up()
        return backend

    return AutoCandidate(backend.name, start)  # type: ignore[arg-type]


NVRTC_LOG = "nvrtc: error: failed to open libnvrtc-builtins.so.12.\nMake sure that libnvrtc-builtins.so.12 is installed.\n(log goes on)"


@pytest.fixture
def no_gpu_compiles(monkeypatch):
    """The registry with a cupy whose kernel compile fails and a JAX without a GPU, then the real numpy."""
    cupy = FakeGpuBackend("cupy", CompileException(NVRTC_LOG))
    jax = FakeGpuBackend("jax", BackendUnavailable("JAX sees no GPU, only cpu (cpu)"))
    monkeypatch.setattr(gpusim.backends, "AUTO_CHAIN", (_candidate(cupy), _candidate(jax), gpusim.backends.AUTO_CHAIN[-1]))
    return cupy, jax


def test_auto_falls_back_past_backends_that_fail_to_compile(no_gpu_compiles, capsys):
    backend = get_backend("auto")
    assert backend.name == "numpy"
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "backend auto: skipped cupy: CompileException: nvrtc: error: failed to open libnvrtc-builtins.so.12.",
        "backend auto: skipped jax: JAX sees no GPU, only cpu (cpu)",
    ]


def test_auto_takes_the_first_backend_whose_warm_up_succeeds(monkeypatch, capsys):
    cupy = FakeGpuBackend("cupy", CompileException(NVRTC_LOG))
    jax = FakeGpuBackend("jax", None)

    def numpy_never_started() -> None:
        raise AssertionError("auto went past a backend that warmed up")

    monkeypatch.setattr(gpusim.backends, "AUTO_CHAIN", (_candidate(cupy), _candidate(jax), AutoCandidate("numpy", numpy_never_started)))
    assert get_backend("auto") is jax and jax.warmed
    assert capsys.readouterr().err.count("skipped") == 1


def test_skip_reason_is_one_bounded_line():
    long = BackendUnavailable("x" * 1000 + "\nsecond line")
    reason = gpusim.backends.skip_reason(long)
    assert "\n" not in reason and len(reason) == gpusim.backends.SKIP_REASON_CHARS and reason.endswith("...")
    assert gpusim.backends.skip_reason(OSError()) == "OSError"


def test_the_last_fallback_is_not_swallowed(monkeypatch):
    """numpy always runs; if even it fails, auto raises rather than returning nothing."""

    def broken() -> None:
        raise RuntimeError("no numpy either")

    monkeypatch.setattr(gpusim.backends, "AUTO_CHAIN", (AutoCandidate("numpy", broken),))
    with pytest.raises(RuntimeError, match="no numpy either"):
        get_backend("auto")


def test_cli_run_auto_prints_each_skipped_backend_and_runs(no_gpu_compiles, tmp_path):
    config = tmp_path / "factors.yaml"
    config.write_text(yaml.safe_dump(small_mapping(borrowers=[])))
    out = tmp_path / "auto.h5"
    result = CliRunner().invoke(main, ["run", str(config), "--paths", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "backend auto: skipped cupy: CompileException: nvrtc: error" in result.stderr
    assert "backend auto: skipped jax: JAX sees no GPU" in result.stderr
    assert "backend numpy on" in result.stderr
    with h5py.File(out) as f:
        assert f.attrs["backend"] == "numpy"


def test_cli_quiet_keeps_the_skipped_backends_to_itself(no_gpu_compiles, tmp_path, monkeypatch):
    """--quiet prints errors only: neither `run` nor `batch` lists what auto skipped."""
    from gpusim.batch import runner

    monkeypatch.setattr(runner, "_backends", {})  # a batch resolves auto once per process
    config = tmp_path / "factors.yaml"
    config.write_text(yaml.safe_dump(small_mapping(borrowers=[])))
    batch = tmp_path / "two.yaml"
    batch.write_text(yaml.safe_dump({"base": str(config), "paths": 200, "chunk_paths": 100, "scenarios": [{"name": "a"}]}))
    ran = CliRunner().invoke(main, ["run", str(config), "--paths", "200", "--out", str(tmp_path / "r.h5"), "--quiet"])
    batched = CliRunner().invoke(main, ["batch", str(batch), "--out", str(tmp_path / "b.h5"), "--quiet"])
    assert ran.exit_code == 0 and batched.exit_code == 0, ran.output + batched.output
    assert "skipped" not in ran.stderr and "skipped" not in batched.stderr
    monkeypatch.setattr(runner, "_backends", {})
    loud = CliRunner().invoke(main, ["batch", str(batch), "--out", str(tmp_path / "c.h5")])
    assert loud.exit_code == 0, loud.output
    assert "backend auto: skipped cupy: CompileException" in loud.stderr


def test_the_real_chain_is_fused_kernels_then_jax_then_native_then_numpy():
    assert [c.name for c in gpusim.backends.AUTO_CHAIN] == ["cupy", "jax", "native", "numpy"]


def test_auto_here_says_why_it_skipped_the_fused_kernels(capsys):
    reason = gpu_unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is visible here: cupy is not skipped for the lack of one")
    get_backend("auto")
    assert f"backend auto: skipped cupy: the cupy backend needs an NVIDIA GPU: {reason}" in capsys.readouterr().err


def test_warm_up_spec_is_small_and_covers_every_borrower_type():
    spec = warm_up_spec()
    types = {b.type for b in spec.scenario.borrowers}
    assert types == {"neocloud", "miner", "project_spv"}
    assert spec.layout.n_borrowers == len(types) and spec.scenario.time.n_steps == 2
    chunk = get_backend("numpy").run_chunk(spec, 1, 0, WARM_UP_PATHS, 0)
    assert chunk.outcomes is not None and chunk.outcomes_without_chain is not None  # both launches: chain on and off


def test_jax_warm_up_runs_on_its_device():
    pytest.importorskip("jax")
    from gpusim.backends.jax_backend import JaxBackend

    JaxBackend().warm_up()


@pytest.mark.gpu
def test_cupy_warm_up_compiles_and_keeps_the_run_counters_clean():
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no GPU for the cupy backend: {reason}")
    backend = get_backend("cupy")
    backend.warm_up()  # type: ignore[attr-defined]
    assert backend.compile_seconds == backend.kernel_seconds == backend.transfer_seconds == 0.0  # type: ignore[attr-defined]
    assert len(backend._modules) == 1  # type: ignore[attr-defined]
