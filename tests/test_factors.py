"""Statistical checks of the market factors (docs/model.md 4) against closed forms (docs/model.md 9), and
the checks that the factor and slot tables set every layout that depends on them.

Every Monte Carlo check uses a fixed seed and a tolerance of Z_TOL standard errors, where the
standard error is computed from the same sample (the se of a sample mean, of a sample variance
through the fourth central moment, binomial se of a share). Deterministic checks (income
approach, launch drops) compare with direct sums to rounding. Scenarios are built from the small
scenario of conftest.py, changed section by section.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from helpers import small_mapping

import gpusim.backends
import gpusim.engine
from gpusim.backends.kernel_config import SHARED_CONSTANTS, config_header, constants_header
from gpusim.engine import RunResult
from gpusim.model import constants
from gpusim.model.constants import DefaultReason
from gpusim.model.factor_table import CREDIT_RATIOS, FACTORS_BY_NAME, OBSERVED_FACTORS, saved_columns, saved_width
from gpusim.model.market import Draws, MarketView, draw_step, income_value
from gpusim.model.params import build_market_params, per_step_probability
from gpusim.model.slots import SLOT_ENTRIES
from gpusim.output.write import PATH_FACTORS
from gpusim.scenario import Scenario, validate_mapping
from gpusim.spec import RunSpec, build_spec
from gpusim.statistics import FAN_QUANTILES, N_BINS

Z_TOL = 4.0
"""Statistical tolerance, in Monte Carlo standard errors."""

Edit = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------------------------------
# Helpers


def scenario(name: str, *edits: Edit) -> Scenario:
    """The small scenario of conftest.py with the edits applied in order, validated."""
    data = small_mapping(name=name)
    for edit in edits:
        edit(data)
    return validate_mapping(data, name)


def simulate(s: Scenario, n_paths: int, seed: int) -> RunResult:
    """Run the numpy backend and keep every path."""
    return gpusim.engine.run(
        build_spec(s), gpusim.backends.get_backend("numpy"), n_paths=n_paths, seed=seed, save_paths=n_paths, show_progress=False
    )


def one_regime(regime: str = "easy") -> Edit:
    def edit(m: dict[str, Any]) -> None:
        m["regime"] = {"initial": regime, "p_easy_to_tight": 0.0, "p_tight_to_easy": 0.0}

    return edit


def btc_only(m: dict[str, Any]) -> None:
    m["crypto"]["assets"] = [a for a in m["crypto"]["assets"] if a["name"] == "BTC"]
    m["crypto"]["correlation"] = None


def no_obsolescence(m: dict[str, Any]) -> None:
    m["compute"]["obsolescence"]["launches"] = []
    m["compute"]["obsolescence"]["random_launch_rate"] = 0.0


def no_volatility(m: dict[str, Any]) -> None:
    """Every random term off: crypto diffusion and jumps, the compute shock, the power price."""
    for asset in m["crypto"]["assets"]:
        asset["vol"] = 0.0
        asset["jump_rate"] = 0.0
    m["compute"]["shock"]["vol"] = 0.0
    m["power"]["vol"] = 0.0


def grid(steps_per_year: int, n_steps: int) -> Edit:
    def edit(m: dict[str, Any]) -> None:
        m["time"] = {"start": "2026-01-01", "steps_per_year": steps_per_year, "n_steps": n_steps}

    return edit


def mean_se(x: np.ndarray) -> tuple[float, float]:
    """Sample mean and its standard error."""
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def var_se(x: np.ndarray) -> tuple[float, float]:
    """Sample variance and its standard error sqrt((m4 - s^4) / n) from the fourth central moment."""
    centred = x - x.mean()
    var = float(centred.var(ddof=1))
    m4 = float(np.mean(centred**4))
    return var, math.sqrt(max(m4 - var * var, 0.0) / x.size)


def cov_se(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sample covariance and its standard error (se of the mean of the centred products)."""
    prod = (x - x.mean()) * (y - y.mean())
    return float(prod.sum() / (x.size - 1)), float(prod.std(ddof=1) / math.sqrt(x.size))


