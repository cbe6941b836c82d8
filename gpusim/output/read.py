"""Reading runs back: check a result file, open it as xarray Datasets, summarize its headline.

Every reader (`gpusim inspect`, `gpusim report`, the Python API) goes through
`check_result_file` first, so a missing file, a file that is not a gpusim result and a file
from a newer layout each fail with one clear line instead of an h5py or xarray traceback.
xarray is imported only when a result is opened, so `gpusim --help` does not pay for it.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import yaml

from gpusim.model.constants import DefaultReason
from gpusim.model.factor_table import OBSERVED_FACTORS
from gpusim.output.desk_numbers import desk_numbers
from gpusim.output.write import BATCH_KIND, FORMAT_VERSION
from gpusim.risk import DEFAULT_TYPES
from gpusim.scenario import ConfigError, Scenario, validate_mapping

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

AUXILIARY_COORDS = ("time", "date", "borrower_type", "instrument_borrower")
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
    except (OSError, RuntimeError, KeyError) as exc:
        reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ResultsError(f"{p}: cannot read: {reason}") from None
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

    # Tidy tables: one row per instrument, borrower or run, units in the column names
    # (`_usd`, `_bps` a year, `_share` for a fraction 0..1, `_years`), ready for pandas.

    def _credit_summary(self) -> xr.Dataset:
        if "pd" not in self.summary:
            raise ResultsError(f"{self.source or 'this run'}: a run without borrowers has no credit tables (see .fan and .paths)")
        return self.summary

    def _principal(self) -> np.ndarray:
        """Drawn principal at t_0 of each instrument, in the layout's order (borrowers, then their debt)."""
        return np.array([i.principal for b in self.scenario.borrowers for i in b.debt], dtype=np.float64)

    def instruments(self) -> pd.DataFrame:
        """One row per instrument: its borrower, principal, expected loss (and as a share of the
        principal: NaN for an instrument with no principal at t_0, issued later on the path), LGD,
        break-even against charged spread, and contribution to ES 99 %."""
        import pandas as pd

        s = self._credit_summary()
        principal = self._principal()
        el = s["el"].values
        defined = s["lgd_defined"].values.astype(bool)
        table = pd.DataFrame(
            {
                "borrower": s["instrument_borrower"].values.astype(str),
                "principal_usd": principal,
                "el_usd": el,
                "el_se_usd": s["el_se"].values,
                "el_share_of_principal": np.divide(el, principal, out=np.full_like(el, np.nan), where=principal > 0),
                "lgd_share": np.where(defined, s["lgd"].values, np.nan),
                "lgd_se_share": np.where(defined, s["lgd_se"].values, np.nan),
                "breakeven_spread_bps": s["breakeven_spread_bps"].values,
                "breakeven_spread_se_bps": s["breakeven_spread_bps_se"].values,
                "market_spread_bps": s["market_spread_bps"].values,
                "spread_gap_bps": s["spread_gap_bps"].values,
                "risk_contribution_usd": s["risk_contribution"].values,
            },
            index=pd.Index(s["instrument"].values.astype(str), name="instrument"),
        )
        if self.contagion is not None:
            table["el_without_chain_usd"] = self.contagion["el_without_chain"].values
        return table

    def borrowers(self) -> pd.DataFrame:
        """One row per borrower: type, principal owed, PD by the horizon, expected loss, the PD by
        type of default with standard errors (payment, covenant, maturity; pd_by_type), and (with
        the per-path outcomes) the PD split by reason and the share of defaults that lose nothing."""
        import pandas as pd

        s = self._credit_summary()
        names = s["borrower"].values.astype(str)
        owner = s["instrument_borrower"].values.astype(str)
        principal, el = self._principal(), s["el"].values
        table = pd.DataFrame(
            {
                "type": s["borrower_type"].values.astype(str),
                "principal_usd": [principal[owner == b].sum() for b in names],
                "pd_horizon_share": s["pd"].values[:, -1],
                "pd_horizon_se_share": s["pd_se"].values[:, -1],
                "el_usd": [el[owner == b].sum() for b in names],
            },
            index=pd.Index(names, name="borrower"),
        )
        split = [pd_by_type(self, b) for b in range(len(names))]
        if all(row is not None for row in split):
            for kind in DEFAULT_TYPES:
                table[f"pd_{kind}_share"] = [row[kind]["pd"] for row in split]
                table[f"pd_{kind}_se_share"] = [row[kind]["se"] for row in split]
        o = self.outcomes
        if o is not None:
            reason = o["default_reason"].values
            for code in DefaultReason:
                if code != DefaultReason.NONE:
                    table[f"pd_{code.label}_share"] = (reason == code.value).mean(axis=0)
            loss = o["loss"].values
            lost = np.stack([loss[:, owner == b].sum(axis=1) > 0 for b in names], axis=1)
            table["pd_without_loss_share"] = ((o["default_step"].values >= 0) & ~lost).mean(axis=0)
        return table

    def pd_table(self, tenors: Sequence[float] | None = None) -> pd.DataFrame:
        """Cumulative PD of each borrower at each tenor (years from the start; default every whole
        year up to the horizon), one column per tenor: `pd_1y_share`, `pd_2.5y_share` ..."""
        import pandas as pd

        s = self._credit_summary()
        horizon = float(self.time[-1])
        if tenors is None:
            tenors = [float(y) for y in range(1, math.floor(horizon + 1e-9) + 1)]
        columns = {}
        for tenor in tenors:
            k = int(np.argmin(np.abs(self.time - tenor)))
            if not math.isclose(float(self.time[k]), tenor, abs_tol=1e-9):
                step = self.time[1] - self.time[0]
                raise ValueError(f"tenor {tenor:g} years is not a step of this run (steps every {step:g} years to {horizon:g})")
            columns[f"pd_{tenor:g}y_share"] = s["pd"].values[:, k]
        return pd.DataFrame(columns, index=pd.Index(s["borrower"].values.astype(str), name="borrower"))

    def portfolio(self) -> pd.DataFrame:
        """The run's headline as one row (indexed by scenario, so runs concatenate): principal,
        EL and its share of principal, VaR and ES at each level, and the contagion share."""
        import pandas as pd

        s = self._credit_summary()
        principal = float(self._principal().sum())
        row: dict[str, float] = {
            "principal_usd": principal,
            "el_usd": float(s.attrs["portfolio_el"]),
            "el_se_usd": float(s.attrs["portfolio_el_se"]),
            "el_share_of_principal": float(s.attrs["portfolio_el"]) / principal,
            "el_nominal_usd": float(s.attrs["portfolio_el_nominal"]),
        }
        for k, level in enumerate(s["level"].values):
            tag = f"{float(level) * 100:g}".replace(".", "")
            for name in ("var", "es"):
                row[f"{name}_{tag}_usd"] = float(s[name].values[k])
                row[f"{name}_{tag}_se_usd"] = float(s[f"{name}_se"].values[k])
        if self.contagion is not None:
            row["el_without_chain_usd"] = float(self.contagion.attrs["portfolio_el_without_chain"])
            row["contagion_share_of_el"] = float(self.contagion.attrs["contagion_share_of_el"])
        return pd.DataFrame([row], index=pd.Index([str(self.attrs.get("scenario"))], name="scenario"))

    def _repr_html_(self) -> str:
        """Jupyter's view: the run's facts, then its portfolio headline and instrument table in USD m."""
        a = self.attrs
        facts = ", ".join(f"{key} {html.escape(str(a.get(key)))}" for key in ("n_paths", "n_steps", "seed", "backend", "dtype"))
        parts = [f"<h4>gpusim Results: {html.escape(str(a.get('scenario')))}</h4>", f"<p>{facts}; file {html.escape(str(self.source))}</p>"]
        if "pd" not in self.summary:
            parts.append(f"<p>No borrowers: market factors only ({', '.join(html.escape(str(v)) for v in self.fan.data_vars)}).</p>")
            return "".join(parts)
        parts.append(_in_millions(self.portfolio()).T.to_html(float_format=lambda v: f"{v:,.4g}"))
        parts.append(_in_millions(self.instruments()).to_html(float_format=lambda v: f"{v:,.4g}"))
        tables = ", ".join(f"<code>.{name}()</code>" for name in ("portfolio", "instruments", "borrowers", "pd_table"))
        parts.append(f"<p>As pandas DataFrames (full precision, USD): {tables}.</p>")
        return "".join(parts)


