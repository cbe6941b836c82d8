"""The batch output file: every scenario's run under /scenarios/<name>, and the /batch table.

Layout (docs/batches.md): `/scenarios/<name>/` is exactly the layout of a `gpusim run` file
(docs/output.md) except that `runtime_s` and `workers` are not recorded (they describe the
execution, not the results, and would differ between a resumed and an uninterrupted run);
`/batch` holds one row per scenario with the headline metrics. The file is assembled from the
journal's finished scenario files in batch order, written under a temporary name and renamed
only when complete.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from gpusim.batch.journal import Journal
from gpusim.batch.schema import ResolvedBatch
from gpusim.output.write import (
    BATCH_KIND,
    FORMAT_VERSION,
    OutputError,
    PartialFile,
    create_dataset,
    describe_failure,
)
from gpusim.version import __version__

TABLE_LEVEL = 0.999
EXECUTION_ATTRS = ("runtime_s", "workers")
"""Run-file attributes that describe how a scenario was executed, left out of batch files."""

SCALE_REFERENCES = ("DIMENSION_LIST", "REFERENCE_LIST")
USD = "USD, discounted to t_0"
TABLE_UNITS = {
    "el": f"{USD}: portfolio expected loss",
    "el_se": f"{USD}: Monte Carlo standard error",
    "var_999": f"{USD}: portfolio loss VaR 99.9 %",
    "var_999_se": f"{USD}: Monte Carlo standard error",
    "es_999": f"{USD}: portfolio loss expected shortfall 99.9 %",
    "es_999_se": f"{USD}: Monte Carlo standard error",
    "el_without_chain": f"{USD}: portfolio EL on the same paths with the fire-sale chain off (NaN when not run)",
    "contagion_share": "share of portfolio EL caused by the fire-sale chain (NaN when not run)",
}


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def _scenario_row(group: h5py.Group) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Headline metrics of one scenario group, and its horizon PD (value, se) per borrower."""
    row = dict.fromkeys(TABLE_UNITS, np.nan)
    pds: dict[str, tuple[float, float]] = {}
    summary = group["summary"]
    if "pd" not in summary:
        return row, pds
    k = int(np.argmin(np.abs(summary["level"][:] - TABLE_LEVEL)))
    row["el"], row["el_se"] = float(summary.attrs["portfolio_el"]), float(summary.attrs["portfolio_el_se"])
    for name in ("var", "es"):
        row[f"{name}_999"], row[f"{name}_999_se"] = float(summary[name][k]), float(summary[f"{name}_se"][k])
    if "contagion" in summary:
        row["el_without_chain"] = float(summary["contagion"].attrs["portfolio_el_without_chain"])
        row["contagion_share"] = float(summary["contagion"].attrs["contagion_share_of_el"])
    pd, pd_se = summary["pd"][:, -1], summary["pd_se"][:, -1]
    for b, name in enumerate(_text(summary["borrower"][:])):
        pds[name] = (float(pd[b]), float(pd_se[b]))
    return row, pds


def _write_table(f: h5py.File, batch: ResolvedBatch) -> None:
    """/batch: scenario x headline metrics, and scenario x borrower horizon PDs (NaN where a scenario lacks the borrower)."""
    rows = [_scenario_row(f["scenarios"][b.name]) for b in batch.scenarios]
    borrowers = list(dict.fromkeys(name for _, pds in rows for name in pds))
    table = f.create_group("batch")
    text = h5py.string_dtype()
    create_dataset(table, "scenario", np.array([b.name for b in batch.scenarios], dtype=object), dtype=text)
    table["scenario"].make_scale("scenario")
    create_dataset(table, "borrower", np.array(borrowers, dtype=object), dtype=text)
    table["borrower"].make_scale("borrower")
    columns: dict[str, tuple[Any, tuple[str, ...], str]] = {
        "source": (np.array([b.source for b in batch.scenarios], dtype=object), ("scenario",), "config the scenario starts from"),
        "overrides": (
            np.array(["; ".join(b.overrides) for b in batch.scenarios], dtype=object),
            ("scenario",),
            "FIELD.PATH=VALUE applied to it, batch-wide first",
        ),
        "seed": (np.array([b.seed for b in batch.scenarios], dtype=np.uint64), ("scenario",), "random seed"),
    }
    for name, units in TABLE_UNITS.items():
        columns[name] = (np.array([row[name] for row, _ in rows]), ("scenario",), units)
    nan = (np.nan, np.nan)
    pd = np.array([[pds.get(name, nan) for name in borrowers] for _, pds in rows]).reshape(len(rows), len(borrowers), 2)
    columns["pd_horizon"] = (pd[..., 0], ("scenario", "borrower"), "probability of default by the horizon")
    columns["pd_horizon_se"] = (pd[..., 1], ("scenario", "borrower"), "Monte Carlo standard error")
    for name, (data, dims, units) in columns.items():
        ds = create_dataset(table, name, data, dtype=text if data.dtype == object else data.dtype)
        ds.attrs["units"] = units
        for axis, dim in enumerate(dims):
            ds.dims[axis].attach_scale(table[dim])
    table.attrs["level"] = TABLE_LEVEL
    table.attrs["note"] = "one row per scenario; each scenario's full results are under /scenarios/<name> (docs/output.md layout)"


