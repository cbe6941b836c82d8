"""The GPU figures of docs/benchmarks.md on the fixed workload (configs/bench.yaml, float32), in one process.

- cupy kernel time: `simulate_paths` over 10 million paths x 120 steps, one pass (chain as
  configured, no attribution rerun) and the default two passes (attribution), from the
  backend's cuda-event timer (`kernel_seconds`), in path-steps per second; the difference is
  the attribution pass, which counts no fans (what the fan histograms cost);
- the floor: `sum_draws` in kernels/draws_only.cu (the model's random numbers, drawn and summed) over the same paths,
  its throughput and the model's share of it;
- end to end: `gpusim.runs.run_to_file`, 10 million paths with outcomes and attribution to HDF5;
- where available: the JAX backend on the GPU, with its market step as XLA fuses it and as the
  Pallas kernel (the target for JAX is 1e9 path-steps/s, with the faster of the two as default),
  and the cupy-array backend, on fewer paths, measured last (the table is printed before and
  after them).
Each figure is measured after a warm-up (compilation apart). Where a figure would take longer
than its time budget at the throughput measured on a smaller run, it is measured on fewer paths
and says so. Prints a short table last; `--json` writes every figure. Run from the repository
root on a GPU machine:

    python3 benchmarks/bench_gpu.py --json bench_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from gpusim.backends import BackendUnavailable, get_backend
from gpusim.engine import run
from gpusim.runs import run_to_file
from gpusim.scenario import load_scenario
from gpusim.spec import RunSpec, build_spec

ROOT = Path(__file__).resolve().parents[1]
SEED = 1
TARGET_PATHS = 10_000_000
CHUNK = 1 << 20
BUDGET_S = 30.0
"""Longest a single figure may take; beyond it the figure runs on fewer paths."""


def bench_spec(dtype: str, contagion: bool) -> RunSpec:
    return build_spec(load_scenario(ROOT / "configs" / "bench.yaml"), dtype, contagion=contagion)  # type: ignore[arg-type]


def affordable_paths(seconds_per_path: float, target: int, budget_s: float = BUDGET_S) -> int:
    """The target path count, or as many as fit the budget at the measured cost (whole multiples of 2^12)."""
    if seconds_per_path * target <= budget_s:
        return target
    return max(1 << 12, int(budget_s / seconds_per_path) >> 12 << 12)


def kernel_time(backend: Any, spec: RunSpec, n_paths: int) -> float:
    """Seconds of simulate_paths (cuda events) over n_paths in chunks, outputs copied back."""
    before = backend.kernel_seconds
    for start in range(0, n_paths, CHUNK):
        backend.run_chunk(spec, SEED, start, min(CHUNK, n_paths - start), 0)
    return backend.kernel_seconds - before


def floor_time(backend: Any, spec: RunSpec, n_paths: int) -> float:
    before = backend.floor_seconds
    for start in range(0, n_paths, CHUNK):
        backend.run_floor(spec, SEED, start, min(CHUNK, n_paths - start))
    return backend.floor_seconds - before


def engine_rate(backend: Any, spec: RunSpec, n_paths: int) -> float:
    """Path-steps per second of a whole engine run (fans, statistics, no file), after a warm-up
    of the same size (so that JAX has compiled for that chunk size)."""
    run(spec, backend, n_paths=n_paths, seed=SEED, save_paths=0, show_progress=False)
    return run(spec, backend, n_paths=n_paths, seed=SEED, save_paths=0, show_progress=False).path_steps_per_second


def measure(dtype: str, target: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"dtype": dtype, "workload": "configs/bench.yaml", "host": platform.node()}
    get_backend("cupy")  # says why, where the cupy backend cannot run here
    from gpusim.backends.cupy_backend import CupyBackend

    cupy_backend = CupyBackend()
    figures["device"] = cupy_backend.device
    one_pass, attributed = bench_spec(dtype, contagion=False), bench_spec(dtype, contagion=True)
    steps = one_pass.layout.n_steps

    # warm-up: compile, then a first small chunk whose time sizes the full runs
    probe = min(1 << 20, target)
    cupy_backend.run_chunk(one_pass, SEED, 0, min(1 << 16, probe), 0)
    cupy_backend.run_floor(one_pass, SEED, 0, min(1 << 16, probe))
    figures["compile_s"] = cupy_backend.compile_seconds
    per_path = kernel_time(cupy_backend, one_pass, probe) / probe

    n = affordable_paths(per_path, target)
    seconds = kernel_time(cupy_backend, one_pass, n)
    figures["kernel_one_pass"] = {"paths": n, "seconds": seconds, "path_steps_per_s": n * steps / seconds}
    n_attr = affordable_paths(2 * per_path, target)
    seconds = kernel_time(cupy_backend, attributed, n_attr)
    figures["kernel_with_attribution"] = {"paths": n_attr, "seconds": seconds, "path_steps_per_s": n_attr * steps / seconds}
    # the attribution launch is the same model without fan counts and saved paths: its cost per
    # path, next to the first pass's, shows what the fan histograms' atomics cost
    second = seconds / n_attr - figures["kernel_one_pass"]["seconds"] / n
    second_rate = steps / second if second > 0 else float("nan")  # timing noise can hide a cheap pass
    figures["second_pass_without_fans"] = {"paths": n_attr, "seconds": second * n_attr, "path_steps_per_s": second_rate}
    # launch shape: the kernel's occupancy is set by its registers and local memory
    figures["threads_per_block"] = {}
    for threads in (64, 128, 256):
        shaped = CupyBackend(threads_per_block=threads)
        shaped.run_chunk(one_pass, SEED, 0, min(1 << 16, probe), 0)
        figures["threads_per_block"][threads] = probe * steps / kernel_time(shaped, one_pass, probe)
    seconds = floor_time(cupy_backend, one_pass, n)
    figures["floor"] = {"paths": n, "seconds": seconds, "path_steps_per_s": n * steps / seconds}
    figures["model_share_of_floor"] = figures["kernel_one_pass"]["path_steps_per_s"] / figures["floor"]["path_steps_per_s"]

    # end to end: the default run (attribution on) with outcomes written to HDF5
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_to_file(attributed, cupy_backend, Path(tmp) / "probe.h5", n_paths=probe, save_paths=1000, seed=SEED, show_progress=False)
        n_e2e = affordable_paths((time.perf_counter() - started) / probe, target, budget_s=2 * BUDGET_S)
        started = time.perf_counter()
        result = run_to_file(attributed, cupy_backend, Path(tmp) / "run.h5", n_paths=n_e2e, save_paths=1000, seed=SEED, show_progress=False)
        seconds = time.perf_counter() - started
        size = (Path(tmp) / "run.h5").stat().st_size
    figures["end_to_end_hdf5"] = {
        "paths": n_e2e,
        "seconds": seconds,
        "path_steps_per_s": n_e2e * steps / seconds,
        "chunk_paths": result.chunk_paths,
        "workers": result.workers,
        "file_bytes": size,
    }
    return figures


SIDE_FIGURES = ("jax-jit", "jax-pallas", "cupy-array")


def side_backend(name: str) -> Any:
    """The backend of a side figure: JAX with its market step fixed to one variant, or cupy-array."""
    if name == "cupy-array":
        return get_backend(name)
    get_backend("jax")  # says why, where JAX cannot run here
    from gpusim.backends.jax_backend import JaxBackend

    backend = JaxBackend(market_kernel=name.removeprefix("jax-"))
    if not backend.on_accelerator:
        raise BackendUnavailable("JAX sees no GPU here")
    return backend


def measure_others(figures: dict[str, Any], target: int) -> None:
    """Side figures: the JAX backend on the GPU (plain jit, and the Pallas market kernel) and the
    cupy-array backend, engine runs of the one-pass workload on fewer paths (their compile and
    launch costs make 10M paths too long)."""
    one_pass = bench_spec(figures["dtype"], contagion=False)
    for name in SIDE_FIGURES:
        paths = min(1 << 16 if name == "cupy-array" else 1 << 21, target)
        try:
            backend = side_backend(name)
            rate = engine_rate(backend, one_pass, paths)
            figures[name] = {"paths": paths, "engine_path_steps_per_s": rate, "device": backend.device}
            figures[name]["compile_s"] = getattr(backend, "compile_seconds", None)
        except Exception as exc:  # a side figure that cannot run must not cost the main ones
            figures[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:120]}


def table(figures: dict[str, Any]) -> str:
    def rate(entry: dict[str, Any], key: str = "path_steps_per_s") -> str:
        return f"{entry[key]:.3g}" if key in entry else entry.get("reason", "n/a")

    rows = [
        ("cupy kernel, one pass", figures["kernel_one_pass"], "3e9 (10M x 120 < 0.4 s)"),
        ("cupy kernel, with attribution", figures["kernel_with_attribution"], ""),
        ("  of which the pass without fans", figures["second_pass_without_fans"], "(derived)"),
        ("floor (draws only)", figures["floor"], ""),
        ("end to end to HDF5", figures["end_to_end_hdf5"], "10M paths < 10 s"),
    ]
    lines = [f"GPU figures, {figures['workload']}, {figures['dtype']}, {figures['device']}", ""]
    lines.append(f"{'figure':32} {'paths':>10} {'seconds':>9} {'path-steps/s':>13}  target")
    for label, entry, target in rows:
        lines.append(f"{label:32} {entry['paths']:>10,} {entry['seconds']:>9.3f} {rate(entry):>13}  {target}")
    lines.append(f"{'model / floor throughput':32} {'':>10} {'':>9} {figures['model_share_of_floor']:>13.1%}  >= 40 %")
    shapes = ", ".join(f"{threads}: {rate:.3g}" for threads, rate in figures["threads_per_block"].items())
    lines.append(f"one pass by threads per block (path-steps/s): {shapes}")
    for name in SIDE_FIGURES:
        entry = figures.get(name, {"available": False, "reason": "not measured yet"})
        value = rate(entry, "engine_path_steps_per_s") if entry.get("available", True) else entry["reason"]
        target = "1e9" if name.startswith("jax") else ""
        lines.append(f"{name + ' engine, one pass':32} {entry.get('paths', 0):>10,} {'':>9} {value:>13}  {target}")
    lines.append(f"compile: {figures['compile_s']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--paths", type=int, default=TARGET_PATHS, help="paths of each figure (fewer where the time budget says so)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    figures = measure(args.dtype, args.paths)
    # the cupy figures first, so that a time limit hit by the side figures cannot lose them
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(table(figures), flush=True)
    measure_others(figures, args.paths)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print()
    print(table(figures))


if __name__ == "__main__":
    main()
