"""Running a batch: work units (scenario, chunk of paths) on threads or a Dask cluster, one writer.

Units are computed anywhere (this process's threads, a LocalCluster, a remote scheduler) and
come back as compact `ChunkResult`s; this process alone records each one in the journal as
it arrives and folds them into their scenario strictly in unit order, so the numbers and the
bytes of the output do not depend on how many workers there were or in which order units
finished. Memory: at most `2 x workers` units are in flight, and one scenario's running
totals (fan counts, the RiskAccumulator's tail) are held at a time; nothing per path is kept
across units except what is written to disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
from rich.console import Console

from gpusim.backends import Announce, Backend, get_backend, to_stderr
from gpusim.batch.assemble import write_batch_file
from gpusim.batch.journal import Journal, JournalError, UnitResult
from gpusim.batch.schema import ResolvedBatch
from gpusim.engine import ChunkTotals, RunResult, cancellable, chunks, deferred_interrupts, progress_bar, stop_if
from gpusim.output.read import is_batch_file
from gpusim.output.write import OutputError, ResultWriter, check_output_path, remove_stale_partials
from gpusim.scenario import ConfigError, validate_mapping
from gpusim.spec import DType, RunSpec, build_spec
from gpusim.version import __version__

SPEC_CACHE = 4
"""Compiled scenarios a process keeps; units arrive in scenario order, so a few suffice."""


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to compute one unit; plain data, so it pickles to any worker."""

    scenario_key: str
    scenario: dict[str, Any]  # the resolved scenario as JSON-ready data
    dtype: DType
    contagion: bool
    backend: str
    seed: int
    path_start: int
    n_paths: int
    save_paths: int


_specs: OrderedDict[tuple[str, str, bool], RunSpec] = OrderedDict()
_backends: dict[str, Backend] = {}
_cache_lock = threading.Lock()


def _spec(task: UnitTask) -> RunSpec:
    """The unit's compiled scenario, built once per process (a worker gets plain data, not a RunSpec)."""
    key = (task.scenario_key, task.dtype, task.contagion)
    with _cache_lock:
        if key in _specs:
            _specs.move_to_end(key)
            return _specs[key]
    spec = build_spec(validate_mapping(task.scenario, task.scenario.get("name", "batch")), task.dtype, contagion=task.contagion)
    with _cache_lock:
        _specs[key] = spec
        while len(_specs) > SPEC_CACHE:
            _specs.popitem(last=False)
    return spec


def _backend(name: str, announce: Announce | None = to_stderr) -> Backend:
    with _cache_lock:
        if name not in _backends:
            _backends[name] = get_backend(name, announce)
        return _backends[name]


def compute_unit(task: UnitTask) -> UnitResult:
    """Compute one unit where it runs (a worker resolves `auto` to its own best backend)."""
    backend = _backend(task.backend)
    chunk = backend.run_chunk(_spec(task), task.seed, task.path_start, task.n_paths, task.save_paths)
    return UnitResult(chunk, backend.name, backend.device)


WORKER_WAIT_S = 120
"""How long `--scheduler` waits for a first worker (workers of a job queue may start later)."""


