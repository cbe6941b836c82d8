"""`gpusim bench`: the same workload on every backend in one process, checked against each other, then timed.

A speedup is only worth quoting for backends that compute the same thing, so every backend's
first paths (same seed) are compared with the reference backend's before any of its times
count; a backend that disagrees is reported as a failure, never with a throughput. All
backends run in one process so that they meet the same machine, the same spec and the same
load. Timing splits come from the backend where it keeps them (`compile_seconds`,
`kernel_seconds`, `transfer_seconds`, read with getattr: a backend need not have them) and
are measured here otherwise; what is not known is reported as not known, not as zero.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gpusim.backends import BACKENDS, Backend, BackendUnavailable, get_backend, gpu_unavailable_reason
from gpusim.backends.agreement import TOLERANCES, Agreement, backend_key, compare_chunks, first_paths, first_paths_of, loosest, tolerance
from gpusim.engine import RunResult, chunks, run
from gpusim.scenario import Scenario
from gpusim.spec import ChunkResult, DType, RunSpec, build_spec
from gpusim.version import __version__

WORKLOADS = ("model+attribution", "model", "factors")
"""model+attribution: the default `gpusim run` (the paths rerun with the fire-sale chain off);
model: one pass (`--no-contagion`); factors: the market factors alone (borrowers removed)."""


def cpu_model() -> str:
    """The CPU's marketing name (the figures depend on it), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _module_version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return None


def gpu_name() -> tuple[str, str | None]:
    """The first CUDA device's name, or "none" and why not."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        return "none", reason
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return (name.decode() if isinstance(name, bytes) else str(name)), None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: they mean nothing without it."""
    gpu, gpu_reason = gpu_name()
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "gpu": gpu,
        "gpu_unavailable_reason": gpu_reason,
        "load_average": list(os.getloadavg()),
        "versions": {
            "gpusim": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "jax": _module_version("jax"),
            "jaxlib": _module_version("jaxlib"),
            "cupy": _module_version("cupy"),
        },
    }


def workload_spec(scenario: Scenario, workload: str, dtype: DType) -> RunSpec:
    """The spec of one of WORKLOADS on a scenario."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")
    if workload == "factors":
        return build_spec(scenario.model_copy(update={"borrowers": []}), dtype)
    return build_spec(scenario, dtype, contagion=workload == "model+attribution")


class HostMemory:
    """Peak resident memory (RSS) of this process since the last `reset`.

    Linux resets the high-water mark VmHWM when "5" is written to /proc/self/clear_refs, so
    each backend gets its own peak; where that is not possible the peak is the whole
    process's (ru_maxrss), and `scope` says so.
    """

    def __init__(self) -> None:
        self.scope = "backend"

    def reset(self) -> int:
        """Reset the peak; return the RSS now (what the process held before the backend ran)."""
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            self.scope = "process"
        return self._status("VmRSS") or 0

    def peak(self) -> int:
        hwm = self._status("VmHWM") if self.scope == "backend" else None
        return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None


def _on_accelerator(backend: Backend) -> bool:
    return backend.name in ("cupy", "cupy-array") or bool(getattr(backend, "on_accelerator", False))


def reset_device_memory(backend: Backend) -> None:
    """Return cupy's cached blocks, so that what the pool holds after a run is that run's peak."""
    if backend.name in ("cupy", "cupy-array"):
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


def device_memory(backend: Backend) -> int | None:
    """Peak device memory: cupy's pool footprint after the run (it keeps freed blocks), JAX's
    peak_bytes_in_use (since the process started); None on a CPU, where host RSS is the figure."""
    if backend.name in ("cupy", "cupy-array"):
        import cupy

        return int(cupy.get_default_memory_pool().total_bytes())
    if _on_accelerator(backend):
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return int(peak) if peak is not None else None
    return None


class FirstPaths:
    """Engine sink that keeps the chunks holding the first `n` paths (for the agreement check)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.chunks: list[ChunkResult] = []

    def write_chunk(self, chunk: ChunkResult) -> None:
        if chunk.path_start < self.n:
            self.chunks.append(first_paths_of(chunk, self.n - chunk.path_start))

    def first_paths(self, saved: dict[str, np.ndarray]) -> ChunkResult:
        """The first `n` paths, with the run's saved factor paths (the first `n` of them)."""
        return first_paths(self.chunks, self.n, saved)


