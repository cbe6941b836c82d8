"""Crypto block: Merton jump diffusion with a two-state regime chain (docs/model.md 4.1-4.2).

Two stages, both maximum likelihood:

1. The regime chain, from log returns over about a month (the model's step): statsmodels'
   `MarkovRegression` with a switching mean and variance (Hamilton filter, Kim smoother). The
   regime with the larger variance is labelled tight; its switching probabilities per interval
   become the model's monthly ones, p = 1 - (1 - q)^(1 / (12 dt)), with delta-method errors.
2. The jump diffusion of each regime, from the returns at the data's own frequency (daily for
   market closes) inside the intervals the smoother assigns to that regime (probability > 0.5).
   In regime R a return over dt years is a Poisson mixture of normals, exactly how the simulator
   samples the jump sum (N mu_J + sqrt(N) sigma_J Z_J):

       P(N = n) = Poisson(n; lambda_R dt)
       r | N = n ~ Normal(m_R dt + n mu_J,R, sigma_R^2 dt + n sigma_J,R^2)
       m_R = mu_R - sigma_R^2 / 2 - lambda_R kbar_R,  kbar_R = exp(mu_J,R + sigma_J,R^2 / 2) - 1

   maximised with scipy (L-BFGS-B; the jump rate is bounded by `max_jump_rate` so that fat
   tails from volatility clustering are not read as hundreds of tiny jumps a year); standard
   errors from the inverse numerical Hessian (statsmodels' numdiff), the drift mu_R by the
   delta method.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, logsumexp
from statsmodels.tools.numdiff import approx_hess3
from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

from gpusim.calibrate.data import DataError, Series
from gpusim.calibrate.estimates import Estimate, Fit, delta_method, monthly_probability

MAX_JUMPS = 10
"""Jumps per observation summed in the likelihood: P(N > 10) is below 1e-7 for lambda dt up to 1."""

MAX_JUMP_RATE = 60.0
"""Default upper bound of the jump intensity, jumps a year (about one a week)."""

MIN_RETURNS_PER_REGIME = 60
"""Returns a regime needs for its jump-diffusion fit."""

REGIMES = ("easy", "tight")
NAMES = ("drift", "vol", "jump_rate", "jump_mean", "jump_std")
UNITS = ("per year", "per sqrt(year)", "jumps per year", "log size", "log size")


def merton_loglike(theta: np.ndarray, returns: np.ndarray, dt: np.ndarray) -> float:
    """Log-likelihood of log returns under the jump diffusion, theta = (m, ln sigma, ln lambda, mu_J, ln sigma_J)."""
    m, log_s, log_lam, mu_j, log_sj = theta
    n = np.arange(MAX_JUMPS + 1)[:, None]
    mean_jumps = np.exp(log_lam) * dt
    log_weight = n * np.log(mean_jumps) - mean_jumps - gammaln(n + 1)
    var = np.exp(2 * log_s) * dt + n * np.exp(2 * log_sj)
    mean = m * dt + n * mu_j
    log_density = -0.5 * (returns - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)
    return float(logsumexp(log_weight + log_density, axis=0).sum())


def fit_jump_diffusion(returns: np.ndarray, dt: np.ndarray, max_jump_rate: float = MAX_JUMP_RATE) -> tuple[np.ndarray, np.ndarray, float]:
    """Maximum-likelihood (m, ln sigma, ln lambda, mu_J, ln sigma_J), their covariance and the log-likelihood."""
    step = float(np.median(dt))
    scale = 1.4826 * np.median(np.abs(returns - np.median(returns)))
    start = np.array([np.mean(returns) / step, np.log(scale / np.sqrt(step)), np.log(min(10.0, max_jump_rate / 2)), 0.0, np.log(4 * scale)])
    bounds = [(-50.0, 50.0), (np.log(1e-3), np.log(10.0)), (np.log(0.05), np.log(max_jump_rate)), (-2.0, 2.0), (np.log(1e-3), np.log(3.0))]
    best = None
    for log_lam in (start[2], np.log(2.0), np.log(max_jump_rate / 1.5)):
        guess = start.copy()
        guess[2] = min(log_lam, bounds[2][1])
        result = minimize(lambda t: -merton_loglike(t, returns, dt), guess, method="L-BFGS-B", bounds=bounds)
        if best is None or result.fun < best.fun:
            best = result
    hessian = approx_hess3(best.x, lambda t: merton_loglike(t, returns, dt))
    try:
        cov = np.linalg.inv(-hessian)
    except np.linalg.LinAlgError:
        cov = np.full((5, 5), np.inf)
    return best.x, cov, -float(best.fun)


def _config_parameters(theta: np.ndarray) -> np.ndarray:
    """(mu, sigma, lambda, mu_J, sigma_J) of the config from the likelihood's parameters."""
    m, s, lam, mu_j, sd_j = theta[0], np.exp(theta[1]), np.exp(theta[2]), theta[3], np.exp(theta[4])
    kbar = np.exp(mu_j + 0.5 * sd_j * sd_j) - 1.0
    return np.array([m + 0.5 * s * s + lam * kbar, s, lam, mu_j, sd_j])


