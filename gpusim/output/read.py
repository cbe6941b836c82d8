"""Reading runs back: check a result file, open it as xarray Datasets, summarize its headline.

Every reader (`gpusim inspect`, `gpusim report`, the Python API) goes through
`check_result_file` first, so a missing file, a file that is not a gpusim result and a file
from a newer layout each fail with one clear line instead of an h5py or xarray traceback.
xarray is imported only when a result is opened, so `gpusim --help` does not pay for it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import yaml

from gpusim.model.factor_table import OBSERVED_FACTORS
from gpusim.output.write import BATCH_KIND, FORMAT_VERSION
from gpusim.scenario import ConfigError, Scenario, validate_mapping

if TYPE_CHECKING:
    import xarray as xr

AUXILIARY_COORDS = ("time", "borrower_type", "instrument_borrower")
"""Variables that label a dimension rather than measure something; promoted to coordinates."""

HEADLINE_YEARS = (1, 3, 5)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads a large config_yaml 10x faster


class ResultsError(Exception):
    """A file cannot be read as a gpusim result; the message is one line naming the file."""


def _plain(value: Any) -> Any:
    """HDF5 attribute values as plain Python (int, float, bool, str, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_result_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Root attributes of a gpusim result, after checking the file is one this version reads."""
    p = Path(path)
    if not p.exists():
        raise ResultsError(f"{p}: no such file")
    if p.is_dir():
        raise ResultsError(f"{p}: is a directory, not a gpusim result file")
    try:
        is_hdf5 = h5py.is_hdf5(p)
    except OSError as exc:
        raise ResultsError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if not is_hdf5:
        raise ResultsError(f"{p}: not a gpusim result (not an HDF5 file)")
    try:
        with h5py.File(p, "r") as f:
            attrs = {key: _plain(value) for key, value in f.attrs.items()}
    except OSError as exc:
        raise ResultsError(f"{p}: cannot read: {exc.strerror or exc}") from None
    version = attrs.get("format_version")
    if not isinstance(version, int) or "gpusim_version" not in attrs:
        raise ResultsError(f"{p}: not a gpusim result (an HDF5 file without the format_version and gpusim_version attributes)")
    if version > FORMAT_VERSION:
        raise ResultsError(
            f"{p}: written by format version {version} (gpusim {attrs['gpusim_version']}); "
            f"this gpusim reads up to {FORMAT_VERSION}: upgrade gpusim"
        )
    return attrs


@dataclass(frozen=True, eq=False)
class Results:
    """One run as xarray Datasets with named dimensions (layout: docs/output.md).

    `borrower_type`, `instrument_borrower` and `time` (years) are coordinates in every
    Dataset, so `groupby("instrument_borrower")` or `swap_dims(step="time")` work directly.
    """

    paths: xr.Dataset  # saved factor paths (path, step[, asset | generation])
    outcomes: xr.Dataset | None  # per-path credit outcomes (path, borrower | instrument); None without borrowers
    summary: xr.Dataset  # PD, EL, LGD, VaR/ES, spreads ... with their `_se`
    fan: xr.Dataset  # quantile fans (component, quantile, step)
    contagion: xr.Dataset | None  # with/without the fire-sale chain; None when run with contagion off
    attrs: dict[str, Any]  # root attributes (seed, n_paths, backend, config_yaml ...)
    scenario: Scenario  # the resolved scenario the run simulated
    time: np.ndarray  # years since the scenario start, one per step
    source: str | None = None  # the file read, None for `gpusim.simulate`

    def __repr__(self) -> str:
        a = self.attrs
        return (
            f"Results(scenario={a.get('scenario')!r}, n_paths={a.get('n_paths')}, n_steps={a.get('n_steps')}, "
            f"seed={a.get('seed')}, backend={a.get('backend')!r}, source={self.source!r})"
        )


def _open_group(path: Path, group: str, load: bool = True) -> xr.Dataset:
    import xarray as xr

    ds = xr.open_dataset(path, group=group, engine="h5netcdf")
    ds = ds.set_coords([name for name in AUXILIARY_COORDS if name in ds.data_vars])
    if not load:
        return ds
    with ds:
        return ds.load()


def open_results(path: str | os.PathLike[str], *, lazy_outcomes: bool = False, scenario: str | None = None) -> Results | BatchResults:
    """Open a result file written by `gpusim run`; raise ResultsError if it is not one.

    A file written by `gpusim batch` opens as `BatchResults` (its /batch table), or with
    `scenario=NAME` as the Results of that scenario (docs/batches.md).

    Everything is loaded into memory and the file is closed before returning, so nothing
    keeps it open. `/outcomes` holds n_paths x (borrowers + instruments + 2) values, about
    40 bytes a path for a small portfolio; for runs too large for memory pass
    `lazy_outcomes=True`: `outcomes` then reads from disk on access and keeps the file open
    (read-only) until `results.outcomes.close()`.
    """
    p = Path(path)
    attrs = check_result_file(p)
    root = ""  # the group holding the run: the file, or one scenario of a batch
    if is_batch_file(attrs):
        if scenario is None:
            return open_batch(p, attrs)
        root = f"scenarios/{scenario}/"
        attrs = _batch_scenario_attrs(p, scenario)
    elif scenario is not None:
        raise ResultsError(f"{p}: a single run, not a batch; open it without scenario={scenario!r}")
    with h5py.File(p, "r") as f:
        groups = {name for name in ("paths", "outcomes", "summary", "summary/fan", "summary/contagion") if root + name in f}
        time = np.asarray(f[root + "time"][:], dtype=np.float64) if root + "time" in f else np.array([])
    missing = {"paths", "summary", "summary/fan"} - groups
    if missing:
        raise ResultsError(f"{p}: not a complete gpusim result (missing {', '.join(sorted(missing))})")
    try:
        resolved = validate_mapping(yaml.load(attrs["config_yaml"], Loader=SAFE_LOADER), f"{p} config_yaml")
    except ConfigError as exc:
        raise ResultsError(f"{p}: the stored scenario does not validate with this gpusim: {exc.problems[0]}") from None
    except (KeyError, yaml.YAMLError, TypeError):
        raise ResultsError(f"{p}: not a gpusim result (no readable config_yaml attribute)") from None
    return Results(
        paths=_open_group(p, root + "paths"),
        outcomes=_open_group(p, root + "outcomes", load=not lazy_outcomes) if "outcomes" in groups else None,
        summary=_open_group(p, root + "summary"),
        fan=_open_group(p, root + "summary/fan"),
        contagion=_open_group(p, root + "summary/contagion") if "summary/contagion" in groups else None,
        attrs=attrs,
        scenario=resolved,
        time=time,
        source=str(p),
    )


def _batch_scenario_attrs(path: Path, scenario: str) -> dict[str, Any]:
    """Attributes of one scenario's run in a batch file; ResultsError naming the scenarios it has."""
    with h5py.File(path, "r") as f:
        group = f.get(f"scenarios/{scenario}")
        if not isinstance(group, h5py.Group):
            raise ResultsError(f"{path}: no scenario {scenario!r} in this batch (have {', '.join(f['scenarios'])})")
        return {key: _plain(value) for key, value in group.attrs.items()}


def _number(value: Any) -> float | None:
    """A float, or None for NaN and infinities (JSON has no NaN)."""
    x = float(value)
    return x if math.isfinite(x) else None


def headline(results: Results | BatchResults) -> dict[str, Any]:
    """The numbers `gpusim inspect` shows, as plain Python (floats, None for NaN), JSON-ready.

    Run facts; per borrower the PD at 1, 3 and 5 years (those within the horizon) and at the
    horizon, and the PD of a loss-bearing default by the horizon (None in files written without
    it); per instrument EL, LGD and spreads; portfolio EL, VaR and ES; the contagion
    share. A run without borrowers gets factor fan quantiles at the horizon instead.
    """
    if isinstance(results, BatchResults):
        raise ResultsError(
            f"{results.source}: a batch of {len(results.scenarios)} scenarios, not one run: `gpusim report FILE --out DIR` compares "
            "them; each scenario is the group /scenarios/<name> (docs/batches.md)"
        )
    a = results.attrs
    grid = results.scenario.time
    facts = {
        "file": results.source,
        "scenario": a.get("scenario"),
        "seed": a.get("seed"),
        "n_paths": a.get("n_paths"),
        "n_steps": a.get("n_steps"),
        "horizon_years": grid.horizon_years,
        "backend": a.get("backend"),
        "device": a.get("device"),
        "dtype": a.get("dtype"),
        "runtime_s": a.get("runtime_s"),
        "created_utc": a.get("created_utc"),
        "gpusim_version": a.get("gpusim_version"),
        "format_version": a.get("format_version"),
    }
    out: dict[str, Any] = {"run": facts}
    s = results.summary
    if results.outcomes is None and "pd" not in s:
        out["factors"] = _factor_fans(results)
        return out

    years = [y for y in HEADLINE_YEARS if y * grid.steps_per_year <= grid.n_steps]
    borrower_type = s["borrower_type"].values
    out["borrowers"] = [
        {
            "name": str(name),
            "type": str(borrower_type[b]),
            "pd": {f"{y}y": _number(s["pd"].values[b, y * grid.steps_per_year]) for y in years},
            "pd_horizon": _number(s["pd"].values[b, -1]),
            "pd_horizon_se": _number(s["pd_se"].values[b, -1]),
            "pd_loss_bearing_horizon": _number(s["pd_loss_bearing"].values[b]) if "pd_loss_bearing" in s else None,
        }
        for b, name in enumerate(s["borrower"].values)
    ]
    owner = s["instrument_borrower"].values
    out["instruments"] = [
        {
            "name": str(name),
            "borrower": str(owner[i]),
            "el": _number(s["el"].values[i]),
            "el_se": _number(s["el_se"].values[i]),
            "lgd": _number(s["lgd"].values[i]) if s["lgd_defined"].values[i] else None,
            "lgd_se": _number(s["lgd_se"].values[i]) if s["lgd_defined"].values[i] else None,
            "breakeven_spread_bps": _number(s["breakeven_spread_bps"].values[i]),
            "breakeven_spread_bps_se": _number(s["breakeven_spread_bps_se"].values[i]),
            "market_spread_bps": _number(s["market_spread_bps"].values[i]),
            "spread_gap_bps": _number(s["spread_gap_bps"].values[i]),
        }
        for i, name in enumerate(s["instrument"].values)
    ]
    out["portfolio"] = {
        "el": _number(s.attrs["portfolio_el"]),
        "el_se": _number(s.attrs["portfolio_el_se"]),
        "el_nominal": _number(s.attrs["portfolio_el_nominal"]),
        "levels": [
            {
                "level": float(level),
                "var": _number(s["var"].values[k]),
                "var_se": _number(s["var_se"].values[k]),
                "es": _number(s["es"].values[k]),
                "es_se": _number(s["es_se"].values[k]),
            }
            for k, level in enumerate(s["level"].values)
        ],
    }
    c = results.contagion
    out["contagion"] = (
        None
        if c is None
        else {
            "share_of_el": _number(c.attrs["contagion_share_of_el"]),
            "portfolio_el_with_chain": _number(c.attrs["portfolio_el_with_chain"]),
            "portfolio_el_without_chain": _number(c.attrs["portfolio_el_without_chain"]),
        }
    )
    return out


def _factor_fans(results: Results) -> list[dict[str, Any]]:
    """5 %, median and 95 % of each market factor at the horizon (runs without borrowers)."""
    fan = results.fan
    rows = []
    for name in (f.name for f in OBSERVED_FACTORS):
        if name not in fan:
            continue
        da = fan[name].isel(step=-1)
        component = [d for d in da.dims if d != "quantile"]
        labels = [str(x) for x in fan[component[0]].values] if component else [None]
        for k, label in enumerate(labels):
            values = da.isel({component[0]: k}) if component else da
            rows.append(
                {
                    "factor": name,
                    "component": label,
                    "units": fan[name].attrs.get("units"),
                    **{key: _number(values.sel(quantile=q).item()) for key, q in (("p05", 0.05), ("median", 0.5), ("p95", 0.95))},
                }
            )
    return rows


def is_batch_file(attrs: dict[str, Any]) -> bool:
    """True for the root attributes of a file written by `gpusim batch`."""
    return attrs.get("kind") == BATCH_KIND


@dataclass(frozen=True)
class BatchResults:
    """A batch file opened for reading: the /batch table as an xarray Dataset and the root attributes.

    `scenario(name)` opens one scenario's full results (or `gpusim.open_results(FILE, scenario=name)`).
    """

    table: xr.Dataset
    attrs: dict[str, Any]
    source: str

    outcomes: None = None
    """No per-path outcomes at the top of a batch (each scenario has its own); readers of single runs check this."""

    @property
    def scenarios(self) -> list[str]:
        return [str(s) for s in self.table["scenario"].values]

    def scenario(self, name: str) -> Results:
        """One scenario's full results, as `open_results` gives for a single run."""
        results = open_results(self.source, scenario=name)
        assert isinstance(results, Results)
        return results

    def __repr__(self) -> str:
        a = self.attrs
        return (
            f"BatchResults(batch={a.get('batch')!r}, scenarios={len(self.scenarios)}, n_paths={a.get('n_paths')}, source={self.source!r})"
        )


def open_batch(path: str | os.PathLike[str], attrs: dict[str, Any]) -> BatchResults:
    """The /batch table of a batch file whose root `attrs` were already checked (gpusim.output.read.check_result_file)."""
    import xarray as xr

    with xr.open_dataset(path, group="batch", engine="h5netcdf") as ds:
        table = ds.load()
    return BatchResults(table=table, attrs=attrs, source=str(path))
