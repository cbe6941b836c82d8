"""Where JAX spends a step on the CPU: CPU time per path-step of nested parts of the model.

Each part is compiled alone as a 120-step `lax.scan` over one chunk of bench.yaml (float32)
and timed by process CPU time (robust to other load on a shared machine; XLA's own threads
included), after a warm-up run. Every row runs the model's own `model_step`; rows nest, each
adding the named work to the row above, by what they hand the step (no borrowers, a recovery
waterfall that recovers nothing, the JAX backend's bounded one) and whether they count fans.
The last row times the three treasury sales of a step alone.

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
from gpusim.backends.jax_backend import bounded_recoveries, enable_x64, fixed_dtypes
from gpusim.model.credit import sell_crypto
from gpusim.model.params import cast_params
from gpusim.model.step import ChunkInputs, initial_carry, model_step
from gpusim.scenario import load_scenario
from gpusim.spec import build_spec

CRYPTO_SALES_PER_STEP = 3
"""`credit_step` sells treasury crypto to pay, to cure an LTV breach and to repay at maturity."""


def cpu_ns_per_path_step(body: Callable[[Any, Any], tuple[Any, None]], init: Any, n: int, steps: int) -> float:
    scan = jax.jit(lambda carry: jax.lax.scan(body, carry, jnp.arange(steps, dtype=jnp.int32))[0])
    jax.block_until_ready(scan(init))
    start = time.process_time()
    jax.block_until_ready(scan(init))
    return (time.process_time() - start) * 1e9 / (n * steps)


def no_waterfall(any_default: Any, exposure: Any, *rest: Any) -> Any:
    """A recovery waterfall that recovers nothing: the credit step without its cost."""
    return jnp.zeros_like(exposure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=16384)
    args = parser.parse_args()
    enable_x64()

    spec = build_spec(load_scenario("bench"), "float32", contagion=False)
    layout, n, dtype = spec.layout, args.paths, jnp.float32
    steps = layout.n_steps
    p, c = cast_params(spec.market, jnp, dtype), cast_params(spec.credit, jnp, dtype)
    fans = FanCounter(spec, p, spec.fans, jnp)

    def timed(with_credit: bool, with_fans: bool, recoveries: Callable[..., Any]) -> float:
        inputs = ChunkInputs(1, 0, p, c if with_credit else None, layout, jnp, recoveries=recoveries)

        def body(carry: Any, k: Any) -> tuple[Any, None]:
            step_carry, total = carry
            step_carry, seen = model_step(step_carry, k, inputs)
            # without fans, a sum keeps the levels from being optimized away
            if with_fans:
                total = total + fans(seen.market, seen.view, seen.ratios)[:8]
            else:
                total = total + jnp.astype(jnp.sum(seen.view.gpu_mark) > 0, jnp.int32)
            return fixed_dtypes((step_carry, total), carry), None

        return cpu_ns_per_path_step(body, (initial_carry(inputs, n)[0], jnp.zeros(8, jnp.int32)), n, steps)

    def crypto_sales() -> float:
        """The step's treasury sales on the t_0 holdings, each selling a share of what is held."""
        credit = initial_carry(ChunkInputs(1, 0, p, c, layout, jnp), n)[0].credit
        pledged = (c.treasury0 * c.pledged_share)[:, :, None]
        net_price = jnp.exp(p.log_spot)[:, None] + jnp.zeros((layout.n_assets, n), dtype)

        def body(units: Any, k: Any) -> tuple[Any, None]:
            for _ in range(CRYPTO_SALES_PER_STEP):
                need = jnp.sum(units * net_price[None, :, :], axis=1) * jnp.astype(0.001 * (k + 1), dtype)
                _, units = sell_crypto(need, units, pledged, net_price, jnp)
            return units.astype(dtype), None

        return cpu_ns_per_path_step(body, credit.units, n, steps)

    rows: list[tuple[str, Callable[[], float]]] = [
        ("market step (draws, factors, levels)", lambda: timed(False, False, bounded_recoveries)),
        ("+ credit step without the recovery waterfall", lambda: timed(True, False, no_waterfall)),
        ("+ recovery waterfall (bounded gather)", lambda: timed(True, False, bounded_recoveries)),
        ("+ fan-chart counts (the whole step)", lambda: timed(True, True, bounded_recoveries)),
        (f"the step's {CRYPTO_SALES_PER_STEP} crypto sales alone", crypto_sales),
    ]
    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}, bench.yaml float32, {n} paths x {steps} steps")
    for name, measure in rows:
        print(f"{name:48s} {measure():9.0f} ns CPU per path-step", flush=True)


if __name__ == "__main__":
    main()
