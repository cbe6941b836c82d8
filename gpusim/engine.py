"""The engine: splits paths into chunks, runs them on a backend, streams results to a sink.

Every backend computes chunks the same way (same seed, same paths); the engine only decides
how many paths a chunk holds, runs chunks on a few threads (numpy releases the GIL inside its
array loops), shows progress, and sums the chunk statistics. The sums are integer counts, so
the result is the same for any chunk size, thread count and completion order.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gpusim.backends import Backend
from gpusim.backends.array_model import cancel_on
from gpusim.model.factor_table import FACTORS_BY_NAME
from gpusim.risk import RiskAccumulator
from gpusim.spec import FAN_FACTORS, ChunkResult, CreditOutcomes, RunSpec
from gpusim.statistics import FAN_QUANTILES, proportion_with_se, quantiles_from_counts

MIN_CHUNK = 256
MEMORY_SHARE = 0.25
"""Share of the available memory that chunks in flight may use."""


class SimulationError(Exception):
    """The model produced something unusable (NaN) for this scenario."""


T = TypeVar("T")

_INTERRUPTED: ContextVar[threading.Event | None] = ContextVar("gpusim_interrupted", default=None)


@contextmanager
def deferred_interrupts() -> Iterator[threading.Event]:
    """Within this context Ctrl-C sets the event returned instead of raising wherever Python is.

    A KeyboardInterrupt raised inside a finalizer or a library callback is printed as
    "Exception ignored" and lost, and the run goes on; an event cannot be lost: the loops that
    wait for chunks check it and stop where stopping is clean. A second Ctrl-C raises at once.
    Nested contexts share the outer event. Only the main thread receives signals, so elsewhere
    (or under a host that installed its own handler) Ctrl-C keeps raising as usual.
    """
    outer = _INTERRUPTED.get()
    if outer is not None:
        yield outer
        return
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield interrupted
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    token = _INTERRUPTED.set(interrupted)
    try:
        yield interrupted
    finally:
        _INTERRUPTED.reset(token)
        signal.signal(signal.SIGINT, previous)


def cancellable(cancel: threading.Event, compute: Callable[..., T], *args: Any) -> T:
    """`compute(*args)` in a worker thread, stopping between model steps once `cancel` is set."""
    with cancel_on(cancel):
        return compute(*args)


def stop_if(interrupted: threading.Event) -> None:
    """Turn a Ctrl-C recorded by `deferred_interrupts` into a KeyboardInterrupt here, at a clean point."""
    if interrupted.is_set():
        raise KeyboardInterrupt


class ChunkSink(Protocol):
    def write_chunk(self, chunk: ChunkResult) -> None: ...


@dataclass
class RunResult:
    spec: RunSpec
    seed: int
    n_paths: int
    save_paths: int
    backend: str
    device: str
    chunk_paths: int
    workers: int
    runtime_s: float
    created_utc: str
    fan: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # factor -> (values, se), (C, Q, steps+1)
    tight_share: np.ndarray | None = None
    tight_share_se: np.ndarray | None = None
    saved: dict[str, np.ndarray] = field(default_factory=dict)
    risk: dict[str, np.ndarray] | None = None  # credit summary with the fire-sale chain as configured
    risk_without_chain: dict[str, np.ndarray] | None = None  # same paths, chain off (contagion attribution)
    portfolio_loss_nominal: float | None = None  # mean undiscounted portfolio loss, USD

    @property
    def path_steps_per_second(self) -> float:
        return self.n_paths * self.spec.layout.n_steps / max(self.runtime_s, 1e-12)


def histogram_bytes(spec: RunSpec) -> int:
    """Memory a chunk holds whatever its size: the fan-chart counts of every step (int32), in
    about three copies at the peak (the per-step counts, stacked, split per factor). With many
    borrowers or steps this outweighs the paths (256 borrowers: about 17 MB a step)."""
    bins = sum(b.n_components * b.bins_per_component for b in spec.binnings.values())
    return 3 * 4 * (spec.layout.n_steps + 1) * bins


def fit_workers(backend: Backend, spec: RunSpec, workers: int) -> int:
    """At most `workers`, and few enough that 2 chunks each of the smallest size fit in the
    memory share (each chunk carries `histogram_bytes` besides its paths)."""
    per_chunk = histogram_bytes(spec) + MIN_CHUNK * backend.bytes_per_path(spec)
    return max(1, min(workers, int(MEMORY_SHARE * backend.memory_bytes() / (2 * per_chunk))))


def plan_chunks(backend: Backend, spec: RunSpec, n_paths: int, workers: int | None, chunk_paths: int | None) -> tuple[int, int]:
    """(workers, paths per chunk) of a run: as asked, else what the backend and free memory allow."""
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    workers = workers or fit_workers(backend, spec, backend.default_workers())
    share = getattr(backend, "use_workers", None)  # a backend with threads of its own shares them among the chunks
    if share is not None:
        share(workers)
    return workers, choose_chunk_paths(backend, spec, n_paths, workers, chunk_paths)


def choose_chunk_paths(backend: Backend, spec: RunSpec, n_paths: int, workers: int, requested: int | None = None) -> int:
    """Requested size, else the backend's fastest size bounded by the memory the 2 x workers
    chunks in flight may use (their histograms first, then their paths)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--chunk-paths must be at least 1, got {requested}")
        return min(requested, n_paths)
    per_chunk = MEMORY_SHARE * backend.memory_bytes() / (2 * workers) - histogram_bytes(spec)
    by_memory = int(per_chunk / backend.bytes_per_path(spec))
    return max(1, min(n_paths, backend.preferred_chunk_paths(spec), max(MIN_CHUNK, by_memory)))


