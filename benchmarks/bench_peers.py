"""gpusim's path generation against QuantLib's, on a sub-task both can do, in one run on one CPU.

The sub-task: GBM and Merton (1976) jump-diffusion paths of one asset, `--paths` x `--steps`
monthly steps, float64, every path kept in memory as prices. A speed figure only compares
correct generators, so each generator's paths are first checked against the closed forms
(docs/model.md 9): the mean and variance of ln(S_t / S_0) and the mean of S_t / S_0 at half the
horizon and at the horizon, each as a z-score with its Monte Carlo standard error, and the
European call on the paths against Black-Scholes (GBM) or Merton's series (jumps).

Generators:
- gpusim, numpy and JAX on the CPU: the model's own crypto equation (`factors.log_crypto_step`
  and `jump_counts` on `draw_step`'s Philox slots, docs/model.md 3 and 4) on a one-asset market
  that never leaves the easy regime, built from bench.yaml's BTC parameters. It draws the whole
  slot table of that market every step (10 slots in 3 Philox blocks, where GBM needs one
  normal): the cost of the fixed random-stream contract. numpy runs on one thread; JAX (jit,
  steps as a scan, compile time apart) uses XLA's own threads.
- QuantLib (PyPI `QuantLib`): `GaussianPathGenerator` on a `BlackScholesMertonProcess` (GBM),
  driven from Python one path at a time, with the path copied into numpy, which is what a
  Python user of QuantLib gets; the same with only `next()` and the horizon's price read back
  (the copy's cost apart); and `MCEuropeanEngine`, which generates the same paths in C++ and
  keeps only the payoff (no Python per path), for QuantLib's generator alone.
  `Merton76Process` has no path generator (its `diffusion` is not implemented: QuantLib prices
  it analytically only); `BatesProcess` with zero volatility of variance and v0 = theta = sigma^2
  is the same jump diffusion and has one (`GaussianMultiPathGenerator`, 4 normals per step:
  price, variance, jump count, jump size), so QuantLib's Merton row uses it.

Run from the repository root (needs `pip install 'gpusim[bench]'` for QuantLib):

    python benchmarks/bench_peers.py --paths 50000 --steps 120 --json peers.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpusim.bench import cpu_model
from gpusim.engine import chunks
from gpusim.model.market import draw_step, jump_counts, log_crypto_step
from gpusim.model.params import cast_params
from gpusim.scenario import load_scenario
from gpusim.spec import RunSpec, build_spec

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 16384  # paths per chunk for gpusim's generators: the numpy backend's fastest size
Z_LIMIT = 4.0  # largest |z| of a moment before a generator counts as wrong


@dataclass(frozen=True)
class Model:
    """One asset: drift mu (the risk-neutral rate, so that QuantLib's process is the same), volatility
    sigma, and Poisson jumps of rate lam a year with normal log sizes (jump_mean, jump_std)."""

    name: str
    spot: float
    mu: float
    sigma: float
    lam: float
    jump_mean: float
    jump_std: float

    @property
    def kbar(self) -> float:
        return math.exp(self.jump_mean + 0.5 * self.jump_std**2) - 1.0

    def price_moments(self, t: float) -> tuple[float, float]:
        """E[S_t / S_0] and E[(S_t / S_0)^2]: the price's standard error comes from these, since
        the sample spread of a heavy-tailed price understates it."""
        drift = self.mu - 0.5 * self.sigma**2 - self.lam * self.kbar
        jumps2 = math.exp(2.0 * self.jump_mean + 2.0 * self.jump_std**2) - 1.0
        return math.exp(self.mu * t), math.exp(2.0 * drift * t + 2.0 * self.sigma**2 * t + self.lam * t * jumps2)

    def log_moments(self, t: float) -> tuple[float, float]:
        """Mean and variance of ln(S_t / S_0)."""
        mean = (self.mu - 0.5 * self.sigma**2 - self.lam * self.kbar) * t + self.lam * t * self.jump_mean
        return mean, self.sigma**2 * t + self.lam * t * (self.jump_mean**2 + self.jump_std**2)

    def call(self, strike: float, t: float) -> float:
        """European call: Black-Scholes, or Merton's (1976) series over the number of jumps."""
        if self.lam == 0.0:
            return _black_scholes(self.spot, strike, self.mu, self.sigma, t)
        lam_prime = self.lam * (1.0 + self.kbar)
        total, n = 0.0, 0
        while True:
            sigma_n = math.sqrt(self.sigma**2 + n * self.jump_std**2 / t)
            r_n = self.mu - self.lam * self.kbar + n * math.log(1.0 + self.kbar) / t
            weight = math.exp(-lam_prime * t + n * math.log(lam_prime * t) - math.lgamma(n + 1))
            total += weight * _black_scholes(self.spot, strike, r_n, sigma_n, t)
            n += 1
            if n > lam_prime * t and weight < 1e-16:
                return total


def _black_scholes(spot: float, strike: float, rate: float, sigma: float, t: float) -> float:
    d1 = (math.log(spot / strike) + (rate + 0.5 * sigma**2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    cdf = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731
    return spot * cdf(d1) - strike * math.exp(-rate * t) * cdf(d2)


def models(config: str) -> list[Model]:
    """GBM and Merton with the config's BTC numbers in the easy regime (drift 5 %: a rate, so
    that the option check is a risk-neutral price)."""
    btc = next(a for a in load_scenario(config).crypto.assets if a.name == "BTC")
    merton = Model("merton", btc.spot, 0.05, btc.vol.easy, btc.jump_rate.easy, btc.jump_mean.easy, btc.jump_std.easy)
    return [Model("gbm", merton.spot, merton.mu, merton.sigma, 0.0, 0.0, 0.0), merton]


def gpusim_spec(config: str, model: Model, steps: int) -> RunSpec:
    """A market of one asset with the model's parameters that never leaves the easy regime."""
    scenario = load_scenario(config)
    btc = next(a for a in scenario.crypto.assets if a.name == "BTC")
    asset = btc.model_copy(
        update={
            name: type(getattr(btc, name))(easy=value, tight=value)
            for name, value in {
                "drift": model.mu,
                "vol": model.sigma,
                "jump_rate": model.lam,
                "jump_mean": model.jump_mean,
                "jump_std": model.jump_std,
            }.items()
        }
        | {"spot": model.spot}
    )
    crypto = scenario.crypto.model_copy(update={"assets": [asset], "correlation": None})
    regime = scenario.regime.model_copy(update={"initial": "easy", "p_easy_to_tight": 0.0})
    time_grid = scenario.time.model_copy(update={"n_steps": steps, "steps_per_year": 12})
    one_asset = scenario.model_copy(update={"crypto": crypto, "regime": regime, "time": time_grid, "borrowers": []})
    return build_spec(one_asset, "float64")


def gpusim_numpy(spec: RunSpec, seed: int, n_paths: int, jumps: bool) -> np.ndarray:
    """Prices (n_paths, steps + 1) from gpusim's equations on numpy, chunk by chunk, one thread."""
    layout, p = spec.layout, cast_params(spec.market, np, np.float64)
    out = np.empty((n_paths, layout.n_steps + 1))
    for start, count in chunks(n_paths, CHUNK):
        tight = np.zeros(count, dtype=bool)
        log_s = np.repeat(p.log_spot[:, None], count, axis=1)
        out[start : start + count, 0] = np.exp(log_s[0])
        for k in range(layout.n_steps):
            d = draw_step(seed, start, count, k, layout, np.float64, np)
            n_jumps = jump_counts(d.jump_count, tight, p.jump_cdf, np) if jumps else 0.0
            # one asset: the regime's Cholesky factor is 1, so the diffusion normal is Z_S itself
            log_s = log_crypto_step(log_s, d.crypto_diffusion, n_jumps, d.jump_size, tight, p, np)
            out[start : start + count, k + 1] = np.exp(log_s[0])
    return out


def gpusim_jax(spec: RunSpec, seed: int, n_paths: int, jumps: bool) -> tuple[Callable[[], np.ndarray], float]:
    """The same generator under jax.jit with the steps as a scan; returns it (compiled) and the compile seconds."""
    import jax
    import jax.numpy as jnp

    from gpusim.backends.jax_backend import enable_x64

    enable_x64()
    layout, p = spec.layout, cast_params(spec.market, jnp, jnp.float64)

    def chunk_function(count: int) -> Any:
        def generate(path_start: Any) -> Any:
            tight = jnp.zeros(count, dtype=bool)

            def step(log_s: Any, k: Any) -> tuple[Any, Any]:
                d = draw_step(seed, path_start, count, k, layout, jnp.float64, jnp)
                n_jumps = jump_counts(d.jump_count, tight, p.jump_cdf, jnp) if jumps else 0.0
                log_s = log_crypto_step(log_s, d.crypto_diffusion, n_jumps, d.jump_size, tight, p, jnp)
                return log_s, jnp.exp(log_s[0])

            log_s0 = jnp.broadcast_to(p.log_spot[:, None], (1, count))
            _, prices = jax.lax.scan(step, log_s0, jnp.arange(layout.n_steps, dtype=jnp.int32))
            return jnp.concat((jnp.exp(log_s0), prices), axis=0).T

        return jax.jit(generate).lower(jax.ShapeDtypeStruct((), jnp.int64)).compile()

    start = time.perf_counter()
    compiled = {count: chunk_function(count) for count in {c for _, c in chunks(n_paths, CHUNK)}}
    compile_s = time.perf_counter() - start

    def generate_all() -> np.ndarray:
        out = np.empty((n_paths, layout.n_steps + 1))
        for first, count in chunks(n_paths, CHUNK):
            out[first : first + count] = np.asarray(compiled[count](np.int64(first)))
        return out

    return generate_all, compile_s


def quantlib_processes(model: Model) -> tuple[Any, Any]:
    """QuantLib's process for the model (GBM: Black-Scholes-Merton; jumps: Bates with zero vol of
    variance, i.e. Merton 1976) and its evaluation set-up."""
    import QuantLib as ql

    today = ql.Date(1, 1, 2026)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    spot = ql.QuoteHandle(ql.SimpleQuote(model.spot))
    rate = ql.YieldTermStructureHandle(ql.FlatForward(today, model.mu, day_count))
    dividend = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, day_count))
    if model.lam == 0.0:
        vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), model.sigma, day_count))
        return ql.BlackScholesMertonProcess(spot, dividend, rate, vol), today
    variance = model.sigma**2
    return ql.BatesProcess(rate, dividend, spot, variance, 1.0, variance, 0.0, 0.0, model.lam, model.jump_mean, model.jump_std), today