@dataclass
class BackendReport:
    """One backend's row: medians over the repeats; None where a figure is not known."""

    name: str
    available: bool
    reason: str | None = None  # why it is unavailable, or why its figures are withheld
    device: str | None = None
    on_accelerator: bool = False
    workers: int | None = None
    chunk_paths: int | None = None
    warmup_s: float | None = None  # first run, end to end, compile included
    compile_s: float | None = None  # from the backend's compile_seconds
    kernel_s: float | None = None
    kernel_source: str | None = None
    transfer_s: float | None = None  # from the backend's transfer_seconds
    end_to_end_s: float | None = None
    end_to_end_repeats_s: list[float] = field(default_factory=list)
    path_steps_per_s: float | None = None
    host_rss_before_bytes: int | None = None
    peak_host_rss_bytes: int | None = None
    peak_host_rss_scope: str | None = None
    device_memory_bytes: int | None = None
    speedup_vs_numpy: float | None = None
    speedup_vs_jax_cpu: float | None = None
    agreement: Agreement | None = None


def _delta(backend: Backend, attribute: str, before: float | None) -> float | None:
    now = getattr(backend, attribute, None)
    return None if now is None or before is None else float(now) - float(before)


def time_chunks_alone(backend: Backend, spec: RunSpec, seed: int, n_paths: int, chunk_paths: int, workers: int, save_paths: int) -> float:
    """Wall time of the run's chunks on the same threads without the engine's accumulation:
    the compute alone, for backends that keep no kernel timer of their own."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(lambda c: backend.run_chunk(spec, seed, c[0], c[1], save_paths), chunks(n_paths, chunk_paths)):
            pass
    return time.perf_counter() - start


@dataclass
class _Reference:
    name: str
    key: str  # the name its tolerance is declared under (agreement.backend_key)
    first: ChunkResult


def bench_backend(
    name: str,
    spec: RunSpec,
    n_paths: int,
    repeats: int,
    seed: int,
    check_paths: int,
    workers: int | None,
    reference: _Reference | None,
    memory: HostMemory,
    backend_factory: Callable[[str], Backend] | None = None,
) -> tuple[BackendReport, _Reference | None]:
    """Warm up, check the first paths against the reference, then time `repeats` runs."""
    try:
        backend = (backend_factory or get_backend)(name)
    except BackendUnavailable as exc:
        return BackendReport(name=name, available=False, reason=str(exc)), reference
    report = BackendReport(name=name, available=True, device=backend.device, on_accelerator=_on_accelerator(backend))
    report.host_rss_before_bytes = memory.reset()
    reset_device_memory(backend)

    def engine_run(sink: FirstPaths | None = None) -> RunResult:
        return run(spec, backend, n_paths=n_paths, seed=seed, save_paths=check_paths, workers=workers, sink=sink, show_progress=False)

    compiled = getattr(backend, "compile_seconds", None)
    first = FirstPaths(check_paths)
    warmup = engine_run(first)
    report.warmup_s, report.workers, report.chunk_paths = warmup.runtime_s, warmup.workers, warmup.chunk_paths
    report.compile_s = _delta(backend, "compile_seconds", compiled)
    if reference is None:
        reference = _Reference(name, backend_key(backend), first.first_paths(warmup.saved))
    else:
        pair = loosest(tolerance(reference.key, spec.dtype), tolerance(backend_key(backend), spec.dtype))
        report.agreement = compare_chunks(reference.name, first.first_paths(warmup.saved), reference.first, pair)
        if not report.agreement.ok:
            report.reason = f"disagrees with {reference.name} on the first {check_paths} paths: " + "; ".join(report.agreement.problems)
            return report, reference

    end_to_end, kernel, transfer = [], [], []
    for _ in range(repeats):
        kernel_before, transfer_before = getattr(backend, "kernel_seconds", None), getattr(backend, "transfer_seconds", None)
        result = engine_run()
        end_to_end.append(result.runtime_s)
        transfer.append(_delta(backend, "transfer_seconds", transfer_before))
        kernel_timer = _delta(backend, "kernel_seconds", kernel_before)
        if kernel_timer is not None:
            kernel.append(kernel_timer)
            report.kernel_source = "backend timer (kernel_seconds)"
        else:
            kernel.append(time_chunks_alone(backend, spec, seed, n_paths, result.chunk_paths, result.workers, result.save_paths))
            report.kernel_source = "chunks alone on the same threads (host wall clock)"
    report.end_to_end_repeats_s = end_to_end
    report.end_to_end_s = statistics.median(end_to_end)
    report.kernel_s = statistics.median(kernel)
    known_transfer = [t for t in transfer if t is not None]
    report.transfer_s = statistics.median(known_transfer) if known_transfer else None
    report.path_steps_per_s = n_paths * spec.layout.n_steps / report.end_to_end_s
    report.peak_host_rss_bytes, report.peak_host_rss_scope = memory.peak(), memory.scope
    report.device_memory_bytes = device_memory(backend)
    return report, reference


def parse_backends(text: str) -> list[str]:
    """Comma-separated backend names, each one of BACKENDS, in the order given."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise ValueError(f"--backends: unknown backend(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def bench(
    scenario: Scenario,
    backends: Iterable[str],
    n_paths: int,
    repeats: int,
    dtype: DType = "float32",
    workload: str = "model+attribution",
    seed: int = 1,
    check_paths: int = 64,
    workers: int | None = None,
    backend_factory: Callable[[str], Backend] | None = None,
) -> dict[str, Any]:
    """Run the workload on each backend (the first that runs is the reference for the check)
    and return the report that `gpusim bench` prints and stores as JSON."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    if check_paths < 1:
        raise ValueError(f"--check-paths must be at least 1, got {check_paths}")
    spec = workload_spec(scenario, workload, dtype)
    memory = HostMemory()
    machine = machine_info()
    reports: list[BackendReport] = []
    reference: _Reference | None = None
    for name in backends:
        report, reference = bench_backend(name, spec, n_paths, repeats, seed, check_paths, workers, reference, memory, backend_factory)
        reports.append(report)
    _speedups(reports)
    machine["load_average_end"] = list(os.getloadavg())
    failures = [r.reason for r in reports if r.agreement is not None and not r.agreement.ok]
    layout = spec.layout
    return {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "ok": not failures,
        "failures": failures,
        "machine": machine,
        "workload": {
            "scenario": scenario.name,
            "workload": workload,
            "dtype": dtype,
            "n_paths": n_paths,
            "n_steps": layout.n_steps,
            "n_borrowers": layout.n_borrowers if spec.has_credit else 0,
            "n_instruments": layout.n_instruments if spec.has_credit else 0,
            "path_steps": n_paths * layout.n_steps,
            "seed": seed,
            "repeats": repeats,
            "reference_backend": None if reference is None else reference.name,
            "check_paths": min(check_paths, n_paths),
            "path_rtol": TOLERANCES[dtype].path_rtol,
            "outcome_agreement": TOLERANCES[dtype].default_path_share,
        },
        "backends": [asdict(r) for r in reports],
    }


def _speedups(reports: list[BackendReport]) -> None:
    """End-to-end speedups over numpy and over JAX on the CPU, where those ran and agreed."""
    timed = {r.name: r for r in reports if r.end_to_end_s is not None}
    numpy_report = timed.get("numpy")
    jax_cpu = timed.get("jax") if "jax" in timed and not timed["jax"].on_accelerator else None
    for r in timed.values():
        assert r.end_to_end_s is not None
        if numpy_report is not None and numpy_report.end_to_end_s is not None:
            r.speedup_vs_numpy = numpy_report.end_to_end_s / r.end_to_end_s
        if jax_cpu is not None and jax_cpu.end_to_end_s is not None:
            r.speedup_vs_jax_cpu = jax_cpu.end_to_end_s / r.end_to_end_s


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _bytes(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**30:.2f} GiB"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def report_lines(report: dict[str, Any]) -> list[str]:
    """The machine and workload, one line each, above the table."""
    m, w = report["machine"], report["workload"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v is not None)
    gpu = m["gpu"] if m["gpu_unavailable_reason"] is None else f"none ({m['gpu_unavailable_reason']})"
    load = " ".join(f"{x:.2f}" for x in m["load_average"])
    return [
        f"machine: {m['cpu_model']}, {m['cpu_count']} cores, {m['memory_bytes'] / 2**30:.0f} GiB, {m['platform']}",
        f"gpu: {gpu}",
        f"versions: {versions}",
        f"load average at start (1, 5, 15 min): {load}",
        f"workload: {w['scenario']} ({w['workload']}; borrowers {w['n_borrowers']}, instruments {w['n_instruments']}), "
        f"{w['n_paths']:,} paths x {w['n_steps']} steps, {w['dtype']}, seed {w['seed']}, median of {w['repeats']}; "
        f"first {w['check_paths']} paths checked to rtol {w['path_rtol']:g}",
    ]


def report_table(report: dict[str, Any]) -> Any:
    """One row per backend that ran and agreed (the others are in `untimed_lines`)."""
    from rich.table import Table

    table = Table(title="gpusim bench: medians over the repeats, seconds unless stated")
    columns = ("backend", "device", "warm-up", "compile", "kernel", "transfer", "end to end", "path-steps/s")
    for column in (*columns, "peak RSS", "device mem", "vs numpy", "vs JAX CPU"):
        table.add_column(column, justify="left" if column in ("backend", "device") else "right")
    for b in report["backends"]:
        if b["end_to_end_s"] is None:
            continue
        table.add_row(
            b["name"],
            b["device"],
            _seconds(b["warmup_s"]),
            _seconds(b["compile_s"]),
            _seconds(b["kernel_s"]),
            _seconds(b["transfer_s"]),
            _seconds(b["end_to_end_s"]),
            f"{b['path_steps_per_s']:,.3g}",
            _bytes(b["peak_host_rss_bytes"]),
            _bytes(b["device_memory_bytes"]),
            _times(b["speedup_vs_numpy"]),
            _times(b["speedup_vs_jax_cpu"]),
        )
    return table


def untimed_lines(report: dict[str, Any]) -> list[str]:
    """Backends without figures, and why: not available here, or failed the check."""
    lines = []
    for b in report["backends"]:
        if not b["available"]:
            lines.append(f"{b['name']}: not available here: {b['reason']}")
        elif b["end_to_end_s"] is None:
            lines.append(f"{b['name']}: FAILED, no figures: {b['reason']}")
    return lines


def to_json(report: dict[str, Any]) -> str:
    """The report as strict JSON: a non-finite number (an infinite path difference) becomes null."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(report), indent=2, allow_nan=False)


def check_json_path(path: str) -> None:
    """Refuse a --json path that cannot be written before the benchmark spends minutes: open it for
    appending (nothing existing is changed) and remove it again if this created it."""
    target = Path(path)
    if not target.name or target.is_dir():
        raise ValueError(f"{path!r}: not a file name for the JSON report; give one such as bench.json")
    existed = target.exists()
    try:
        with open(target, "a"):
            pass
    except OSError as exc:
        raise ValueError(f"{target}: cannot write the JSON report ({exc.strerror or exc})") from None
    if not existed:
        target.unlink(missing_ok=True)
