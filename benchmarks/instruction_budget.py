"""Instructions per path-step of the fused kernels, counted exactly by valgrind.

The host C++ build of kernels/ (the same sources each GPU thread runs) is compiled for one config
and dtype with the generated header (gpusim.backends.kernel_config) and run on a few paths under
`valgrind --tool=callgrind`, the recorded launch and the attribution launch with the fire-sale chain
off as CupyBackend.run_chunk runs them. Instruction counts do not depend on machine load, so the
figure can be compared across commits on a busy machine where timings cannot.

- total: instructions of both launches (benchmarks/instruction_budget_driver.cpp, `run_chunk`
  only: start-up and allocation are not counted) / (paths x steps), from the build as it ships
  (every device function inlined);
- split: a second build in which the device functions are real calls (GPUSIM_PROFILE_SPLIT), so
  that callgrind's inclusive counts attribute the path-step to the stages of docs/model.md 7. Calls
  cost instructions of their own, so that build's rows are shown as counted and as a share, and
  scaled by the share onto the inlined total.

Run from the repository root:

    python benchmarks/instruction_budget.py --config bench --dtype float32 --paths 128
    python benchmarks/instruction_budget.py --config bench --dtype float64 --json budget64.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gpusim.backends import kernel_config
from gpusim.backends.native_build import find_compiler
from gpusim.model.params import without_contagion
from gpusim.scenario import load_scenario
from gpusim.spec import RunSpec, build_spec

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("instruction_budget_driver.cpp")
KERNELS = ROOT / "kernels"
SEED = 20260101
# the native backend's flags; x86-64-v3 (AVX2, FMA off by -ffp-contract=off) rather than
# -march=native: valgrind does not decode AVX-512, which -march=native emits where the CPU has it
FLAGS = ["-O3", "-march=x86-64-v3", "-ffp-contract=off", "-std=c++17"]

# Rows of the split: a stage of docs/model.md 7 and the device functions it is made of (inclusive
# counts; the functions of one row are never nested in each other or in another row's, except
# the Poisson draws, which are taken out of the market row that calls them).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("draws: Philox words", ("philox_step_block",)),
    ("draws: uniforms, Box-Muller", ("draw_market_step",)),
    ("draws: revenue-shock normals of the borrowers alive", ("revenue_normals",)),
    ("draws: Poisson jump counts", ("poisson_inverse_cdf",)),
    ("market factors", ("advance_market", "close_step")),
    ("values and marks", ("observe",)),
    ("borrower cash flows", ("tenant_defaults", "revenue_shock_step", "cfads")),
    ("debt service", ("debt_service_due", "pay_debt_service")),
    ("covenants", ("trailing_dscr", "covenant_tests")),
    ("funding, refinancing, distributions", ("fund_capex", "refinance_or_repay", "distribute")),
    ("defaults and recoveries", ("settle_defaults",)),
    ("credit state, rest of the credit step", ("credit_step",)),
    ("fan histograms (coordinates, ratios, binning)", ("count_fans",)),
]
# rows whose functions contain other rows' functions: (row, rows to subtract from it)
NESTED = {
    "draws: uniforms, Box-Muller": ("draws: Philox words",),
    "market factors": ("draws: Poisson jump counts",),
    "credit state, rest of the credit step": (
        "draws: revenue-shock normals of the borrowers alive",
        "borrower cash flows",
        "debt service",
        "covenants",
        "funding, refinancing, distributions",
        "defaults and recoveries",
    ),
}


class BudgetError(RuntimeError):
    """A tool is missing or a build or run failed."""


@dataclass
class Row:
    stage: str
    split_per_step: float  # instructions per path-step in the split (noinline) build
    share: float  # of the split build's total
    per_step: float  # share x the inlined build's total


@dataclass
class Budget:
    config: str
    dtype: str
    paths: int
    steps: int
    launches: int
    compiler: str
    flags: list[str]
    total_instructions: int
    per_path_step: float
    split_total_per_step: float
    rows: list[Row]


def require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BudgetError(f"{tool} not found on PATH: the instruction budget needs it")
    return found


def compiler() -> str:
    """The native backend's compiler ($CXX, else c++, g++ or clang++ on PATH)."""
    found = find_compiler()
    if found is None:
        raise BudgetError("no C++ compiler (g++, clang++ or c++, or $CXX) on PATH: the instruction budget needs one")
    return found