def fit_crypto(series: Series, asset: str, max_jump_rate: float = MAX_JUMP_RATE) -> Fit:
    """Fit the regime chain and each regime's jump diffusion to one asset's closes (column `asset`)."""
    prices = series.values[asset]
    keep = np.isfinite(prices)
    dates = np.array(series.dates)[keep]
    log_price = np.log(prices[keep])
    years = series.years[keep]
    returns, dt = np.diff(log_price), np.diff(years)
    step = float(np.median(dt))
    per_month = max(1, round(1.0 / (12.0 * step)))
    edges = np.arange(0, len(log_price), per_month)
    if len(edges) < 36:
        raise DataError(f"{series.source}, column {asset}: {len(edges) - 1} months of closes, at least 36 needed for a regime fit")
    coarse = np.diff(log_price[edges])
    coarse_step = float(np.median(np.diff(years[edges])))
    chain = MarkovRegression(coarse, k_regimes=2, trend="c", switching_variance=True)
    fitted = chain.fit(search_reps=20, rng=np.random.default_rng(0), disp=False)
    variance = np.asarray(fitted.params[chain.parameters["variance"]])
    tight = int(variance[1] > variance[0])
    smoothed = np.asarray(fitted.smoothed_marginal_probabilities)
    p_tight_coarse = smoothed[:, tight] if smoothed.shape[1] == 2 else smoothed[tight]
    # each fine return belongs to the regime of the coarse interval holding it
    owner = np.minimum(np.arange(len(returns)) // per_month, len(coarse) - 1)
    p_tight = p_tight_coarse[owner]

    def switching(p: np.ndarray) -> np.ndarray:
        leave = {0: 1.0 - p[0], 1: p[1]}  # statsmodels: p[0->0], p[1->0]
        return np.array([monthly_probability(leave[1 - tight], coarse_step), monthly_probability(leave[tight], coarse_step)])

    transition = chain.parameters["regime_transition"]
    p_value, p_se = delta_method(
        switching, np.asarray(fitted.params[transition]), np.asarray(fitted.cov_params())[transition][:, transition]
    )

    estimates: list[Estimate] = []
    spec: dict[str, Any] = {"name": asset, "spot": round(float(np.exp(log_price[-1])), 6)}
    diagnostics: dict[str, Any] = {
        "returns": len(returns),
        "from": str(dates[0]),
        "to": str(dates[-1]),
        "months for the regime chain": len(coarse),
    }
    values: dict[str, list[tuple[float, float]]] = {name: [] for name in NAMES}
    for regime in REGIMES:
        inside = (p_tight > 0.5) if regime == "tight" else (p_tight <= 0.5)
        if inside.sum() < MIN_RETURNS_PER_REGIME:
            raise DataError(
                f"{series.source}, column {asset}: only {int(inside.sum())} returns fall in the {regime} regime, "
                f"at least {MIN_RETURNS_PER_REGIME} needed (use a longer series)"
            )
        theta, cov, loglike = fit_jump_diffusion(returns[inside], dt[inside], max_jump_rate)
        value, se = delta_method(_config_parameters, theta, cov)
        for name, v, e in zip(NAMES, value, se, strict=True):
            values[name].append((float(v), float(e)))
        diagnostics[f"{regime}: returns"] = int(inside.sum())
        diagnostics[f"{regime}: log-likelihood"] = round(loglike, 2)
        if np.exp(theta[2]) > 0.98 * max_jump_rate:
            diagnostics[f"{regime}: jump rate"] = f"at its bound {max_jump_rate:g}/yr (fat tails the diffusion does not explain)"
    for name, unit in zip(NAMES, UNITS, strict=True):
        spec[name] = {}
        for regime, (v, e) in zip(REGIMES, values[name], strict=True):
            estimates.append(Estimate(f"crypto.assets.{asset}.{name}.{regime}", v, e, unit))
            spec[name][regime] = round(v, 6)
    current = "tight" if p_tight[-1] > 0.5 else "easy"
    regime_fragment: dict[str, Any] = {"initial": current}
    for name, v, e in zip(("p_easy_to_tight", "p_tight_to_easy"), p_value, p_se, strict=True):
        estimates.append(Estimate(f"regime.{name}", float(v), float(e), "per month"))
        regime_fragment[name] = round(float(v), 6)
    diagnostics["regime chain log-likelihood"] = round(float(fitted.llf), 2)
    diagnostics["share of months in tight"] = round(float(p_tight_coarse.mean()), 3)
    diagnostics["regime at the last date"] = current
    fragment = {"regime": regime_fragment, "crypto": {"assets": [spec]}}

    def plot(figure: Any) -> None:
        top, bottom = figure.subplots(2, 1, sharex=True)
        top.semilogy(dates, np.exp(log_price), lw=0.8)
        top.set_ylabel(f"{asset} close, USD")
        top.set_title(f"{asset}: closes and the smoothed probability of the tight regime")
        bottom.fill_between(dates[edges[1:]], p_tight_coarse, step="pre", alpha=0.5)
        bottom.set_ylabel("P(tight)")
        bottom.set_ylim(0, 1)

    state = {
        "last_date": str(dates[-1]),
        "spot": float(np.exp(log_price[-1])),
        "regime": current,
        "asset": asset,
        "p_tight": float(p_tight[-1]),
    }
    return Fit("crypto", series.source, estimates, diagnostics, fragment, plot, state)
