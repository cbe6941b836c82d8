"""The result file as analysts open it: tidy groups, netCDF-C readable, CF units and flags, honest fans, old files.

One 20,000-path baseline file is written per session; every check reads it the way an analyst's
tool would (xarray with either engine, ncdump, pint).
"""

from __future__ import annotations

import gzip
import math
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import gpusim.backends.array_model as array_model
import gpusim.engine
from gpusim.api import open_results
from gpusim.backends import get_backend
from gpusim.cli import main
from gpusim.model.constants import DefaultReason
from gpusim.model.factor_table import FACTORS_BY_NAME
from gpusim.output.read import Results
from gpusim.output.write import FORMAT_VERSION
from gpusim.scenario import load_scenario, scenario_from
from gpusim.spec import build_spec
from gpusim.statistics import FAN_QUANTILES, Binning, quantiles_from_counts

N_PATHS = 20_000
BASELINE = load_scenario("baseline")
N_BORROWERS = len(BASELINE.borrowers)
N_INSTRUMENTS = sum(len(b.debt) for b in BASELINE.borrowers)
V1_FIXTURE = Path(__file__).parent / "data" / "results_format_v1.h5.gz"
"""`gpusim run baseline --paths 64 --seed 3 --save-paths 4 --set time.n_steps=24`, written by format version 1."""

GROUP_DIMS = {
    "/": {"step"},
    "paths": {"path", "step", "asset", "generation"},
    "outcomes": {"path", "borrower", "instrument"},
    "summary": {"step", "borrower", "other_borrower", "instrument", "level"},
    "summary/fan": {"quantile", "step", "asset", "generation", "borrower"},
    "summary/contagion": {"borrower", "instrument", "level"},
}


