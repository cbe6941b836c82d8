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
# differ in the last bit between targets, so the pin is only checked on the same dispatch)
PINNED_ON = ("2.4", ("AVX512_ICL", "X86_V3", "X86_V4"))
DIGESTS: dict[str, str] = {
    "baseline": "d462551d98cb1e4cb9e98f83a29d5e832f9561c4aa1792a2513cb3118c74d373",
    "bench": "8fd8a7e81b4a340f8d07bfde5d3688a6d12f8326c9fec2105dd8e6e43ae3c146",
    "crypto_winter": "6e8f46e4637076a68ba3ed79ae49c7c5b51a0e5087cd6f8813c9beb08104b709",
    "deflation_shock": "397bacc6fd38416d7b96cf8a2174a77be84435d122cf36dd4b50653facde2aa7",
    "market_freeze": "df348299cdce8d03c517987a1b75aa4c58725596ddfb06d8cbb56cf6fd60e7da",
    "perfect_storm": "078b7c2d82b4517a27be4af03af7ba79fb7cd6c5417f05a381460a4e3e9086e9",
    "rubin_early": "537d2514317d35cda75a6f374cba01b18a66e14202a51852ed3c9a54bc926270",
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
