"""Scaling study: how the cost of a run grows with paths, borrowers and steps, and where it stops being linear.

Three sweeps around bench.yaml (16 borrowers, 120 monthly steps), one variable at a time:
- paths 1e3 to 1e8 (16 borrowers, 120 steps);
- borrowers 1 to 256 (`--base-paths` paths, 120 steps): the first N of bench.yaml's 16 for N <= 16,
  and for more, copies of them under new names (same balance sheets and debt terms);
- steps 12 to 520 monthly (`--base-paths` paths, 16 borrowers).
Each point is one `engine.run` on a fresh backend in a fresh process (JAX compile time
included and also kept apart), with the peak resident memory of that process. A point whose predicted time, extrapolated linearly from
the sweep's last two measured points, exceeds `--budget-s` is skipped and recorded as skipped
with that prediction, so a small machine runs the small end and a GPU the whole range.

Writes a CSV and a log-log plot (seconds against size, with the linear extrapolation from the
first point, and nanoseconds per path-step, which is flat where cost is linear). Run from the
repository root:

    python benchmarks/bench_scaling.py --budget-s 60 --csv docs/benchmarks/scaling.csv --plot docs/benchmarks/scaling.png
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpusim.backends import get_backend
from gpusim.bench import HostMemory, cpu_model, workload_spec
from gpusim.engine import run
from gpusim.scenario import Borrower, Scenario, load_scenario, validate_mapping

ROOT = Path(__file__).resolve().parents[1]
PATHS = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
BORROWERS = (1, 4, 16, 64, 256)
STEPS = (12, 60, 120, 260, 520)


@dataclass
class Point:
    sweep: str
    backend: str
    dtype: str
    workload: str
    paths: int
    borrowers: int
    instruments: int
    steps: int
    status: str  # "ran" or "skipped"
    seconds: float | None  # end to end, compile included
    compile_s: float | None
    path_steps_per_s: float | None  # compile excluded
    ns_per_path_step: float | None  # compile excluded
    peak_rss_bytes: int | None
    chunk_paths: int | None
    predicted_s: float | None
    note: str


def with_borrowers(scenario: Scenario, n: int) -> Scenario:
    """bench.yaml with n borrowers: its first n, or copies of its 16 under new names for more."""
    base = scenario.borrowers
    borrowers: list[Borrower] = []
    for i in range(n):
        b, copy = base[i % len(base)], i // len(base)
        if copy:
            debt = [d.model_copy(update={"name": f"{d.name} #{copy}"}) for d in b.debt]
            b = b.model_copy(update={"name": f"{b.name} #{copy}", "debt": debt})
        borrowers.append(b)
    return scenario.model_copy(update={"borrowers": borrowers})


def with_steps(scenario: Scenario, n_steps: int) -> Scenario:
    return scenario.model_copy(update={"time": scenario.time.model_copy(update={"n_steps": n_steps})})


def measure(mapping: dict[str, Any], sweep: str, backend_name: str, dtype: str, workload: str, n_paths: int) -> Point:
    """One run of the scenario `mapping` on a fresh backend (so a JAX compile is part of the point),
    meant for a fresh process: memory an earlier point's run left to the allocator would count
    as this one's. The scenario comes as a plain mapping because pydantic's generic models do
    not pickle."""
    scenario = validate_mapping(mapping, mapping["name"])
    spec = workload_spec(scenario, workload, dtype)  # type: ignore[arg-type]
    backend = get_backend(backend_name)
    memory = HostMemory()
    memory.reset()
    result = run(spec, backend, n_paths=n_paths, seed=1, save_paths=0, show_progress=False)
    compile_s = getattr(backend, "compile_seconds", None)
    compute = result.runtime_s - (compile_s or 0.0)
    path_steps = n_paths * spec.layout.n_steps
    return Point(
        sweep=sweep,
        backend=backend_name,
        dtype=dtype,
        workload=workload,
        paths=n_paths,
        borrowers=len(scenario.borrowers) if spec.has_credit else 0,
        instruments=spec.layout.n_instruments if spec.has_credit else 0,
        steps=spec.layout.n_steps,
        status="ran",
        seconds=result.runtime_s,
        compile_s=compile_s,
        path_steps_per_s=path_steps / compute,
        ns_per_path_step=1e9 * compute / path_steps,
        peak_rss_bytes=memory.peak(),
        chunk_paths=result.chunk_paths,
        predicted_s=None,
        note=f"{result.workers} workers",
    )


def sweep_points(scenario: Scenario, base_paths: int) -> list[tuple[str, Scenario, int]]:
    """(sweep, scenario, paths) for every point, smallest first within each sweep."""
    sixteen = with_borrowers(scenario, 16)
    points = [("paths", sixteen, p) for p in PATHS]
    points += [("borrowers", with_borrowers(scenario, b), base_paths) for b in BORROWERS]
    points += [("steps", with_steps(sixteen, s), base_paths) for s in STEPS]
    return points


def work(paths: int, steps: int, instruments: int) -> float:
    """What a point's cost should be proportional to if it were linear: path-steps x (instruments + 1)."""
    return float(paths * steps * (instruments + 1))


