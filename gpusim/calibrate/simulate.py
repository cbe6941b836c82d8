"""Market paths from gpusim's own model, for the backtest and for synthetic data.

The scenario is compiled by the same `build_spec` as `gpusim run` and its paths run through the
numpy backend's `run_chunk` (the reference implementation of docs/model.md, step by step), on a
scenario without borrowers: the market of section 4 does not depend on them. The engine's fan
charts and summaries are skipped, since only the saved factor paths are needed.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from gpusim.backends.numpy_backend import NumpyBackend
from gpusim.scenario import scenario_from
from gpusim.scenario.loading import deep_merge, load_raw, market_only, resolve_path
from gpusim.spec import build_spec


def merged_scenario(base: str, *fragments: dict[str, Any]) -> dict[str, Any]:
    """The raw mapping of a shipped or file scenario with fragments merged over it, as `extends:` merges."""
    raw = copy.deepcopy(load_raw(resolve_path(base)))
    for fragment in fragments:
        raw = deep_merge(raw, fragment)
    return raw


def market_paths(mapping: dict[str, Any], n_paths: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Each market factor's paths, factor -> (path, step[, asset | generation]); "regime" is 1 in tight."""
    scenario = scenario_from(market_only(mapping), ())
    spec = build_spec(scenario, "float64", contagion=False)
    return NumpyBackend().run_chunk(spec, seed, 0, n_paths, n_paths).saved
