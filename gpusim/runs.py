"""One run from spec to file: the engine's chunks streamed into the output writer.

This is what `gpusim run` and `gpusim.simulate` share. It sits above both the engine and
`gpusim.output`, so the output package only describes the file layout and never runs a model.
"""

from __future__ import annotations

import os
from typing import Any

from gpusim.backends import Backend, get_backend
from gpusim.engine import RunResult, run
from gpusim.output.write import ResultWriter
from gpusim.scenario import Scenario
from gpusim.spec import RunSpec, build_spec

DTYPES = ("float64", "float32")


def prepare_run(scenario: Scenario, dtype: str, contagion: bool, backend: str) -> tuple[RunSpec, Backend]:
    """The compiled spec of a scenario and the backend named `backend` (BackendUnavailable says why not)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return build_spec(scenario, dtype, contagion=contagion), get_backend(backend)  # type: ignore[arg-type]


def run_to_file(
    spec: RunSpec, backend: Backend, out: str | os.PathLike[str], n_paths: int, save_paths: int, **engine_options: Any
) -> RunResult:
    """Simulate and write one run to `out` (what `gpusim run` and `gpusim.simulate` do):
    the output path is checked before any path is simulated, outcomes stream chunk by chunk,
    and the file appears only when complete."""
    if n_paths < 1:
        raise ValueError(f"--paths must be at least 1, got {n_paths}")
    if save_paths < 0:
        raise ValueError(f"--save-paths must be 0 or more, got {save_paths}")
    with ResultWriter(out) as writer:
        writer.begin(spec, min(save_paths, n_paths), n_paths)
        result = run(spec, backend, n_paths=n_paths, save_paths=save_paths, sink=writer, **engine_options)
        writer.finish(result)
    return result
