"""Where JAX spends a step on the CPU: CPU time per path-step of nested parts of the model.

Each part is compiled alone as a 120-step `lax.scan` over one chunk of bench.yaml (float32)
and timed by process CPU time (robust to other load on a shared machine; XLA's own threads
included), after a warm-up run. Parts nest: each row adds the named work to the row above.

    python benchmarks/jax_breakdown.py --paths 16384
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gpusim.backends.array_model import FanCounter
from gpusim.backends.jax_backend import bounded_recoveries, enable_x64
from gpusim.model.credit import initial_credit_state
from gpusim.model.market import advance_market, close_step, draw_step, initial_state, observe
from gpusim.model.params import cast_params
from gpusim.scenario import load_scenario
from gpusim.spec import build_spec


def cpu_ns_per_path_step(body: Callable[[Any, Any], tuple[Any, None]], init: Any, n: int, steps: int) -> float:
    scan = jax.jit(lambda carry: jax.lax.scan(body, carry, jnp.arange(steps, dtype=jnp.int32))[0])
    jax.block_until_ready(scan(init))
    start = time.process_time()
    jax.block_until_ready(scan(init))
    return (time.process_time() - start) * 1e9 / (n * steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=16384)
    args = parser.parse_args()
    enable_x64()
    import gpusim.model.credit as credit_module

    spec = build_spec(load_scenario("bench"), "float32", contagion=False)
    layout, n, dtype = spec.layout, args.paths, jnp.float32
    steps = layout.n_steps
    p, c = cast_params(spec.market, jnp, dtype), cast_params(spec.credit, jnp, dtype)
    fans = FanCounter(spec, p, spec.fans, jnp)
    state = initial_state(n, p, layout, jnp)
    credit = initial_credit_state(observe(state, 0, p, layout, jnp), p, c, layout, jnp)
    no_dumps = jnp.zeros((layout.n_generations, n), dtype)

    def step(with_credit: bool, with_fans: bool, recoveries: Callable[..., Any]) -> Callable[[Any, Any], tuple[Any, None]]:
        def body(carry: Any, k: Any) -> tuple[Any, None]:
            market, cs, total = carry
            draws = draw_step(1, 0, n, k, layout, dtype, jnp)
            market = advance_market(market, draws, k, p, layout, jnp)
            view = observe(market, k + 1, p, layout, jnp)
            dumped, ratios = no_dumps, None
            if with_credit:
                shocks = draws.revenue_shock
                cs, dumped, ratios = credit_module.credit_step(cs, view, market.tight, shocks, k, p, c, layout, jnp, recoveries)
            # without fans, a sum keeps the levels from being optimized away
            total = total + (fans(market, view, ratios)[:8] if with_fans else jnp.astype(jnp.sum(view.gpu_mark) > 0, jnp.int32))
            market = close_step(market, dumped, draws, p, jnp)
            return jax.tree.map(lambda a, b: a.astype(b.dtype), (market, cs, total), carry), None

        return body

    def no_waterfall(any_default: Any, exposure: Any, *rest: Any) -> Any:
        return jnp.zeros_like(exposure)

    def no_crypto_sales(need: Any, units: Any, pledged: Any, net_price: Any, xp: Any) -> tuple[Any, Any]:
        return need, units

    init = (state, credit, jnp.zeros(8, jnp.int32))
    rows = [
        ("market step (draws, factors, levels)", step(False, False, bounded_recoveries)),
        ("+ credit step without the recovery waterfall", step(True, False, no_waterfall)),
        ("+ recovery waterfall (bounded gather)", step(True, False, bounded_recoveries)),
        ("+ fan-chart counts (the whole step)", step(True, True, bounded_recoveries)),
    ]
    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}, bench.yaml float32, {n} paths x {steps} steps")
    for name, body in rows:
        print(f"{name:48s} {cpu_ns_per_path_step(body, init, n, steps):9.0f} ns CPU per path-step", flush=True)
    sell = credit_module.sell_crypto
    credit_module.sell_crypto = no_crypto_sales
    try:
        without = cpu_ns_per_path_step(step(True, True, bounded_recoveries), init, n, steps)
    finally:
        credit_module.sell_crypto = sell
    print(f"{'the whole step without its 3 crypto sales':48s} {without:9.0f} ns CPU per path-step")


if __name__ == "__main__":
    main()