def _in_millions(table: pd.DataFrame) -> pd.DataFrame:
    """A table for reading: every `_usd` column in USD millions (`_usd_m`)."""
    usd = [c for c in table.columns if c.endswith("_usd")]
    return table.assign(**{c: table[c] / 1e6 for c in usd}).rename(columns={c: f"{c}_m" for c in usd})


def _open_group(path: Path, group: str, load: bool = True) -> xr.Dataset:
    import xarray as xr

    ds = xr.open_dataset(path, group=group, engine="h5netcdf")
    ds = ds.set_coords([name for name in AUXILIARY_COORDS if name in ds.data_vars])
    used = {dim for variable in ds.data_vars.values() for dim in variable.dims}
    # a format-1 file carries every dimension in every group: keep those the group's data use
    ds = ds.drop_vars([name for name, variable in ds.variables.items() if set(variable.dims) - used])
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
    try:
        return _open_checked(p, attrs, lazy_outcomes, scenario)
    except (OSError, RuntimeError) as exc:  # HDF5 refuses a chunk whose Fletcher-32 checksum fails
        raise ResultsError(damage_report(p, exc)) from None


def damage_report(path: Path, exc: BaseException) -> str:
    """One line for a file HDF5 cannot read: the first dataset whose data fails its checksum, if any."""
    try:
        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for name in names:
                try:
                    f[name][()]
                except (OSError, RuntimeError):
                    return f"{path}: dataset /{name} fails its checksum: the file is damaged (copy it again or rerun the simulation)"
    except (OSError, RuntimeError, KeyError):
        pass  # damaged beyond listing its datasets: report HDF5's own first line
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{path}: the file is damaged: {first}"


