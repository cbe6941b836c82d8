"""The engine's own ceiling: `gpusim.engine.run` fed by a backend that computes nothing.

A null backend returns one precomputed chunk of configs/bench.yaml (computed once, and timed, by
the native backend, or numpy) for every chunk the engine asks for, so what is timed is the engine's own work
per chunk: folding fan histograms, regime counts, saved paths and the credit outcomes into the
run's totals, and summarising them at the end. Its rate in path-steps per second is the most any
backend can reach through the engine at that chunk size. The backend's own rate on the same
chunk is timed in the same command, in wall and CPU seconds, so that their ratio can be read on
a noisy machine.
Run from the repository root:

    python benchmarks/bench_engine_ceiling.py --chunk-paths 65536 --chunks 8 --repeats 3
    python benchmarks/bench_engine_ceiling.py --chunk-paths 16384 --profile   # where the engine's time goes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time

from gpusim.backends import get_backend
from gpusim.bench import WORKLOADS, cpu_model, workload_spec
from gpusim.engine import run
from gpusim.scenario import load_scenario
from gpusim.spec import ChunkResult, RunSpec

SEED = 20261126


class NullBackend:
    """Returns `chunk` (re-addressed) for every chunk: the engine's work without the model's."""

    name = "null"
    device = "none (precomputed chunk)"

    def __init__(self, chunk: ChunkResult) -> None:
        self.chunk = chunk

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        return self.chunk.n_paths

    def bytes_per_path(self, spec: RunSpec) -> int:
        return 64

    def memory_bytes(self) -> int:
        return 1 << 34

    def default_workers(self) -> int:
        return 1

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        assert n_paths == self.chunk.n_paths, "the null backend serves whole chunks of its precomputed size"
        saved = self.chunk.saved if path_start == 0 else {k: v[:0] for k, v in self.chunk.saved.items()}
        return self.chunk._replace(path_start=path_start, saved=saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk-paths", type=int, default=65536)
    parser.add_argument("--chunks", type=int, default=8, help="chunks per engine run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--workload", choices=WORKLOADS, default="model+attribution")
    parser.add_argument("--backend", default="native", help="computes the chunk once, timed (native or numpy)")
    parser.add_argument("--save-paths", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="print the engine's top functions (cProfile, cumulative)")
    args = parser.parse_args()

    spec = workload_spec(load_scenario("bench"), args.workload, args.dtype)
    steps = spec.layout.n_steps
    backend = get_backend(args.backend)
    backend.run_chunk(spec, SEED, 0, 64, 0)  # build (native) or warm up
    wall, cpu = time.perf_counter(), time.process_time()
    chunk = backend.run_chunk(spec, SEED, 0, args.chunk_paths, args.save_paths)
    backend_wall, backend_cpu = time.perf_counter() - wall, time.process_time() - cpu
    chunk_steps = args.chunk_paths * steps

    null = NullBackend(chunk)
    n_paths = args.chunks * args.chunk_paths
    engine_wall, engine_cpu = [], []
    for _ in range(args.repeats):
        cpu = time.process_time()
        result = run(spec, null, n_paths, SEED, save_paths=args.save_paths, chunk_paths=args.chunk_paths, workers=1, show_progress=False)
        engine_wall.append(result.runtime_s)
        engine_cpu.append(time.process_time() - cpu)
    engine_rate = n_paths * steps / statistics.median(engine_wall)
    engine_cpu_rate = n_paths * steps / statistics.median(engine_cpu)

    print(f"machine: {cpu_model()}, load average {os.getloadavg()}")
    print(f"bench.yaml {args.workload} {args.dtype}, {steps} steps, chunks of {args.chunk_paths:,} paths")
    print(
        f"{backend.name} ({backend.device}), one chunk: {chunk_steps / backend_wall:.3g} path-steps/s "
        f"({backend_wall:.1f} s wall, {chunk_steps / backend_cpu:.3g} per CPU-second)"
    )
    print(
        f"engine, null backend, {args.chunks} chunks: {engine_rate:.3g} path-steps/s (median of {args.repeats}, "
        f"{statistics.median(engine_wall) / args.chunks:.3f} s a chunk; {engine_cpu_rate:.3g} per CPU-second)"
    )
    backend_rate, backend_cpu_rate = chunk_steps / backend_wall, chunk_steps / backend_cpu
    print(f"ceiling / {backend.name}: {engine_rate / backend_rate:.1f}x wall, {engine_cpu_rate / backend_cpu_rate:.1f}x per CPU-second")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        run(spec, null, n_paths, SEED, save_paths=args.save_paths, chunk_paths=args.chunk_paths, workers=1, show_progress=False)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
