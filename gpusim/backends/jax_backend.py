"""The JAX backend: the shared array-API model under `jax.jit`, the time loop as `lax.scan`.

The model functions of `gpusim.model` run unchanged on `jax.numpy`; this module only runs
`model.step.model_step` as the body of a scan instead of the Python step loop of
`array_model._run_paths`. The carry is the market and credit state (NamedTuples, i.e.
pytrees); the scan's outputs are the per-step fan counts, regime counts and saved paths.

64-bit types: the backend enables `jax_enable_x64` when it is created, whatever the run's
dtype. The flag is process-wide (it changes the default dtypes of every later JAX call in the
process). Every array the model creates has an explicit dtype, so float32 runs stay float32;
x64 gives the real int64 path index and the uint64 Philox multiply, both needed for the same
random words as numpy.

Compilation: one executable per (spec, seed, padded chunk size, saved paths per chunk), cached
on the backend. `path_start` and the number of valid paths are runtime arguments, so chunks never
recompile; a smaller last chunk runs padded to an already compiled size when that wastes at
most half of it (padded paths are masked out of every count and dropped from the outputs).
Compile time is kept apart in `compile_seconds`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import jax
    import jax.numpy as jnp
except ImportError as exc:  # pragma: no cover - checked by get_backend
    raise ImportError("the jax backend needs jax (pip install 'gpusim[jax]')") from exc

from gpusim.backends.array_model import FanCounter
from gpusim.backends.pallas_market import fused_market_step
from gpusim.backends.sizing import array_model_bytes_per_path, cpu_count, host_available_bytes, item_bytes
from gpusim.model.credit import recoveries_where, recovery_waterfall
from gpusim.model.market import Draws, MarketState, MarketView
from gpusim.model.params import CreditParams, Layout, MarketParams, cast_params, without_contagion
from gpusim.model.step import (
    ChunkInputs,
    MarketStep,
    StepCarry,
    StepObservables,
    host_outcomes,
    initial_carry,
    market_step,
    model_step,
    outcome_arrays,
)
from gpusim.spec import ChunkResult, RunSpec

xp = jnp
SHARED_SAVE_LIMIT = 4096
"""Up to this many saved paths, every chunk of a run uses one executable that saves them."""
MARKET_KERNELS = ("auto", "jit", "pallas")
"""How the market half of a step runs: XLA's own fusion of the shared functions ("jit"), the
Pallas kernel of `pallas_market` ("pallas"), or whichever ran the first chunk faster ("auto";
on a CPU always "jit", since Pallas only interprets there)."""
MARKET_ARRAYS_IN_FLIGHT = 16
"""Float arrays of the market's width alive at once in a step: the carry twice (old and new)
and the step's temporaries."""
CREDIT_CARRY_COPIES = 4
"""Copies of the credit carry (per borrower and instrument) alive at once in a credit step."""
CREDIT_FLOATS_BESIDES_WINDOW = 8
"""Floats of the credit carry per borrower or instrument besides the trailing DSCR window."""


def enable_x64() -> None:
    """Switch JAX to 64-bit types for the whole process (see the module docstring)."""
    jax.config.update("jax_enable_x64", True)


