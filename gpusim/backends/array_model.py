"""One chunk of paths through the shared array-API model, for any array namespace.

numpy runs it as the reference backend; cupy arrays run the same code unchanged. The time
loop is a plain Python loop over steps; everything inside it is whole-array arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpusim.model.credit import CreditState, CreditView, credit_ratios, credit_step, initial_credit_state
from gpusim.model.market import MarketState, MarketView, advance_market, close_step, draw_step, fan_coordinates, initial_state, observe
from gpusim.model.params import MarketParams, cast_params, without_contagion
from gpusim.spec import ChunkResult, CreditOutcomes, RunSpec
from gpusim.statistics import bin_index, bin_offset, bincount_parts


def _to_numpy(x: Any) -> np.ndarray:
    get = getattr(x, "get", None)  # cupy arrays copy to the host with .get()
    return get() if callable(get) else np.asarray(x)


class FanCounter:
    """Bins every fan-chart factor of one step into a single joint histogram (one bincount);
    `split` turns the stacked per-step counts back into one (steps, C, bins) array per factor."""

    def __init__(self, spec: RunSpec, p: MarketParams, fans: tuple[str, ...], xp: Any):
        self.spec, self.p, self.fans, self.xp = spec, p, fans, xp
        dtype = p.log_spot.dtype
        self.offsets = {name: xp.asarray(bin_offset(spec.binnings[name]), dtype=dtype) for name in fans}
        self.first_bin, self.total_bins = {}, 0
        for name in fans:
            self.first_bin[name] = self.total_bins
            self.total_bins += spec.binnings[name].n_components * spec.binnings[name].bins_per_component

    def __call__(self, state: MarketState, view: MarketView, ratios: CreditView | None, valid: Any = None) -> Any:
        """Counts of this step; paths where `valid` is False (padding) are left out."""
        xp = self.xp
        coordinates = fan_coordinates(state, view, self.p, xp)
        if ratios is not None:
            coordinates.update(ratios._asdict())
        parts = []
        for name in self.fans:
            binning = self.spec.binnings[name]
            component = xp.reshape(xp.arange(binning.n_components, dtype=xp.int64), (-1, 1))
            index = bin_index(coordinates[name], binning, self.offsets[name], xp) + component * binning.bins_per_component
            index = index + self.first_bin[name]
            if valid is not None:
                index = xp.where(valid, index, self.total_bins)  # padding lands in an extra bin, dropped below
            parts.append(xp.reshape(index, (-1,)))
        # int32 (a chunk never has 2**31 paths): a chunk holds these for every step until it ends
        return xp.astype(bincount_parts(parts, self.total_bins + 1, xp)[: self.total_bins], xp.int32)

    def split(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        counts = np.asarray(counts)
        out = {}
        for name in self.fans:
            binning = self.spec.binnings[name]
            start = self.first_bin[name]
            block = counts[:, start : start + binning.n_components * binning.bins_per_component]
            out[name] = block.reshape(counts.shape[0], binning.n_components, binning.bins_per_component)
        return out


def simulate_chunk(spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int, xp: Any) -> ChunkResult:
    """Run paths [path_start, path_start + n_paths) through every step of the model.

    With attribution on, the same paths run a second time with the fire-sale chain off; only
    their credit outcomes are kept.
    """
    result = _run_paths(spec, spec.market, seed, path_start, n_paths, save_paths, xp, record=True)
    if spec.attribution:
        off = _run_paths(spec, without_contagion(spec.market), seed, path_start, n_paths, 0, xp, record=False)
        result = result._replace(outcomes_without_chain=off.outcomes)
    return result


def _run_paths(
    spec: RunSpec, market: MarketParams, seed: int, path_start: int, n_paths: int, save_paths: int, xp: Any, record: bool
) -> ChunkResult:
    layout = spec.layout
    dtype = getattr(xp, spec.dtype)
    p = cast_params(market, xp, dtype)
    c = cast_params(spec.credit, xp, dtype) if spec.has_credit else None
    fan_counts = FanCounter(spec, p, spec.fans if record else (), xp)
    n_saved = max(0, min(n_paths, save_paths - path_start))

    def saved(view: MarketView) -> dict[str, Any]:
        return {name: getattr(view, name)[..., :n_saved] for name in MarketView._fields}

    state = initial_state(n_paths, p, layout, xp)
    no_fire_sales = xp.zeros((layout.n_generations, n_paths), dtype=dtype)
    view = observe(state, 0, p, layout, xp)
    credit: CreditState | None = initial_credit_state(view, p, c, layout, xp) if c is not None else None
    counts, tight, records, regimes = [], [], [], []
    if record:
        start_ratios = credit_ratios(credit, view, c, layout, xp) if credit is not None else None
        counts.append(fan_counts(state, view, start_ratios))
        tight.append(xp.sum(xp.astype(state.tight, xp.int64)))
        records.append(saved(view))
        regimes.append(state.tight[:n_saved])
    for k in range(layout.n_steps):
        draws = draw_step(seed, path_start, n_paths, k, layout, dtype, xp)
        state = advance_market(state, draws, k, p, layout, xp)
        view = observe(state, k + 1, p, layout, xp)
        dumped, ratios = no_fire_sales, None
        if credit is not None:
            credit, dumped, ratios = credit_step(credit, view, state.tight, draws.revenue_shock, k, p, c, layout, xp)
        if record:
            counts.append(fan_counts(state, view, ratios))
        state = close_step(state, dumped, draws, p, xp)
        if record:
            tight.append(xp.sum(xp.astype(state.tight, xp.int64)))
            records.append(saved(view))
            regimes.append(state.tight[:n_saved])

    outcomes = _outcomes(credit) if credit is not None else None
    if not record:
        return ChunkResult(path_start, n_paths, {}, {}, np.zeros(0, dtype=np.int64), outcomes)
    fan_result = fan_counts.split(_to_numpy(xp.stack(counts, axis=0)))
    paths = {}
    for name in MarketView._fields:
        stacked = _to_numpy(xp.stack([r[name] for r in records], axis=0))  # (steps, [C,] m)
        paths[name] = np.transpose(stacked, (2, 0, 1)) if stacked.ndim == 3 else stacked.T
    paths["regime"] = _to_numpy(xp.stack(regimes, axis=0)).T.astype(np.int8)
    return ChunkResult(
        path_start=path_start,
        n_paths=n_paths,
        saved=paths,
        fan_counts=fan_result,
        tight_count=np.array([int(_to_numpy(t)) for t in tight], dtype=np.int64),
        outcomes=outcomes,
    )


def _outcomes(cs: CreditState) -> CreditOutcomes:
    return CreditOutcomes(
        default_step=_to_numpy(cs.default_step).T.astype(np.int16),
        default_reason=_to_numpy(cs.reason).T.astype(np.int8),
        loss=_to_numpy(cs.loss).T.astype(np.float64),
        exposure=_to_numpy(cs.exposure).T.astype(np.float64),
        risky_annuity=_to_numpy(cs.annuity).T.astype(np.float64),
        portfolio_loss_nominal=_to_numpy(cs.loss_nominal).sum(axis=0).astype(np.float64),
    )
