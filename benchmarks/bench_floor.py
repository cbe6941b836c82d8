"""The floor: draw and sum the random numbers a run uses, nothing else, for the roofline ratio.

Every path-step of the model consumes the same Philox4x32-10 slots (docs/model.md 3): the words,
their uniforms, the Box-Muller normals and the Poisson uniforms of the slot table. A kernel
that only draws and sums them (so that no compiler can drop them) costs what no model kernel
can go below on the same device; the ratio model time / floor time says how far the model is
from that floor, and the floor's own rate how far the device is from its arithmetic peak.

- numpy and JAX on the CPU: `gpusim.model.market.draw_step` for every step of every chunk, the
  same chunks and threads as the engine (JAX: one jit function per chunk size, the steps as a
  `lax.scan`, compile time apart);
- the fused CUDA backend: `CupyBackend.run_floor(spec, seed, path_start, n_paths)` (kernels/draws_only.cu),
  a kernel with the same random stream and no model, timed by the backend's `floor_seconds`
  (cuda events) where it keeps one, else on the host around the chunks (it returns the sum, so
  each call has finished when it returns).

The model times come from `gpusim.bench` (kernel time: the backend's own timer, or its chunks
alone on the same threads). Run from the repository root:

    python benchmarks/bench_floor.py --paths 65536 --repeats 3 --json floor.json
    python benchmarks/bench_floor.py --model-json bench.json   # model times from `gpusim bench --json bench.json`
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gpusim import bench
from gpusim.backends import Backend, BackendUnavailable, get_backend
from gpusim.engine import choose_chunk_paths, chunks
from gpusim.model.market import draw_step
from gpusim.scenario import load_scenario
from gpusim.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]


def numpy_floor_chunk(spec: RunSpec, seed: int, path_start: int, n_paths: int) -> float:
    """Sum of every draw of every step of paths [path_start, path_start + n_paths), on numpy."""
    dtype = getattr(np, spec.dtype)
    total = np.zeros(n_paths, dtype=dtype)
    for k in range(spec.layout.n_steps):
        draws = draw_step(seed, path_start, n_paths, k, spec.layout, dtype, np)
        for value in draws:
            total += value if value.ndim == 1 else value.sum(axis=0)
    return float(total.sum())


def jax_floor_function(spec: RunSpec, seed: int, n_paths: int) -> Callable[[Any], Any]:
    """The same sum as a compiled JAX function of path_start (the steps as a scan)."""
    import jax
    import jax.numpy as jnp

    from gpusim.backends.jax_backend import enable_x64

    enable_x64()  # the int64 path index and the uint64 Philox multiply, as in the backend
    dtype = getattr(jnp, spec.dtype)

    def floor(path_start: Any) -> Any:
        def step(total: Any, k: Any) -> tuple[Any, None]:
            draws = draw_step(seed, path_start, n_paths, k, spec.layout, dtype, jnp)
            for value in draws:
                total = total + (value if value.ndim == 1 else jnp.sum(value, axis=0))
            return total, None

        total, _ = jax.lax.scan(step, jnp.zeros(n_paths, dtype=dtype), jnp.arange(spec.layout.n_steps, dtype=jnp.int32))
        return jnp.sum(total)

    return jax.jit(floor).lower(jax.ShapeDtypeStruct((), jnp.int64)).compile()


def time_floor(name: str, spec: RunSpec, seed: int, n_paths: int, repeats: int) -> dict[str, Any]:
    """Median seconds of the floor over all chunks of a run on backend `name`, with how it was run."""
    try:
        backend: Backend = get_backend(name)
    except BackendUnavailable as exc:
        return {"backend": name, "available": False, "reason": str(exc)}
    workers = backend.default_workers()
    size = choose_chunk_paths(backend, spec, n_paths, workers)
    compile_s = None
    if name == "numpy":

        def one(c: tuple[int, int]) -> float:
            return numpy_floor_chunk(spec, seed, *c)

    elif name == "jax":
        start = time.perf_counter()
        functions = {count: jax_floor_function(spec, seed, count) for count in {c[1] for c in chunks(n_paths, size)}}
        compile_s = time.perf_counter() - start

        def one(c: tuple[int, int]) -> float:
            return float(functions[c[1]](np.int64(c[0])))

    else:
        run_floor = getattr(backend, "run_floor", None)
        if run_floor is None:
            return {"backend": name, "available": False, "reason": f"the {name} backend has no run_floor(spec, seed, path_start, n_paths)"}

        def one(c: tuple[int, int]) -> float:
            return float(run_floor(spec, seed, c[0], c[1]))

    one((0, min(size, n_paths)))  # warm-up: first-call costs (module loads, kernel compile) are not the floor
    seconds, checksum = [], 0.0
    for _ in range(repeats):
        device_before = getattr(backend, "floor_seconds", None)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            checksum = sum(pool.map(one, chunks(n_paths, size)))
        wall = time.perf_counter() - start
        # a GPU backend's own timer (cuda events) leaves out the launches' host overhead
        seconds.append(wall if device_before is None else backend.floor_seconds - device_before)  # type: ignore[attr-defined]
    floor_s = statistics.median(seconds)
    return {
        "backend": name,
        "available": True,
        "device": backend.device,
        "chunk_paths": size,
        "workers": workers,
        "compile_s": compile_s,
        "floor_s": floor_s,
        "floor_source": "host wall clock" if getattr(backend, "floor_seconds", None) is None else "backend timer (floor_seconds)",
        "floor_repeats_s": seconds,
        "floor_path_steps_per_s": n_paths * spec.layout.n_steps / floor_s,
        "checksum": checksum,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs/bench.yaml"))
    parser.add_argument("--backends", default="numpy,jax,cupy")
    parser.add_argument("--paths", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--workload", choices=bench.WORKLOADS, default="model")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the floors and the model times here")
    parser.add_argument("--model-json", default=None, help="model times from this `gpusim bench --json` report (no rerun)")
    args = parser.parse_args()

    scenario = load_scenario(args.config)
    if args.model_json:  # its workload, dtype, paths and seed replace the options
        model = json.loads(Path(args.model_json).read_text())
        w = model["workload"]
        if w["scenario"] != scenario.name:
            raise SystemExit(f"{args.model_json} timed scenario {w['scenario']!r}, not {scenario.name!r} of {args.config}")
        args.workload, args.dtype, args.paths, args.seed = w["workload"], w["dtype"], w["n_paths"], w["seed"]
    else:
        model = bench.bench(scenario, bench.parse_backends(args.backends), args.paths, args.repeats, args.dtype, args.workload, args.seed)
    spec = bench.workload_spec(scenario, args.workload, args.dtype)
    rows = []
    for row in model["backends"]:
        floor = time_floor(row["name"], spec, args.seed, args.paths, args.repeats)
        if floor["available"] and row["kernel_s"] is not None:
            # an attribution run draws every step twice (both passes); the floor draws once
            passes = 2 if spec.attribution else 1
            floor["model_kernel_s"] = row["kernel_s"]
            floor["model_over_floor"] = row["kernel_s"] / (passes * floor["floor_s"])
        rows.append(floor)
    machine, workload = model["machine"], model["workload"]
    floor_load = list(os.getloadavg())
    machine["floor_load_average_end"] = floor_load
    for line in bench.report_lines(model):
        print(line)
    print(f"load average during the floor runs (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in floor_load)}")
    print(f"{'backend':8s} {'floor s':>9s} {'floor path-steps/s':>19s} {'model kernel s':>15s} {'model / floor':>14s}  chunk x workers")
    for r in rows:
        if not r["available"]:
            print(f"{r['backend']:8s} not available here: {r['reason']}")
            continue
        ratio = f"{r['model_over_floor']:14.1f}" if "model_over_floor" in r else f"{'-':>14s}"
        kernel = f"{r['model_kernel_s']:15.3g}" if "model_kernel_s" in r else f"{'-':>15s}"
        rate = f"{r['floor_path_steps_per_s']:19,.3g}"
        print(f"{r['backend']:8s} {r['floor_s']:9.3g} {rate} {kernel} {ratio}  {r['chunk_paths']} x {r['workers']}")
    if not model["ok"]:
        print("model check FAILED: " + "; ".join(model["failures"]))
    if args.json:
        Path(args.json).write_text(bench.to_json({"machine": machine, "workload": workload, "floor": rows, "model": model}) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
