"""`gpusim bench` as a user meets it: it runs on a tiny workload on the CPU, its JSON
has every field, unavailable backends are named with their reason, and a backend whose paths
disagree with the reference is a failure with a non-zero exit, never a throughput."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping

from gpusim import bench
from gpusim.backends import BackendUnavailable, get_backend, gpu_unavailable_reason
from gpusim.backends.agreement import TOLERANCES
from gpusim.cli import main
from gpusim.scenario import load_scenario

BACKEND_FIELDS = {
    "name", "available", "reason", "device", "on_accelerator", "workers", "chunk_paths", "warmup_s", "compile_s", "kernel_s",
    "kernel_source", "transfer_s", "end_to_end_s", "end_to_end_repeats_s", "path_steps_per_s", "host_rss_before_bytes",
    "peak_host_rss_bytes", "peak_host_rss_scope", "device_memory_bytes", "speedup_vs_numpy", "speedup_vs_jax_cpu", "agreement",
}  # fmt: skip
MACHINE_FIELDS = {"hostname", "platform", "machine", "cpu_model", "cpu_count", "memory_bytes", "gpu", "gpu_unavailable_reason"}
MACHINE_FIELDS |= {"load_average", "load_average_end", "versions"}
WORKLOAD_FIELDS = {"scenario", "workload", "dtype", "n_paths", "n_steps", "n_borrowers", "n_instruments", "path_steps", "seed"}
WORKLOAD_FIELDS |= {"repeats", "reference_backend", "check_paths", "path_rtol", "outcome_agreement"}


@pytest.fixture
def small_yaml(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_mapping()))
    return path


def _bench(*args):
    return CliRunner().invoke(main, ["bench", *(str(a) for a in args)], catch_exceptions=False)


def test_bench_runs_numpy_and_jax_and_names_unavailable_backends(small_yaml, tmp_path):
    pytest.importorskip("jax", reason="jax is not installed: this test times it beside numpy (pip install 'gpusim[jax]')")
    out = tmp_path / "bench.json"
    backends = "numpy,jax,cupy-array,cupy"
    result = _bench("--config", small_yaml, "--backends", backends, "--paths", 400, "--repeats", 2, "--workload", "model", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["failures"] == []
    assert report["machine"].keys() >= MACHINE_FIELDS and {"numpy", "jax", "python", "gpusim"} <= report["machine"]["versions"].keys()
    assert report["workload"].keys() >= WORKLOAD_FIELDS
    assert report["workload"]["reference_backend"] == "numpy"
    rows = {b["name"]: b for b in report["backends"]}
    assert list(rows) == backends.split(",")
    for row in rows.values():
        assert set(row) == BACKEND_FIELDS
    for name in ("numpy", "jax"):
        row = rows[name]
        assert row["available"] and len(row["end_to_end_repeats_s"]) == 2
        assert row["path_steps_per_s"] == pytest.approx(400 * 24 / row["end_to_end_s"])
        assert row["kernel_s"] > 0 and row["peak_host_rss_bytes"] > 0 and row["speedup_vs_numpy"] > 0
    assert rows["numpy"]["speedup_vs_numpy"] == 1.0 and rows["jax"]["speedup_vs_jax_cpu"] == 1.0
    assert rows["jax"]["compile_s"] > 0 and rows["numpy"]["compile_s"] is None
    agreement = rows["jax"]["agreement"]
    assert agreement["ok"] and agreement["max_relative_difference"]["crypto"] <= TOLERANCES["float32"].path_rtol
    assert agreement["default_step_agreement"] == 1.0 and agreement["el_difference_se"] <= 0.5
    if gpu_unavailable_reason() is not None:
        for name in ("cupy-array", "cupy"):
            assert not rows[name]["available"] and "NVIDIA GPU" in rows[name]["reason"]
            assert f"{name}: not available here" in result.output
        assert report["machine"]["gpu"] == "none"
    assert "path-steps/s" in result.output and report["machine"]["cpu_model"] in result.output


class PerturbedBackend:
    """The numpy backend with its crypto prices 0.1 % off: a backend that computes something else."""

    name = "jax"

    def __init__(self) -> None:
        self._numpy = get_backend("numpy")

    def __getattr__(self, attribute):
        return getattr(self._numpy, attribute)

    def run_chunk(self, spec, seed, path_start, n_paths, save_paths):
        chunk = self._numpy.run_chunk(spec, seed, path_start, n_paths, save_paths)
        saved = dict(chunk.saved, crypto=chunk.saved["crypto"] * np.float32(1.001))
        return chunk._replace(saved=saved)


def test_a_disagreeing_backend_fails_with_no_figures(small_yaml, tmp_path, monkeypatch):
    def factory(name):
        return PerturbedBackend() if name == "jax" else get_backend(name)

    monkeypatch.setattr(bench, "get_backend", factory)
    out = tmp_path / "bench.json"
    args = ("--backends", "numpy,jax", "--paths", 300, "--repeats", 1, "--workload", "factors", "--json", out)
    result = _bench("--config", small_yaml, *args)
    assert result.exit_code == 1
    assert "disagrees with numpy" in result.output and "crypto" in result.output
    report = json.loads(out.read_text())
    assert report["ok"] is False and len(report["failures"]) == 1
    row = report["backends"][1]
    assert row["name"] == "jax" and row["agreement"]["ok"] is False
    assert row["agreement"]["max_relative_difference"]["crypto"] == pytest.approx(1e-3, rel=1e-2)
    for figure in ("end_to_end_s", "kernel_s", "path_steps_per_s", "speedup_vs_numpy", "speedup_vs_jax_cpu"):
        assert row[figure] is None, figure


def test_unknown_backend_is_a_usage_error(small_yaml):
    result = _bench("--config", small_yaml, "--backends", "numpy,tpu")
    assert result.exit_code == 2 and "tpu" in result.output


def test_get_backend_reasons_reach_the_report(small_yaml):
    def factory(name):
        raise BackendUnavailable(f"{name} is switched off in this test")

    report = bench.bench(load_scenario(str(small_yaml)), ["jax"], 10, 1, backend_factory=factory)
    assert report["backends"][0]["reason"] == "jax is switched off in this test" and report["ok"]


class TimedBackend:
    """The numpy backend with the timers a GPU backend keeps: 0.5 s of kernel and 0.25 s of transfer a chunk."""

    name = "numpy"

    def __init__(self) -> None:
        self._numpy = get_backend("numpy")
        self.kernel_seconds = self.transfer_seconds = 0.0

    def __getattr__(self, attribute):
        return getattr(self._numpy, attribute)

    def run_chunk(self, spec, seed, path_start, n_paths, save_paths):
        self.kernel_seconds += 0.5
        self.transfer_seconds += 0.25
        return self._numpy.run_chunk(spec, seed, path_start, n_paths, save_paths)


def test_timers_a_backend_keeps_are_used(small_yaml):
    scenario = load_scenario(str(small_yaml)).model_copy(update={"borrowers": []})
    report = bench.bench(scenario, ["numpy"], 300, 2, workload="factors", workers=1, backend_factory=lambda name: TimedBackend())
    row = report["backends"][0]
    chunks = -(-300 // row["chunk_paths"])
    assert row["kernel_s"] == 0.5 * chunks and row["transfer_s"] == 0.25 * chunks
    assert row["kernel_source"] == "backend timer (kernel_seconds)"


def _benchmark_script(name: str):
    """A script of benchmarks/ as a module (they are scripts, not a package); registered under
    its name because its dataclasses look their module up in sys.modules."""
    import importlib.util
    import sys
    from pathlib import Path

    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def test_floor_draws_the_same_numbers_on_numpy_and_jax(small_yaml):
    pytest.importorskip("jax", reason="jax is not installed: the JAX floor needs it")
    floor = _benchmark_script("bench_floor")
    spec = bench.workload_spec(load_scenario(str(small_yaml)), "model", "float64")
    on_numpy = floor.numpy_floor_chunk(spec, 5, 100, 300)
    on_jax = float(floor.jax_floor_function(spec, 5, 300)(np.int64(100)))
    assert on_jax == pytest.approx(on_numpy, rel=1e-12) and on_numpy != 0.0


def test_peer_generator_matches_the_closed_forms():
    peers = _benchmark_script("bench_peers")
    gbm, merton = peers.models("bench")
    for model in (gbm, merton):
        spec = peers.gpusim_spec("bench", model, 24)
        prices = peers.gpusim_numpy(spec, 3, 4000, jumps=model.lam > 0)
        assert prices.shape == (4000, 25) and np.allclose(prices[:, 0], model.spot, rtol=1e-12)
        z = peers.check_moments(model, prices, 1.0 / 12.0)
        assert max(abs(v) for v in z.values()) < peers.Z_LIMIT, z
    assert merton.call(merton.spot, 1.0) > gbm.call(gbm.spot, 1.0)  # jumps add variance: a dearer call
