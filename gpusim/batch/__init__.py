"""Overnight stress batches: many scenarios in one HDF5 file, resumable after a crash, on Dask.

- `schema`: batch files (base config, named stresses, a grid of parameter values) and their hash.
- `runner`: work units (scenario, chunk of paths) on threads or a Dask cluster; one writer.
- `journal`: what survives `kill -9`, so `--resume` finishes the batch.
- `assemble`: the batch file layout (/scenarios/<name>, /batch), written from the journal; `gpusim.output.read` reads it back.
"""

from __future__ import annotations

from gpusim.batch.journal import journal_folder
from gpusim.batch.runner import BatchRun, run_batch
from gpusim.batch.schema import BatchFile, ResolvedBatch, load_batch
from gpusim.output.read import BatchResults, is_batch_file, open_batch

__all__ = [
    "BatchFile",
    "BatchResults",
    "BatchRun",
    "ResolvedBatch",
    "is_batch_file",
    "journal_folder",
    "load_batch",
    "open_batch",
    "run_batch",
]