@pytest.fixture(scope="session")
def baseline_file(tmp_path_factory) -> Path:
    """The shipped baseline at 20,000 paths (about 40 s on two cores), 100 saved paths."""
    out = tmp_path_factory.mktemp("format") / "baseline.h5"
    argv = ["run", "baseline", "--paths", N_PATHS, "--seed", 5, "--save-paths", 100, "--backend", "numpy", "--quiet", "--out", out]
    result = CliRunner().invoke(main, [str(a) for a in argv], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def _group(name: str) -> str | None:
    return None if name == "/" else name


@pytest.mark.parametrize("group", sorted(GROUP_DIMS))
def test_every_group_becomes_a_dataframe_in_seconds_with_its_own_dimensions_only(baseline_file, group):
    with xr.open_dataset(baseline_file, group=_group(group), engine="h5netcdf") as ds:
        assert set(ds.sizes) == GROUP_DIMS[group]
        started = time.perf_counter()
        frame = ds.to_dataframe()
        elapsed = time.perf_counter() - started
        assert len(frame) == math.prod(ds.sizes.values())
        assert list(frame.columns) == [name for name in ds.variables if name not in ds.dims]
    assert elapsed < 20.0, f"{group}: to_dataframe took {elapsed:.1f} s"
    if group == "outcomes":
        assert len(frame) == N_PATHS * N_BORROWERS * N_INSTRUMENTS  # paths x borrowers x instruments of the baseline


def test_results_and_its_tidy_tables_match_the_file(baseline_file):
    r = open_results(baseline_file)
    assert isinstance(r, Results)
    instruments, borrowers, portfolio = r.instruments(), r.borrowers(), r.portfolio()
    assert len(instruments) == N_INSTRUMENTS and len(borrowers) == N_BORROWERS and len(portfolio) == 1
    assert all(c.endswith(("_usd", "_bps", "_share", "_share_of_principal", "_of_el")) for c in instruments.columns.drop("borrower"))
    np.testing.assert_allclose(instruments["el_usd"].sum(), portfolio["el_usd"].iloc[0], rtol=1e-9)
    np.testing.assert_allclose(borrowers["principal_usd"].sum(), portfolio["principal_usd"].iloc[0])
    np.testing.assert_allclose(borrowers["el_usd"], instruments.groupby("borrower")["el_usd"].sum()[borrowers.index])
    reasons = borrowers[[f"pd_{reason.label}_share" for reason in DefaultReason if reason != DefaultReason.NONE]].sum(axis=1)
    np.testing.assert_allclose(reasons, borrowers["pd_horizon_share"], atol=1e-12)  # every default has exactly one reason
    assert (borrowers["pd_without_loss_share"] <= borrowers["pd_horizon_share"]).all()
    table = r.pd_table([1, 2.5, 10])
    assert list(table.columns) == ["pd_1y_share", "pd_2.5y_share", "pd_10y_share"]
    np.testing.assert_array_equal(table["pd_10y_share"], borrowers["pd_horizon_share"])
    assert (np.diff(table.to_numpy(), axis=1) >= 0).all()  # cumulative PDs never fall
    with pytest.raises(ValueError, match="not a step"):
        r.pd_table([1 / 24])
    page = r._repr_html_()
    assert "<table" in page and "el_usd_m" in page and "Helios DDTL-1" in page


def test_the_file_opens_with_netcdf4_as_xarray_default_engine(baseline_file):
    pytest.importorskip("netCDF4", reason="netCDF4 is in the test extra: pip install -e '.[test]'")
    for group in GROUP_DIMS:
        where = _group(group)
        with xr.open_dataset(baseline_file, group=where) as ds, xr.open_dataset(baseline_file, group=where, engine="h5netcdf") as h5:
            assert ds.attrs.get("Conventions", "CF-1.10") == "CF-1.10"
            if group == "outcomes":  # the compressed, checksummed per-path data decode through netCDF-C
                np.testing.assert_array_equal(ds["loss"].values, h5["loss"].values)
                assert int(ds["default_reason"].max()) <= max(DefaultReason)
            if "step" in ds.dims:
                assert ds["date"].values[0] == np.datetime64("2026-01-01") and ds["date"].values[12] == np.datetime64("2027-01-01")
    with xr.open_dataset(baseline_file) as root:
        assert root.attrs["Conventions"] == "CF-1.10" and root.attrs["format_version"] == FORMAT_VERSION == 2


def test_ncdump_reads_the_header_and_the_compressed_outcomes(baseline_file):
    ncdump = shutil.which("ncdump")
    if ncdump is None:
        pytest.skip("ncdump (netCDF-C) is not installed; on Debian: apt-get install netcdf-bin")
    header = subprocess.run([ncdump, "-h", str(baseline_file)], capture_output=True, text=True, check=True).stdout
    assert ':Conventions = "CF-1.10"' in header and "group: outcomes" in header and "group: fan" in header
    data = subprocess.run([ncdump, "-v", "/outcomes/portfolio_loss", str(baseline_file)], capture_output=True, text=True, check=True).stdout
    first = data.split("portfolio_loss = ", 1)[1].split(",", 1)[0]
    with h5py.File(baseline_file, "r") as f:
        assert float(first) == pytest.approx(f["outcomes/portfolio_loss"][0], rel=1e-12)


def test_every_units_attribute_parses_with_pint_and_codes_are_cf_flags(baseline_file):
    pint = pytest.importorskip("pint", reason="pint is in the test extra: pip install -e '.[test]'")
    units = pint.UnitRegistry()
    units.define("USD = [currency]")  # UDUNITS has no currencies; CF files write them as ISO 4217 codes
    seen: dict[str, str] = {}
    unlabelled: list[str] = []

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.dtype.kind not in "iuf" or ("NAME" in obj.attrs and name.endswith("path")):
            return
        value = obj.attrs.get("units")
        if value is None:
            if "flag_values" not in obj.attrs and not name.endswith("step"):
                unlabelled.append(name)
            return
        text = value.decode() if isinstance(value, bytes) else str(value)
        seen[name] = text
        reference = text.split(" since ")
        units.parse_expression(reference[0])  # "days since 2026-01-01": the unit before the reference date
        if len(reference) == 2:
            np.datetime64(reference[1])

    with h5py.File(baseline_file, "r") as f:
        f.visititems(visit)
        reason = f["outcomes/default_reason"].attrs
        assert reason["flag_meanings"].split() == [r.label for r in DefaultReason]
        np.testing.assert_array_equal(reason["flag_values"], [r.value for r in DefaultReason])
        assert f["paths/regime"].attrs["flag_meanings"] == "easy tight"
    assert not unlabelled, f"numeric variables without units or flags: {unlabelled}"
    assert seen["summary/el"] == "USD" and seen["summary/pd"] == "1" and seen["time"] == "year"
    assert units.parse_expression(seen["summary/fan/rental_rate"]).dimensionality == units.parse_expression("USD/hour").dimensionality
    assert len(seen) > 60


def test_a_quantile_beyond_the_grid_is_infinite_never_the_grid_edge():
    """Counts on a linear 0..4 grid whose values sit above it (clipped into the top bin) and inside it."""
    binning = Binning(reference=np.zeros(1), lo=0.0, hi=4.0, log=False, n_bins=8)
    counts = np.zeros((2, 1, 9), dtype=np.int64)
    counts[0, 0, 7] = 100  # every value at or beyond the top edge
    counts[1, 0, 3] = 100  # every value in [1.5, 2)
    values, errors = quantiles_from_counts(counts, binning, (0.5,), bounded_below=True)
    assert values[0, 0, 0] == np.inf and np.isnan(errors[0, 0, 0])
    assert 1.5 <= values[0, 0, 1] <= 2.0


def test_fans_of_borrowers_beyond_the_old_ltv_grid_are_honest(monkeypatch):
    """The stored DSCR and LTV quantiles against the ratios the model produced, path by path.

    A finite stored quantile x_q must satisfy #{x < x_q - w} <= q n <= #{x <= x_q + w} (w the bin
    width); +inf / -inf must mean the true quantile is beyond valid_max / valid_min.
    """
    scenario = scenario_from("perfect_storm", ["time.n_steps=48"])
    spec = build_spec(scenario, contagion=False)
    recorded: dict[str, list[np.ndarray]] = {"dscr": [], "ltv": []}
    original = array_model.bin_index

    def spy(coord, binning, offset, xp):
        for name in recorded:
            if binning is spec.binnings[name]:
                recorded[name].append(np.array(coord, dtype=np.float64))
        return original(coord, binning, offset, xp)

    monkeypatch.setattr(array_model, "bin_index", spy)
    n = 400
    result = gpusim.engine.run(spec, get_backend("numpy"), n, seed=9, save_paths=0, chunk_paths=n, workers=1, show_progress=False)
    beyond_old_grid = 0
    for name, stored in (("dscr", result.fan["dscr"][0]), ("ltv", result.fan["ltv"][0])):
        grid = FACTORS_BY_NAME[name].fan
        width = spec.binnings[name].width
        lowest, highest = (grid.lo if grid.bounded_below else grid.lo + width), grid.hi - width
        raw = np.stack(recorded[name])  # (steps, borrowers, paths)
        assert raw.shape == (spec.layout.n_steps + 1, spec.layout.n_borrowers, n)
        for step in range(raw.shape[0]):
            for b in range(raw.shape[1]):
                x = raw[step, b][~np.isnan(raw[step, b])]  # alive paths only
                for qi, q in enumerate(FAN_QUANTILES):
                    v, target = stored[b, qi, step], q * len(x)
                    if len(x) == 0:
                        assert np.isnan(v)
                    elif v == np.inf:
                        assert np.sum(x < highest) <= target, (name, step, b, q)
                    elif v == -np.inf:
                        assert np.sum(x < lowest + width) >= target, (name, step, b, q)
                    else:
                        assert np.sum(x < v - width) <= target <= np.sum(x <= v + width), (name, step, b, q, v)
                        assert lowest <= v <= highest + width
                    beyond_old_grid += name == "ltv" and q == 0.5 and len(x) > 0 and np.median(x) > 4.0
    assert beyond_old_grid > 0  # perfect_storm has borrowers whose median LTV passes 4, the old grid's top


def test_a_format_1_file_still_opens_with_its_own_dimensions_only(tmp_path):
    path = tmp_path / "v1.h5"
    path.write_bytes(gzip.decompress(V1_FIXTURE.read_bytes()))
    r = open_results(path)
    assert isinstance(r, Results) and r.attrs["format_version"] == 1
    assert set(r.outcomes.dims) == {"path", "borrower", "instrument"}  # a format-1 group carried every dimension
    assert set(r.summary.sizes) == GROUP_DIMS["summary"] and len(r.summary.to_dataframe()) == math.prod(r.summary.sizes.values())
    assert r.outcomes.sizes["path"] == 64 and len(r.instruments()) == 20  # the fixture was written on the baseline of its day
    assert r.pd_table([1, 2]).shape == (7, 2)
    np.testing.assert_allclose(r.portfolio()["el_usd"].iloc[0], r.outcomes["portfolio_loss"].mean(), rtol=1e-9)
    assert r.fan["ltv"].sizes == {"borrower": 7, "quantile": 7, "step": 25}