def predict(ran: list[Point], scenario: Scenario, n_paths: int) -> float | None:
    """Seconds for the next point of a sweep: from the marginal cost between its last two measured
    points (fixed costs do not grow with the size), or linearly from one point when there is one."""
    if not ran:
        return None
    target = work(n_paths, scenario.time.n_steps, sum(len(b.debt) for b in scenario.borrowers))
    last = ran[-1]
    assert last.seconds is not None
    last_work = work(last.paths, last.steps, last.instruments)
    if len(ran) >= 2:
        before = ran[-2]
        assert before.seconds is not None
        slope = (last.seconds - before.seconds) / (last_work - work(before.paths, before.steps, before.instruments))
        if slope > 0:
            return last.seconds + slope * (target - last_work)
    return last.seconds * target / last_work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs/bench.yaml"))
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--workload", choices=["model", "model+attribution"], default="model")
    parser.add_argument("--base-paths", type=int, default=4096, help="paths of the borrower and step sweeps")
    parser.add_argument("--budget-s", type=float, default=60.0, help="skip a point predicted to take longer than this")
    parser.add_argument("--sweeps", nargs="+", choices=["paths", "borrowers", "steps"], default=["paths", "borrowers", "steps"])
    parser.add_argument("--csv", default="scaling.csv")
    parser.add_argument("--plot", default="scaling.png")
    args = parser.parse_args()

    scenario = load_scenario(args.config)
    load = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; backend {args.backend}, {args.dtype}, {args.workload}; load {load[0]:.2f}")
    points: list[Point] = []
    measured: dict[str, list[Point]] = {}
    started = time.perf_counter()
    for sweep, variant, n_paths in sweep_points(scenario, args.base_paths):
        if sweep not in args.sweeps:
            continue
        predicted = predict(measured.setdefault(sweep, []), variant, n_paths)
        if predicted is not None and predicted > args.budget_s:
            borrowers = len(variant.borrowers)
            instruments = sum(len(b.debt) for b in variant.borrowers)
            note = f"predicted {predicted:,.0f} s > budget {args.budget_s:g} s"
            points.append(
                Point(
                    sweep=sweep,
                    backend=args.backend,
                    dtype=args.dtype,
                    workload=args.workload,
                    paths=n_paths,
                    borrowers=borrowers,
                    instruments=instruments,
                    steps=variant.time.n_steps,
                    status="skipped",
                    seconds=None,
                    compile_s=None,
                    path_steps_per_s=None,
                    ns_per_path_step=None,
                    peak_rss_bytes=None,
                    chunk_paths=None,
                    predicted_s=predicted,
                    note=note,
                )
            )
            print(f"{sweep:9s} paths {n_paths:>11,} borrowers {borrowers:>3} steps {variant.time.n_steps:>3}: skipped, {note}")
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
            mapping = variant.model_dump(mode="json")
            point = child.submit(measure, mapping, sweep, args.backend, args.dtype, args.workload, n_paths).result()
        point.predicted_s = predicted
        points.append(point)
        measured[sweep].append(point)
        print(
            f"{sweep:9s} paths {n_paths:>11,} borrowers {point.borrowers:>3} steps {point.steps:>3}: {point.seconds:8.2f} s, "
            f"{point.path_steps_per_s:11,.0f} path-steps/s, {point.ns_per_path_step:9.0f} ns/path-step, "
            f"peak RSS {point.peak_rss_bytes / 2**30:.2f} GiB"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    write_csv(points, Path(args.csv))
    plot(points, Path(args.plot), f"{cpu_model()}, {os.cpu_count()} cores, {args.backend}, {args.dtype}, {args.workload}")
    print(f"wrote {args.csv} and {args.plot}")


def write_csv(points: list[Point], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(Point.__dataclass_fields__))
        writer.writeheader()
        for p in points:
            writer.writerow(asdict(p))


def plot(points: list[Point], path: Path, title: str) -> None:
    """Top: seconds against size, log-log, with the line a linear cost would follow from the
    first point; skipped points at their prediction, hollow. Bottom: ns per path-step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [s for s in ("paths", "borrowers", "steps") if any(p.sweep == s for p in points)]
    fig, axes = plt.subplots(2, len(sweeps), figsize=(5 * len(sweeps), 7.5), squeeze=False)
    for column, sweep in enumerate(sweeps):
        mine = [p for p in points if p.sweep == sweep]
        ran = [p for p in mine if p.status == "ran"]
        skipped = [p for p in mine if p.status == "skipped"]
        size = {"paths": lambda p: p.paths, "borrowers": lambda p: p.borrowers, "steps": lambda p: p.steps}[sweep]
        top, bottom = axes[0][column], axes[1][column]
        top.loglog([size(p) for p in ran], [p.seconds for p in ran], "o-", label="measured (end to end)")
        if ran:
            first = ran[0]
            xs = [size(p) for p in mine]
            top.loglog(xs, [first.seconds * x / size(first) for x in xs], ":", color="grey", label="linear from the first point")
        if skipped:
            predicted = [p.predicted_s for p in skipped]
            top.loglog([size(p) for p in skipped], predicted, "o", mfc="none", color="C3", label="skipped (prediction)")
        top.set_title(f"{sweep} sweep")
        top.set_ylabel("seconds")
        top.legend(fontsize=8)
        bottom.semilogx([size(p) for p in ran], [p.ns_per_path_step for p in ran], "o-")
        bottom.set_xlabel({"paths": "paths", "borrowers": "borrowers", "steps": "monthly steps"}[sweep])
        bottom.set_ylabel("ns per path-step (compile excluded)")
        bottom.set_ylim(bottom=0)
        for p in ran:
            bottom.annotate(f"{p.instruments} instr." if sweep == "borrowers" else "", (size(p), p.ns_per_path_step), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