class JaxBackend:
    name = "jax"

    def __init__(self, market_kernel: str = "auto", interpret: bool | None = None) -> None:
        if market_kernel not in MARKET_KERNELS:
            raise ValueError(f"market_kernel must be one of {', '.join(MARKET_KERNELS)}, got {market_kernel!r}")
        enable_x64()
        self._device = jax.devices()[0]
        self._cache: dict[tuple[Any, ...], tuple[RunSpec, Callable[..., Any]]] = {}
        self._lock = threading.Lock()
        self._choice_lock = threading.Lock()
        self._chosen: dict[int, str] = {}
        self.market_kernel = market_kernel
        self.interpret = not self.on_accelerator if interpret is None else interpret
        self.compile_seconds = 0.0  # total time spent tracing and compiling, apart from running
        self.compiles = 0
        self.market_kernel_seconds: dict[str, float] = {}  # "auto": one chunk's time per variant
        self.pallas_error: str | None = None  # why "auto" could not use the Pallas kernel

    @property
    def device(self) -> str:
        d = self._device
        return f"{d.platform} ({d.device_kind})"

    @property
    def on_accelerator(self) -> bool:
        return self._device.platform != "cpu"

    def warm_up(self) -> None:
        """Compile and run a tiny function on the backend's device: a CUDA plugin that loads but cannot
        compile or launch fails here (where `auto` can fall back) rather than at a run's first chunk."""
        x = jax.device_put(jnp.arange(8, dtype=jnp.float32), self._device)
        jax.block_until_ready(jax.jit(lambda v: jnp.cumsum(jnp.exp(v)))(x))

    def preferred_chunk_paths(self, spec: RunSpec) -> int:
        return 1 << 20 if self.on_accelerator else 65536

    def bytes_per_path(self, spec: RunSpec) -> int:
        layout = spec.layout
        carry = CREDIT_CARRY_COPIES * (layout.window_steps + CREDIT_FLOATS_BESIDES_WINDOW) * (layout.n_borrowers + layout.n_instruments)
        credit = item_bytes(spec.dtype) * carry if spec.has_credit else 0
        return array_model_bytes_per_path(layout, spec.dtype, MARKET_ARRAYS_IN_FLIGHT, credit)

    def memory_bytes(self) -> int:
        if not self.on_accelerator:
            return host_available_bytes()
        stats = self._device.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return int(limit - stats.get("bytes_in_use", 0)) if limit else 8 << 30

    def default_workers(self) -> int:
        return 2 if self.on_accelerator else cpu_count()

    def run_chunk(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> ChunkResult:
        n_saved = max(0, min(n_paths, save_paths - path_start))
        # chunks past the saved paths reuse the executable that saves some while that costs
        # little (a full model compile takes 15-20 s on a 2-core CPU)
        keep = save_paths if n_saved or save_paths <= SHARED_SAVE_LIMIT else 0
        variant = self.market_variant(spec, seed, path_start, n_paths, keep)
        fn = self._compiled(spec, seed, n_paths, keep, variant)
        out = jax.device_get(fn(np.int64(path_start), np.int64(n_paths)))
        return _to_chunk(spec, out, path_start, n_paths, n_saved)

    def market_variant(self, spec: RunSpec, seed: int, path_start: int, n_paths: int, save_paths: int) -> str:
        """ "jit" or "pallas" for this spec. Under "auto" on an accelerator, the first chunk is
        run with both (compiled and warmed up first) and the faster is kept for the run; a
        Pallas kernel that does not lower on this device leaves "jit", with the reason kept
        in `pallas_error`."""
        if self.market_kernel != "auto":
            return self.market_kernel
        if not self.on_accelerator:
            return "jit"
        with self._choice_lock:
            if id(spec) in self._chosen:
                return self._chosen[id(spec)]
            seconds = {}
            for variant in ("jit", "pallas"):
                try:
                    fn = self._compiled(spec, seed, n_paths, save_paths, variant)
                    args = (np.int64(path_start), np.int64(n_paths))
                    jax.block_until_ready(fn(*args))
                    start = time.perf_counter()
                    jax.block_until_ready(fn(*args))
                    seconds[variant] = time.perf_counter() - start
                except Exception as exc:  # Triton rejecting the kernel: plain jit still runs the model
                    if variant == "jit":
                        raise
                    self.pallas_error = f"{type(exc).__name__}: {exc}"
            self.market_kernel_seconds = seconds
            self._chosen[id(spec)] = min(seconds, key=lambda v: seconds[v])
            return self._chosen[id(spec)]

    def _compiled(self, spec: RunSpec, seed: int, n_paths: int, save_paths: int, variant: str) -> Callable[..., Any]:
        """The executable for chunks of n_paths paths. It saves the first min(size, save_paths)
        paths of every chunk that saves any (the host keeps those it needs), so the chunks of a
        run share one executable (two when more than SHARED_SAVE_LIMIT paths are saved: one
        that saves, one that does not), plus one for a last chunk under half the chunk size."""
        with self._lock:
            for (spec_id, s, size, saved, v), (_, fn) in self._cache.items():
                fits = n_paths <= size <= 2 * n_paths and saved == min(size, save_paths)
                if spec_id == id(spec) and s == seed and fits and v == variant:
                    return fn
            n_saved = min(n_paths, save_paths)
            start = time.perf_counter()
            scalar = jax.ShapeDtypeStruct((), jnp.int64)
            market = _fused_market_step(self.interpret) if variant == "pallas" else market_step
            fn = jax.jit(_chunk_function(spec, seed, n_paths, n_saved, market)).lower(scalar, scalar).compile()
            self.compile_seconds += time.perf_counter() - start
            self.compiles += 1
            # the spec is kept with the entry so that its id cannot be reused while cached
            self._cache[(id(spec), seed, n_paths, n_saved, variant)] = (spec, fn)
            return fn


def bounded_recoveries(
    any_default: Any,
    exposure: Any,
    marks: Any,
    dumped: Any,
    tight: Any,
    units: Any,
    pledged: Any,
    net_price: Any,
    cash: Any,
    layout: Layout,
    m: MarketParams,
    c: CreditParams,
    xp: Any,
    data_centres: Any = None,
    fleet: Any = None,
) -> Any:
    """`credit.recoveries_where` under jit: a traced array cannot have a data-dependent size, so
    the defaulting paths are gathered into a fixed-size index (1/16 of the chunk); in the rare
    step where more paths default, `lax.cond` runs the waterfall on every path instead.
    Same numbers either way; the waterfall's cost drops by about the ratio of the sizes."""
    size = max(64, any_default.shape[-1] // 16)
    extras = {name: value for name, value in (("data_centres", data_centres), ("fleet", fleet)) if value is not None}
    operands = (any_default, exposure, marks, dumped, tight, units, pledged, net_price, cash, *extras.values())

    def gathered(ops: tuple[Any, ...]) -> Any:
        index = jnp.nonzero(ops[0], size=size, fill_value=0)[0]
        return recoveries_where(*ops[:9], layout, m, c, xp, index=index, **dict(zip(extras, ops[9:], strict=True)))

    def everywhere(ops: tuple[Any, ...]) -> Any:
        return xp.where(ops[0], recovery_waterfall(*ops[1:9], layout, m, c, xp, **dict(zip(extras, ops[9:], strict=True))), 0.0)

    if size >= any_default.shape[-1]:
        return everywhere(operands)
    return jax.lax.cond(xp.sum(xp.astype(any_default, xp.int32)) <= size, gathered, everywhere, operands)


def _fused_market_step(interpret: bool) -> MarketStep:
    """`model.step.market_step` as one Pallas kernel over blocks of paths."""

    def step(state: MarketState, k: Any, inputs: ChunkInputs) -> tuple[MarketState, MarketView, Draws]:
        return fused_market_step(state, inputs.seed, inputs.path_start, k, inputs.p, inputs.layout, interpret=interpret)

    return step


def fixed_dtypes(new: Any, old: Any) -> Any:
    """`new` with the dtypes of `old`: a scan carry keeps its types (weakly typed scalars must not widen it)."""
    return jax.tree.map(lambda a, b: a.astype(b.dtype), new, old)


def _chunk_function(spec: RunSpec, seed: int, n_paths: int, n_saved: int, market_step: MarketStep) -> Callable[[Any, Any], dict[str, Any]]:
    """f(path_start, n_valid) for paths [path_start, path_start + n_paths), of which the first n_valid count."""

    def chunk(path_start: Any, n_valid: Any) -> dict[str, Any]:
        valid = jnp.arange(n_paths, dtype=jnp.int64) < n_valid
        out = _scan_paths(spec, spec.market, seed, path_start, n_paths, n_saved, valid, market_step, record=True)
        if spec.attribution:
            off = _scan_paths(spec, without_contagion(spec.market), seed, path_start, n_paths, 0, valid, market_step, record=False)
            out["outcomes_without_chain"] = off["outcomes"]
        return out

    return chunk


def _scan_paths(
    spec: RunSpec,
    market: MarketParams,
    seed: int,
    path_start: Any,
    n_paths: int,
    n_saved: int,
    valid: Any,
    market_step: MarketStep,
    record: bool,
) -> dict[str, Any]:
    """`array_model._run_paths` with the step loop as a scan; returns device arrays."""
    dtype = getattr(xp, spec.dtype)
    p = cast_params(market, xp, dtype)
    c = cast_params(spec.credit, xp, dtype) if spec.has_credit else None
    inputs = ChunkInputs(seed, path_start, p, c, spec.layout, xp, market_step, bounded_recoveries)
    counter = FanCounter(spec, p, spec.fans if record else (), xp)

    def recorded(carry: StepCarry, seen: StepObservables) -> dict[str, Any]:
        """The fan counts, regime count and saved paths of one time point (padding left out)."""
        if not record:
            return {}
        return {
            "counts": counter(seen.market, seen.view, seen.ratios, seen.step, valid),
            "tight": xp.sum(xp.astype(carry.market.tight & valid, xp.int64)),
            "saved": {name: getattr(seen.view, name)[..., :n_saved] for name in MarketView._fields},
            "regime": carry.market.tight[:n_saved],
        }

    def step(carry: StepCarry, k: Any) -> tuple[StepCarry, dict[str, Any]]:
        new, seen = model_step(carry, k, inputs)
        return fixed_dtypes(new, carry), recorded(new, seen)

    carry, seen = initial_carry(inputs, n_paths)
    first = recorded(carry, seen)
    carry, steps = jax.lax.scan(step, carry, xp.arange(spec.layout.n_steps, dtype=xp.int32))
    result = jax.tree.map(lambda a, b: xp.concat((a[None], b), axis=0), first, steps)
    if carry.credit is not None:
        result["outcomes"] = outcome_arrays(carry.credit)
    return result


def _to_chunk(spec: RunSpec, out: dict[str, Any], path_start: int, n_paths: int, n_saved: int) -> ChunkResult:
    """Host arrays in the layout of `array_model._run_paths`."""
    fan_result = FanCounter(spec, spec.market, spec.fans, np).split(out["counts"])
    paths = {}
    for name in MarketView._fields:
        stacked = np.asarray(out["saved"][name])[..., :n_saved]  # (steps, [C,] m)
        paths[name] = np.transpose(stacked, (2, 0, 1)) if stacked.ndim == 3 else stacked.T
    paths["regime"] = np.asarray(out["regime"])[:, :n_saved].T.astype(np.int8)
    return ChunkResult(
        path_start=path_start,
        n_paths=n_paths,
        saved=paths,
        fan_counts=fan_result,
        tight_count=np.asarray(out["tight"]).astype(np.int64),
        outcomes=host_outcomes(out["outcomes"], n_paths) if "outcomes" in out else None,
        outcomes_without_chain=host_outcomes(out["outcomes_without_chain"], n_paths) if "outcomes_without_chain" in out else None,
    )