def assert_close(what: str, estimate: float, exact: float, se: float, k: float = Z_TOL) -> None:
    error = estimate - exact
    print(f"{what}: estimate {estimate:.6g} exact {exact:.6g} error {error:+.3g} se {se:.3g} z {error / se:+.2f}")
    assert se > 0.0, f"{what}: zero standard error"
    assert abs(error) < k * se, f"{what}: estimate {estimate:.6g} vs exact {exact:.6g}: error {error:.3g} > {k} se ({se:.3g})"


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes_call(s0: float, strike: float, t: float, r: float, sigma: float) -> float:
    sd = sigma * math.sqrt(t)
    d1 = (math.log(s0 / strike) + (r + 0.5 * sigma * sigma) * t) / sd
    return s0 * norm_cdf(d1) - strike * math.exp(-r * t) * norm_cdf(d1 - sd)


def merton_call(s0: float, strike: float, t: float, r: float, sigma: float, lam: float, mu_j: float, sigma_j: float) -> float:
    """Merton (1976): a Poisson mixture of Black-Scholes prices."""
    kbar = math.exp(mu_j + 0.5 * sigma_j**2) - 1.0
    lam_prime = lam * (1.0 + kbar)
    price = 0.0
    for n in range(200):
        weight = math.exp(-lam_prime * t + n * math.log(lam_prime * t) - math.lgamma(n + 1.0)) if lam_prime > 0 else float(n == 0)
        r_n = r - lam * kbar + n * math.log1p(kbar) / t
        sigma_n = math.sqrt(sigma**2 + n * sigma_j**2 / t)
        price += weight * black_scholes_call(s0, strike, t, r_n, sigma_n)
        if n > lam_prime * t and weight < 1e-18:
            break
    return price


def asset(m: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in m["crypto"]["assets"] if a["name"] == name)


def by_regime(value: Any, regime: str) -> float:
    return float(value[regime]) if isinstance(value, dict) else float(value)


# ---------------------------------------------------------------------------------------
# 1. Merton jump diffusion: moments of ln S_T


@pytest.mark.parametrize("regime", ["easy", "tight"])
def test_jump_diffusion_log_moments(regime: str) -> None:
    """Mean, variance of ln S_t (BTC and ETH) and their covariance against the Merton closed forms."""
    s = scenario(f"jumps-{regime}", one_regime(regime))
    n_paths, seed = 40_000, 101 if regime == "easy" else 102
    res = simulate(s, n_paths, seed)
    raw = s.model_dump(mode="json")
    dt = s.time.dt
    rho = raw["crypto"]["correlation"][regime][0][1]
    sigmas = []
    for i, name in enumerate(("BTC", "ETH")):
        a = asset(raw, name)
        mu, sigma = by_regime(a["drift"], regime), by_regime(a["vol"], regime)
        lam, mu_j, sigma_j = by_regime(a["jump_rate"], regime), by_regime(a["jump_mean"], regime), by_regime(a["jump_std"], regime)
        sigmas.append(sigma)
        kbar = math.exp(mu_j + 0.5 * sigma_j**2) - 1.0
        for k in (6, s.time.n_steps):
            t = k * dt
            log_ret = np.log(res.saved["crypto"][:, k, i]) - math.log(a["spot"])
            mean, se = mean_se(log_ret)
            assert_close(f"{regime} {name} E ln S_{k}/S_0", mean, (mu - 0.5 * sigma**2 - lam * kbar) * t + lam * t * mu_j, se)
            var, se = var_se(log_ret)
            assert_close(f"{regime} {name} Var ln S_{k}", var, sigma**2 * t + lam * t * (sigma_j**2 + mu_j**2), se)
    # jumps are independent across assets: only the diffusions are correlated
    t = s.time.horizon_years
    x, y = (np.log(res.saved["crypto"][:, -1, i] / res.saved["crypto"][:, 0, i]) for i in range(2))
    cov, se = cov_se(x, y)
    assert_close(f"{regime} Cov(ln BTC, ln ETH)", cov, rho * sigmas[0] * sigmas[1] * t, se)


def test_gbm_moments_weekly() -> None:
    """jump_rate 0 on a weekly grid: ln S_T ~ N((mu - sigma^2/2) T, sigma^2 T) and E S_T = S_0 e^{mu T}."""

    def gbm(m: dict[str, Any]) -> None:
        asset(m, "BTC")["jump_rate"] = 0.0

    s = scenario("gbm", one_regime(), btc_only, gbm, grid(52, 52))
    res = simulate(s, 20_000, 103)
    mu, sigma, s0 = 0.15, 0.50, 90000.0
    for k in (13, 52):
        t = k / 52
        log_ret = np.log(res.saved["crypto"][:, k, 0] / s0)
        mean, se = mean_se(log_ret)
        assert_close(f"GBM E ln S_{k}/S_0", mean, (mu - 0.5 * sigma**2) * t, se)
        var, se = var_se(log_ret)
        assert_close(f"GBM Var ln S_{k}", var, sigma**2 * t, se)
        mean, se = mean_se(res.saved["crypto"][:, k, 0] / s0)
        assert_close(f"GBM E S_{k}/S_0", mean, math.exp(mu * t), se)


