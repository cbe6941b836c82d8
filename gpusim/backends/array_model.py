"""One chunk of paths through the shared array-API model, for any array namespace.

numpy runs it as the reference backend; cupy arrays run the same code unchanged. The time
loop is a plain Python loop over `model.step.model_step`; everything inside it is whole-array
arithmetic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from gpusim.model.credit import CreditView
from gpusim.model.market import MarketState, MarketView, fan_coordinates
from gpusim.model.params import MarketParams, cast_params, without_contagion
from gpusim.model.step import ChunkInputs, StepCarry, StepObservables, host_outcomes, initial_carry, model_step, outcome_arrays
from gpusim.spec import ChunkResult, RunSpec
from gpusim.statistics import bin_index, bin_offset, bincount_parts

_CANCEL: ContextVar[threading.Event | None] = ContextVar("gpusim_chunk_cancel", default=None)


class ChunkCancelled(Exception):
    """A chunk stopped between two steps because its run was cancelled (Ctrl-C, or an error elsewhere)."""


@contextmanager
def cancel_on(event: threading.Event) -> Iterator[None]:
    """Chunks computed in this context (this thread) stop at their next step once `event` is set,
    so a cancelled run does not wait for whole chunks; the steps that do run are unchanged."""
    token = _CANCEL.set(event)
    try:
        yield
    finally:
        _CANCEL.reset(token)


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

    def __call__(self, state: MarketState, view: MarketView, ratios: CreditView | None, step: Any, valid: Any = None) -> Any:
        """Counts of the time point t_step; paths where `valid` is False (padding) are left out."""
        xp = self.xp
        coordinates = fan_coordinates(state, view, step, self.p, xp)
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
    dtype = getattr(xp, spec.dtype)
    p = cast_params(market, xp, dtype)
    c = cast_params(spec.credit, xp, dtype) if spec.has_credit else None
    inputs = ChunkInputs(seed, path_start, p, c, spec.layout, xp)
    fan_counts = FanCounter(spec, p, spec.fans if record else (), xp)
    n_saved = max(0, min(n_paths, save_paths - path_start))
    counts, tight, records, regimes = [], [], [], []

    def keep(carry: StepCarry, seen: StepObservables) -> None:
        """Record the fan counts, regime count and saved paths of one time point."""
        counts.append(fan_counts(seen.market, seen.view, seen.ratios, seen.step))
        tight.append(xp.sum(xp.astype(carry.market.tight, xp.int64)))
        records.append({name: getattr(seen.view, name)[..., :n_saved] for name in MarketView._fields})
        regimes.append(carry.market.tight[:n_saved])

    cancel = _CANCEL.get()
    carry, seen = initial_carry(inputs, n_paths)
    if record:
        keep(carry, seen)
    for k in range(spec.layout.n_steps):
        if cancel is not None and cancel.is_set():
            raise ChunkCancelled(f"paths from {path_start} stopped at step {k}")
        carry, seen = model_step(carry, k, inputs)
        if record:
            keep(carry, seen)

    outcomes = host_outcomes(outcome_arrays(carry.credit), to_host=_to_numpy) if carry.credit is not None else None
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
