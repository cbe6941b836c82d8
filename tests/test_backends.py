"""The backend registry: `auto`, and clear failures for backends that cannot run here."""

from __future__ import annotations

import h5py
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping

from gpusim.backends import BACKENDS, CHOICES, BackendUnavailable, get_backend, gpu_unavailable_reason
from gpusim.cli import main


def _jax_sees_gpu() -> bool:
    try:
        import jax
    except ImportError:
        return False
    return any(d.platform != "cpu" for d in jax.devices())


def test_auto_is_the_fastest_available_backend():
    """The fused kernels where cupy sees a GPU, else JAX on a GPU, else numpy."""
    backend = get_backend("auto")
    if gpu_unavailable_reason() is None:
        assert backend.name == "cupy"
    elif _jax_sees_gpu():
        assert backend.name == "jax"
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
