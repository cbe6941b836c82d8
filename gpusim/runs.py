"""One run from spec to file: the engine's chunks streamed into the output writer.

This is what `gpusim run` and `gpusim.simulate` share. It sits above both the engine and
`gpusim.output`, so the output package only describes the file layout and never runs a model.
A large run is sized before it starts: time (from a short calibration), memory and output
size, and it is refused when its output cannot fit on the disk.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpusim.backends import Announce, Backend, get_backend, to_stderr
from gpusim.backends.array_model import ChunkCancelled, cancel_on
from gpusim.backends.sizing import cpu_count
from gpusim.engine import RunResult, deferred_interrupts, histogram_bytes, plan_chunks, run
from gpusim.output.write import OutputError, ResultWriter, output_bytes
from gpusim.scenario import Scenario
from gpusim.spec import RunSpec, build_spec

DTYPES = ("float64", "float32")

LARGE_RUN_PATHS = 1_000_000
"""From this many paths a run is estimated (time, memory, output size) and checked against the free disk before it starts."""

CALIBRATION_PATHS = 1024
"""Paths of the calibration chunk that times the backend for the estimate (run twice: the first may compile)."""


def prepare_run(
    scenario: Scenario, dtype: str, contagion: bool, backend: str, announce: Announce | None = to_stderr
) -> tuple[RunSpec, Backend]:
    """The compiled spec of a scenario and the backend named `backend` (BackendUnavailable says why not;
    `announce` gets the backends `auto` skipped)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return build_spec(scenario, dtype, contagion=contagion), get_backend(backend, announce)  # type: ignore[arg-type]


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:,.0f} s"
    if s < 7200:
        return f"{s / 60:,.0f} min"
    return f"{s / 3600:,.1f} h"


@dataclass(frozen=True)
class RunEstimate:
    """What a run will take, from a calibration chunk on its backend: rough, but known before it starts."""

    seconds: float
    memory_bytes: int
    output_bytes: int
    free_bytes: int
    calibration_paths: int

    def line(self) -> str:
        return (
            f"estimate: about {human_seconds(self.seconds)} (timed on {self.calibration_paths:,} paths), "
            f"memory about {human_bytes(self.memory_bytes)}, output up to {human_bytes(self.output_bytes)} "
            f"({human_bytes(self.free_bytes)} free)"
        )


def free_bytes(path: Path) -> int:
    """Free space of the file system `path` is (or will be) on."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_fits(spec: RunSpec, out: Path, n_paths: int, save_paths: int) -> tuple[int, int]:
    """(output bytes, free bytes); OutputError when the output cannot fit on the disk."""
    need, free = output_bytes(spec, n_paths, save_paths), free_bytes(out)
    if need > free:
        raise OutputError(
            f"{out}: the output needs up to {human_bytes(need)} and its disk has {human_bytes(free)} free; "
            "free space, write elsewhere, or lower --paths or --save-paths"
        )
    return need, free


def estimate_run(
    spec: RunSpec,
    backend: Backend,
    out: Path,
    n_paths: int,
    save_paths: int,
    seed: int = 1,
    workers: int | None = None,
    chunk_paths: int | None = None,
    interrupted: threading.Event | None = None,
) -> RunEstimate:
    """Time a calibration chunk on the backend and scale it to the run; size its memory and output."""
    workers, size = plan_chunks(backend, spec, n_paths, workers, chunk_paths)
    paths = min(size, CALIBRATION_PATHS)
    timings = []
    with cancel_on(interrupted or threading.Event()):
        for _ in range(2):
            started = time.perf_counter()
            try:
                backend.run_chunk(spec, seed, 0, paths, 0)
            except ChunkCancelled:
                raise KeyboardInterrupt from None
            timings.append(time.perf_counter() - started)
    parallel = min(workers, cpu_count()) if backend.device.startswith("cpu") else 1
    seconds = min(timings) / paths * n_paths / parallel
    in_flight = 2 * workers * (size * backend.bytes_per_path(spec) + histogram_bytes(spec))
    memory = in_flight + output_bytes(spec, save_paths, save_paths)
    return RunEstimate(seconds, memory, output_bytes(spec, n_paths, save_paths), free_bytes(out), paths)


def run_to_file(
    spec: RunSpec,
    backend: Backend,
    out: str | os.PathLike[str],
    n_paths: int,
    save_paths: int,
    overwrite: bool = False,
    announce: Callable[[str], None] | None = None,
    **engine_options: Any,
) -> RunResult:
    """Simulate and write one run to `out` (what `gpusim run` and `gpusim.simulate` do).

    The output path is checked before any path is simulated (an existing file is replaced only
    with `overwrite`); a run of LARGE_RUN_PATHS or more is refused when its output cannot fit
    on the disk, and otherwise its estimate goes to `announce`. Outcomes stream chunk by chunk,
    and the file appears only when complete: Ctrl-C or a failure leaves nothing behind.
    """
    if n_paths < 1:
        raise ValueError(f"--paths must be at least 1, got {n_paths}")
    if save_paths < 0:
        raise ValueError(f"--save-paths must be 0 or more, got {save_paths}")
    with deferred_interrupts() as interrupted, ResultWriter(out, overwrite, cancelled=interrupted) as writer:
        if n_paths >= LARGE_RUN_PATHS:
            check_fits(spec, writer.path, n_paths, save_paths)
            if announce is not None:
                options = {key: engine_options.get(key) for key in ("workers", "chunk_paths")}
                seed = engine_options.get("seed", 1)
                announce(estimate_run(spec, backend, writer.path, n_paths, save_paths, seed, **options, interrupted=interrupted).line())
        writer.begin(spec, min(save_paths, n_paths), n_paths)
        result = run(spec, backend, n_paths=n_paths, save_paths=save_paths, sink=writer, **engine_options)
        writer.finish(result)
    return result
