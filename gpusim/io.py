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
from typing import Any

import h5py
import numpy as np

from gpusim import __version__
from gpusim.config import to_yaml
from gpusim.engine import RunResult
from gpusim.spec import FAN_FACTORS, ChunkResult, RunSpec
from gpusim.statistics import FAN_QUANTILES

FORMAT_VERSION = 1
"""Version of this layout; readers refuse files from a newer version."""

PATH_FACTORS: dict[str, tuple[str, ...]] = {
    "crypto": ("path", "step", "asset"),
    "regime": ("path", "step"),
    "rental_rate": ("path", "step", "generation"),
    "utilization": ("path", "step"),
    "power_price": ("path", "step"),
    "gpu_value": ("path", "step", "generation"),
    "gpu_mark": ("path", "step", "generation"),
}
UNITS = {
    "crypto": "USD per unit",
    "regime": "0 easy, 1 tight",
    "rental_rate": "USD per GPU-hour",
    "utilization": "share of capacity rented",
    "power_price": "USD per kWh",
    "gpu_value": "USD per GPU (income approach)",
    "gpu_mark": "USD per GPU (secondary-market mark)",
}


class OutputError(Exception):
    """The output file cannot be written (path, permissions, disk)."""


def _describe_os_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{path}: cannot write output: {reason}"


def _coordinates(group: h5py.Group, spec: RunSpec, n_paths: int | None = None, quantiles: bool = False) -> None:
    """Dimension scales (and the `time` auxiliary coordinate) a group's datasets refer to."""
    layout = spec.layout
    group["step"] = np.arange(layout.n_steps + 1, dtype=np.int32)
    group["step"].make_scale("step")
    group["time"] = layout.time_years
    group["time"].attrs["units"] = "years"
    group["time"].attrs["long_name"] = f"time from the scenario start {spec.scenario.time.start.isoformat()}"
    group["time"].dims[0].attach_scale(group["step"])
    text = h5py.string_dtype()
    group.create_dataset("asset", data=np.array(layout.assets, dtype=object), dtype=text)
    group["asset"].make_scale("asset")
    group.create_dataset("generation", data=np.array(layout.generations, dtype=object), dtype=text)
    group["generation"].make_scale("generation")
    if n_paths is not None:
        group["path"] = np.arange(n_paths, dtype=np.int64)
        group["path"].make_scale("path")
    if quantiles:
        group["quantile"] = np.array(FAN_QUANTILES)
        group["quantile"].make_scale("quantile")


def _attach(dataset: h5py.Dataset, group: h5py.Group, dims: tuple[str, ...]) -> None:
    for axis, dim in enumerate(dims):
        dataset.dims[axis].attach_scale(group[dim])
    if "step" in dims:
        dataset.attrs["coordinates"] = "time"


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

    def begin(self, spec: RunSpec, save_paths: int) -> None:
        """Create the layout: coordinates and the saved-path datasets."""
        f = self._file()
        _coordinates(f, spec)
        paths = f.create_group("paths")
        _coordinates(paths, spec, n_paths=save_paths)
        steps = spec.layout.n_steps + 1
        sizes = {"asset": spec.layout.n_assets, "generation": spec.layout.n_generations}
        dtype = np.float32 if spec.dtype == "float32" else np.float64
        for name, dims in PATH_FACTORS.items():
            shape = (save_paths, steps, *(sizes[d] for d in dims[2:]))
            ds = paths.create_dataset(name, shape=shape, dtype=np.int8 if name == "regime" else dtype)
            ds.attrs["units"] = UNITS[name]
            _attach(ds, paths, dims)

    def write_chunk(self, chunk: ChunkResult) -> None:
        paths = self._file()["paths"]
        for name, values in chunk.saved.items():
            if values.shape[0]:
                self._guard(lambda n=name, v=values: paths[n].__setitem__(slice(chunk.path_start, chunk.path_start + v.shape[0]), v))

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
            fan.attrs["method"] = "quantiles of fixed-grid histograms over all paths; see gpusim.statistics"
            for name in FAN_FACTORS:
                values, errors = result.fan[name]
                binning = result.spec.binnings[name]
                component = PATH_FACTORS[name][2:]
                if component:
                    dims = (component[0], "quantile", "step")
                else:
                    values, errors, dims = values[0], errors[0], ("quantile", "step")
                for key, data in ((name, values), (f"{name}_se", errors)):
                    ds = fan.create_dataset(key, data=data)
                    ds.attrs["units"] = UNITS[name]
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
