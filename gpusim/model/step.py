"""One step of the whole model (docs/model.md 7) as a pure function over a carry.

Every backend that runs the array-API model drives the same two functions: `initial_carry`
builds the state at t_0, `model_step` takes it from t_k to t_{k+1}. numpy and cupy call
`model_step` in a Python loop over k; the JAX backend uses it as the body of `lax.scan`, where
k is a traced integer. What a backend records of a step (fan counts, saved paths, regime
counts) it reads from the returned `StepObservables`, so the order of the model's operations
is written here once.

The market half of a step (draws, steps 2-4) is a swappable function of `ChunkInputs`: the
JAX backend can put in the fused Pallas kernel of `backends.pallas_market`, which computes the
same draws, state and levels in one kernel. The recovery waterfall is swappable the same way
(the JAX backend bounds its gather of defaulting paths).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from gpusim.model.borrowers import sum_over
from gpusim.model.credit import CreditState, CreditView, credit_ratios, credit_step, initial_credit_state, recoveries_where
from gpusim.model.market import Draws, MarketState, MarketView, advance_market, close_step, draw_step, initial_state, observe
from gpusim.model.params import CreditParams, Layout, MarketParams
from gpusim.spec import CreditOutcomes


class StepCarry(NamedTuple):
    """What one step hands to the next: the market at t_k (with R_k and L_k) and the borrowers."""

    market: MarketState
    credit: CreditState | None  # None for a market-only scenario


class StepObservables(NamedTuple):
    """What a step shows the recorders, at t_{k+1} (at t_0 for `initial_carry`)."""

    market: MarketState  # advanced, before close_step: R_k and L_k still (what the fan coordinates read)
    view: MarketView  # the observed levels
    ratios: CreditView | None  # DSCR and LTV per borrower; None without borrowers
    step: Any  # index of the time point shown (k+1; 0 at t_0): the row of the shock tables its levels read


MarketStep = Callable[[MarketState, Any, "ChunkInputs"], tuple[MarketState, MarketView, Draws]]
"""(state at t_k, k, inputs) -> (advanced state, levels at t_{k+1}, this step's draws)."""


def market_step(state: MarketState, k: Any, inputs: ChunkInputs) -> tuple[MarketState, MarketView, Draws]:
    """Steps 1-4 of docs/model.md 7: this step's draws, launches, factors under R_k, then the levels at t_{k+1}."""
    p, layout, xp = inputs.p, inputs.layout, inputs.xp
    draws = draw_step(inputs.seed, inputs.path_start, state.tight.shape[0], k, layout, p.log_spot.dtype, xp)
    state = advance_market(state, draws, k, p, layout, xp)
    return state, observe(state, k + 1, p, layout, xp), draws


class ChunkInputs(NamedTuple):
    """What every step of one chunk of paths reads and none changes."""

    seed: int
    path_start: Any  # first path of the chunk (a traced integer under jit)
    p: MarketParams  # cast to the run's dtype and namespace
    c: CreditParams | None  # None without borrowers
    layout: Layout
    xp: Any  # the array namespace
    market_step: MarketStep = market_step
    recoveries: Callable[..., Any] = recoveries_where  # signature of credit.recoveries_where


def initial_carry(inputs: ChunkInputs, n_paths: int) -> tuple[StepCarry, StepObservables]:
    """The carry at t_0 and what it shows: initial market state, its levels, the credit state they set."""
    p, c, layout, xp = inputs.p, inputs.c, inputs.layout, inputs.xp
    state = initial_state(n_paths, p, layout, xp)
    view = observe(state, 0, p, layout, xp)
    if c is None:
        return StepCarry(state, None), StepObservables(state, view, None, 0)
    credit = initial_credit_state(view, p, c, layout, xp)
    return StepCarry(state, credit), StepObservables(state, view, credit_ratios(credit, view, 0, c, layout, xp), 0)


def model_step(carry: StepCarry, k: Any, inputs: ChunkInputs) -> tuple[StepCarry, StepObservables]:
    """Step k -> k+1 in the order of docs/model.md 7: market (1-4), borrowers (5-9), then L and R_{k+1} (10)."""
    p, layout, xp = inputs.p, inputs.layout, inputs.xp
    state, view, draws = inputs.market_step(carry.market, k, inputs)
    credit, ratios = carry.credit, None
    dumped = xp.zeros((layout.n_generations, state.tight.shape[0]), dtype=p.log_spot.dtype)  # no borrowers, no fire sales
    if credit is not None:
        credit, dumped, ratios = credit_step(
            credit,
            view,
            state.tight,
            draws.revenue_shock,
            draws.tenant_default,
            k,
            p,
            inputs.c,
            layout,
            xp,
            recoveries=inputs.recoveries,
            u_access=draws.market_access,
        )
    closed = close_step(state, dumped, draws, k + 1, p, xp)
    return StepCarry(closed, credit), StepObservables(state, view, ratios, k + 1)


def outcome_arrays(cs: CreditState) -> CreditOutcomes:
    """The per-path outcomes of a final credit state, still in its namespace and layout
    (component first), so that a device backend copies only these to the host. The portfolio
    loss sums the instruments in a fixed order (the same rounding on every backend)."""
    return CreditOutcomes(
        default_step=cs.default_step,
        default_reason=cs.reason,
        loss=cs.loss,
        exposure=cs.exposure,
        risky_annuity=cs.annuity,
        portfolio_loss_nominal=sum_over(cs.loss_nominal, axis=0),
    )


def host_outcomes(arrays: CreditOutcomes, n_paths: int | None = None, to_host: Callable[[Any], np.ndarray] = np.asarray) -> CreditOutcomes:
    """`outcome_arrays` in the layout of `ChunkResult`: host arrays, path first, int16/int8 codes,
    float64 money; only the first `n_paths` paths (the rest are padding)."""
    paths = slice(None) if n_paths is None else slice(None, n_paths)
    return CreditOutcomes(
        default_step=to_host(arrays.default_step)[:, paths].T.astype(np.int16),
        default_reason=to_host(arrays.default_reason)[:, paths].T.astype(np.int8),
        loss=to_host(arrays.loss)[:, paths].T.astype(np.float64),
        exposure=to_host(arrays.exposure)[:, paths].T.astype(np.float64),
        risky_annuity=to_host(arrays.risky_annuity)[:, paths].T.astype(np.float64),
        portfolio_loss_nominal=to_host(arrays.portfolio_loss_nominal)[paths].astype(np.float64),
    )
