"""Pinned float64 digests of every shipped scenario's outputs at a fixed seed and path count.

A restructuring of the code must leave these bit for bit unchanged; a deliberate model change
updates the digest in the same commit and says why in docs/model.md. The digests cover the
saved factor paths, the fan-chart counts, the regime counts and every per-path credit outcome,
with the fire-sale chain on and off.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gpusim.backends.numpy_backend import NumpyBackend
from gpusim.scenario import load_scenario
from gpusim.spec import ChunkResult, build_spec

SEED = 20261201
N_PATHS = 48

# sha256 of the outputs below, taken before the code was reorganised into packages, with
# numpy 2.4 dispatching to the SIMD targets in PINNED_ON (numpy's float64 exp/log/sin kernels
# differ in the last bit between targets, so the pin is only checked on the same dispatch); repinned when the DSCR and LTV fan grids
# widened to -32..96 and 0..128 (only those two histograms' counts changed)
PINNED_ON = ("2.4", ("AVX512_ICL", "X86_V3", "X86_V4"))
DIGESTS: dict[str, str] = {
    "baseline": "0590fdd5380023cee2d0a4090d7d22511c4786ad7a383949c23397f43c3f6ad0",
    "bench": "3a3120307f3d58e0337dafaa873d53e76eb53546ecab968eb0dd7e7950a9b651",
    "crypto_winter": "277c7793c5c389cf346edfefb0457dd3a4e9377643db0a9d08a79d9ff8408f05",
    "deflation_shock": "d7578f7193a01a04c2fd667da9e019939e3a4f682403b56e6a86d165dee2581e",
    "market_freeze": "82df41e471396abfca0c2ed48dbe284f4d4235dcb78d4e9c0139d6e39c4a8031",
    "perfect_storm": "4274f3cb29f17fcfd52a075cc883db4c85c5624507dc5d8bc76b0b71c9cbb596",
    "rubin_early": "0641701328b8a6f90011622cfc7826f8c6544685b7f68ec8d241a16967fb6350",
}


def numpy_dispatch() -> tuple[str, tuple[str, ...]]:
    """numpy's minor version and the SIMD targets it dispatches to on this CPU."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    minor = ".".join(np.__version__.split(".")[:2])
    return minor, tuple(sorted(t for t in __cpu_dispatch__ if __cpu_features__.get(t)))


def chunk_digest(result: ChunkResult) -> str:
    """sha256 over every array of a chunk, in a fixed order, dtype and shape included."""
    h = hashlib.sha256()

    def add(name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        h.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        h.update(array.tobytes())

    for name in sorted(result.saved):
        add(f"saved.{name}", result.saved[name])
    for name in sorted(result.fan_counts):
        add(f"fan.{name}", result.fan_counts[name].astype(np.int64))
    add("tight", result.tight_count)
    for label, outcomes in (("on", result.outcomes), ("off", result.outcomes_without_chain)):
        if outcomes is not None:
            for field, array in zip(outcomes._fields, outcomes, strict=True):
                add(f"{label}.{field}", array)
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_shipped_scenario_outputs_are_unchanged(name: str) -> None:
    if numpy_dispatch() != PINNED_ON:
        pytest.skip(f"digests pinned on numpy {PINNED_ON}; this machine dispatches {numpy_dispatch()}")
    spec = build_spec(load_scenario(name), "float64")
    result = NumpyBackend().run_chunk(spec, SEED, 0, N_PATHS, N_PATHS)
    assert chunk_digest(result) == DIGESTS[name]