def chunks(n_paths: int, chunk_paths: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n_paths, chunk_paths):
        yield start, min(chunk_paths, n_paths - start)


class ChunkTotals:
    """Running sums of chunk statistics (exact integers, exact loss tails); `summarize` turns them into results."""

    def __init__(self, spec: RunSpec, n_paths: int, save_paths: int):
        steps = spec.layout.n_steps + 1
        # no bin counts more than n_paths: uint32 is exact below 2**32 paths and halves the fresh
        # memory the first chunk's add touches (95 MB of int64 page faults on bench.yaml)
        dtype = np.uint32 if n_paths < 2**32 else np.int64
        self.fan = {name: np.zeros((steps, b.n_components, b.bins_per_component), dtype=dtype) for name, b in spec.binnings.items()}
        self.tight = np.zeros(steps, dtype=np.int64)
        self.saved: dict[str, np.ndarray] = {}
        self.save_paths = save_paths
        self.spec = spec
        self.risk = self._accumulator(n_paths) if spec.has_credit else None
        self.risk_off = self._accumulator(n_paths) if spec.attribution else None
        self.loss_nominal = 0.0

    def _accumulator(self, n_paths: int) -> RiskAccumulator:
        layout = self.spec.layout
        return RiskAccumulator(
            layout.n_borrowers, layout.n_instruments, layout.n_steps, expected_paths=n_paths, instrument_borrower=layout.instrument_owner
        )

    def _add_outcomes(self, accumulator: RiskAccumulator, path_start: int, outcomes: CreditOutcomes) -> None:
        for name in ("loss", "exposure", "risky_annuity"):
            bad = ~np.isfinite(getattr(outcomes, name)).all(axis=0)
            if bad.any():
                names = [self.spec.layout.instruments[i] for i in np.flatnonzero(bad)]
                raise SimulationError(
                    f"{name} of instrument(s) {names} is NaN or infinite on paths from {path_start}; check the scenario's debt terms"
                )
        o = outcomes
        accumulator.add(path_start, o.default_step, o.loss, o.exposure, o.risky_annuity, default_reason=o.default_reason)

    def add(self, chunk: ChunkResult) -> None:
        for name, counts in chunk.fan_counts.items():
            np.add(self.fan[name], counts, out=self.fan[name], casting="unsafe")  # counts are never negative
        _check_finite(self, self.spec)  # a NaN market factor is named before the credit outcomes it spoils
        self.tight += chunk.tight_count
        if self.risk is not None and chunk.outcomes is not None:
            self._add_outcomes(self.risk, chunk.path_start, chunk.outcomes)
            self.loss_nominal += float(chunk.outcomes.portfolio_loss_nominal.sum())
        if self.risk_off is not None and chunk.outcomes_without_chain is not None:
            self._add_outcomes(self.risk_off, chunk.path_start, chunk.outcomes_without_chain)
        for name, values in chunk.saved.items():
            if values.shape[0] == 0:
                continue
            if name not in self.saved:
                self.saved[name] = np.empty((self.save_paths, *values.shape[1:]), dtype=values.dtype)
            self.saved[name][chunk.path_start : chunk.path_start + values.shape[0]] = values

    def summarize(self, result: RunResult) -> None:
        """Fill `result`'s fans, tight share and credit summaries from the sums of all its paths."""
        n_paths = result.n_paths
        for name in self.spec.fans:
            grid = FACTORS_BY_NAME[name].fan
            result.fan[name] = quantiles_from_counts(
                self.fan[name], self.spec.binnings[name], FAN_QUANTILES, grid.bounded_below, grid.bounded_above
            )
        result.tight_share, result.tight_share_se = proportion_with_se(self.tight, n_paths)
        if self.risk is not None:
            result.risk = self.risk.finalize()
            result.portfolio_loss_nominal = self.loss_nominal / n_paths
        if self.risk_off is not None:
            result.risk_without_chain = self.risk_off.finalize()


