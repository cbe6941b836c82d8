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

# sha256 of the outputs below, last updated for the model changes of docs/model.md section 11, with
# numpy 2.4 dispatching to the SIMD targets in PINNED_ON (numpy's float64 exp/log/sin kernels
# differ in the last bit between targets, so the pin is only checked on the same dispatch)
PINNED_ON = ("2.4", ("AVX512_ICL", "X86_V3", "X86_V4"))
DIGESTS: dict[str, str] = {
    "baseline": "d597f5e74df2ffb2d82b92a29626c55854f785163e5a18ae03e991b325bd2cec",
    "bench": "8530dc42b743ccbe166ba04bd2d4e5c1f966a297472d12175b82defe71b75f02",
    "crypto_winter": "9726ffe3600f2a647c5abbc555a17e3f1c7f87f7ba67987d20a93013f41207da",
    "deflation_shock": "09ffdc2a7c1079926ea452b475682cfed1824d36f6739e564b60577f44bfcb6a",
    "market_freeze": "fe1a0887872ea514b7d8448817d149e51239ec06d49580f1d9d918363af62f20",
    "perfect_storm": "8fd6af772a7a5301804d1b7f4f8cee49e2ee6c802ed78a453c54520a37de9457",
    "rubin_early": "e554fec2b81ffe019de0eb4b81d1464ca7c7a4c72b2e4cab9eb71f266300ac7c",
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