@contextmanager
def unit_executor(
    backend: str, workers: int | None, scheduler: str | None, announce: Announce | None = to_stderr
) -> Iterator[tuple[Executor, Callable[[], int], str]]:
    """(executor, units it computes at once now, where) for this process's threads, a LocalCluster or a scheduler.

    On a scheduler the count follows the workers as they join or leave, so units in flight stay
    at twice the worker threads."""
    if workers is not None and scheduler is not None:
        raise ValueError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if workers is None and scheduler is None:
        threads = _backend(backend, announce).default_workers()
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpusim-unit") as pool:
            yield pool, lambda: threads, f"{threads} threads in this process"
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ValueError(f"--workers and --scheduler need dask.distributed ({exc}); install it: pip install 'gpusim[cluster]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise ValueError(f"--scheduler {scheduler}: no worker joined the cluster in {WORKER_WAIT_S} s") from None
            yield client.get_executor(pure=False), lambda: max(1, sum(client.nthreads().values())), f"the Dask cluster at {scheduler}"
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client.get_executor(pure=False), lambda: workers, f"a local cluster of {workers} worker processes"


@dataclass
class BatchRun:
    """What `run_batch` did: the output, the units computed now and recorded before, the time taken."""

    out: Path
    n_scenarios: int
    n_units: int
    units_computed: int
    units_resumed: int
    runtime_s: float
    where: str
    backends: set[str] = field(default_factory=set)
    already_complete: bool = False  # `--resume` found the finished file of this very batch


def _now_utc() -> str:
    """The batch's start time, or SOURCE_DATE_EPOCH when set (reproducible files, docs/batches.md)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return datetime.now(UTC).isoformat(timespec="seconds")
    if not epoch.isdigit():
        raise ValueError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01 UTC, got {epoch!r}")
    return datetime.fromtimestamp(int(epoch), UTC).isoformat(timespec="seconds")


def _manifest(batch: ResolvedBatch) -> dict[str, Any]:
    return {
        "batch": batch.name,
        "source": batch.source,
        "digest": batch.digest,
        "settings": batch.settings(),
        "scenarios": batch.scenario_digests,
        "gpusim_version": __version__,
        "created_utc": _now_utc(),
    }


def _check_same_batch(journal: Journal, batch: ResolvedBatch, out: Path) -> dict[str, Any]:
    """The journal's manifest if it belongs to this batch; else a ConfigError saying what changed."""
    old = journal.manifest()
    if old.get("gpusim_version") != __version__:
        raise ConfigError(
            [
                f"{out}: the batch was started by gpusim {old.get('gpusim_version')} and this is gpusim {__version__}; "
                f"one file does not mix versions. Resume with gpusim {old.get('gpusim_version')}, or delete {journal.root} and start again"
            ]
        )
    if old.get("digest") == batch.digest:
        return old
    changes = []
    for key, value in batch.settings().items():
        if old.get("settings", {}).get(key) != value:
            changes.append(f"{key} {old.get('settings', {}).get(key)!r} -> {value!r}")
    before, now = old.get("scenarios", {}), batch.scenario_digests
    changes += [f"scenario {n!r} changed" for n in now if n in before and before[n] != now[n]]
    changes += [f"scenario {n!r} added" for n in now if n not in before]
    changes += [f"scenario {n!r} removed" for n in before if n not in now]
    if list(before) != list(now) and not changes:
        changes.append("scenario order changed")
    raise ConfigError(
        [
            f"{batch.source}: the batch changed since it was first started for {out} "
            f"({'; '.join(changes) or 'gpusim batch format changed'}); cannot resume. "
            f"Restore the batch file, or delete {journal.root} and start again without --resume"
        ]
    )


def _finished(out: Path, batch: ResolvedBatch) -> bool:
    """True if `out` is this batch, complete (a retried `--resume` after success recomputes nothing)."""
    try:
        with h5py.File(out, "r") as f:
            return is_batch_file(dict(f.attrs)) and f.attrs.get("batch_digest") == batch.digest
    except OSError:
        return False


def run_batch(
    batch: ResolvedBatch,
    out: str | os.PathLike[str],
    backend: str = "auto",
    resume: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    overwrite: bool = False,
) -> BatchRun:
    """Run every scenario of `batch` into one HDF5 file at `out` (layout: docs/batches.md).

    Finished units are journaled beside `out` as they arrive; with `resume`, a journal left by
    an earlier start of the same batch is continued (a different batch is refused), and the
    file is bitwise identical to an uninterrupted run's. The file appears only when complete;
    an existing `out` is replaced only with `overwrite` (or left alone when `resume` finds it
    is this batch, complete). Ctrl-C stops within a model step; finished units stay journaled.
    """
    out_path = Path(out)
    journal = Journal(out_path)
    if journal.exists() and not resume:
        raise ConfigError(
            [f"{out_path}: an earlier start of a batch left its journal at {journal.root}; pass --resume to finish it or delete the folder"]
        )
    started = time.perf_counter()
    check_output_path(out_path, overwrite=True, example="batch.h5")  # a name, not a folder, link or FIFO
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{out_path}: cannot write output: {exc.strerror or exc}") from None
    resuming = journal.exists()
    if resume and not resuming and _finished(out_path, batch):
        n_units = len(batch.scenarios) * len(list(chunks(batch.spec.paths, batch.spec.chunk_paths)))
        return BatchRun(out_path, len(batch.scenarios), n_units, 0, n_units, time.perf_counter() - started, "", already_complete=True)
    check_output_path(out_path, overwrite, example="batch.h5")
    remove_stale_partials(out_path)
    manifest = _check_same_batch(journal, batch, out_path) if resuming else _manifest(batch)

    settings = batch.settings()
    n_paths, chunk_paths = settings["paths"], settings["chunk_paths"]
    plan = list(chunks(n_paths, chunk_paths))
    scenario_data = [b.scenario.model_dump(mode="json") for b in batch.scenarios]
    keys = list(batch.scenario_digests.values())

    def task(unit: tuple[int, int]) -> UnitTask:
        s, c = unit
        start, count = plan[c]
        seed = batch.scenarios[s].seed
        return UnitTask(
            keys[s], scenario_data[s], settings["dtype"], settings["contagion"], backend, seed, start, count, settings["save_paths"]
        )

    console = console or Console(stderr=True)
    progress = progress_bar(console, show_progress, field="scenarios")
    scenario_files = ScenarioFileWriter(batch, journal, manifest["created_utc"], len(plan))
    computed = 0
    cancel = threading.Event()  # stops units computing in this process's threads at their next step
    # the journal is created only once the workers are up: a cluster that fails to start leaves nothing to resume
    with (
        deferred_interrupts() as interrupted,
        unit_executor(backend, workers, scheduler, to_stderr if show_progress else None) as (executor, slots, where),
        journal.held(manifest, resuming),
        progress,
    ):
        local = isinstance(executor, ThreadPoolExecutor)

        def submit(unit: tuple[int, int]) -> Future[UnitResult]:
            if local:
                return executor.submit(cancellable, cancel, compute_unit, task(unit))
            return executor.submit(compute_unit, task(unit))  # a Dask worker cannot see this process's event

        done_scenarios = {s for s in range(len(batch.scenarios)) if journal.scenario_done(s)}
        recorded = {u for u in journal.recorded_units() if u[0] not in done_scenarios}
        order = [(s, c) for s in range(len(batch.scenarios)) if s not in done_scenarios for c in range(len(plan))]
        todo = iter([u for u in order if u not in recorded])
        resumed = len(done_scenarios) * len(plan) + len(recorded)
        resumed_paths = len(done_scenarios) * n_paths + sum(plan[c][1] for _, c in recorded)
        bar = progress.add_task(f"batch {batch.name}", total=len(batch.scenarios) * n_paths, completed=resumed_paths, scenarios="")
        pending: dict[Future[UnitResult], tuple[int, int]] = {}
        position = 0  # next unit of `order` to fold into its scenario
        try:
            while position < len(order):
                stop_if(interrupted)
                while len(pending) < 2 * slots() and (unit := next(todo, None)) is not None:
                    pending[submit(unit)] = unit
                s, c = order[position]
                if (s, c) in recorded:
                    scenario_files.add(s, c, journal.load_unit(s, c))
                    position += 1
                    progress.update(bar, scenarios=f"{len(done_scenarios) + len(scenario_files.finished)}/{len(batch.scenarios)} scenarios")
                    continue
                assert pending, "a unit is neither recorded nor computing"
                finished, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                stop_if(interrupted)  # a unit cancelled by Ctrl-C is not a result
                for future in finished:
                    unit = pending.pop(future)
                    result = future.result()
                    journal.record_unit(*unit, result)
                    recorded.add(unit)
                    computed += 1
                    progress.advance(bar, result.chunk.n_paths)
        except BaseException:
            cancel.set()
            for future in pending:
                future.cancel()
            raise
        finally:
            scenario_files.close()
        write_batch_file(batch, journal, out_path, manifest["created_utc"], overwrite=overwrite, cancelled=interrupted)
        journal.remove()
    return BatchRun(
        out=out_path,
        n_scenarios=len(batch.scenarios),
        n_units=len(batch.scenarios) * len(plan),
        units_computed=computed,
        units_resumed=resumed,
        runtime_s=time.perf_counter() - started,
        where=where,
        backends=scenario_files.backends,
    )


class ScenarioFileWriter:
    """Writes each scenario's run file from its work units, folded in batch order; seals a scenario when its last unit is in."""

    def __init__(self, batch: ResolvedBatch, journal: Journal, created_utc: str, n_chunks: int):
        self.batch, self.journal, self.created_utc, self.n_chunks = batch, journal, created_utc, n_chunks
        self.finished: list[int] = []
        self.backends: set[str] = set()
        self._current: tuple[int, RunSpec, ChunkTotals, ResultWriter, set[str], set[str]] | None = None

    def add(self, s: int, c: int, result: UnitResult) -> None:
        """Fold unit (s, c), the next in batch order, into scenario s; a write error keeps every recorded unit."""
        try:
            self._add(s, c, result)
        except JournalError:
            raise
        except OutputError as exc:
            raise JournalError(f"{exc}. Every recorded unit is kept in {self.journal.root}: free space and rerun with --resume") from None

    def _add(self, s: int, c: int, result: UnitResult) -> None:
        if self._current is None:
            self._open(s)
        assert self._current is not None and self._current[0] == s
        _, _, totals, writer, backends, devices = self._current
        totals.add(result.chunk)
        writer.write_chunk(result.chunk)
        backends.add(result.backend)
        devices.add(result.device)
        if c == self.n_chunks - 1:
            self._finish()

    def _open(self, s: int) -> None:
        settings = self.batch.settings()
        spec = build_spec(self.batch.scenarios[s].scenario, settings["dtype"], contagion=settings["contagion"])
        writer = ResultWriter(self.journal.staged_scenario_path(s), overwrite=True).__enter__()
        try:
            writer.begin(spec, settings["save_paths"], settings["paths"])
        except BaseException:
            writer.__exit__(None, None, None)  # an open HDF5 file must not outlive the interpreter
            raise
        self._current = (s, spec, ChunkTotals(spec, settings["paths"], settings["save_paths"]), writer, set(), set())

    def _finish(self) -> None:
        assert self._current is not None
        s, spec, totals, writer, backends, devices = self._current
        settings = self.batch.settings()
        result = RunResult(
            spec=spec,
            seed=self.batch.scenarios[s].seed,
            n_paths=settings["paths"],
            save_paths=settings["save_paths"],
            backend=", ".join(sorted(backends)),
            device="; ".join(sorted(devices)),
            chunk_paths=settings["chunk_paths"],
            workers=0,  # not recorded in batch files: it does not change the results (removed in write_batch_file)
            runtime_s=0.0,  # likewise: a resumed batch has no single runtime per scenario
            created_utc=self.created_utc,
        )
        totals.summarize(result)
        writer.finish(result)
        writer.__exit__(None, None, None)
        self._current = None
        self.journal.seal_scenario(s, self.n_chunks)
        self.finished.append(s)
        self.backends |= backends

    def close(self) -> None:
        """After an error or interrupt: drop the half-built scenario file (its units stay journaled)."""
        if self._current is not None:
            self._current[3].__exit__(None, None, None)
            self._current = None
