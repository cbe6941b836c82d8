"""HDF5 output (h5py), laid out so xarray opens each group with named dimensions.

Coordinates are HDF5 dimension scales inside each group (`xarray.open_dataset(FILE,
group="paths", engine="h5netcdf")`), and `time` (years) rides along as a CF auxiliary
coordinate of the `step` dimension. The file is written under a hidden temporary name in the
target folder and renamed only when complete, so a killed run never leaves a file that looks
finished.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import glob
import io
import os
import re
import stat
import threading
import weakref
from collections.abc import Callable
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
    create_dataset(summary, "level", np.array(RISK_LEVELS)).make_scale("level")
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
    _write(summary, "lgd_defined", risk["lgd_defined"].astype(np.int8), ("instrument",), "1 if the borrower defaulted on some path")
    corr = create_dataset(summary, "default_correlation", risk["default_correlation"])
    corr_se = create_dataset(summary, "default_correlation_se", risk["default_correlation_se"])
    create_dataset(summary, "other_borrower", summary["borrower"][:], dtype=h5py.string_dtype())
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
        contagion.attrs["note"] = "same paths and seed; without_chain sets alpha_R = alpha_mark = 0 (MODEL.md 4)"


NETCDF_PURE_DIMENSION = "This is a netCDF dimension but not a netCDF variable.%10d"


class OutputError(Exception):
    """The output file cannot be written (path, permissions, disk)."""


PER_PATH_CHUNK_VALUES = 2**16
"""Values per HDF5 chunk of a per-path dataset (/outcomes): small enough to write one engine chunk at a time."""


def dataset_options(shape: tuple[int, ...], dtype: Any, per_path: bool = False) -> dict[str, Any]:
    """Creation options of every dataset gpusim writes, decided here only.

    Every numeric dataset carries Fletcher-32 checksums, which HDF5 verifies on every read, so
    a flipped byte fails loudly instead of becoming a number. Variable-length strings (the
    labels) cannot take HDF5 filters. Per-path datasets are chunked along paths and compressed.
    """
    if np.dtype(dtype).kind == "O":
        return {}
    options: dict[str, Any] = {"fletcher32": True}
    if per_path:
        rows = min(shape[0], max(1, PER_PATH_CHUNK_VALUES // max(1, int(np.prod(shape[1:])))))
        options.update(chunks=(max(1, rows), *shape[1:]), compression="lzf")
    return options


def create_dataset(
    group: h5py.Group, name: str, data: Any = None, *, shape: tuple[int, ...] | None = None, dtype: Any = None, per_path: bool = False
) -> h5py.Dataset:
    """A dataset created with `dataset_options`: give `data`, or `shape` and `dtype` for one filled later."""
    if data is not None:
        data = np.asarray(data)
        shape, dtype = data.shape, dtype if dtype is not None else data.dtype
    assert shape is not None and dtype is not None
    return group.create_dataset(name, shape=shape, dtype=dtype, data=data, **dataset_options(shape, dtype, per_path))


def output_bytes(spec: RunSpec, n_paths: int, save_paths: int) -> int:
    """Size of what grows with a run: the per-path outcomes and the saved paths, uncompressed
    (the file is usually smaller; the summaries add a fixed few hundred KB)."""
    layout = spec.layout
    per_path = 0
    if spec.has_credit:
        sizes = {"borrower": layout.n_borrowers, "instrument": layout.n_instruments}
        per_path = sum(np.dtype(dtype).itemsize * int(np.prod([sizes[d] for d in dims[1:]])) for dims, dtype, _ in OUTCOMES.values())
    itemsize = 4 if spec.dtype == "float32" else 8
    components = {"asset": layout.n_assets, "generation": layout.n_generations}
    per_saved = sum(
        (1 if name == "regime" else itemsize) * int(np.prod([components[d] for d in dims[2:]])) for name, (dims, _) in PATH_FACTORS.items()
    )
    return n_paths * per_path + min(save_paths, n_paths) * (layout.n_steps + 1) * per_saved


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable (POSIX; Windows cannot open a folder to sync it)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def partial_path(path: Path) -> Path:
    """The hidden file a writer in this process fills before renaming it to `path`."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete the partial files of `path` left by processes that no longer run (killed runs); return them.

    A partial whose process still runs is another writer's and is left alone."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    removed = []
    for partial in path.parent.glob(f".{glob.escape(path.name)}.partial-*"):
        pid = partial.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def check_output_path(path: Path, overwrite: bool, example: str = "run.h5") -> None:
    """Refuse an output path before any work: an empty name, a folder, anything that is not a
    regular file (never replaced), or an existing file unless `overwrite`."""
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"{str(path)!r}: not a file name; give one such as {example}")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(describe_failure(path, exc)) from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is a directory; give a file name such as {path / example}")
    if not stat.S_ISREG(mode):
        raise OutputError(f"{path}: exists and is {_kind_of(mode)}, which gpusim never replaces; remove it or choose another name")
    if not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite to replace it")


