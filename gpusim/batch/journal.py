"""The batch journal: what survives a crash, so `--resume` finishes instead of restarting.

It is a hidden folder beside the output (`.OUT.h5.batch/`):

* `manifest.json`: the batch hash, the per-scenario hashes and the start time, written first.
* `units/s<scenario>-c<chunk>.npz`: one finished work unit's compact results (ChunkResult),
  written as it arrives.
* `scenarios/s<scenario>.h5`: a finished scenario's run file (written as `.staged.h5`, fsync'd,
  renamed); its unit files are then deleted.

Every file is written under a temporary name, fsync'd, renamed into place and its folder
fsync'd, so after `kill -9` or a power cut a file with its final name is complete, and a unit
is either recorded or not. A full disk raises `JournalError` naming the folder; files already
recorded are never touched by a failed write.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from gpusim.output.write import OutputError, fsync_dir, fsync_file

try:
    import fcntl
except ImportError:  # Windows: no flock, so a second batch on the same output is not detected there
    fcntl = None  # type: ignore[assignment]
from gpusim.spec import ChunkResult, CreditOutcomes


class JournalError(OutputError):
    """The journal cannot be written or read (disk full, permissions, damaged files)."""


class UnitResult(NamedTuple):
    """A computed work unit: the chunk and where it ran (backend name, device)."""

    chunk: ChunkResult
    backend: str
    device: str


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through `path.tmp`, fsync, rename, fsync the folder: all or nothing under the final name."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _write_npz(fh: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    """An .npz (np.load reads it) deflated at level 1: a unit's fan histograms are mostly
    empty bins, about 15x smaller this way, at about a third of np.savez_compressed's time."""
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def _pack(result: UnitResult) -> dict[str, np.ndarray]:
    chunk = result.chunk
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(
            json.dumps({"path_start": chunk.path_start, "n_paths": chunk.n_paths, "backend": result.backend, "device": result.device})
        ),
        "tight_count": chunk.tight_count,
    }
    arrays.update({f"saved.{k}": v for k, v in chunk.saved.items()})
    arrays.update({f"fan.{k}": v for k, v in chunk.fan_counts.items()})
    for prefix, outcomes in (("on", chunk.outcomes), ("off", chunk.outcomes_without_chain)):
        if outcomes is not None:
            arrays.update({f"{prefix}.{k}": v for k, v in outcomes._asdict().items()})
    return arrays


def _unpack(data: Any) -> UnitResult:
    meta = json.loads(str(data["meta"]))

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith(prefix + ".")}

    outcomes = {p: (CreditOutcomes(**fields) if (fields := group(p)) else None) for p in ("on", "off")}
    chunk = ChunkResult(
        path_start=meta["path_start"],
        n_paths=meta["n_paths"],
        saved=group("saved"),
        fan_counts=group("fan"),
        tight_count=data["tight_count"],
        outcomes=outcomes["on"],
        outcomes_without_chain=outcomes["off"],
    )
    return UnitResult(chunk, meta["backend"], meta["device"])


def journal_folder(out: str | os.PathLike[str]) -> Path:
    """The hidden folder beside a batch output file where its finished work units are kept."""
    path = Path(out)
    return path.with_name(f".{path.name}.batch")


class Journal:
    """The journal folder of one batch output file."""

    def __init__(self, out: Path):
        self.root = journal_folder(out)
        self.units = self.root / "units"
        self.scenarios = self.root / "scenarios"
        self.manifest_path = self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def create(self, manifest: dict[str, Any]) -> None:
        """Start a fresh journal (an old one is removed first)."""
        self.remove()
        self._guard("start the batch journal", lambda: self._create(manifest))

    def _create(self, manifest: dict[str, Any]) -> None:
        for folder in (self.root, self.units, self.scenarios):
            folder.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.root.parent)
        _atomic_write(self.manifest_path, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise JournalError(f"{self.manifest_path}: cannot read the batch journal ({exc}); delete {self.root} to start over") from None

    @contextmanager
    def held(self, manifest: dict[str, Any], resuming: bool) -> Iterator[None]:
        """Create (or continue) the journal and hold its lock: one `gpusim batch` per output at a time.

        The lock is an flock, so the kernel releases it when the holder dies, even by kill -9.
        """
        if not resuming:
            self.create(manifest)
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"{self.root}: cannot open the batch journal: {exc.strerror or exc}") from None
        try:
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalError(f"{self.root}: another `gpusim batch` is writing this output; wait for it or stop it") from None
            self._clean()
            yield
        finally:
            os.close(fd)

    def _clean(self) -> None:
        """Remove what a killed process left half-written: temporary unit, scenario and output files."""
        partial_outputs = self.root.parent.glob(f"{self.root.name.removesuffix('.batch')}.partial-*")
        half_written = [*self.units.glob("*.tmp"), *self.scenarios.glob(".*.partial-*"), *self.scenarios.glob("*.staged.h5")]
        for stale in [*half_written, *partial_outputs]:
            stale.unlink(missing_ok=True)

    def unit_path(self, scenario: int, chunk: int) -> Path:
        return self.units / f"s{scenario:05d}-c{chunk:07d}.npz"

    def recorded_units(self) -> set[tuple[int, int]]:
        """(scenario, chunk) of every unit recorded so far."""
        done = set()
        for path in self.units.glob("s*-c*.npz"):
            s, c = path.stem.split("-")
            done.add((int(s[1:]), int(c[1:])))
        return done

    def record_unit(self, scenario: int, chunk: int, result: UnitResult) -> None:
        arrays = _pack(result)
        path = self.unit_path(scenario, chunk)
        self._guard(f"record work unit {chunk} of scenario {scenario}", lambda: _atomic_write(path, lambda fh: _write_npz(fh, arrays)))

    def load_unit(self, scenario: int, chunk: int) -> UnitResult:
        path = self.unit_path(scenario, chunk)
        try:
            with np.load(path, allow_pickle=False) as data:
                return _unpack(data)
        except (OSError, ValueError, KeyError) as exc:
            raise JournalError(f"{path}: damaged batch journal entry ({exc}); delete it and rerun with --resume to recompute it") from None

    def scenario_path(self, scenario: int) -> Path:
        return self.scenarios / f"s{scenario:05d}.h5"

    def staged_scenario_path(self, scenario: int) -> Path:
        """Where a scenario's run file is written; `seal_scenario` moves it to `scenario_path`."""
        return self.scenarios / f"s{scenario:05d}.staged.h5"

    def scenario_done(self, scenario: int) -> bool:
        return self.scenario_path(scenario).is_file()

    def seal_scenario(self, scenario: int, n_chunks: int) -> None:
        """Make a written scenario file durable under its final name, then drop its units (no longer needed)."""

        def seal() -> None:
            staged = self.staged_scenario_path(scenario)
            fsync_file(staged)
            os.replace(staged, self.scenario_path(scenario))
            fsync_dir(self.scenarios)
            for chunk in range(n_chunks):
                self.unit_path(scenario, chunk).unlink(missing_ok=True)
            fsync_dir(self.units)

        self._guard(f"store scenario {scenario}", seal)

    def remove(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    def _guard(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError as exc:
            raise JournalError(
                f"{self.root}: cannot {what}: {exc.strerror or exc}. Every unit recorded before is kept: "
                "free space (or fix the folder) and rerun with --resume"
            ) from None