def quantlib_paths(model: Model, seed: int, n_paths: int, steps: int, horizon: float, copy: bool = True) -> np.ndarray:
    """Prices (n_paths, steps + 1) from QuantLib's path generator, driven from Python path by path.
    Without `copy` only the price at the horizon is read back (the rest stays NaN): what the
    generator costs with one Python call a path but without copying the path out."""
    import QuantLib as ql

    process, _ = quantlib_processes(model)
    factors = process.factors()
    normals = ql.GaussianRandomSequenceGenerator(ql.UniformRandomSequenceGenerator(steps * factors, ql.UniformRandomGenerator(seed)))
    out = np.full((n_paths, steps + 1), np.nan)
    if factors == 1:
        generator = ql.GaussianPathGenerator(process, horizon, steps, normals, False)
        paths = (generator.next().value() for _ in range(n_paths))
    else:
        generator = ql.GaussianMultiPathGenerator(process, list(np.linspace(0.0, horizon, steps + 1)), normals, False)
        paths = (generator.next().value()[0] for _ in range(n_paths))
    if copy:
        for i, path in enumerate(paths):
            out[i] = list(path)
    else:
        for i, path in enumerate(paths):
            out[i, -1] = path.back()
    return out


def quantlib_engine(model: Model, seed: int, n_paths: int, steps: int, horizon: float) -> float | None:
    """The at-the-money call at the horizon priced by QuantLib's Monte Carlo engine (paths generated and consumed in C++), or
    None where QuantLib has no such engine for the process (Bates: only a Heston engine)."""
    import QuantLib as ql

    process, today = quantlib_processes(model)
    if model.lam != 0.0:
        return None
    maturity = today + round(horizon * 365)  # Actual/365 Fixed: the horizon in years exactly
    option = ql.EuropeanOption(ql.PlainVanillaPayoff(ql.Option.Call, model.spot), ql.EuropeanExercise(maturity))
    option.setPricingEngine(ql.MCEuropeanEngine(process, "pseudorandom", timeSteps=steps, requiredSamples=n_paths, seed=seed))
    return float(option.NPV())


