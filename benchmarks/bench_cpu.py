"""CPU throughput of the numpy backend on the fixed benchmark workload (configs/bench.yaml).

Three workloads, each timed as the median of several repeats in path-steps per second
(paths x steps / seconds):
- factors: the market factors alone (bench.yaml with its borrowers removed);
- model: factors plus all 16 borrowers, one pass (`--no-contagion`);
- model+attribution: the default run, which reruns the paths with the fire-sale chain off.
Each is timed as chunks on one thread and as the whole engine on one thread and on all cores
(fan histograms and risk statistics included, no file output): the numpy backend's thread
scaling, which `gpusim bench` (every backend side by side) does not show. Run from the
repository root:

    python benchmarks/bench_cpu.py --paths 131072 --repeats 3
    python benchmarks/bench_cpu.py --memory-paths 10000000 --memory-workload factors
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpusim.backends import get_backend
from gpusim.bench import WORKLOADS, cpu_model, workload_spec
from gpusim.engine import run
from gpusim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def time_chunks(spec, n_paths: int, chunk: int, repeats: int) -> list[float]:
    backend = get_backend("numpy")
    backend.run_chunk(spec, 1, 0, min(chunk, 1024), 0)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path_start in range(0, n_paths, chunk):
            backend.run_chunk(spec, 1, path_start, min(chunk, n_paths - path_start), 0)
        rates.append(n_paths * spec.layout.n_steps / (time.perf_counter() - start))
    return rates


def time_engine(spec, n_paths: int, workers: int, repeats: int) -> list[float]:
    rates = []
    for _ in range(repeats):
        result = run(spec, get_backend("numpy"), n_paths=n_paths, seed=1, save_paths=0, workers=workers, show_progress=False)
        rates.append(result.path_steps_per_second)
    return rates


def peak_memory_of_cli_run(n_paths: int, dtype: str, workload: str) -> tuple[float, float]:
    """Peak resident memory (GiB) and wall time of `gpusim run` on bench.yaml, in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mem.h5"
        cmd = [sys.executable, "-m", "gpusim", "run", str(ROOT / "configs/bench.yaml"), "--paths", str(n_paths)]
        cmd += ["--out", str(out), "--dtype", dtype, "--quiet"]
        cmd += {"factors": ["--set", "borrowers=[]"], "model": ["--no-contagion"], "model+attribution": []}[workload]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak_kib / 2**20, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs/bench.yaml"))
    parser.add_argument("--paths", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], nargs="+", default=["float32", "float64"])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--memory-paths", type=int, default=0, help="also run the CLI on this many paths and report peak memory")
    parser.add_argument("--memory-workload", choices=WORKLOADS, default="factors")
    args = parser.parse_args()

    scenario = load_scenario(args.config)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"workload: {scenario.name}, {args.paths:,} paths x {scenario.time.n_steps} steps, median of {args.repeats}")
    for workload in args.workloads:
        paths = args.paths if workload == "factors" else max(1, args.paths // 8)
        for dtype in args.dtype:
            spec = workload_spec(scenario, workload, dtype)
            chunk = get_backend("numpy").preferred_chunk_paths(spec)
            one = statistics.median(time_chunks(spec, paths, chunk, args.repeats))
            print(f"{workload:18s} {dtype}: chunks, 1 thread       {one:12,.0f} path-steps/s  ({paths:,} paths)")
            for workers in sorted({1, os.cpu_count() or 1}):
                rate = statistics.median(time_engine(spec, paths, workers, args.repeats))
                print(f"{workload:18s} {dtype}: engine, {workers} thread(s)   {rate:12,.0f} path-steps/s")
    if args.memory_paths:
        peak, wall = peak_memory_of_cli_run(args.memory_paths, "float32", args.memory_workload)
        print(f"gpusim run --paths {args.memory_paths:,} ({args.memory_workload}, float32): peak RSS {peak:.2f} GiB, wall {wall:.0f} s")


if __name__ == "__main__":
    main()
