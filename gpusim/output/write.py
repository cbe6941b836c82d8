"""HDF5 output (h5py), laid out so xarray opens each group with named dimensions.

Coordinates are HDF5 dimension scales inside each group (`xarray.open_dataset(FILE,
group="paths", engine="h5netcdf")`), and `time` (years) rides along as a CF auxiliary
coordinate of the `step` dimension. The file is written under a hidden temporary name in the
target folder and renamed only when complete, so a killed run never leaves a file that looks
finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from gpusim.model.constants import DefaultReason
from gpusim.model.factor_table import CREDIT_RATIOS, OBSERVED_FACTORS, REGIME_UNITS
from gpusim.risk import DEFAULT_LEVELS as RISK_LEVELS
from gpusim.scenario import to_yaml
from gpusim.spec import ChunkResult, RunSpec
from gpusim.statistics import FAN_QUANTILES
from gpusim.version import __version__

if TYPE_CHECKING:
    from gpusim.engine import RunResult

FORMAT_VERSION = 1
"""Version of this layout; readers refuse files from a newer version."""

BATCH_KIND = "batch"
"""Root attribute `kind` of a batch file (a single run file has none)."""

PATH_FACTORS: dict[str, tuple[tuple[str, ...], str]] = {
    **{f.name: (("path", "step", *f.component_dims), f.units) for f in OBSERVED_FACTORS},
    "regime": (("path", "step"), REGIME_UNITS),
}
"""Dimensions and units of each saved path dataset (/paths)."""

REASON_CODES = ", ".join(f"{reason.value} {reason.label}" for reason in DefaultReason)

OUTCOMES: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "default_step": (("path", "borrower"), np.int16, "step index k of the default in (t_k, t_k+1], -1 = survived"),
    "default_reason": (("path", "borrower"), np.int8, f"code: {REASON_CODES}"),
    "loss": (("path", "instrument"), np.float64, "USD, discounted to t_0 at the base curve"),
    "portfolio_loss": (("path",), np.float64, "USD, discounted to t_0 at the base curve"),
    "portfolio_loss_nominal": (("path",), np.float64, "USD, undiscounted"),
}


def _write_credit_summary(summary: h5py.Group, result: RunResult) -> None:
    """PDs, EL, LGD, VaR/ES, contributions, correlations, spreads and contagion: the summary group of docs/output.md."""
    risk = result.risk
    assert risk is not None
    spec = result.spec
    usd = "USD, discounted to t_0"
    summary["level"] = np.array(RISK_LEVELS)
    summary["level"].make_scale("level")
    table = {
        "pd": (("borrower", "step"), "cumulative probability of default by t_k"),
        "el": (("instrument",), usd),
        "lgd": (("instrument",), "loss / exposure at default (0 where no default occurred, see lgd_defined)"),
        "var": (("level",), usd),
        "es": (("level",), usd),
        "risk_contribution": (("instrument",), f"{usd}: E[loss_i | portfolio loss in the 99 % tail], sums to ES 99 %"),
        "breakeven_spread_bps": (("instrument",), "bps a year: expected discounted loss / risky annuity"),
    }
    for name, (dims, units) in table.items():
        _write(summary, name, risk[name], dims, units)
        _write(summary, f"{name}_se", risk[f"{name}_se"], dims, units)
    if "pd_loss_bearing" in risk:
        units = "probability of a loss-bearing default by the horizon: the borrower defaults and some lender of it loses more than 0"
        _write(summary, "pd_loss_bearing", risk["pd_loss_bearing"], ("borrower",), units)
        _write(summary, "pd_loss_bearing_se", risk["pd_loss_bearing_se"], ("borrower",), units)
    _write(summary, "lgd_defined", risk["lgd_defined"].astype(np.int8), ("instrument",), "1 if the borrower defaulted on some path")
    corr = summary.create_dataset("default_correlation", data=risk["default_correlation"])
    corr_se = summary.create_dataset("default_correlation_se", data=risk["default_correlation_se"])
    summary.create_dataset("other_borrower", data=summary["borrower"][:], dtype=h5py.string_dtype())
    summary["other_borrower"].make_scale("other_borrower")
    for ds in (corr, corr_se):
        _attach(ds, summary, ("borrower", "other_borrower"))
        ds.attrs["units"] = "correlation of default indicators by the horizon"
    market = np.array([i.market_spread_bps for b in spec.scenario.borrowers for i in b.debt])
    _write(summary, "market_spread_bps", market, ("instrument",), "bps a year charged over the base curve")
    _write(summary, "spread_gap_bps", market - risk["breakeven_spread_bps"], ("instrument",), "market minus break-even, bps")
    _write(summary, "spread_gap_bps_se", risk["breakeven_spread_bps_se"], ("instrument",), "bps (the market spread is known)")
    summary.attrs["portfolio_el"] = float(risk["portfolio_el"])
    summary.attrs["portfolio_el_se"] = float(risk["portfolio_el_se"])
    summary.attrs["portfolio_el_nominal"] = float(result.portfolio_loss_nominal or 0.0)
    off = result.risk_without_chain
    if off is not None:
        contagion = summary.create_group("contagion")
        _coordinates(contagion, spec, levels=True)
        for name, dims in (("el", ("instrument",)), ("var", ("level",)), ("es", ("level",))):
            for tag, source in (("with_chain", risk), ("without_chain", off)):
                _write(contagion, f"{name}_{tag}", source[name], dims, usd)
                _write(contagion, f"{name}_{tag}_se", source[f"{name}_se"], dims, usd)
        for tag, source in (("with_chain", risk), ("without_chain", off)):
            contagion.attrs[f"portfolio_el_{tag}"] = float(source["portfolio_el"])
            _write(contagion, f"pd_{tag}", source["pd"][:, -1], ("borrower",), "probability of default by the horizon")
        on, without = float(risk["portfolio_el"]), float(off["portfolio_el"])
        contagion.attrs["contagion_share_of_el"] = (on - without) / on if on > 0 else 0.0
        contagion.attrs["note"] = "same paths and seed; without_chain: a defaulter's fire sale prices only its own dump, L keeps only q_exo"


NETCDF_PURE_DIMENSION = "This is a netCDF dimension but not a netCDF variable.%10d"


class OutputError(Exception):
    """The output file cannot be written (path, permissions, disk)."""


def _describe_os_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{path}: cannot write output: {reason}"


def _coordinates(group: h5py.Group, spec: RunSpec, n_paths: int | None = None, quantiles: bool = False, levels: bool = False) -> None:
    """Dimension scales (and the `time` auxiliary coordinate) a group's datasets refer to."""
    layout = spec.layout
    text = h5py.string_dtype()
    if layout.n_borrowers:
        group.create_dataset("borrower", data=np.array(layout.borrowers, dtype=object), dtype=text)
        group["borrower"].make_scale("borrower")
        group.create_dataset("borrower_type", data=np.array(layout.borrower_types, dtype=object), dtype=text)
        group["borrower_type"].dims[0].attach_scale(group["borrower"])
        group.create_dataset("instrument", data=np.array(layout.instruments, dtype=object), dtype=text)
        group["instrument"].make_scale("instrument")
        group.create_dataset(
            "instrument_borrower", data=np.array([layout.borrowers[b] for b in layout.instrument_owner], dtype=object), dtype=text
        )
        group["instrument_borrower"].dims[0].attach_scale(group["instrument"])
    if levels:
        group["level"] = np.array(RISK_LEVELS)
        group["level"].make_scale("level")
    group["step"] = np.arange(layout.n_steps + 1, dtype=np.int32)
    group["step"].make_scale("step")
    group["time"] = layout.time_years
    group["time"].attrs["units"] = "years"
    group["time"].attrs["long_name"] = f"time from the scenario start {spec.scenario.time.start.isoformat()}"
    group["time"].dims[0].attach_scale(group["step"])
    group.create_dataset("asset", data=np.array(layout.assets, dtype=object), dtype=text)
    group["asset"].make_scale("asset")
    group.create_dataset("generation", data=np.array(layout.generations, dtype=object), dtype=text)
    group["generation"].make_scale("generation")
    if n_paths is not None:
        # a netCDF dimension without a coordinate variable: nothing is written for it, so
        # 10^8 paths cost no time or space (the path index is the position)
        group.create_dataset("path", shape=(n_paths,), dtype="f4")
        group["path"].make_scale(NETCDF_PURE_DIMENSION % n_paths)
    if quantiles:
        group["quantile"] = np.array(FAN_QUANTILES)
        group["quantile"].make_scale("quantile")


