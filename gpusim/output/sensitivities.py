"""The sensitivities file (`gpusim sensitivities`, docs/analyst.md): its layout, writing and reading.

One netCDF-4/HDF5 file, root attribute `kind = "sensitivities"`, with four groups that
`xarray.open_dataset(FILE, group=G, engine="h5netcdf")` opens: `parameters` (one row per
bumped field), `portfolio` (parameter), `instrument` (parameter, instrument) and `borrower`
(parameter, borrower). It is derived from the batch file of the bumped scenarios beside it,
so it is written whole under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import xarray as xr

from gpusim.output.read import ResultsError

KIND = "sensitivities"
FORMAT_VERSION = 1
GROUPS = ("parameters", "portfolio", "instrument", "borrower")


@dataclass(frozen=True)
class SensitivityResults:
    """A sensitivities file opened: root attributes and one loaded dataset per group."""

    path: Path
    attrs: dict[str, Any]
    groups: dict[str, xr.Dataset]


def write_sensitivities(path: str | os.PathLike[str], groups: dict[str, xr.Dataset], attrs: dict[str, Any]) -> Path:
    """Write the groups and root attributes to `path` (replacing it): a temporary file renamed when complete."""
    out = Path(path)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        for i, name in enumerate(GROUPS):
            groups[name].to_netcdf(partial, group=name, mode="w" if i == 0 else "a", engine="h5netcdf")
        with h5py.File(partial, "a") as f:
            f.attrs.update({"kind": KIND, "format_version": FORMAT_VERSION, "Conventions": "CF-1.10", **attrs})
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def is_sensitivities_file(path: str | os.PathLike[str]) -> bool:
    """True for a file `write_sensitivities` wrote (False for anything else, or no readable file)."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("kind") == KIND
    except OSError:
        return False


def open_sensitivities(path: str | os.PathLike[str]) -> SensitivityResults:
    """Read a sensitivities file whole (it is small: one row per parameter and name)."""
    p = Path(path)
    if not is_sensitivities_file(p):
        raise ResultsError(f"{p}: not a sensitivities file (write one with gpusim sensitivities)")
    with h5py.File(p, "r") as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    groups = {}
    for name in GROUPS:
        with xr.open_dataset(p, group=name, engine="h5netcdf") as ds:
            groups[name] = ds.load()
    return SensitivityResults(p, attrs, groups)
