"""A Pallas kernel for the market half of a step: Philox draws, steps 2-3 of docs/model.md 7 and
the observed levels, fused into one kernel over blocks of paths.

Under plain `jax.jit` XLA splits a step into dozens of loops that each write their results to
memory; this kernel runs the same shared model functions (`draw_step`, `advance_market`,
`observe`) on one block of paths at a time, so the intermediates stay in registers. The model
code is not duplicated: the kernel body calls those functions on the loaded block.

On a GPU it lowers through Triton; on a CPU Pallas only interprets (`interpret=True`), which
the tests use to check it path by path against the plain jit step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from gpusim.model.factor_table import OBSERVED_FACTORS
from gpusim.model.market import Draws, MarketState, MarketView, advance_market, draw_step, observe
from gpusim.model.params import Layout, MarketParams
from gpusim.model.slots import SLOT_ENTRIES

BLOCK_PATHS = 256
"""Paths per kernel instance on a GPU (a power of two, as Triton blocks must be)."""

PASSED_ON = ("regime", "revenue_shock", "tenant_default", "market_access")
"""Draws the rest of the step reads after the market half (`close_step`, the borrowers); the
kernel consumes the others."""


def _path_block(shape: tuple[int, ...], block: int) -> pl.BlockSpec:
    """Blocks of `block` paths along the last axis, whole along the others."""
    rank = len(shape)
    return pl.BlockSpec((*shape[:-1], block), lambda i: (0,) * (rank - 1) + (i,))


def _whole(shape: tuple[int, ...]) -> pl.BlockSpec:
    """The same whole array for every kernel instance (parameters, scalars)."""
    rank = len(shape)
    return pl.BlockSpec(shape, lambda i: (0,) * rank)


def fused_market_step(
    state: MarketState,
    seed: int,
    path_start: Any,
    step: Any,
    p: MarketParams,
    layout: Layout,
    block: int = BLOCK_PATHS,
    interpret: bool = False,
) -> tuple[MarketState, MarketView, Draws]:
    """`draw_step`, `advance_market` and `observe(step + 1)` for all paths of `state`, fused.

    Returns the advanced state, the view at t_{step+1} and the draws the rest of the step
    needs (the regime uniform for `close_step`, the borrowers' revenue shocks); the other
    draws are consumed inside the kernel and come back empty.
    """
    n = state.tight.shape[0]
    dtype = p.log_spot.dtype
    padded = -(-n // block) * block
    # the launch calendar is read at the traced step outside the kernel: inside, step 0 of a
    # one-entry calendar (a gather at a traced index is not something every lowering allows)
    # the same for the shock tables, read at t_{step+1} (row 0 of the one-row tables)
    p_step = p._replace(
        scheduled_launches=jnp.reshape(p.scheduled_launches[step], (1,)),
        shock_crypto=p.shock_crypto[step + 1][None, :],
        shock_rental_rate=p.shock_rental_rate[step + 1][None, :],
        shock_utilization=jnp.reshape(p.shock_utilization[step + 1], (1,)),
        shock_power_price=jnp.reshape(p.shock_power_price[step + 1], (1,)),
    )
    param_shapes = [jnp.shape(v) for v in p_step]
    params = [jnp.reshape(v, (1,)) if jnp.ndim(v) == 0 else v for v in p_step]
    scalars = jnp.stack([jnp.asarray(path_start, jnp.int64), jnp.asarray(step, jnp.int64)])

    def pad(x: Any) -> Any:
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, padded - n)])

    state_in = [pad(jnp.astype(x, jnp.int8) if x.dtype == jnp.bool_ else x) for x in state]
    out_shapes = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in state_in]
    for factor in OBSERVED_FACTORS:
        width = factor.width(layout)
        out_shapes.append(jax.ShapeDtypeStruct((width, padded) if width else (padded,), dtype))
    # draws passed on, in slot-table order; an entry without slots (no borrowers) has no output
    passed = [entry for entry in SLOT_ENTRIES if entry.name in PASSED_ON and layout.slots.counts[entry.name]]
    for entry in passed:
        shape = (padded,) if entry.per_path else (layout.slots.counts[entry.name], padded)
        out_shapes.append(jax.ShapeDtypeStruct(shape, dtype))

    def kernel(*refs: Any) -> None:
        scalar_ref, rest = refs[0], refs[1:]
        state_refs, rest = rest[: len(state_in)], rest[len(state_in) :]
        param_refs, out_refs = rest[: len(params)], rest[len(params) :]
        start = scalar_ref[0] + pl.program_id(0) * block
        k = scalar_ref[1]
        loaded = [ref[...] for ref in state_refs]
        block_state = MarketState(*loaded)._replace(tight=loaded[0] != 0)
        block_p = MarketParams(*(jnp.reshape(ref[...], shape) for ref, shape in zip(param_refs, param_shapes, strict=True)))
        draws = draw_step(seed, start, block, k, layout, dtype, jnp)
        advanced = advance_market(block_state, draws, 0, block_p, layout, jnp)
        view = observe(advanced, k + 1, block_p, layout, jnp, row=0)
        values = [jnp.astype(advanced.tight, jnp.int8), *advanced[1:], *view, *(getattr(draws, entry.name) for entry in passed)]
        for ref, value in zip(out_refs, values, strict=True):
            ref[...] = jnp.astype(value, ref.dtype)

    outputs = pl.pallas_call(
        kernel,
        out_shape=out_shapes,
        grid=(padded // block,),
        in_specs=[_whole(scalars.shape), *(_path_block(x.shape, block) for x in state_in), *(_whole(x.shape) for x in params)],
        out_specs=[_path_block(s.shape, block) for s in out_shapes],
        interpret=interpret,
        name="gpusim_market_step",
    )(scalars, *state_in, *params)
    outputs = [x[..., :n] for x in outputs]
    n_state = len(MarketState._fields)
    new_state = MarketState(*outputs[:n_state])
    new_state = new_state._replace(tight=new_state.tight != 0)
    n_view = len(MarketView._fields)
    view = MarketView(*outputs[n_state : n_state + n_view])
    kept = dict(zip((entry.name for entry in passed), outputs[n_state + n_view :], strict=True))
    draws = Draws(**{name: kept.get(name, jnp.zeros((0, n), dtype=dtype)) for name in Draws._fields})
    return new_state, view, draws
