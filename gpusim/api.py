"""The Python API: `simulate` a scenario in-process, or `open_results` of a file `gpusim run` wrote.

Both return the same `Results` (xarray Datasets with named dimensions); `gpusim/__init__`
exposes these names lazily so that `import gpusim` stays cheap.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from gpusim.output.read import BatchResults, Results, ResultsError, headline, open_results
from gpusim.runs import prepare_run, run_to_file
from gpusim.scenario import Scenario, scenario_from

__all__ = ["BatchResults", "Results", "ResultsError", "file_headline", "headline", "open_results", "simulate"]


def simulate(
    config: str | os.PathLike[str] | Scenario | Mapping[str, Any],
    n_paths: int = 100_000,
    seed: int = 1,
    backend: str = "auto",
    dtype: str = "float64",
    save_paths: int = 1000,
    contagion: bool = True,
    overrides: Sequence[str] = (),
    workers: int | None = None,
    show_progress: bool = True,
    chunk_paths: int | None = None,
) -> Results:
    """Run a scenario in-process, exactly as `gpusim run` does, and return its Results.

    `config` is a YAML path, a shipped scenario name, a Scenario or a mapping; `overrides`
    are `--set` strings such as "compute.deflation.tight=0.5". The run goes through the same
    writer into a temporary file that is opened and deleted, so the Results are identical
    (bit for bit, same seed) to opening the file `gpusim run` writes. As on the command line,
    `backend="auto"` takes the fastest backend this machine has, and a progress bar shows on
    stderr (a widget in Jupyter) unless `show_progress=False`.
    """
    if isinstance(overrides, str):
        overrides = (overrides,)
    scenario = scenario_from(config, overrides)
    spec, engine_backend = prepare_run(scenario, dtype, contagion, backend)
    with tempfile.TemporaryDirectory(prefix="gpusim-") as folder:
        out = Path(folder) / f"{scenario.name}.h5"
        run_to_file(
            spec,
            engine_backend,
            out,
            n_paths,
            save_paths,
            seed=seed,
            chunk_paths=chunk_paths,
            workers=workers,
            console=Console(stderr=True),
            show_progress=show_progress,
        )
        results = open_results(out)
    assert isinstance(results, Results)  # a single run, never a batch
    return replace(results, source=None)


def file_headline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`headline` of a result file, reading its summary only (the per-path outcomes stay on disk)."""
    results = open_results(path, lazy_outcomes=True)
    try:
        return headline(results)
    finally:
        if results.outcomes is not None:
            results.outcomes.close()


def report_figures(results: Results) -> dict[str, Any]:
    """The charts of `gpusim report` for a run, as matplotlib Figures by name (matplotlib loads here)."""
    from gpusim.report import report_figures as figures

    return figures(results)