def describe_failure(path: Path, exc: BaseException) -> str:
    """One line naming the file and the cause, from an OSError or one of h5py's RuntimeErrors
    (whose text holds the errno among several lines of HDF5 detail)."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    elif match := re.search(r"errno = (\d+)", str(exc)):
        reason = os.strerror(int(match.group(1)))
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return f"{path}: cannot write output: {reason}"


class _DiskFile(io.RawIOBase):
    """The bytes under a partial HDF5 file (h5py's file-object driver). A failed write (a full
    disk, a file-size limit) is recorded and not raised: HDF5 never meets an I/O error it cannot
    recover from (it would print one from every object's finalizer and may crash at exit), and
    `PartialFile.check` fails the run cleanly instead. Unbuffered, so a failure shows at once."""

    def __init__(self, path: Path):
        super().__init__()
        self.disk = io.FileIO(path, "w+")
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.disk.readinto(buffer) or 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # after a short write the next one says why (ENOSPC, EFBIG)
                    written = self.disk.write(view[done:])
                    if not written:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    done += written
            except OSError as exc:
                self.error = exc
        return len(view)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.disk.seek(offset, whence)

    def tell(self) -> int:
        return self.disk.tell()

    def truncate(self, size: int | None = None) -> int:
        try:
            return self.disk.truncate(size)
        except OSError as exc:
            self.error = self.error or exc
            return self.disk.tell() if size is None else size

    def sync(self) -> None:
        try:
            os.fsync(self.disk.fileno())
        except OSError as exc:
            self.error = self.error or exc

    def close(self) -> None:
        self.disk.close()
        super().close()


def guarded(path: Path, action: Callable[[], Any]) -> Any:
    """Run a write; an I/O error (h5py raises some as RuntimeError) becomes an OutputError naming `path`."""
    try:
        return action()
    except (OSError, RuntimeError) as exc:
        raise OutputError(describe_failure(path, exc)) from None


_open_partials: weakref.WeakSet[PartialFile] = weakref.WeakSet()


@atexit.register
def _discard_open_partials() -> None:
    """At exit, before h5py's own cleanup (registered earlier, so run later): an HDF5 file left
    open over a Python file object would crash the interpreter's shutdown."""
    for partial in list(_open_partials):
        partial.discard()


class PartialFile:
    """An HDF5 file written under a hidden partial name beside `path`, renamed onto it only when complete.

    `h5` is the open h5py File. `check` raises OutputError once a write has failed; `commit`
    closes, syncs and renames; `discard` deletes the partial (and so frees its space) whatever
    state a failure left it in.
    """

    def __init__(self, path: Path):
        self.path = path
        self.tmp = partial_path(path)
        self._disk = guarded(path, lambda: _DiskFile(self.tmp))
        self.h5: h5py.File | None = guarded(path, lambda: h5py.File(self._disk, "w"))
        _open_partials.add(self)

    def check(self) -> None:
        if self._disk.error is not None:
            raise OutputError(describe_failure(self.path, self._disk.error))

    def commit(self, overwrite: bool, cancelled: threading.Event | None = None) -> None:
        """Close and sync the file, then rename it onto `path` (not if `cancelled` was set: KeyboardInterrupt)."""
        if self.h5 is not None:
            guarded(self.path, self.h5.close)
            self.h5 = None
        self._disk.sync()
        self.check()
        self._disk.close()
        if cancelled is not None and cancelled.is_set():
            raise KeyboardInterrupt  # interrupted while the file was completed: it never appears
        check_output_path(self.path, overwrite)  # nothing was put there while the work went on
        guarded(self.path, lambda: (os.replace(self.tmp, self.path), fsync_dir(self.path.parent)))
        _open_partials.discard(self)

    def discard(self) -> None:
        _open_partials.discard(self)
        h5, self.h5 = self.h5, None
        with contextlib.suppress(Exception):  # closing after a failure may fail too; the file is deleted next
            if h5 is not None:
                h5.close()
        with contextlib.suppress(OSError):
            self._disk.close()
        self.tmp.unlink(missing_ok=True)


def _coordinates(group: h5py.Group, spec: RunSpec, n_paths: int | None = None, quantiles: bool = False, levels: bool = False) -> None:
    """Dimension scales (and the `time` auxiliary coordinate) a group's datasets refer to."""
    layout = spec.layout
    text = h5py.string_dtype()
    if layout.n_borrowers:
        create_dataset(group, "borrower", np.array(layout.borrowers, dtype=object), dtype=text)
        group["borrower"].make_scale("borrower")
        create_dataset(group, "borrower_type", np.array(layout.borrower_types, dtype=object), dtype=text)
        group["borrower_type"].dims[0].attach_scale(group["borrower"])
        create_dataset(group, "instrument", np.array(layout.instruments, dtype=object), dtype=text)
        group["instrument"].make_scale("instrument")
        owners = np.array([layout.borrowers[b] for b in layout.instrument_owner], dtype=object)
        create_dataset(group, "instrument_borrower", owners, dtype=text)
        group["instrument_borrower"].dims[0].attach_scale(group["instrument"])
    if levels:
        create_dataset(group, "level", np.array(RISK_LEVELS)).make_scale("level")
    create_dataset(group, "step", np.arange(layout.n_steps + 1, dtype=np.int32)).make_scale("step")
    create_dataset(group, "time", layout.time_years)
    group["time"].attrs["units"] = "years"
    group["time"].attrs["long_name"] = f"time from the scenario start {spec.scenario.time.start.isoformat()}"
    group["time"].dims[0].attach_scale(group["step"])
    create_dataset(group, "asset", np.array(layout.assets, dtype=object), dtype=text)
    group["asset"].make_scale("asset")
    create_dataset(group, "generation", np.array(layout.generations, dtype=object), dtype=text)
    group["generation"].make_scale("generation")
    if n_paths is not None:
        # a netCDF dimension without a coordinate variable: nothing is written for it, so
        # 10^8 paths cost no time or space (the path index is the position)
        create_dataset(group, "path", shape=(n_paths,), dtype="f4")
        group["path"].make_scale(NETCDF_PURE_DIMENSION % n_paths)
    if quantiles:
        create_dataset(group, "quantile", np.array(FAN_QUANTILES)).make_scale("quantile")


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
    ds = create_dataset(group, name, data)
    ds.attrs["units"] = units
    _attach(ds, scales if scales is not None else group, dims)


class ResultWriter:
    """Writes one run to `path` through a partial file beside it; use as a context manager.

    Opening checks the output path before any simulation starts (and removes partials that
    killed runs left). `write_chunk` stores the saved paths of each chunk; `finish` writes the
    summary, syncs the file to disk, then renames it into place. Leaving the context without
    `finish` (an error, a full disk, Ctrl-C) deletes the partial file and so frees its space.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False, cancelled: threading.Event | None = None):
        self.path = Path(path)
        self.overwrite = overwrite
        self.cancelled = cancelled
        self.partial: PartialFile | None = None

    def __enter__(self) -> ResultWriter:
        check_output_path(self.path, self.overwrite)
        parent = self.path.parent
        if not parent.exists():
            guarded(self.path, lambda: parent.mkdir(parents=True))
        remove_stale_partials(self.path)
        self.partial = PartialFile(self.path)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.partial is not None:
            self.partial.discard()
            self.partial = None

    def begin(self, spec: RunSpec, save_paths: int, n_paths: int) -> None:
        """Create the layout: coordinates, the saved-path datasets and the per-path outcomes."""
        self._guard(lambda: self._begin(spec, save_paths, n_paths))

    def _begin(self, spec: RunSpec, save_paths: int, n_paths: int) -> None:
        f = self._file()
        _coordinates(f, spec)
        if spec.has_credit:
            outcomes = f.create_group("outcomes")
            _coordinates(outcomes, spec, n_paths=n_paths)
            sizes = {"borrower": spec.layout.n_borrowers, "instrument": spec.layout.n_instruments}
            for name, (dims, dtype, units) in OUTCOMES.items():
                shape = (n_paths, *(sizes[d] for d in dims[1:]))
                ds = create_dataset(outcomes, name, shape=shape, dtype=dtype, per_path=True)
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
            ds = create_dataset(paths, name, shape=shape, dtype=np.int8 if name == "regime" else dtype)
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
            share = create_dataset(summary, "regime_tight_share", result.tight_share)
            share_se = create_dataset(summary, "regime_tight_share_se", result.tight_share_se)
            for ds in (share, share_se):
                _attach(ds, summary, ("step",))
            fan = summary.create_group("fan")
            _coordinates(fan, result.spec, quantiles=True)
            for ratio in CREDIT_RATIOS if result.spec.has_credit else ():
                values, errors = result.fan[ratio.name]
                binning = result.spec.binnings[ratio.name]
                for key, data in ((ratio.name, values), (f"{ratio.name}_se", errors)):
                    ds = create_dataset(fan, key, data)
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
                    ds = create_dataset(fan, key, data)
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

        self._guard(write)
        assert self.partial is not None
        self.partial.commit(self.overwrite, self.cancelled)
        self.partial = None

    def _file(self) -> h5py.File:
        if self.partial is None or self.partial.h5 is None:
            raise RuntimeError("ResultWriter used outside its context")
        return self.partial.h5

    def _guard(self, action: Callable[[], None]) -> None:
        """Run a write; stop with an OutputError naming the file at the first failed write."""
        assert self.partial is not None
        guarded(self.path, action)
        self.partial.check()