def _root_attrs(batch: ResolvedBatch, created_utc: str, backends: list[str]) -> dict[str, Any]:
    s = batch.settings()
    return {
        "format_version": FORMAT_VERSION,
        "gpusim_version": __version__,
        "kind": BATCH_KIND,
        "batch": batch.name,
        "description": batch.spec.description,
        "n_scenarios": len(batch.scenarios),
        "n_paths": s["paths"],
        "seed": np.uint64(s["seed"]),
        "common_random_numbers": s["common_random_numbers"],
        "chunk_paths": s["chunk_paths"],
        "save_paths": s["save_paths"],
        "dtype": s["dtype"],
        "contagion": s["contagion"],
        "backend": ", ".join(backends),
        "batch_yaml": yaml.safe_dump(batch.spec.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True),
        "batch_digest": batch.digest,
        "created_utc": created_utc,
    }


def copy_run(source: h5py.File, parent: h5py.Group, name: str) -> h5py.Group:
    """Copy a run file into `parent/name`, dimension scales included.

    HDF5's object copy keeps the bytes of the DIMENSION_LIST and REFERENCE_LIST attributes,
    which hold object addresses of the old file; they are dropped and the scales attached
    again, in the source's (alphabetical) order so the bytes are the same on every run.
    """
    source.copy(source["/"], parent, name=name)
    group = parent[name]
    attached: list[tuple[str, int, str]] = []

    def find(path: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            attached.extend((path, axis, scale.name.lstrip("/")) for axis, dim in enumerate(obj.dims) for scale in dim.values())

    def strip(path: str, obj: Any) -> None:
        for key in SCALE_REFERENCES:
            if key in obj.attrs:
                del obj.attrs[key]

    source.visititems(find)
    group.visititems(strip)
    for path, axis, scale in attached:
        group[path].dims[axis].attach_scale(group[scale])
    return group


def write_batch_file(
    batch: ResolvedBatch, journal: Journal, out: Path, created_utc: str, overwrite: bool = False, cancelled: threading.Event | None = None
) -> None:
    """Assemble the output from the journal's scenario files; rename it into place only when complete
    (and not when `cancelled` was set meanwhile: the journal then stays for `--resume`)."""
    kept = f"Every finished scenario is kept in {journal.root}: free space and rerun with --resume"
    try:
        partial = PartialFile(out)
    except OutputError as exc:
        raise OutputError(f"{exc}. {kept}") from None
    try:
        assert partial.h5 is not None
        f = partial.h5
        scenarios = f.create_group("scenarios")
        backends: set[str] = set()
        for s, b in enumerate(batch.scenarios):
            if cancelled is not None and cancelled.is_set():
                raise KeyboardInterrupt
            with h5py.File(journal.scenario_path(s), "r") as source:
                group = copy_run(source, scenarios, b.name)
            for key in EXECUTION_ATTRS:
                del group.attrs[key]
            group.attrs["batch_overrides"] = "; ".join(b.overrides)
            backends.update(str(group.attrs["backend"]).split(", "))
            partial.check()
        _write_table(f, batch)
        f.attrs.update(_root_attrs(batch, created_utc, sorted(backends)))
        partial.commit(overwrite, cancelled)
    except (OSError, RuntimeError) as exc:  # h5py reports some write failures as RuntimeError
        partial.discard()
        raise OutputError(f"{describe_failure(out, exc)}. {kept}") from None
    except OutputError as exc:
        partial.discard()
        raise OutputError(f"{exc}. {kept}") from None
    except BaseException:
        partial.discard()
        raise
