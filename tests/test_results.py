"""Reading runs back: `gpusim inspect`, `open_results` and `simulate` on one small real run."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping

import gpusim
from gpusim.api import simulate
from gpusim.cli import main
from gpusim.output.read import Results, ResultsError, check_result_file, headline, open_results
from gpusim.output.write import FORMAT_VERSION
from gpusim.scenario import Scenario, validate_mapping

N_PATHS = 3000
SEED = 11
SAVE_PATHS = 40


def _two_borrowers() -> dict:
    """SMALL plus a second borrower of another type, so grouping by type means something."""
    data = small_mapping(name="two")
    other = copy.deepcopy(data["borrowers"][0])
    other.update(name="Orbit Project", type="project_spv")
    other["debt"][0].update(name="Orbit Senior Notes 2027", market_spread_bps=300)
    data["borrowers"].append(other)
    return data


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    config = folder / "two.yaml"
    config.write_text(yaml.safe_dump(_two_borrowers()))
    out = folder / "two.h5"
    argv = ["run", config, "--paths", N_PATHS, "--seed", SEED, "--save-paths", SAVE_PATHS, "--out", out, "--quiet"]
    result = CliRunner().invoke(main, [str(a) for a in argv], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def opened(run_file) -> Results:
    return open_results(run_file)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_inspect_json_equals_the_hdf5_numbers(run_file):
    result = _invoke("inspect", run_file, "--json")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    with h5py.File(run_file) as f:
        attrs = f.attrs
        facts = numbers["run"]
        for key in ("seed", "n_paths", "n_steps", "backend", "device", "dtype", "runtime_s", "created_utc", "scenario"):
            expected = attrs[key]
            assert facts[key] == (expected.item() if isinstance(expected, np.generic) else expected), key
        assert facts["format_version"] == FORMAT_VERSION and facts["horizon_years"] == 2.0
        s = f["summary"]
        names = [n.decode() for n in s["borrower"][:]]
        assert [b["name"] for b in numbers["borrowers"]] == names
        for b, row in enumerate(numbers["borrowers"]):
            assert row["type"] == s["borrower_type"][b].decode()
            assert row["pd"] == {"1y": s["pd"][b, 12]}  # 3y and 5y lie beyond the 2-year horizon
            assert (row["pd_horizon"], row["pd_horizon_se"]) == (s["pd"][b, -1], s["pd_se"][b, -1])
        assert [i["name"] for i in numbers["instruments"]] == [n.decode() for n in s["instrument"][:]]
        for i, row in enumerate(numbers["instruments"]):
            assert row["borrower"] == s["instrument_borrower"][i].decode()
            for key in ("el", "el_se", "breakeven_spread_bps", "breakeven_spread_bps_se", "market_spread_bps", "spread_gap_bps"):
                assert row[key] == s[key][i], key
            assert row["lgd"] == (s["lgd"][i] if s["lgd_defined"][i] else None)
        portfolio = numbers["portfolio"]
        assert (portfolio["el"], portfolio["el_se"]) == (s.attrs["portfolio_el"], s.attrs["portfolio_el_se"])
        assert [row["level"] for row in portfolio["levels"]] == list(s["level"][:])
        for k, row in enumerate(portfolio["levels"]):
            assert (row["var"], row["var_se"], row["es"], row["es_se"]) == (s["var"][k], s["var_se"][k], s["es"][k], s["es_se"][k])
        assert numbers["contagion"]["share_of_el"] == s["contagion"].attrs["contagion_share_of_el"]


def test_inspect_text_shows_the_run_and_every_borrower_and_instrument(run_file):
    result = _invoke("inspect", run_file)
    assert result.exit_code == 0, result.output
    text = result.stdout
    for name in ("Neo", "Orbit Project", "Neo-DDTL", "Orbit Senior Notes 2027", "neocloud", "project_spv"):
        assert name in text
    for label in ("two", f"{N_PATHS:,}", "numpy", "float64", "PD 1y", "PD 2y (horizon)", "99.9%", "fire-sale chain"):
        assert label in text
    assert "[red]" not in text and "\x1b[" not in text  # no markup or colour codes when captured


def test_api_returns_the_documented_dimensions(opened):
    r = opened
    assert isinstance(r.scenario, Scenario) and r.scenario.name == "two"
    assert r.attrs["seed"] == SEED and isinstance(r.attrs["seed"], int) and r.attrs["n_paths"] == N_PATHS
    np.testing.assert_allclose(r.time, np.arange(25) / 12)
    assert r.summary.pd.dims == ("borrower", "step")
    assert r.summary["var"].dims == ("level",) and r.summary.el.dims == ("instrument",)
    assert r.outcomes.loss.dims == ("path", "instrument") and r.outcomes.sizes["path"] == N_PATHS
    assert r.outcomes.default_step.dims == ("path", "borrower")
    assert r.fan.crypto.dims == ("asset", "quantile", "step") and r.fan.utilization.dims == ("quantile", "step")
    assert r.fan.dscr.dims == ("borrower", "quantile", "step")
    assert r.paths.crypto.dims == ("path", "step", "asset") and r.paths.sizes["path"] == SAVE_PATHS
    assert r.contagion.el_without_chain.dims == ("instrument",)
    assert list(r.summary.borrower_type.values) == ["neocloud", "project_spv"]
    for ds in (r.summary, r.fan, r.paths):
        assert "time" in ds.coords and ds["date"].dtype.kind == "M"
    assert set(r.outcomes.dims) == {"path", "borrower", "instrument"}  # only the dimensions its variables use
    # the loss-by-borrower-type recipe of docs/api.md
    types = r.summary.borrower_type.sel(borrower=r.outcomes.instrument_borrower).values
    by_type = r.outcomes.loss.assign_coords(owner_type=("instrument", types)).groupby("owner_type").sum().mean("path")
    np.testing.assert_allclose(by_type.sum(), r.summary.el.sum(), rtol=1e-12)


def test_open_results_keeps_no_file_open(run_file, opened):
    fds = "/proc/self/fd"
    if not os.path.isdir(fds):
        pytest.skip("needs /proc to list open files")
    r = open_results(run_file)
    target = os.path.realpath(run_file)
    assert all(os.path.realpath(os.path.join(fds, fd)) != target for fd in os.listdir(fds))
    assert float(r.outcomes.portfolio_loss.mean()) == pytest.approx(r.summary.attrs["portfolio_el"], rel=1e-12)


def test_simulate_equals_the_cli_file_bitwise(run_file):
    r = simulate(_two_borrowers(), n_paths=N_PATHS, seed=SEED, save_paths=SAVE_PATHS)
    assert r.source is None and r.attrs["seed"] == SEED
    with h5py.File(run_file) as f:
        for name in ("default_step", "default_reason", "loss", "portfolio_loss", "portfolio_loss_nominal"):
            stored = f[f"outcomes/{name}"][:]
            assert r.outcomes[name].dtype == stored.dtype
            assert np.array_equal(r.outcomes[name].values, stored), name
        assert np.array_equal(r.summary.pd.values, f["summary/pd"][:])
        assert np.array_equal(r.paths.crypto.values, f["paths/crypto"][:])


def test_simulate_takes_a_scenario_with_overrides_and_contagion_off():
    assert gpusim.Results is Results and gpusim.open_results is open_results  # exported lazily by the package
    r = gpusim.simulate(
        validate_mapping(small_mapping()), n_paths=500, seed=3, save_paths=0, contagion=False, overrides=["compute.deflation.tight=0.6"]
    )
    assert r.scenario.compute.deflation.tight == 0.6
    assert r.contagion is None and r.paths.sizes["path"] == 0
    assert headline(r)["contagion"] is None


def test_inspect_a_run_without_borrowers_shows_factor_medians(tmp_path):
    config = tmp_path / "market.yaml"
    config.write_text(yaml.safe_dump(small_mapping(borrowers=[])))
    out = tmp_path / "market.h5"
    assert _invoke("run", config, "--paths", 500, "--save-paths", 0, "--out", out, "--quiet").exit_code == 0
    numbers = json.loads(_invoke("inspect", out, "--json").stdout)
    assert "borrowers" not in numbers
    btc = next(f for f in numbers["factors"] if f["factor"] == "crypto" and f["component"] == "BTC")
    with h5py.File(out) as f:
        quantiles = list(f["summary/fan/quantile"][:])
        assert btc["median"] == f["summary/fan/crypto"][0, quantiles.index(0.5), -1]
    text = _invoke("inspect", out).stdout
    assert "median" in text and "BTC" in text and "utilization" in text


@pytest.fixture
def bad_files(tmp_path, run_file):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5\n")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    newer = tmp_path / "newer.h5"
    shutil.copy(run_file, newer)
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    return {"missing": tmp_path / "missing.h5", "text": text, "plain": plain, "newer": newer}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("text", "not a gpusim result (not an HDF5 file)"),
        ("plain", "not a gpusim result (an HDF5 file without"),
        ("newer", f"written by format version {FORMAT_VERSION + 1}"),
    ],
)
def test_unreadable_files_exit_2_with_one_clear_line(kind, message, bad_files):
    path = bad_files[kind]
    for args in (["inspect", path], ["inspect", path, "--json"]):
        result = _invoke(*args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0] and message in lines[0]
        assert result.stdout == "" and "Traceback" not in result.output
    with pytest.raises(ResultsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_results(path)
    with pytest.raises(ResultsError):
        check_result_file(path)
    if kind == "newer":
        assert f"this gpusim reads up to {FORMAT_VERSION}: upgrade gpusim" in lines[0]


def test_docs_api_example_runs(run_file, capsys):
    """docs/api.md's code, pointed at this module's small run and config with few paths."""
    text = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    config = str(run_file.parent / "two.yaml")
    namespace: dict = {}
    for block in blocks:
        code = block.replace('"runs/baseline.h5"', repr(str(run_file))).replace('"baseline"', repr(config))
        exec(re.sub(r"n_paths=[\d_]+", "n_paths=300", code), namespace)
    assert list(namespace["table"].index) == ["neocloud", "project_spv"]
    assert list(namespace["pd_vs_deflation"].index) == [0.30, 0.45, 0.60]
    assert "Orbit Project" in capsys.readouterr().out
