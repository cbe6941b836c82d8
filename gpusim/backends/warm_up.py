"""The tiny model a GPU backend compiles and runs before `--backend auto` chooses it.

cupy can see a GPU on a machine where NVRTC is missing, or where the driver is too old for the
code NVRTC produces; JAX can load a CUDA plugin that then fails to initialise. Both show only
when something compiles and runs, so `auto` warms each GPU backend up on this spec first and
falls back with the reason, instead of failing at a run's first chunk. The spec is the shipped
baseline cut to its first borrower of each type and two steps: every part of the fused kernels
(factors, each borrower type, the instruments, the fire-sale chain) compiles, and small.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

from gpusim.scenario import validate_mapping
from gpusim.scenario.loading import SHIPPED_PACKAGE, load_raw
from gpusim.spec import RunSpec, build_spec

WARM_UP_PATHS = 64
"""Paths of the warm-up chunk: enough for a full warp of every block size the kernels use."""
WARM_UP_STEPS = 2


@functools.cache
def warm_up_spec() -> RunSpec:
    """The baseline scenario with one borrower of each type and two steps, in float32 (what GPU runs use)."""
    raw = load_raw(Path(str(resources.files(SHIPPED_PACKAGE) / "baseline.yaml")))
    first_of_type: dict[str, dict[str, Any]] = {}
    for borrower in raw["borrowers"]:
        first_of_type.setdefault(borrower["type"], borrower)
    raw["borrowers"] = list(first_of_type.values())
    raw["time"]["n_steps"] = WARM_UP_STEPS
    raw["name"] = "warm-up"
    return build_spec(validate_mapping(raw, "warm-up"), "float32")
