"""HDF5 output (h5py), laid out as netCDF-4 with CF metadata, so xarray, netCDF-C (ncdump, R,
MATLAB) and pandas read each group with named dimensions.

Each group holds as dimension scales only the dimensions its own variables use, so
`to_dataframe()` of a group spans those and nothing else; `time` (years) and `date` ride along
as CF auxiliary coordinates of the `step` dimension. Units are UDUNITS strings ("USD", "1",
"USD/hour"), codes carry `flag_values`/`flag_meanings`. The file is written under a hidden
temporary name in the target folder and renamed only when complete, so a killed run never
leaves a file that looks finished.
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
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from gpusim.model.constants import DefaultReason
from gpusim.model.factor_table import CREDIT_RATIOS, FACTORS_BY_NAME, OBSERVED_FACTORS, REGIME_UNITS
from gpusim.risk import DEFAULT_LEVELS as RISK_LEVELS
from gpusim.risk import DEFAULT_TYPES
from gpusim.scenario import to_yaml
from gpusim.scenario.calendar import add_months
from gpusim.spec import ChunkResult, RunSpec
from gpusim.statistics import FAN_QUANTILES, valid_range
from gpusim.version import __version__

if TYPE_CHECKING:
    from gpusim.engine import RunResult

FORMAT_VERSION = 2
"""Version of this layout; readers refuse files from a newer version. Version 1 carried every
dimension in every group, LZF compression and prose units."""

CONVENTIONS = "CF-1.10"

BATCH_KIND = "batch"
"""Root attribute `kind` of a batch file (a single run file has none)."""

BPS_A_YEAR = "1e-4 year^-1"
"""Basis points a year, as UDUNITS (and pint) parse it."""

REGIME_FLAGS = {"easy": 0, "tight": 1}
REASON_FLAGS = {reason.label: reason.value for reason in DefaultReason}

PATH_FACTORS: dict[str, tuple[tuple[str, ...], str]] = {
    **{f.name: (("path", "step", *f.component_dims), f.units) for f in OBSERVED_FACTORS},
    "regime": (("path", "step"), REGIME_UNITS),
}
"""Dimensions and description (the factor table's units in words) of each saved path dataset (/paths)."""

OUTCOMES: dict[str, tuple[tuple[str, ...], Any, str | None, str]] = {
    "default_step": (("path", "borrower"), np.int16, "1", "step k of the default in (t_k, t_k+1], -1 = survived the horizon"),
    "default_reason": (("path", "borrower"), np.int8, None, "reason for the default"),
    "loss": (("path", "instrument"), np.float64, "USD", "loss discounted to t_0 at the base curve"),
    "portfolio_loss": (("path",), np.float64, "USD", "portfolio loss discounted to t_0 at the base curve"),
    "portfolio_loss_nominal": (("path",), np.float64, "USD", "portfolio loss, undiscounted"),
}
"""Per-path outcomes: dimensions, dtype, units (None for a flag variable) and long_name."""


def _se_of(name: str) -> str:
    return f"Monte Carlo standard error of {name}"


def _write_credit_summary(summary: h5py.Group, result: RunResult) -> None:
    """PDs, EL, LGD, VaR/ES, contributions, correlations, spreads and contagion: the summary group of docs/output.md."""
    risk = result.risk
    assert risk is not None
    spec = result.spec
    table = {
        "pd": (("borrower", "step"), "1", "cumulative probability of default by t_k"),
        "el": (("instrument",), "USD", "expected loss, discounted to t_0"),
        "lgd": (("instrument",), "1", "loss given default: loss / exposure at default (0 where no default occurred, see lgd_defined)"),
        "var": (("level",), "USD", "value at risk of the portfolio loss, discounted to t_0"),
        "es": (("level",), "USD", "expected shortfall of the portfolio loss, discounted to t_0"),
        "risk_contribution": (("instrument",), "USD", "E[loss_i | portfolio loss in the 99 % tail], discounted to t_0; sums to ES 99 %"),
        "breakeven_spread_bps": (("instrument",), BPS_A_YEAR, "break-even spread: expected discounted loss / risky annuity"),
        "risky_annuity": (("instrument",), "USD year", "risky annuity: mean of sum_k DF(t_k) O(t_k) dt while the borrower is alive"),
    }
    for name, (dims, units, long_name) in table.items():
        _write(summary, name, risk[name], dims, units, long_name)
        _write(summary, f"{name}_se", risk[f"{name}_se"], dims, units, _se_of(name))
    if "pd_loss_bearing" in risk:
        long_name = "probability of a loss-bearing default by the horizon: the borrower defaults and some lender of it loses more than 0"
        _write(summary, "pd_loss_bearing", risk["pd_loss_bearing"], ("borrower",), "1", long_name)
        _write(summary, "pd_loss_bearing_se", risk["pd_loss_bearing_se"], ("borrower",), "1", _se_of("pd_loss_bearing"))
    _write_pd_by_type(summary, risk)
    defined = _write(summary, "lgd_defined", risk["lgd_defined"].astype(np.int8), ("instrument",), None, "whether lgd is defined")
    _flags(defined, {"no_default_on_any_path": 0, "defaulted_on_some_path": 1})
    dims = ("borrower", "other_borrower")
    _write(summary, "default_correlation", risk["default_correlation"], dims, "1", "correlation of default indicators by the horizon")
    _write(summary, "default_correlation_se", risk["default_correlation_se"], dims, "1", _se_of("default_correlation"))
    market = np.array([i.market_spread_bps for b in spec.scenario.borrowers for i in b.debt])
    _write(summary, "market_spread_bps", market, ("instrument",), BPS_A_YEAR, "spread charged over the base curve")
    _write(summary, "spread_gap_bps", market - risk["breakeven_spread_bps"], ("instrument",), BPS_A_YEAR, "market minus break-even spread")
    _write(summary, "spread_gap_bps_se", risk["breakeven_spread_bps_se"], ("instrument",), BPS_A_YEAR, _se_of("spread_gap_bps"))
    summary.attrs["portfolio_el"] = float(risk["portfolio_el"])
    summary.attrs["portfolio_el_se"] = float(risk["portfolio_el_se"])
    summary.attrs["portfolio_el_nominal"] = float(result.portfolio_loss_nominal or 0.0)
    off = result.risk_without_chain
    if off is not None:
        contagion = summary.create_group("contagion")
        _coordinates(contagion, spec, ("borrower", "instrument", "level"))
        for name, dims in (("el", ("instrument",)), ("var", ("level",)), ("es", ("level",))):
            for tag, source in (("with_chain", risk), ("without_chain", off)):
                long_name = f"{table[name][2]}, fire-sale chain {'on' if tag == 'with_chain' else 'off'}"
                _write(contagion, f"{name}_{tag}", source[name], dims, "USD", long_name)
                _write(contagion, f"{name}_{tag}_se", source[f"{name}_se"], dims, "USD", _se_of(f"{name}_{tag}"))
        for tag, source in (("with_chain", risk), ("without_chain", off)):
            contagion.attrs[f"portfolio_el_{tag}"] = float(source["portfolio_el"])
            _write(contagion, f"pd_{tag}", source["pd"][:, -1], ("borrower",), "1", "probability of default by the horizon")
        on, without = float(risk["portfolio_el"]), float(off["portfolio_el"])
        contagion.attrs["contagion_share_of_el"] = (on - without) / on if on > 0 else 0.0
        contagion.attrs["note"] = "same paths and seed; without_chain: a defaulter's fire sale prices only its own dump, L keeps only q_exo"


PD_TYPE_NAMES = {
    "payment": "payment default (debt service not met)",
    "covenant": "covenant acceleration (DSCR, liquidity or LTV test failed past its cure periods and remedies)",
    "maturity": "maturity default (a maturity neither refinanced nor repaid)",
}


def _write_pd_by_type(summary: h5py.Group, risk: dict[str, Any]) -> None:
    """pd_payment, pd_covenant, pd_maturity (borrower): PD by the horizon by type of default; they sum to pd at the horizon."""
    for kind in DEFAULT_TYPES:
        if f"pd_{kind}" not in risk:
            return
        long_name = f"probability of a {PD_TYPE_NAMES[kind]} by the horizon"
        _write(summary, f"pd_{kind}", risk[f"pd_{kind}"], ("borrower",), "1", long_name)
        _write(summary, f"pd_{kind}_se", risk[f"pd_{kind}_se"], ("borrower",), "1", _se_of(f"pd_{kind}"))


NETCDF_PURE_DIMENSION = "This is a netCDF dimension but not a netCDF variable.%10d"


class OutputError(Exception):
    """The output file cannot be written (path, permissions, disk)."""


PER_PATH_CHUNK_VALUES = 2**16
"""Values per HDF5 chunk of a per-path dataset (/outcomes): small enough to write one engine chunk at a time."""


def dataset_options(shape: tuple[int, ...], dtype: Any, per_path: bool = False) -> dict[str, Any]:
    """Creation options of every dataset gpusim writes, decided here only.

    Every numeric dataset carries Fletcher-32 checksums, which HDF5 verifies on every read, so
    a flipped byte fails loudly instead of becoming a number. Variable-length strings (the
    labels) cannot take HDF5 filters. Per-path datasets are chunked along paths and compressed
    with shuffle and gzip level 1, filters every netCDF-C build reads (ncdump, R, MATLAB).
    """
    if np.dtype(dtype).kind == "O":
        return {}
    options: dict[str, Any] = {"fletcher32": True}
    if per_path:
        rows = min(shape[0], max(1, PER_PATH_CHUNK_VALUES // max(1, int(np.prod(shape[1:])))))
        options.update(chunks=(max(1, rows), *shape[1:]), compression="gzip", compression_opts=1, shuffle=True)
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
        per_path = sum(np.dtype(dtype).itemsize * int(np.prod([sizes[d] for d in dims[1:]])) for dims, dtype, *_ in OUTCOMES.values())
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


def step_dates(spec: RunSpec) -> np.ndarray:
    """Days from the scenario start to each t_k, on the calendar-month basis of `gpusim.scenario.calendar`
    (monthly steps fall on the same day of each month)."""
    grid = spec.scenario.time
    start = grid.start
    days = []
    for k in range(spec.layout.n_steps + 1):
        months = k * 12 / grid.steps_per_year
        whole = int(np.floor(months + 1e-9))
        day = add_months(start, whole)
        month_length = (add_months(day.replace(day=1), 1) - day.replace(day=1)).days
        days.append(((day - start) + timedelta(days=round((months - whole) * month_length))).days)
    return np.array(days, dtype=np.int32)


def _coordinates(group: h5py.Group, spec: RunSpec, dims: Iterable[str], n_paths: int | None = None) -> None:
    """The dimension scales `dims` (and their auxiliary coordinates) that a group's datasets refer to, and no others."""
    layout = spec.layout
    text = h5py.string_dtype()
    dims = set(dims)

    def labels(name: str, values: Iterable[str], long_name: str) -> None:
        create_dataset(group, name, np.array(list(values), dtype=object), dtype=text).attrs["long_name"] = long_name
        group[name].make_scale(name)

    def auxiliary(name: str, values: Iterable[str], of: str, long_name: str) -> None:
        create_dataset(group, name, np.array(list(values), dtype=object), dtype=text).attrs["long_name"] = long_name
        group[name].dims[0].attach_scale(group[of])

    if "borrower" in dims:
        labels("borrower", layout.borrowers, "borrower")
        auxiliary("borrower_type", layout.borrower_types, "borrower", "type of the borrower")
    if "instrument" in dims:
        labels("instrument", layout.instruments, "debt instrument")
        owners = (layout.borrowers[b] for b in layout.instrument_owner)
        auxiliary("instrument_borrower", owners, "instrument", "borrower owing the instrument")
    if "level" in dims:
        level = create_dataset(group, "level", np.array(RISK_LEVELS))
        level.make_scale("level")
        level.attrs.update(units="1", long_name="confidence level of VaR and ES")
    if "step" in dims:
        start = spec.scenario.time.start.isoformat()
        step = create_dataset(group, "step", np.arange(layout.n_steps + 1, dtype=np.int32))
        step.make_scale("step")
        step.attrs["long_name"] = "time step index k"
        time = create_dataset(group, "time", layout.time_years)
        time.attrs.update(units="year", long_name=f"time t_k in years since the scenario start {start}")
        time.dims[0].attach_scale(step)
        when = create_dataset(group, "date", step_dates(spec))
        when.attrs.update(units=f"days since {start}", calendar="proleptic_gregorian", standard_name="time", long_name="date of t_k")
        when.dims[0].attach_scale(step)
    if "asset" in dims:
        labels("asset", layout.assets, "crypto asset")
    if "generation" in dims:
        labels("generation", layout.generations, "GPU generation")
    if "path" in dims:
        assert n_paths is not None
        # a netCDF dimension without a coordinate variable: nothing is written for it, so
        # 10^8 paths cost no time or space (the path index is the position)
        create_dataset(group, "path", shape=(n_paths,), dtype="f4")
        group["path"].make_scale(NETCDF_PURE_DIMENSION % n_paths)
    if "quantile" in dims:
        quantile = create_dataset(group, "quantile", np.array(FAN_QUANTILES))
        quantile.make_scale("quantile")
        quantile.attrs.update(units="1", long_name="probability level of the quantile over paths")
    if "other_borrower" in dims:
        labels("other_borrower", layout.borrowers, "borrower")


def _attach(dataset: h5py.Dataset, group: h5py.Group, dims: tuple[str, ...]) -> None:
    for axis, dim in enumerate(dims):
        dataset.dims[axis].attach_scale(group[dim])
    coordinates = (["time", "date"] if "step" in dims else []) + (["borrower_type"] if "borrower" in dims else [])
    if "instrument" in dims:
        coordinates.append("instrument_borrower")
    if coordinates:
        dataset.attrs["coordinates"] = " ".join(coordinates)


def _flags(dataset: h5py.Dataset, flags: dict[str, int]) -> None:
    """CF flag attributes of a coded variable: the codes, in the variable's dtype, and their names."""
    dataset.attrs["flag_values"] = np.array(list(flags.values()), dtype=dataset.dtype)
    dataset.attrs["flag_meanings"] = " ".join(flags)


def _write(
    group: h5py.Group, name: str, data: Any, dims: tuple[str, ...], units: str | None, long_name: str, scales: h5py.Group | None = None
) -> h5py.Dataset:
    """A dataset with its dimension scales, UDUNITS `units` (None for a flag variable) and `long_name`."""
    ds = create_dataset(group, name, data)
    if units is not None:
        ds.attrs["units"] = units
    ds.attrs["long_name"] = long_name
    _attach(ds, scales if scales is not None else group, dims)
    return ds


def _write_fan(fan: h5py.Group, name: str, fan_values: tuple[np.ndarray, np.ndarray], spec: RunSpec) -> None:
    """One factor's quantile fan and its standard error. A quantile beyond the histogram grid is
    stored as -inf or +inf (and its standard error as NaN); `valid_min`/`valid_max` bound every
    finite value, so no stored number is an edge of the grid posing as a quantile."""
    factor = FACTORS_BY_NAME[name]
    binning = spec.binnings[name]
    values, errors = fan_values
    if factor.component_dims:
        dims = (*factor.component_dims, "quantile", "step")
    else:
        values, errors, dims = values[0], errors[0], ("quantile", "step")
    lowest, highest = valid_range(binning, factor.fan.bounded_below, factor.fan.bounded_above)
    units, long_name = factor.cf_units, factor.long_name
    if factor in CREDIT_RATIOS:
        long_name += ", over paths where the borrower has not defaulted (NaN where none is left)"
    for key, data, what in ((name, values, long_name), (f"{name}_se", errors, _se_of(name))):
        ds = _write(fan, key, data, dims, units, what)
        ds.attrs.update(
            description=factor.units,
            valid_min=np.float64(lowest.min()),
            valid_max=np.float64(highest.max()),
            bin_width=binning.width,
            bin_scale="log" if binning.log else "linear",
        )
    fan[name].attrs["comment"] = "-inf / +inf: the quantile lies below / above the histogram grid (beyond valid_min / valid_max)"


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
        _coordinates(f, spec, ("step",))
        if spec.has_credit:
            outcomes = f.create_group("outcomes")
            _coordinates(outcomes, spec, ("path", "borrower", "instrument"), n_paths=n_paths)
            sizes = {"borrower": spec.layout.n_borrowers, "instrument": spec.layout.n_instruments}
            for name, (dims, dtype, units, long_name) in OUTCOMES.items():
                shape = (n_paths, *(sizes[d] for d in dims[1:]))
                ds = create_dataset(outcomes, name, shape=shape, dtype=dtype, per_path=True)
                if units is not None:
                    ds.attrs["units"] = units
                ds.attrs["long_name"] = long_name
                _attach(ds, outcomes, dims)
            _flags(outcomes["default_reason"], REASON_FLAGS)
        paths = f.create_group("paths")
        _coordinates(paths, spec, ("path", "step", "asset", "generation"), n_paths=save_paths)
        steps = spec.layout.n_steps + 1
        sizes = {"asset": spec.layout.n_assets, "generation": spec.layout.n_generations}
        dtype = np.float32 if spec.dtype == "float32" else np.float64
        for name, (dims, description) in PATH_FACTORS.items():
            shape = (save_paths, steps, *(sizes[d] for d in dims[2:]))
            ds = create_dataset(paths, name, shape=shape, dtype=np.int8 if name == "regime" else dtype)
            if name == "regime":
                _flags(ds, REGIME_FLAGS)
                ds.attrs.update(long_name="market regime R_k", description=description)
            else:
                factor = FACTORS_BY_NAME[name]
                ds.attrs.update(units=factor.cf_units, long_name=factor.long_name, description=description)
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
            spec = result.spec
            credit = ("borrower", "instrument", "level", "other_borrower") if result.risk is not None else ()
            summary = f.create_group("summary")
            _coordinates(summary, spec, ("step", *credit))
            _write(summary, "regime_tight_share", result.tight_share, ("step",), "1", "share of paths in the tight regime")
            _write(summary, "regime_tight_share_se", result.tight_share_se, ("step",), "1", _se_of("regime_tight_share"))
            fan = summary.create_group("fan")
            components = {factor.axis for factor in OBSERVED_FACTORS + (CREDIT_RATIOS if spec.has_credit else ())} - {"path"}
            _coordinates(fan, spec, ("quantile", "step", *components))
            fan.attrs["method"] = "quantiles of fixed-grid histograms over all paths; see gpusim.statistics"
            for factor in (CREDIT_RATIOS if spec.has_credit else ()) + OBSERVED_FACTORS:
                _write_fan(fan, factor.name, result.fan[factor.name], spec)
            attrs = {
                "Conventions": CONVENTIONS,
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
        try:
            guarded(self.path, action)
        except OutputError:
            self.partial.check()  # a failed disk write (ENOSPC) is the cause of what HDF5 met after it
            raise
        self.partial.check()
