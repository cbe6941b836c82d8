"""Peak memory of `gpusim batch` as the number of scenarios grows: it should stay flat.

Runs a grid batch of N scenarios x P paths (the test portfolio of tests/conftest.py, numpy
backend, chunks of 10,000 paths) in a fresh process per N and prints its peak RSS. State is
per unit and per scenario (docs/batches.md, "Memory and disk"), so 2 and 8 scenarios should
peak at about the same RSS. Run from the repository root:

    python benchmarks/batch_memory.py --paths 40000 --scenarios 2 8
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import small_mapping

CHILD = """
import resource, sys
from gpusim.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib(folder: Path, n_scenarios: int, paths: int) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one batch of n_scenarios grid points."""
    batch = {
        "base": "small.yaml",
        "paths": paths,
        "chunk_paths": 10_000,
        "save_paths": 10,
        "grid": {"compute.deflation.tight": [round(0.3 + 0.05 * i, 2) for i in range(n_scenarios)]},
    }
    (folder / "batch.yaml").write_text(yaml.safe_dump(batch))
    out = folder / f"batch-{n_scenarios}.h5"
    started = time.perf_counter()
    cmd = [sys.executable, "-c", CHILD, "batch", str(folder / "batch.yaml"), "--out", str(out), "--backend", "numpy", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=40_000, help="paths per scenario")
    parser.add_argument("--scenarios", type=int, nargs="+", default=[2, 8], help="batch sizes to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpusim-batch-memory-") as tmp:
        folder = Path(tmp)
        (folder / "small.yaml").write_text(yaml.safe_dump(small_mapping()))
        for n in args.scenarios:
            rss, seconds = peak_rss_mib(folder, n, args.paths)
            print(f"{n:4d} scenarios x {args.paths:,} paths: peak RSS {rss:,.0f} MiB ({seconds:,.0f} s)", flush=True)


if __name__ == "__main__":
    main()