def test_jump_counts_are_poisson() -> None:
    """With sigma = sigma_J = 0 the jump count of a step is (ln S_{k+1}/S_k - drift) / mu_J: Poisson(lambda dt)."""
    lam, mu_j = 15.0, -0.05

    def counts_only(m: dict[str, Any]) -> None:
        asset(m, "BTC").update(vol=0.0, jump_rate=lam, jump_mean=mu_j, jump_std=0.0)

    s = scenario("poisson", one_regime(), btc_only, counts_only)
    res = simulate(s, 4_000, 113)
    dt = s.time.dt
    kbar = math.exp(mu_j) - 1.0
    drift = (0.15 - lam * kbar) * dt
    counts = (np.diff(np.log(res.saved["crypto"][:, :, 0]), axis=1) - drift) / mu_j
    n = np.rint(counts)
    np.testing.assert_allclose(counts, n, rtol=0, atol=1e-9)  # whole numbers of jumps
    mean = lam * dt
    for j in range(7):
        p = math.exp(-mean) * mean**j / math.factorial(j)
        assert_close(f"P(N = {j})", float(np.mean(n == j)), p, math.sqrt(p * (1 - p) / n.size))
    var, se = var_se(n.ravel())
    assert_close("Var N", var, mean, se)


def test_regime_switching_uses_current_regime() -> None:
    """Step k -> k+1 uses the parameters of R_k: E ln S_K and E ln r_K are sums of P(R_k) mixtures, k < K."""
    p_et, p_te = 0.3, 0.3

    def chain(m: dict[str, Any]) -> None:
        m["regime"] = {"initial": "easy", "p_easy_to_tight": p_et, "p_tight_to_easy": p_te}

    s = scenario("timing", chain, no_obsolescence, grid(12, 12))
    n_paths = 40_000
    res = simulate(s, n_paths, 114)
    raw = s.model_dump(mode="json")
    dt, n_steps = s.time.dt, s.time.n_steps
    a, b = per_step_probability(p_et, dt), per_step_probability(p_te, dt)
    tight = np.array([a / (a + b) * (1 - (1 - a - b) ** k) for k in range(n_steps + 1)])  # P(R_k tight)
    btc = asset(raw, "BTC")
    per_step = {}
    for regime in ("easy", "tight"):
        mu, sigma = by_regime(btc["drift"], regime), by_regime(btc["vol"], regime)
        lam, mu_j, sigma_j = (by_regime(btc[key], regime) for key in ("jump_rate", "jump_mean", "jump_std"))
        kbar = math.exp(mu_j + 0.5 * sigma_j**2) - 1.0
        per_step[regime] = (mu - 0.5 * sigma**2 - lam * kbar) * dt + lam * dt * mu_j
    delta = raw["compute"]["deflation"]
    log_btc = np.log(res.saved["crypto"][:, :, 0] / res.saved["crypto"][:, :1, 0])
    log_rate = np.log(res.saved["rental_rate"][:, :, 0] / res.saved["rental_rate"][:, :1, 0])
    for k in (1, 6, n_steps):
        w = tight[:k]  # regimes R_0 .. R_{k-1} drive the steps up to t_k
        exact = float(np.sum((1 - w) * per_step["easy"] + w * per_step["tight"]))
        mean, se = mean_se(log_btc[:, k])
        assert_close(f"E ln S_{k}/S_0 under switching", mean, exact, se)
        # ln r_k - ln r_0 = -sum_{j<k} delta_{R_j} dt + X_k with E X_k = 0 whatever the regimes
        exact = -float(np.sum((1 - w) * delta["easy"] + w * delta["tight"])) * dt
        mean, se = mean_se(log_rate[:, k])
        assert_close(f"E ln r_{k}/r_0 under switching", mean, exact, se)


# ---------------------------------------------------------------------------------------
# 2. Merton (1976) European call