def _attach(dataset: h5py.Dataset, group: h5py.Group, dims: tuple[str, ...]) -> None:
    for axis, dim in enumerate(dims):
        dataset.dims[axis].attach_scale(group[dim])
    coordinates = (["time"] if "step" in dims else []) + (["borrower_type"] if "borrower" in dims else [])
    if "instrument" in dims:
        coordinates.append("instrument_borrower")
    if coordinates:
        dataset.attrs["coordinates"] = " ".join(coordinates)


def _write(group: h5py.Group, name: str, data: Any, dims: tuple[str, ...], units: str, scales: h5py.Group | None = None) -> None:
    """A dataset with its dimension scales and units."""
    ds = group.create_dataset(name, data=np.asarray(data))
    ds.attrs["units"] = units
    _attach(ds, scales if scales is not None else group, dims)


class ResultWriter:
    """Writes one run to `path` through a temporary file; use as a context manager.

    Opening checks the output path before any simulation starts. `write_chunk` stores the
    saved paths of each chunk; `finish` writes the summary, then renames the file into place.
    Leaving the context without `finish` (an error, Ctrl-C) deletes the temporary file.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.file: h5py.File | None = None

    def __enter__(self) -> ResultWriter:
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a directory; give a file name such as {self.path / 'run.h5'}")
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as exc:
                raise OutputError(_describe_os_error(self.path, exc)) from None
        try:
            self.file = h5py.File(self.tmp, "w")
        except OSError as exc:
            raise OutputError(_describe_os_error(self.path, exc)) from None
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tmp.exists():
            self.tmp.unlink()

    def begin(self, spec: RunSpec, save_paths: int, n_paths: int) -> None:
        """Create the layout: coordinates, the saved-path datasets and the per-path outcomes."""
        f = self._file()
        _coordinates(f, spec)
        if spec.has_credit:
            outcomes = f.create_group("outcomes")
            _coordinates(outcomes, spec, n_paths=n_paths)
            sizes = {"borrower": spec.layout.n_borrowers, "instrument": spec.layout.n_instruments}
            for name, (dims, dtype, units) in OUTCOMES.items():
                shape = (n_paths, *(sizes[d] for d in dims[1:]))
                chunks = (min(n_paths, max(1, 2**16 // max(1, int(np.prod(shape[1:]))))), *shape[1:])
                ds = outcomes.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, compression="lzf")
                ds.attrs["units"] = units
                _attach(ds, outcomes, dims)
            outcomes["default_reason"].attrs["codes"] = REASON_CODES
        paths = f.create_group("paths")
        _coordinates(paths, spec, n_paths=save_paths)
        steps = spec.layout.n_steps + 1
        sizes = {"asset": spec.layout.n_assets, "generation": spec.layout.n_generations}
        dtype = np.float32 if spec.dtype == "float32" else np.float64
        for name, (dims, units) in PATH_FACTORS.items():
            shape = (save_paths, steps, *(sizes[d] for d in dims[2:]))
            ds = paths.create_dataset(name, shape=shape, dtype=np.int8 if name == "regime" else dtype)
            ds.attrs["units"] = units
            _attach(ds, paths, dims)

    def write_chunk(self, chunk: ChunkResult) -> None:
        """Store a chunk's saved paths and per-path outcomes at their global path indices."""
        f = self._file()
        rows = slice(chunk.path_start, chunk.path_start + chunk.n_paths)

        def write() -> None:
            for name, values in chunk.saved.items():
                if values.shape[0]:
                    f["paths"][name][chunk.path_start : chunk.path_start + values.shape[0]] = values
            if chunk.outcomes is not None:
                o = chunk.outcomes
                f["outcomes/default_step"][rows] = o.default_step
                f["outcomes/default_reason"][rows] = o.default_reason
                f["outcomes/loss"][rows] = o.loss
                f["outcomes/portfolio_loss"][rows] = o.loss.sum(axis=1)
                f["outcomes/portfolio_loss_nominal"][rows] = o.portfolio_loss_nominal

        self._guard(write)

    def finish(self, result: RunResult) -> None:
        """Write the summary and attributes, then move the file into place."""
        f = self._file()

        def write() -> None:
            summary = f.create_group("summary")
            _coordinates(summary, result.spec)
            share = summary.create_dataset("regime_tight_share", data=result.tight_share)
            share_se = summary.create_dataset("regime_tight_share_se", data=result.tight_share_se)
            for ds in (share, share_se):
                _attach(ds, summary, ("step",))
            fan = summary.create_group("fan")
            _coordinates(fan, result.spec, quantiles=True)
            for ratio in CREDIT_RATIOS if result.spec.has_credit else ():
                values, errors = result.fan[ratio.name]
                binning = result.spec.binnings[ratio.name]
                for key, data in ((ratio.name, values), (f"{ratio.name}_se", errors)):
                    ds = fan.create_dataset(key, data=data)
                    ds.attrs["units"] = ratio.units
                    ds.attrs["bin_width"] = binning.width
                    ds.attrs["note"] = "over paths where the borrower has not defaulted; NaN where none is left"
                    _attach(ds, fan, ("borrower", "quantile", "step"))
            fan.attrs["method"] = "quantiles of fixed-grid histograms over all paths; see gpusim.statistics"
            for factor in OBSERVED_FACTORS:
                values, errors = result.fan[factor.name]
                binning = result.spec.binnings[factor.name]
                if factor.component_dims:
                    dims = (*factor.component_dims, "quantile", "step")
                else:
                    values, errors, dims = values[0], errors[0], ("quantile", "step")
                for key, data in ((factor.name, values), (f"{factor.name}_se", errors)):
                    ds = fan.create_dataset(key, data=data)
                    ds.attrs["units"] = factor.units
                    ds.attrs["bin_width"] = binning.width
                    ds.attrs["bin_scale"] = "log" if binning.log else "linear"
                    _attach(ds, fan, dims)
            attrs = {
                "format_version": FORMAT_VERSION,
                "gpusim_version": __version__,
                "scenario": result.spec.scenario.name,
                "seed": np.uint64(result.seed),
                "n_paths": result.n_paths,
                "n_steps": result.spec.layout.n_steps,
                "backend": result.backend,
                "device": result.device,
                "dtype": result.spec.dtype,
                "chunk_paths": result.chunk_paths,
                "workers": result.workers,
                "config_yaml": to_yaml(result.spec.scenario),
                "created_utc": result.created_utc,
                "runtime_s": result.runtime_s,
            }
            if result.risk is not None:
                _write_credit_summary(summary, result)
                attrs["contagion"] = result.risk_without_chain is not None
            f.attrs.update(attrs)
            f.flush()

        self._guard(write)
        f.close()
        self.file = None
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise OutputError(_describe_os_error(self.path, exc)) from None

    def _file(self) -> h5py.File:
        if self.file is None:
            raise RuntimeError("ResultWriter used outside its context")
        return self.file

    def _guard(self, action: Any) -> None:
        """Run a write; a full disk or I/O error becomes an OutputError naming the file."""
        try:
            action()
        except OSError as exc:
            raise OutputError(_describe_os_error(self.path, exc)) from None
