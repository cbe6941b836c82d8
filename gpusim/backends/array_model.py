"""One chunk of paths through the shared array-API model, for any array namespace.

numpy runs it as the reference backend; cupy arrays run the same code unchanged. The time
loop is a plain Python loop over steps; everything inside it is whole-array arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpusim.factors import MarketState, MarketView, advance_market, close_step, draw_step, fan_coordinates, initial_state, observe
from gpusim.params import cast_params
from gpusim.spec import FAN_FACTORS, ChunkResult, RunSpec
from gpusim.statistics import bin_index, bin_offset, bincount


def _to_numpy(x: Any) -> np.ndarray:
    get = getattr(x, "get", None)  # cupy arrays copy to the host with .get()
    return get() if callable(get) else np.asarray(x)


def simulate_chunk(spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int, xp: Any) -> ChunkResult:
    """Run paths [path_start, path_start + n_paths) through all steps of the market model."""
    layout = spec.layout
    dtype = getattr(xp, spec.dtype)
    p = cast_params(spec.market, xp, dtype)
    bin_offsets = {name: xp.asarray(bin_offset(spec.binnings[name]), dtype=dtype) for name in FAN_FACTORS}
    offsets, total_bins = {}, 0
    for name in FAN_FACTORS:
        offsets[name] = total_bins
        total_bins += spec.binnings[name].n_components * spec.binnings[name].bins_per_component
    n_saved = max(0, min(n_paths, save_paths - path_start))

    def fan_counts(state: MarketState, view: MarketView) -> Any:
        coordinates = fan_coordinates(state, view, p, xp)
        parts = []
        for name in FAN_FACTORS:
            binning = spec.binnings[name]
            x = coordinates[name]
            component = xp.reshape(xp.arange(binning.n_components, dtype=xp.int64), (-1, 1))
            index = bin_index(x, binning, bin_offsets[name], xp) + component * binning.bins_per_component + offsets[name]
            parts.append(xp.reshape(index, (-1,)))
        return bincount(xp.concat(parts), total_bins, xp)

    def saved(view: MarketView) -> dict[str, Any]:
        return {name: getattr(view, name)[..., :n_saved] for name in MarketView._fields}

    state = initial_state(n_paths, p, layout, xp)
    no_fire_sales = xp.zeros((layout.n_generations, n_paths), dtype=dtype)
    view = observe(state, 0, p, layout, xp)
    counts, tight, records = [fan_counts(state, view)], [xp.sum(xp.astype(state.tight, xp.int64))], [saved(view)]
    regimes = [state.tight[:n_saved]]
    for k in range(layout.n_steps):
        draws = draw_step(seed, path_start, n_paths, k, layout, dtype, xp)
        state = advance_market(state, draws, k, p, layout, xp)
        view = observe(state, k + 1, p, layout, xp)
        counts.append(fan_counts(state, view))
        state = close_step(state, no_fire_sales, draws, p, xp)
        tight.append(xp.sum(xp.astype(state.tight, xp.int64)))
        records.append(saved(view))
        regimes.append(state.tight[:n_saved])

    all_counts = _to_numpy(xp.stack(counts, axis=0)).astype(np.int64)
    fans = {}
    for name in FAN_FACTORS:
        binning = spec.binnings[name]
        width = binning.n_components * binning.bins_per_component
        block = all_counts[:, offsets[name] : offsets[name] + width]
        fans[name] = block.reshape(layout.n_steps + 1, binning.n_components, binning.bins_per_component)
    paths = {}
    for name in MarketView._fields:
        stacked = _to_numpy(xp.stack([r[name] for r in records], axis=0))  # (steps, [C,] m)
        paths[name] = np.transpose(stacked, (2, 0, 1)) if stacked.ndim == 3 else stacked.T
    paths["regime"] = _to_numpy(xp.stack(regimes, axis=0)).T.astype(np.int8)
    return ChunkResult(
        path_start=path_start,
        n_paths=n_paths,
        saved=paths,
        fan_counts=fans,
        tight_count=np.array([int(_to_numpy(t)) for t in tight], dtype=np.int64),
    )