def _open_checked(p: Path, attrs: dict[str, Any], lazy_outcomes: bool, scenario: str | None) -> Results | BatchResults:
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


def pd_by_type(results: Results, b: int) -> dict[str, dict[str, float | None]] | None:
    """Borrower b's PD by the horizon by type of default (payment, covenant, maturity), each with its
    standard error: from the summary, or from the per-path reasons in a file written before the
    summary had them (format 2); None without either."""
    s = results.summary
    if all(f"pd_{kind}" in s for kind in DEFAULT_TYPES):
        return {kind: {"pd": _number(s[f"pd_{kind}"].values[b]), "se": _number(s[f"pd_{kind}_se"].values[b])} for kind in DEFAULT_TYPES}
    o = results.outcomes
    if o is None:
        return None
    reason = np.asarray(o["default_reason"].values[:, b])
    n = max(reason.shape[0], 1)
    out = {}
    for kind, codes in DEFAULT_TYPES.items():
        p = float(np.isin(reason, [c.value for c in codes]).mean()) if reason.shape[0] else 0.0
        out[kind] = {"pd": p, "se": math.sqrt(p * (1.0 - p) / n)}
    return out


def headline(results: Results | BatchResults) -> dict[str, Any]:
    """The numbers `gpusim inspect` shows, as plain Python (floats, None for NaN), JSON-ready.

    Run facts; per borrower the PD at 1, 3 and 5 years (those within the horizon) and at the
    horizon, the PD of a loss-bearing default by the horizon (None in files written without
    it) and the PD by type of default with standard errors (`pd_by_type`); per instrument EL, LGD
    and spreads; portfolio EL, VaR and ES; the contagion share. A run without borrowers gets
    factor fan quantiles at the horizon instead.
    """
    if isinstance(results, BatchResults):
        raise ResultsError(
            f"{results.source}: a batch of {len(results.scenarios)} scenarios, not one run: `gpusim report FILE --out PAGE.html` compares "
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
            "pd_by_type": pd_by_type(results, b),
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
    out["desk"] = desk_numbers(results)
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


def batch_headline(batch: BatchResults) -> dict[str, Any]:
    """A batch file's facts and its /batch table, one entry per scenario, as plain JSON-ready Python (None for NaN)."""
    a, t = batch.attrs, batch.table
    facts = {key: a.get(key) for key in ("batch", "n_scenarios", "n_paths", "seed", "dtype", "contagion", "backend", "created_utc")}
    facts |= {"file": batch.source, "level": _number(t.attrs.get("level", math.nan)), "gpusim_version": a.get("gpusim_version")}
    columns = [name for name, column in t.data_vars.items() if column.dims == ("scenario",)]
    borrowers = [str(b) for b in t["borrower"].values] if "borrower" in t.coords else []
    rows = []
    for k, name in enumerate(batch.scenarios):
        row: dict[str, Any] = {"name": name}
        for column in columns:
            value = t[column].values[k]
            row[column] = _number(value) if np.issubdtype(np.asarray(value).dtype, np.floating) else _plain(value)
        if "pd_horizon" in t:
            row["pd_horizon"] = {b: _number(t["pd_horizon"].values[k, j]) for j, b in enumerate(borrowers)}
        rows.append(row)
    return {"batch": facts, "scenarios": rows}


def open_batch(path: str | os.PathLike[str], attrs: dict[str, Any]) -> BatchResults:
    """The /batch table of a batch file whose root `attrs` were already checked (gpusim.output.read.check_result_file)."""
    import xarray as xr

    with xr.open_dataset(path, group="batch", engine="h5netcdf") as ds:
        table = ds.load()
    return BatchResults(table=table, attrs=attrs, source=str(path))