@pytest.mark.slow
@pytest.mark.parametrize(
    ("lam", "mu_j", "sigma_j"),
    [(15.0, -0.01, 0.135), (2.0, -0.12, 0.25)],
    ids=["frequent-small-jumps", "rare-large-jumps"],
)
def test_merton_call_price(lam: float, mu_j: float, sigma_j: float) -> None:
    """Risk-neutral BTC (drift = r): discounted mean payoff vs the Merton series, several strikes."""
    r, sigma, s0 = 0.04, 0.5, 90000.0

    def risk_neutral(m: dict[str, Any]) -> None:
        btc = asset(m, "BTC")
        btc.update(drift=r, vol=sigma, jump_rate=lam, jump_mean=mu_j, jump_std=sigma_j)

    s = scenario("merton", one_regime(), btc_only, risk_neutral, grid(12, 12))
    res = simulate(s, 50_000, 104 if lam > 5 else 105)
    t = s.time.horizon_years
    s_t = res.saved["crypto"][:, -1, 0]
    discount = math.exp(-r * t)
    mean, se = mean_se(discount * s_t)
    assert_close(f"lambda={lam} E e^-rT S_T", mean, s0, se)
    control = discount * s_t - s0  # mean zero under the risk-neutral drift
    for moneyness in (0.7, 1.0, 1.3, 2.0):
        strike = moneyness * s0
        payoff = discount * np.maximum(s_t - strike, 0.0)
        exact = merton_call(s0, strike, t, r, sigma, lam, mu_j, sigma_j)
        mean, se = mean_se(payoff)
        assert_close(f"lambda={lam} call K/S0={moneyness}", mean, exact, se)
        # the same with the discounted spot as control variate: a test several times sharper
        beta = float(np.cov(payoff, control)[0, 1] / control.var(ddof=1))
        mean, se = mean_se(payoff - beta * control)
        assert_close(f"lambda={lam} call K/S0={moneyness} (control variate)", mean, exact, se)


def test_merton_series_reduces_to_black_scholes() -> None:
    """Sanity of the oracle itself: without jumps it is Black-Scholes; a call struck at ~0 is worth S_0."""
    assert merton_call(100.0, 110.0, 1.0, 0.03, 0.4, 0.0, 0.0, 0.0) == pytest.approx(black_scholes_call(100.0, 110.0, 1.0, 0.03, 0.4))
    # E[S_T] = S_0 e^{rT} under the jump measure: a call at strike ~0 is worth S_0
    assert merton_call(100.0, 1e-9, 1.0, 0.03, 0.4, 5.0, -0.1, 0.2) == pytest.approx(100.0, rel=1e-9)


# ---------------------------------------------------------------------------------------
# 3. Exact OU: compute shock X and the log power price