def progress_bar(console: Console, show: bool, field: str = "rate") -> Progress:
    """The progress bar of runs and batches: paths done of all, the task's `field`, elapsed, ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("paths"),
        TextColumn(f"{{task.fields[{field}]}}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
    )


def run(
    spec: RunSpec,
    backend: Backend,
    n_paths: int,
    seed: int,
    save_paths: int = 1000,
    chunk_paths: int | None = None,
    workers: int | None = None,
    sink: ChunkSink | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Simulate n_paths paths of the spec with the given seed.

    Chunks run on `workers` threads (default: the backend's `default_workers()`); `sink` receives
    each chunk as it completes (for streaming output). Ctrl-C or an error stops submitting and
    cancels running chunks at their next step (array backends), and propagates: nothing
    partial is returned.
    """
    if n_paths < 1:
        raise ValueError(f"--paths must be at least 1, got {n_paths}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"--seed must be in [0, 2**64), got {seed}")
    save_paths = max(0, min(save_paths, n_paths))
    workers, size = plan_chunks(backend, spec, n_paths, workers, chunk_paths)
    totals = ChunkTotals(spec, n_paths, save_paths)
    started = time.perf_counter()
    created = datetime.now(UTC).isoformat(timespec="seconds")

    console = console or Console(stderr=True)
    progress = progress_bar(console, show_progress)
    task = progress.add_task(f"{spec.scenario.name} on {backend.name}", total=n_paths, rate="")
    pending: set[Future[ChunkResult]] = set()
    work = chunks(n_paths, size)
    done_paths = 0

    def collect(finished: set[Future[ChunkResult]]) -> None:
        nonlocal done_paths
        for future in finished:
            chunk = future.result()
            totals.add(chunk)
            if sink is not None:
                sink.write_chunk(chunk)
            done_paths += chunk.n_paths
        elapsed = time.perf_counter() - started
        progress.update(task, completed=done_paths, rate=f"{done_paths / max(elapsed, 1e-9):,.0f} paths/s")

    cancel = threading.Event()
    with deferred_interrupts() as interrupted, progress, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpusim-chunk") as pool:
        try:
            for start, count in work:
                if len(pending) >= 2 * workers:
                    finished, pending = _wait_interruptibly(pending, interrupted)
                    collect(finished)
                pending.add(pool.submit(cancellable, cancel, backend.run_chunk, spec, seed, start, count, save_paths))
            while pending:
                finished, pending = _wait_interruptibly(pending, interrupted)
                collect(finished)
            stop_if(interrupted)
        except BaseException:
            cancel.set()  # running chunks stop at their next step; the pool's exit waits only for that
            for future in pending:
                future.cancel()
            raise

    runtime = time.perf_counter() - started
    result = RunResult(
        spec=spec,
        seed=seed,
        n_paths=n_paths,
        save_paths=save_paths,
        backend=backend.name,
        device=backend.device,
        chunk_paths=size,
        workers=workers,
        runtime_s=runtime,
        created_utc=created,
        saved=totals.saved,
    )
    totals.summarize(result)
    return result


def _wait_interruptibly(
    pending: set[Future[ChunkResult]], interrupted: threading.Event
) -> tuple[set[Future[ChunkResult]], set[Future[ChunkResult]]]:
    """Wait for the next chunk in short slices, stopping when Ctrl-C was pressed meanwhile."""
    while True:
        stop_if(interrupted)
        finished, still = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
        if finished:
            stop_if(interrupted)  # a chunk cancelled by Ctrl-C is not a result
            return finished, still


def _check_finite(totals: ChunkTotals, spec: RunSpec) -> None:
    """NaN never reaches an output silently: fail naming the factor and the first step."""
    for name in FAN_FACTORS:
        nan_per_step = totals.fan[name][..., -1].sum(axis=-1)
        if nan_per_step.any():
            step = int(np.argmax(nan_per_step > 0))
            raise SimulationError(
                f"factor {name!r} is NaN on {int(nan_per_step[step])} paths at step {step} of scenario "
                f"{spec.scenario.name!r}; check its parameters (e.g. volatilities, correlations)"
            )
