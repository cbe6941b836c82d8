"""The command line as a user meets it: outputs, exit codes, messages, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping

from gpusim.cli import main


@pytest.fixture
def small_yaml(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_mapping()))
    return path


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_writes_the_documented_layout(small_yaml, tmp_path):
    out = tmp_path / "runs" / "small.h5"
    result = _invoke("run", small_yaml, "--paths", 3000, "--seed", 9, "--out", out, "--save-paths", 50, "--quiet")
    assert result.exit_code == 0, result.output
    assert not list(out.parent.glob(".*partial*"))
    with h5py.File(out) as f:
        attrs = dict(f.attrs)
        for key in ("gpusim_version", "seed", "n_paths", "backend", "dtype", "config_yaml", "created_utc", "runtime_s"):
            assert key in attrs
        assert (attrs["seed"], attrs["n_paths"], attrs["backend"], attrs["dtype"]) == (9, 3000, "numpy", "float64")
        assert yaml.safe_load(attrs["config_yaml"])["name"] == "small"
        np.testing.assert_allclose(f["time"][:], np.arange(25) / 12)
        assert f["paths/crypto"].shape == (50, 25, 2)
        assert f["paths/regime"].shape == (50, 25) and f["paths/regime"].dtype == np.int8
        for name in ("rental_rate", "gpu_value", "gpu_mark"):
            assert f[f"paths/{name}"].shape == (50, 25, 2)
        for name in ("utilization", "power_price"):
            assert f[f"paths/{name}"].shape == (50, 25)
        assert f["summary/fan/crypto"].shape == (2, 7, 25)
        np.testing.assert_allclose(f["summary/fan/quantile"][:], [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
        assert f["summary/fan/utilization"].shape == (7, 25)
        assert np.isfinite(f["summary/fan/gpu_mark_se"][:]).all()


def test_output_opens_in_xarray_with_named_dimensions(small_yaml, tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    out = tmp_path / "x.h5"
    assert _invoke("run", small_yaml, "--paths", 500, "--out", out, "--save-paths", 20, "--quiet").exit_code == 0
    paths = xr.open_dataset(out, group="paths", engine="h5netcdf")
    assert paths["crypto"].dims == ("path", "step", "asset")
    assert list(paths["asset"].values) == ["BTC", "ETH"]
    assert list(paths["generation"].values) == ["H100", "B200"]
    assert "time" in paths.coords and paths["time"].dims == ("step",)
    fan = xr.open_dataset(out, group="summary/fan", engine="h5netcdf")
    assert fan["rental_rate"].dims == ("generation", "quantile", "step")
    median = fan["crypto"].sel(asset="BTC", quantile=0.5)
    assert float(median.isel(step=0)) == pytest.approx(90000.0, rel=2e-3)
    assert fan["dscr"].dims == ("borrower", "quantile", "step")
    outcomes = xr.open_dataset(out, group="outcomes", engine="h5netcdf")
    assert outcomes["default_step"].dims == ("path", "borrower") and outcomes["default_step"].dtype == np.int16
    assert outcomes["loss"].dims == ("path", "instrument") and outcomes.sizes["path"] == 500
    assert list(outcomes["instrument"].values) == ["Neo-DDTL"]
    summary = xr.open_dataset(out, group="summary", engine="h5netcdf")
    assert summary["pd"].dims == ("borrower", "step") and summary["var"].dims == ("level",)
    assert summary["default_correlation"].dims == ("borrower", "other_borrower")
    for name in ("pd", "el", "lgd", "var", "es", "risk_contribution", "breakeven_spread_bps"):
        assert f"{name}_se" in summary
    # the summary agrees with the per-path outcomes it was accumulated from
    portfolio = outcomes["portfolio_loss"].values
    assert float(summary["el"].sum()) == pytest.approx(portfolio.mean(), rel=1e-9)
    defaulted = (outcomes["default_step"].values >= 0).mean(axis=0)
    np.testing.assert_allclose(summary["pd"].isel(step=-1).values, defaulted)
    contagion = xr.open_dataset(out, group="summary/contagion", engine="h5netcdf")
    assert contagion["es_with_chain"].dims == ("level",) and "contagion_share_of_el" in contagion.attrs


def test_float32_run(small_yaml, tmp_path):
    out = tmp_path / "f32.h5"
    assert _invoke("run", small_yaml, "--paths", 200, "--out", out, "--dtype", "float32", "--quiet").exit_code == 0
    with h5py.File(out) as f:
        assert f["paths/crypto"].dtype == np.float32 and f.attrs["dtype"] == "float32"


def test_validate_prints_the_resolved_config(small_yaml):
    result = _invoke("validate", small_yaml, "--set", "power.vol=0.35")
    assert result.exit_code == 0
    resolved = yaml.safe_load(result.output)
    assert resolved["power"]["vol"] == 0.35 and resolved["name"] == "small"


def test_validate_bad_config_lists_problems_and_exits_2(tmp_path):
    data = small_mapping()
    data["crypto"]["assets"][0]["spot"] = -5
    data["compute"]["utilization"]["max"] = 1.7
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 2
    assert any("crypto.assets[0].spot" in line and "-5" in line and "greater than 0" in line for line in lines)
    assert any("compute.utilization.max" in line and "1.7" in line for line in lines)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.yaml", "--out", "{tmp}/o.h5"], "no such config file"),
        (["run", "{cfg}", "--out", "{tmp}/afile/o.h5", "--paths", "10"], "cannot write output"),
        (["run", "{cfg}", "--out", "{tmp}", "--paths", "10"], "is a directory"),
        (["run", "{cfg}", "--out", "{tmp}/o.h5", "--paths", "0"], "0 is not in the range x>=1"),
        (["run", "{cfg}", "--out", "{tmp}/o.h5", "--set", "time.n_steps=0"], "time.n_steps"),
    ],
)
def test_run_errors_exit_2_with_one_clear_line(args, message, small_yaml, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    argv = [a.format(tmp=tmp_path, cfg=small_yaml) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.h5").exists()


def test_schema_prints_json_schema():
    result = _invoke("schema")
    schema = json.loads(result.output)
    assert "borrowers" in schema["properties"]


def test_interrupt_leaves_no_output(small_yaml, tmp_path, monkeypatch):
    out = tmp_path / "o.h5"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("gpusim.backends.numpy_backend.NumpyBackend.run_chunk", interrupted)
    result = CliRunner().invoke(main, ["run", str(small_yaml), "--paths", "100", "--out", str(out), "--quiet"])
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert list(tmp_path.glob("*o.h5*")) == []


@pytest.mark.slow
def test_killed_process_leaves_nothing_that_looks_finished(small_yaml, tmp_path):
    out = tmp_path / "big.h5"
    cmd = [sys.executable, "-m", "gpusim", "run", str(small_yaml), "--paths", "50000000", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".big.h5.partial-*")):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()


def test_report_command_writes_a_page_and_rejects_a_bad_file(small_yaml, tmp_path):
    out = tmp_path / "r.h5"
    assert _invoke("run", small_yaml, "--paths", 300, "--out", out, "--quiet", "--no-contagion").exit_code == 0
    result = _invoke("report", out, "--out", tmp_path / "report.html", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file()
    bad = CliRunner().invoke(main, ["report", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "no such file" in bad.output