def test_ou_compute_shock_and_power_price() -> None:
    """X recovered from rental rates and ln power: exact OU mean, variance, autocovariance; corr(Z_X, Z_BTC) = rho."""
    kappa, sigma_x, rho = 1.5, 0.30, 0.2
    p0, p_bar, kappa_p, sigma_p = 0.10, 0.07, 1.0, 0.2

    def setup(m: dict[str, Any]) -> None:
        asset(m, "BTC")["jump_rate"] = 0.0  # so that a BTC log return is its diffusion alone
        m["power"] = {"price": p0, "long_run": p_bar, "mean_reversion": kappa_p, "vol": sigma_p}

    s = scenario("ou", one_regime(), no_obsolescence, setup)
    res = simulate(s, 40_000, 106)
    dt, delta = s.time.dt, 0.25
    rates = res.saved["rental_rate"]
    log_r0 = np.log(rates[:, 0, :])
    steps = np.arange(s.time.n_steps + 1)
    x_all = np.log(rates) - log_r0[:, None, :] + delta * dt * steps[None, :, None]  # (n, K+1, G)
    # both generations see the same X (no obsolescence): deterministic identity
    np.testing.assert_allclose(x_all[..., 0], x_all[..., 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(x_all[:, 0, :], 0.0, atol=1e-15)
    x = x_all[..., 0]
    for k in (1, 6, 24):
        t = k * dt
        mean, se = mean_se(x[:, k])
        assert_close(f"OU E X_{k}", mean, 0.0, se)
        var, se = var_se(x[:, k])
        assert_close(f"OU Var X_{k}", var, sigma_x**2 * (1 - math.exp(-2 * kappa * t)) / (2 * kappa), se)
    var6 = sigma_x**2 * (1 - math.exp(-2 * kappa * 6 * dt)) / (2 * kappa)
    cov, se = cov_se(x[:, 6], x[:, 24])
    assert_close("OU Cov(X_6, X_24)", cov, math.exp(-kappa * 18 * dt) * var6, se)
    # utilization is the logistic of X (deterministic given X): u = u_max / (1 + exp(-(a + b X)))
    np.testing.assert_allclose(res.saved["utilization"], 0.95 / (1 + np.exp(-(2.0 + 2.0 * x))), rtol=1e-12)
    # one step: X_1 = s_x (rho Z_BTC + sqrt(1 - rho^2) Z_own), ln S_1/S_0 = drift + sigma sqrt(dt) Z_BTC
    btc_return = np.log(res.saved["crypto"][:, 1, 0] / res.saved["crypto"][:, 0, 0])
    corr = float(np.corrcoef(x[:, 1], btc_return)[0, 1])
    assert_close("corr(X_1, ln S_1 BTC)", corr, rho, (1 - rho**2) / math.sqrt(x.shape[0]))

    log_p = np.log(res.saved["power_price"])
    np.testing.assert_allclose(log_p[:, 0], math.log(p0), rtol=1e-15)
    for k in (1, 6, 24):
        t = k * dt
        mean, se = mean_se(log_p[:, k])
        assert_close(f"log-OU E ln P_{k}", mean, math.log(p_bar) + (math.log(p0) - math.log(p_bar)) * math.exp(-kappa_p * t), se)
        var, se = var_se(log_p[:, k])
        assert_close(f"log-OU Var ln P_{k}", var, sigma_p**2 * (1 - math.exp(-2 * kappa_p * t)) / (2 * kappa_p), se)


# ---------------------------------------------------------------------------------------
# 4. The regime chain


@pytest.mark.slow
@pytest.mark.parametrize(
    ("steps_per_year", "n_steps", "initial", "p_et", "p_te"),
    [(12, 60, "easy", 0.03, 0.10), (52, 104, "tight", 0.20, 0.30)],
    ids=["monthly-from-easy", "weekly-from-tight"],
)
def test_regime_chain(steps_per_year: int, n_steps: int, initial: str, p_et: float, p_te: float) -> None:
    """P(R_k tight) = pi + (1{R_0 tight} - pi)(1 - a - b)^k with per-step a, b; long-run share pi."""

    def chain(m: dict[str, Any]) -> None:
        m["regime"] = {"initial": initial, "p_easy_to_tight": p_et, "p_tight_to_easy": p_te}

    s = scenario("chain", btc_only, grid(steps_per_year, n_steps), chain)
    n_paths = 20_000 if steps_per_year == 12 else 10_000
    res = simulate(s, n_paths, 107 if steps_per_year == 12 else 108)
    dt = s.time.dt
    a, b = per_step_probability(p_et, dt), per_step_probability(p_te, dt)
    pi = a / (a + b)
    start = 1.0 if initial == "tight" else 0.0
    share = res.tight_share
    assert share is not None
    assert share[0] == start
    # the saved regime paths are the same chain
    np.testing.assert_array_equal(res.saved["regime"].mean(axis=0), share)
    for k in (1, 3, 6, 12, 24, n_steps):
        exact = pi + (start - pi) * (1 - a - b) ** k
        assert_close(f"P(tight at {k})", float(share[k]), exact, math.sqrt(exact * (1 - exact) / n_paths))
    assert abs((1 - a - b) ** n_steps) < 1e-3  # the last step is in the long run
    assert_close("long-run tight share", float(share[-1]), pi, math.sqrt(pi * (1 - pi) / n_paths))
    # one-step transition frequencies, pooled over all steps and paths
    regime = res.saved["regime"]
    before, after = regime[:, :-1].ravel(), regime[:, 1:].ravel()
    for name, state, p in (("easy->tight", 0, a), ("tight->easy", 1, b)):
        here = before == state
        moved = float(np.mean(after[here] != state))
        # pooled transitions of one path are independent Bernoulli draws given the visited states
        assert_close(f"{name} per step", moved, p, math.sqrt(p * (1 - p) / here.sum()))


# ---------------------------------------------------------------------------------------
# 5. Income-approach value


def direct_income_value(
    rate: Any, util: Any, power: Any, remaining: Any, kw: float, pue: float, dbar: float, y: Any, scrap: float, dt: float
) -> np.ndarray:
    """h sum_{j=1..n} 1{u r e^{-dbar j dt} >= c} (u r e^{-dbar j dt} - c) e^{-y j dt}, floored at scrap; loops over j."""
    h = 8760.0 * dt
    cost = kw * pue * power
    total = np.zeros(np.broadcast_shapes(np.shape(rate), np.shape(remaining)))
    for j in range(1, int(np.max(remaining)) + 1):
        net = util * rate * math.exp(-dbar * j * dt) - cost
        total = total + np.where((j <= remaining) & (net >= 0.0), net * np.exp(-y * j * dt), 0.0)
    return np.maximum(scrap, h * total)


@pytest.mark.parametrize("dbar", [0.25, 0.0])
def test_income_value_against_direct_sum(dbar: float) -> None:
    """income_value on a grid of rates, utilizations, power prices, lives and both regimes vs a month-by-month sum."""

    def valuation(m: dict[str, Any]) -> None:
        m["compute"]["valuation"]["expected_deflation"] = dbar

    s = scenario(f"value-dbar{dbar}", valuation)
    p = build_market_params(s)
    dt = s.time.dt
    raw = s.model_dump(mode="json")
    yields = raw["compute"]["valuation"]["discount_yield"]
    pue = raw["compute"]["valuation"]["pue"]
    gens = raw["compute"]["generations"]

    rate, util, power, life, tight = (
        g.ravel()
        for g in np.meshgrid(
            [0.25, 0.9, 2.2, 4.5], [0.35, 0.8, 0.95], [0.03, 0.07, 0.25, 2.5], [0, 1, 7, 40, 131], [False, True], indexing="ij"
        )
    )
    n = rate.size
    rates = np.stack([rate, 1.4 * rate])  # (G, n): the newer generation rents for more
    remaining = np.stack([life, life + 3]).astype(np.float64)
    value = income_value(rates, util, power, remaining, tight, p, dt, np)
    assert value.shape == (2, n)

    for g, gen in enumerate(gens):
        y = np.where(tight, yields["tight"], yields["easy"])
        expected = direct_income_value(rates[g], util, power, remaining[g], gen["kw_per_gpu"], pue, dbar, y, gen["scrap_value"], dt)
        np.testing.assert_allclose(value[g], expected, rtol=1e-10, atol=0)
        cost = gen["kw_per_gpu"] * pue * power
        # rent no longer pays for power: value is scrap
        unpaid = util * rates[g] <= cost
        assert unpaid.any()
        np.testing.assert_array_equal(value[g][unpaid], gen["scrap_value"])
        assert (value[g] > 10 * gen["scrap_value"]).any()
        if dbar > 0:
            # cases where rent falls below power before the end of life (the cut-off binds)
            with np.errstate(divide="ignore"):
                cutoff = np.floor(np.log(util * rates[g] / cost) / (dbar * dt))
            binds = (~unpaid) & (cutoff < remaining[g]) & (value[g] > gen["scrap_value"])
            assert binds.any()
        # the tight regime discounts at a higher yield: worth less wherever above scrap
        easy_v, tight_v = value[g][~tight], value[g][tight]
        above = easy_v > gen["scrap_value"]
        assert (tight_v[above] < easy_v[above]).all()


def test_engine_values_use_income_approach() -> None:
    """Saved gpu_value equals the direct sum on the saved rate, utilization, power and the calendar life left."""
    s = scenario("engine-value", one_regime(), no_obsolescence)
    res = simulate(s, 200, 109)
    raw = s.model_dump(mode="json")
    dt = s.time.dt
    life_end_months = {"H100": 38, "B200": 60}  # release + 6 years, in months after 2026-01
    for g, gen in enumerate(raw["compute"]["generations"]):
        for k in (0, 1, 11, 24):
            expected = direct_income_value(
                res.saved["rental_rate"][:, k, g],
                res.saved["utilization"][:, k],
                res.saved["power_price"][:, k],
                float(life_end_months[gen["name"]] - k),
                gen["kw_per_gpu"],
                raw["compute"]["valuation"]["pue"],
                raw["compute"]["valuation"]["expected_deflation"],
                raw["compute"]["valuation"]["discount_yield"]["easy"],
                gen["scrap_value"],
                dt,
            )
            np.testing.assert_allclose(res.saved["gpu_value"][:, k, g], expected, rtol=1e-10)


# ---------------------------------------------------------------------------------------
# 6. Launch drops


def test_scheduled_launch_drops() -> None:
    """With no randomness, each step's log-rent change is -delta dt, minus theta m^eta at a launch."""
    theta, eta, delta = 0.10, 1.5, 0.25

    def calendar(m: dict[str, Any]) -> None:
        a100 = dict(m["compute"]["generations"][0], name="A100", release="2020-06-01", rental_rate=1.1, kw_per_gpu=0.8)
        m["compute"]["generations"].insert(0, a100)
        m["compute"]["obsolescence"] = {
            "drop": theta,
            "curvature": eta,
            "random_launch_rate": 0.0,
            "launches": [
                {"name": "Rubin", "date": "2026-04-01"},  # t = 3/12: in (t_2, t_3], step 2
                {"name": "Feynman", "date": "2027-03-01"},  # t = 14/12: step 13
                {"name": "Next1", "date": "2027-08-15"},  # two launches in (t_19, t_20]: step 19
                {"name": "Next2", "date": "2027-08-20"},
            ],
        }

    s = scenario("launches", one_regime(), no_volatility, calendar)
    res = simulate(s, 8, 110)
    log_r = np.log(res.saved["rental_rate"])  # (n, K+1, G), G = A100, H100, B200
    diffs = np.diff(log_r, axis=1)
    behind0 = np.array([2.0, 1.0, 0.0])  # generations between each and the newest simulated one
    launches = {2: 1, 13: 1, 19: 2}
    done = 0
    for k in range(s.time.n_steps):
        expected = np.full(3, -delta * s.time.dt)
        for j in range(1, launches.get(k, 0) + 1):
            expected -= theta * (behind0 + done + j) ** eta
        done += launches.get(k, 0)
        np.testing.assert_allclose(diffs[:, k, :], np.broadcast_to(expected, diffs[:, k, :].shape), rtol=0, atol=1e-12, err_msg=f"step {k}")
    # the second launch hits every generation harder than the first (behind counts grow)
    assert (diffs[0, 13, :] < diffs[0, 2, :]).all()
    # and an older generation harder than a newer one at the same launch
    assert (np.diff(diffs[0, 2, :]) > 0).all()


def test_random_launches() -> None:
    """Unscheduled launches: at most one a step with probability 1 - e^{-lambda dt}; each drop uses the behind count."""
    theta, eta, delta, lam = 0.10, 1.5, 0.25, 3.0

    def random_only(m: dict[str, Any]) -> None:
        m["compute"]["obsolescence"] = {"drop": theta, "curvature": eta, "random_launch_rate": lam, "launches": []}

    s = scenario("random-launches", one_regime(), no_volatility, random_only)
    n_paths = 4_000
    res = simulate(s, n_paths, 111)
    dt = s.time.dt
    extra = -np.diff(np.log(res.saved["rental_rate"]), axis=1) - delta * dt  # (n, K, G), obsolescence drop per step
    newest = extra[..., -1]
    launched = newest > 1e-9
    # the newest simulated generation is 0 behind at t_0; its drop at the m-th launch is theta m^eta
    count_before = np.cumsum(launched, axis=1) - launched
    expected = np.where(launched[..., None], theta * (np.array([1.0, 0.0])[None, None, :] + count_before[..., None] + 1) ** eta, 0.0)
    np.testing.assert_allclose(extra, expected, rtol=0, atol=1e-12)
    p = 1 - math.exp(-lam * dt)
    share, se = mean_se(launched.ravel().astype(np.float64))
    assert_close("random launch per step", share, p, math.sqrt(p * (1 - p) / launched.size))
    total = launched.sum(axis=1).astype(np.float64)
    var, se = var_se(total)
    assert_close("Var launches by T", var, s.time.n_steps * p * (1 - p), se)


# ---------------------------------------------------------------------------------------
# 7. Fan quantiles


def test_fan_quantiles_match_saved_paths() -> None:
    """res.fan within one bin width (log) + Z_TOL se of numpy quantiles of all saved paths."""
    s = scenario("fan")
    n_paths = 20_000
    res = simulate(s, n_paths, 112)
    q = np.array(FAN_QUANTILES)
    worst = 0.0
    for factor in ("crypto", "rental_rate"):
        grid = FACTORS_BY_NAME[factor].fan
        assert grid.log
        width = (grid.hi - grid.lo) / N_BINS
        values, se = res.fan[factor]
        for c in range(values.shape[0]):
            for k in (0, 1, 6, 12, 24):
                sample = np.quantile(res.saved[factor][:, k, c], q)
                gap = np.abs(np.log(values[c, :, k]) - np.log(sample))
                allowed = width + Z_TOL * se[c, :, k] / values[c, :, k]
                worst = max(worst, float(np.max(gap / allowed)))
                assert (gap <= allowed).all(), f"{factor}[{c}] step {k}: log gap {gap} > {allowed}"
    print(f"fan: worst gap / allowance {worst:.3f}")


# ---------------------------------------------------------------------------------------
# 8. The factor table and the slot table drive every layout


def test_factor_table_sets_the_view_the_fans_and_the_saved_paths(small_spec: RunSpec) -> None:
    """MarketView, the fan grids, the saved paths, the kernel's saved columns and the HDF5 dims
    all follow OBSERVED_FACTORS and CREDIT_RATIOS, in their order."""
    layout = small_spec.layout
    names = tuple(f.name for f in OBSERVED_FACTORS)
    assert MarketView._fields == names
    assert small_spec.fans == names + tuple(f.name for f in CREDIT_RATIOS)
    for factor in OBSERVED_FACTORS + CREDIT_RATIOS:
        binning = small_spec.binnings[factor.name]
        assert (binning.log, binning.lo, binning.hi) == (factor.fan.log, factor.fan.lo, factor.fan.hi)
        assert binning.n_components == max(factor.width(layout), 1)

    chunk = gpusim.backends.get_backend("numpy").run_chunk(small_spec, 5, 0, 3, 2)
    assert set(chunk.saved) == {*names, "regime"}
    for factor in OBSERVED_FACTORS:
        width = factor.width(layout)
        assert chunk.saved[factor.name].shape == (2, layout.n_steps + 1, *((width,) if width else ()))
        assert PATH_FACTORS[factor.name] == (("path", "step", *factor.component_dims), factor.units)

    covered = []
    for column in saved_columns(layout).values():
        covered += [column] if isinstance(column, int) else list(range(column.start, column.stop))
    assert covered == list(range(saved_width(layout)))


def test_draws_follow_the_slot_table(small_spec: RunSpec) -> None:
    """Draws has one field per slot entry, shaped by the entry's count."""
    layout = small_spec.layout
    assert Draws._fields == tuple(entry.name for entry in SLOT_ENTRIES)
    draws = draw_step(7, 0, 5, 0, layout, np.float64, xnp)
    for entry in SLOT_ENTRIES:
        count = layout.slots.counts[entry.name]
        assert getattr(draws, entry.name).shape == ((5,) if entry.per_path else (count, 5)), entry.name


def test_generated_headers_carry_reasons_constants_and_saved_columns(small_spec: RunSpec, tmp_path: Path) -> None:
    """The reason codes and shared constants (kernels/constants.cuh) and the saved-column table
    (the config header) hold the Python values: a C++ compile of static_asserts checks each one."""
    columns = saved_columns(small_spec.layout)
    expected: dict[str, int | float] = {
        **{f"REASON_{reason.name}": reason.value for reason in DefaultReason},
        **{name: getattr(constants, name) for name in SHARED_CONSTANTS},
        **{f"SAVE_COL_{name.upper()}": c if isinstance(c, int) else c.start for name, c in columns.items()},
        "SAVE_WIDTH": saved_width(small_spec.layout),
    }
    assert {"REASON_PAYMENT", "REASON_COVENANT_DSCR", "REASON_COVENANT_LTV", "REASON_MATURITY", "POISSON_CAP"} <= set(expected)

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or c++) on PATH: the generated headers are not compiled")
    (tmp_path / "gpusim_config.cuh").write_text(config_header(small_spec))
    (tmp_path / "constants.cuh").write_text(constants_header())
    checks = "\n".join(f"static_assert(gpusim::cfg::{name} == {value!r}, \"{name}\");" for name, value in expected.items())
    (tmp_path / "check.cpp").write_text(f'#include "gpusim_config.cuh"\n#include "constants.cuh"\n{checks}\n')
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-I", str(tmp_path), str(tmp_path / "check.cpp")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