def build(spec: RunSpec, folder: Path, cxx: str, split: bool) -> Path:
    """The driver compiled for `spec`'s shape and dtype; `split`: device functions not inlined."""
    (folder / "gpusim_config.cuh").write_text(kernel_config.config_header(spec))
    program = folder / ("driver_split" if split else "driver")
    cmd = [cxx, *FLAGS, "-DGPUSIM_GENERATED_CONFIG", "-I", str(folder), "-I", str(KERNELS)]
    if split:
        cmd.append("-DGPUSIM_PROFILE_SPLIT")
    done = subprocess.run([*cmd, str(DRIVER), "-o", str(program)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BudgetError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return program


def write_params(spec: RunSpec, folder: Path) -> list[Path]:
    """The packed parameters of the recorded launch and, with attribution, of the chain-off one."""
    markets = [spec.market] + ([without_contagion(spec.market)] if spec.attribution else [])
    files = []
    for n, market in enumerate(markets):
        path = folder / f"prm{n}.bin"
        kernel_config.pack_params(spec, market, np.dtype(spec.dtype)).tofile(path)
        files.append(path)
    return files


def callgrind(program: Path, args: list[str], folder: Path, valgrind: str) -> Path:
    out = folder / f"{program.name}.callgrind"
    cmd = [valgrind, "--tool=callgrind", "--toggle-collect=run_chunk", f"--callgrind-out-file={out}", str(program), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BudgetError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return out


def inclusive_counts(out: Path) -> tuple[int, dict[str, int]]:
    """Total Ir and the inclusive Ir of each function (by unqualified name, summed over overloads)."""
    done = subprocess.run([require("callgrind_annotate"), "--inclusive=yes", "--threshold=100", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BudgetError(f"callgrind_annotate {out} failed:\n{done.stderr}")
    total = None
    counts: dict[str, int] = {}
    for line in done.stdout.splitlines():
        number = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$", line)
        if number is None:
            continue
        value, rest = int(number.group(1).replace(",", "")), number.group(2)
        if "PROGRAM TOTALS" in rest:
            total = value
            continue
        name = re.search(r"([A-Za-z_]\w*)[<(]", rest)  # the first identifier before a template or argument list
        if name is not None:
            counts[name.group(1)] = counts.get(name.group(1), 0) + value
    if total is None:
        raise BudgetError(f"no PROGRAM TOTALS in callgrind_annotate's output of {out}")
    return total, counts


def split_rows(counts: dict[str, int], split_total: int, inlined_total: int, path_steps: int) -> list[Row]:
    raw = {stage: float(sum(counts.get(f, 0) for f in functions)) for stage, functions in STAGES}
    own = {stage: raw[stage] - sum(raw[inner] for inner in NESTED.get(stage, ())) for stage in raw}
    own["other (path set-up, outcomes, regime counts)"] = split_total - sum(own.values())
    return [
        Row(stage, value / path_steps, value / split_total, value / split_total * inlined_total / path_steps)
        for stage, value in own.items()
    ]


def measure(config: str, dtype: str, paths: int) -> Budget:
    """The budget of a shipped config (configs/NAME.yaml) in `dtype`."""
    return measure_spec(build_spec(load_scenario(ROOT / "configs" / f"{config}.yaml"), dtype), config, paths)  # type: ignore[arg-type]


def measure_spec(spec: RunSpec, config: str, paths: int, saved: int = 16) -> Budget:
    """The budget of `spec` on `paths` paths (the first `saved` of them saved, as a run saves some)."""
    valgrind = require("valgrind")
    cxx = compiler()
    dtype = spec.dtype
    with tempfile.TemporaryDirectory(prefix="gpusim-budget-") as tmp:
        folder = Path(tmp)
        params = [str(p) for p in write_params(spec, folder)]
        args = [str(paths), str(min(saved, paths)), str(SEED), *params]
        inlined_total, _ = inclusive_counts(callgrind(build(spec, folder, cxx, False), args, folder, valgrind))
        split_total, counts = inclusive_counts(callgrind(build(spec, folder, cxx, True), args, folder, valgrind))
    steps = spec.layout.n_steps
    path_steps = paths * steps
    return Budget(
        config=config,
        dtype=dtype,
        paths=paths,
        steps=steps,
        launches=len(params),
        compiler=cxx,
        flags=FLAGS,
        total_instructions=inlined_total,
        per_path_step=inlined_total / path_steps,
        split_total_per_step=split_total / path_steps,
        rows=split_rows(counts, split_total, inlined_total, path_steps),
    )


def markdown(budget: Budget) -> str:
    lines = [
        f"{budget.config}.yaml {budget.dtype}, {budget.paths} paths x {budget.steps} steps, "
        f"{budget.launches} launch(es) per chunk; {budget.compiler} {' '.join(budget.flags)}",
        "",
        f"**{budget.per_path_step:,.0f} instructions per path-step** (inlined build, all launches)",
        "",
        "| stage | split build, per path-step | share | on the inlined total |",
        "|---|---:|---:|---:|",
    ]
    for row in budget.rows:
        lines.append(f"| {row.stage} | {row.split_per_step:,.0f} | {row.share:.1%} | {row.per_step:,.0f} |")
    lines.append(f"| total | {budget.split_total_per_step:,.0f} | 100% | {budget.per_path_step:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="bench", help="a shipped config (configs/NAME.yaml)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--paths", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        budget = measure(args.config, args.dtype, args.paths)
    except BudgetError as error:
        print(f"instruction_budget: {error}", file=sys.stderr)
        return 2
    print(markdown(budget))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(budget), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