def check_moments(model: Model, prices: np.ndarray, dt: float) -> dict[str, float]:
    """z-scores of the log mean, log variance and price mean at half the horizon and at the
    horizon, and of the discounted at-the-money call payoff against the closed-form price
    (times where the generator returned no prices, NaN, are left out)."""
    steps = prices.shape[1] - 1
    n = prices.shape[0]
    z: dict[str, float] = {}
    call_step = min(steps, round(1.0 / dt))
    for k in (steps // 2, steps):
        if np.isnan(prices[:, k]).all():
            continue
        t = k * dt
        x = np.log(prices[:, k] / model.spot)
        mean, var = model.log_moments(t)
        centred = x - x.mean()
        fourth = float(np.mean(centred**4))
        z[f"log_mean_t{k}"] = (x.mean() - mean) / math.sqrt(var / n)
        z[f"log_var_t{k}"] = (x.var() - var) / math.sqrt(max(fourth - x.var() ** 2, 1e-300) / n)
        first, second = model.price_moments(t)
        z[f"price_mean_t{k}"] = (np.mean(prices[:, k] / model.spot) - first) / math.sqrt((second - first**2) / n)
    # the call at one year (or the horizon, if sooner): over ten years the payoff's tail is so
    # heavy that its sample spread understates the standard error on 10^4-10^5 paths
    if not np.isnan(prices[:, call_step]).all():
        payoff = math.exp(-model.mu * call_step * dt) * np.maximum(prices[:, call_step] - model.spot, 0.0)
        z[f"call_t{call_step}"] = (payoff.mean() - model.call(model.spot, call_step * dt)) / (payoff.std() / math.sqrt(n))
    return {k: float(v) for k, v in z.items()}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """The last result and the median seconds of `repeats` calls."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return result, float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs/bench.yaml"), help="BTC's parameters come from here")
    parser.add_argument("--paths", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=120, help="monthly steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import QuantLib as ql

    dt, horizon = 1.0 / 12.0, args.steps / 12.0
    path_steps = args.paths * args.steps
    load = os.getloadavg()
    versions = f"Python {platform.python_version()}, numpy {np.__version__}, QuantLib {ql.__version__}"
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {versions}")
    print(f"sub-task: {args.paths:,} paths x {args.steps} monthly steps, float64, median of {args.repeats}; load average {load[0]:.2f}")
    rows: list[dict[str, Any]] = []
    for model in models(args.config):
        spec = gpusim_spec(args.config, model, args.steps)
        jumps = model.lam > 0.0
        jax_generate, jax_compile = gpusim_jax(spec, args.seed, args.paths, jumps)
        numpy_label, jax_label = "gpusim numpy (1 thread)", "gpusim JAX CPU (jit + scan)"
        generators: list[tuple[str, Callable[[], Any], float | None]] = [
            (numpy_label, lambda spec=spec, jumps=jumps: gpusim_numpy(spec, args.seed, args.paths, jumps), None),
            (jax_label, jax_generate, jax_compile),
            (
                "QuantLib path generator, from Python",
                lambda model=model: quantlib_paths(model, args.seed, args.paths, args.steps, horizon),
                None,
            ),
            (
                "QuantLib path generator, next() only, no copy",
                lambda model=model: quantlib_paths(model, args.seed, args.paths, args.steps, horizon, copy=False),
                None,
            ),
        ]
        outputs = {}
        for label, generate, compile_s in generators:
            prices, seconds = timed(generate, args.repeats)
            outputs[label] = prices
            rows.append(_row(model, label, seconds, path_steps, compile_s, check_moments(model, prices, dt)))
            if label == jax_label:  # same seed, same Philox slots: the same paths up to rounding
                rows[-1]["max_relative_difference_to_numpy"] = float(np.max(np.abs(prices / outputs[numpy_label] - 1.0)))
        engine_price, seconds = timed(lambda model=model: quantlib_engine(model, args.seed, args.paths, args.steps, horizon), args.repeats)
        if engine_price is not None:  # its standard error is that of the same payoff on as many paths: gpusim's
            z_call = (engine_price - model.call(model.spot, horizon)) / _call_se(outputs[numpy_label], model, horizon)
            rows.append(_row(model, "QuantLib MCEuropeanEngine (C++, payoff only)", seconds, path_steps, None, {"call": z_call}))
    _print(rows)
    if args.json:
        info = {"cpu": cpu_model(), "cores": os.cpu_count(), "quantlib": ql.__version__, "numpy": np.__version__, "load_average": load}
        Path(args.json).write_text(json.dumps({"machine": info, "paths": args.paths, "steps": args.steps, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")


def _call_se(prices: np.ndarray, model: Model, horizon: float) -> float:
    """Standard error of a Monte Carlo call price on this many paths (from gpusim's paths: same size)."""
    payoff = math.exp(-model.mu * horizon) * np.maximum(prices[:, -1] - model.spot, 0.0)
    return float(payoff.std() / math.sqrt(prices.shape[0]))


def _row(model: Model, label: str, seconds: float, path_steps: int, compile_s: float | None, z: dict[str, float]) -> dict[str, Any]:
    worst = max(abs(v) for v in z.values())
    return {
        "model": model.name,
        "generator": label,
        "seconds": seconds,
        "path_steps_per_s": path_steps / seconds,
        "compile_s": compile_s,
        "z_scores": z,
        "max_abs_z": worst,
        "correct": worst < Z_LIMIT,
    }


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'model':7s} {'generator':46s} {'path-steps/s':>13s} {'seconds':>8s} {'compile s':>9s} {'max |z|':>8s}  moments")
    for r in rows:
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        verdict = "ok" if r["correct"] else "WRONG (no speed figure counts)"
        rate = f"{r['path_steps_per_s']:13,.3g}" if r["correct"] else f"{'-':>13s}"
        print(f"{r['model']:7s} {r['generator']:46s} {rate} {r['seconds']:8.3f} {compile_s:>9s} {r['max_abs_z']:8.2f}  {verdict}")


if __name__ == "__main__":
    main()
