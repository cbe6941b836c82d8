"""Rental block: deflation, launch drops and the OU shock of log rental rates (docs/model.md 4.3-4.5).

The model says, for generation g at time t (years),

    ln r^g_t = a_g - delta t - sum_{launches j <= t} theta (behind_g,j)^eta + X_t,

with X an Ornstein-Uhlenbeck process, sampled at the data's step dt an AR(1) with
phi = exp(-kappa dt). All of it is one regression with AR(1) errors on the log rates of every
generation at once, fitted by exact Gaussian maximum likelihood (a statsmodels state-space
model, Kalman filter, missing cells allowed): a level a_g per generation, one time trend (the
deflation delta, the same in both regimes) and one launch regressor per "generations behind"
count m (1 from the launch that leaves the generation m behind, inside its observed history),
so each drop is counted once, at the date it happens, and the trend does not absorb it: no
double counting. The generations share the one shock X (the model's common shock); with two
or more columns each also gets white measurement noise of one standard deviation sigma_e
(quotes of different generations do not move exactly together). Then

    kappa = -ln(phi) / dt,   sigma_X = sd(innovation) sqrt(2 kappa / (1 - phi^2)),

and theta, eta from the launch coefficients b_m = theta m^eta by weighted least squares with
their covariance (scipy.optimize.least_squares); with one m only, eta is not identified.
Standard errors: inverse numerical Hessian of the likelihood, the delta method after it.

Launch dates are the generations' release dates (from the base scenario, else a column's first
date), plus launches of generations that have no column (`launches`).
"""

from __future__ import annotations

import warnings
from datetime import date as Date
from typing import Any

import numpy as np
import statsmodels.api as sm
from scipy.optimize import least_squares
from scipy.special import expit, logit
from statsmodels.tsa.statespace.mlemodel import MLEModel

from gpusim.calibrate.data import DataError, Series
from gpusim.calibrate.estimates import Estimate, Fit, delta_method


class RentalRates(MLEModel):
    """Log rental rates (date, generation) = level - delta t - launch drops + X_t (+ noise), X an AR(1)."""

    def __init__(self, log_rates: np.ndarray, regressors: np.ndarray, n_levels: int, noise: bool):
        super().__init__(log_rates, k_states=1, k_posdef=1, initialization="stationary")
        self.regressors = regressors  # (G, K, T): levels, -t, -launch indicators
        self.noise = noise
        self.n_levels = n_levels
        self["design"] = np.ones((log_rates.shape[1], 1))
        self["selection"] = np.ones((1, 1))

    @property
    def n_coefficients(self) -> int:
        return self.regressors.shape[1]

    @property
    def param_names(self) -> list[str]:
        return [f"x{i}" for i in range(self.n_coefficients)] + ["phi", "innovation_var"] + (["noise_var"] if self.noise else [])

    def transform_params(self, unconstrained: np.ndarray) -> np.ndarray:
        constrained = np.array(unconstrained, dtype=float)
        k = self.n_coefficients
        constrained[k] = expit(unconstrained[k])  # an OU sampled at dt: 0 < phi = exp(-kappa dt) < 1
        constrained[k + 1 :] = unconstrained[k + 1 :] ** 2
        return constrained

    def untransform_params(self, constrained: np.ndarray) -> np.ndarray:
        unconstrained = np.array(constrained, dtype=float)
        k = self.n_coefficients
        unconstrained[k] = logit(constrained[k])
        unconstrained[k + 1 :] = np.sqrt(constrained[k + 1 :])
        return unconstrained

    def update(self, params: np.ndarray, **kwargs: Any) -> None:
        params = super().update(params, **kwargs)
        k = self.n_coefficients
        self["obs_intercept"] = np.einsum("gkt,k->gt", self.regressors, params[:k])
        self["transition", 0, 0] = params[k]
        self["state_cov", 0, 0] = params[k + 1]
        noise = params[k + 2] if self.noise else 0.0
        self["obs_cov"] = np.eye(self.k_endog) * noise


def _behind_counts(series: Series, generations: list[str], releases: dict[str, Date], extra_launches: list[Date]) -> np.ndarray:
    """Generations behind the newest, (generation, date): launches after a generation's release, up to the date.

    A generation's release is `releases[g]` (the base scenario's) or else its first date in the
    data; the launches are every generation's release plus `extra_launches`.
    """
    dates = np.array([d.toordinal() for d in series.dates])
    own = {}
    for g in generations:
        first = series.dates[int(np.argmax(np.isfinite(series.values[g])))]
        own[g] = releases.get(g, first).toordinal()
    launches = np.sort(np.array([*own.values(), *(d.toordinal() for d in extra_launches)]))
    behind = np.zeros((len(generations), len(dates)), dtype=int)
    for i, g in enumerate(generations):
        later = launches[launches > own[g]]
        behind[i] = np.searchsorted(later, dates, side="right")
    return behind


def fit_rental(series: Series, launches: list[Date] = (), releases: dict[str, Date] | None = None) -> Fit:
    """Fit deflation, launch drops and the OU shock to a wide table of rental rates (one column per generation).

    `releases` dates each generation's own launch (the base scenario's `release`; a column not
    in it is taken as released at its first date); `launches` adds launches of generations that
    have no column.
    """
    generations = list(series.values)
    step = series.mean_step_years()
    t = series.years
    behind = _behind_counts(series, generations, releases or {}, list(launches))
    top = int(behind.max())
    n_gen, n_t = len(generations), len(t)
    y = np.log(np.array([series.values[g] for g in generations]))  # (G, T)
    at_first = np.array([behind[i, int(np.argmax(np.isfinite(y[i])))] for i in range(len(generations))])
    dropped = behind > at_first[:, None]  # a launch after the generation's first observation
    ms = [m for m in range(1, top + 1) if np.any(dropped & (behind >= m) & (at_first[:, None] < m))]

    def launched(g: int, k: int, m: int) -> bool:
        """The launch that leaves g m behind has happened by date k, inside g's observed history."""
        return bool(behind[g, k] >= m > at_first[g])

    def design(g: int, k: int) -> list[float]:
        level = [1.0 if h == g else 0.0 for h in range(n_gen)]
        drops = [-float(launched(g, k, m)) for m in ms]
        return [*level, -t[k], *drops]

    rows = [(g, k) for g in range(n_gen) for k in range(n_t) if np.isfinite(y[g, k])]
    regressors = np.array([[design(g, k) for k in range(n_t)] for g in range(n_gen)]).transpose(0, 2, 1)
    n_coef = regressors.shape[1]
    if len(rows) < n_coef + 12:
        raise DataError(f"{series.source}: {len(rows)} rates for {n_coef + 3} parameters, at least {n_coef + 12} needed")
    x_all = np.array([regressors[g, :, k] for g, k in rows])
    y_all = np.array([y[g, k] for g, k in rows])
    ols = sm.OLS(y_all, x_all).fit()
    resid = np.full((n_gen, n_t), np.nan)
    for (g, k), e in zip(rows, ols.resid, strict=True):
        resid[g, k] = e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # dates where no generation is quoted stay NaN
        shock0 = np.nanmean(resid, axis=0)
    ok = np.isfinite(shock0[1:]) & np.isfinite(shock0[:-1])
    phi0 = float(np.clip(np.corrcoef(shock0[1:][ok], shock0[:-1][ok])[0, 1], 0.05, 0.98))
    noise = n_gen > 1
    model = RentalRates(y.T, regressors, n_gen, noise)
    start = np.concatenate([ols.params, [phi0, np.nanvar(shock0) * (1 - phi0**2)], [0.1 * np.nanvar(resid)] if noise else []])
    result = model.fit(start_params=start, disp=False, maxiter=500, cov_type="approx")
    params, cov = np.asarray(result.params), np.asarray(result.cov_params())
    beta = params[:n_coef]
    phi, innovation_var = float(params[n_coef]), float(params[n_coef + 1])
    shock = np.asarray(result.smoothed_state[0])

    def ou(x: np.ndarray) -> np.ndarray:
        kappa = -np.log(x[0]) / step
        return np.array([kappa, np.sqrt(x[1]) * np.sqrt(2 * kappa / (1 - x[0] ** 2))])

    ou_cov = cov[n_coef : n_coef + 2, n_coef : n_coef + 2]
    (kappa, sigma), (kappa_se, sigma_se) = delta_method(ou, np.array([phi, innovation_var]), ou_cov)
    delta, delta_se = float(beta[n_gen]), float(np.sqrt(cov[n_gen, n_gen]))
    estimates = [
        Estimate("compute.deflation", delta, delta_se, "per year", "same in both regimes"),
        Estimate("compute.shock.mean_reversion", float(kappa), float(kappa_se), "per year"),
        Estimate("compute.shock.vol", float(sigma), float(sigma_se), "per sqrt(year)"),
    ]
    compute: dict[str, Any] = {
        "deflation": {"easy": round(delta, 6), "tight": round(delta, 6)},
        "shock": {"mean_reversion": round(float(kappa), 6), "vol": round(float(sigma), 6)},
    }
    diagnostics: dict[str, Any] = {
        "observations": len(rows),
        "from": str(series.dates[0]),
        "to": str(series.dates[-1]),
        "step (years)": round(step, 5),
        "AR(1) of the shock, phi": round(phi, 4),
        "log-likelihood": round(float(result.llf), 2),
        "measurement noise sd": round(float(np.sqrt(params[n_coef + 2])), 4) if noise else "none (one generation)",
    }
    if phi < 0.05:
        diagnostics["warning"] = "phi near 0: no persistence at this step, so kappa is not identified (try a monthly series)"
    b = beta[n_gen + 1 :]
    cov_b = cov[n_gen + 1 : n_coef, n_gen + 1 : n_coef]
    for m, value, se in zip(ms, b, np.sqrt(np.diag(cov_b)), strict=True):
        diagnostics[f"log drop at {m} behind"] = f"{value:.4f} ± {se:.4f}"
    if len(ms) >= 2:
        weight = np.linalg.cholesky(np.linalg.inv(cov_b))
        m_arr = np.array(ms, dtype=float)
        solution = least_squares(
            lambda p: weight.T @ (b - p[0] * m_arr ** p[1]), x0=[max(b[0], 1e-3), 1.0], bounds=([0.0, 1e-3], [10.0, 10.0])
        )
        jac = solution.jac
        cov_te = np.linalg.pinv(jac.T @ jac)
        (theta, eta), (theta_se, eta_se) = solution.x, np.sqrt(np.diag(cov_te))
        estimates += [
            Estimate("compute.obsolescence.drop", float(theta), float(theta_se), "log size"),
            Estimate("compute.obsolescence.curvature", float(eta), float(eta_se), "exponent"),
        ]
        compute["obsolescence"] = {"drop": round(float(theta), 6), "curvature": round(float(eta), 6)}
    elif len(ms) == 1:
        estimates.append(
            Estimate("compute.obsolescence.drop", float(b[0] / ms[0]), float(np.sqrt(cov_b[0, 0])), "log size", "curvature not identified")
        )
        diagnostics["obsolescence"] = "one launch count only: curvature eta not identified, kept from the base scenario"
    else:
        diagnostics["obsolescence"] = "no launch inside the data: drop and curvature kept from the base scenario"
    last = {g: float(series.values[g][np.isfinite(series.values[g])][-1]) for g in generations}
    compute["generations"] = [{"name": g, "rental_rate": round(last[g], 6)} for g in generations]
    fitted_levels = {
        g: beta[i] - delta * t - np.array([sum(bm * launched(i, k, m) for m, bm in zip(ms, b, strict=True)) for k in range(n_t)])
        for i, g in enumerate(generations)
    }

    def plot(figure: Any) -> None:
        top_axis, bottom = figure.subplots(2, 1, sharex=True)
        for g in generations:
            line = top_axis.plot(series.dates, series.values[g], lw=1, label=g)[0]
            top_axis.plot(series.dates, np.exp(fitted_levels[g]), ls="--", color=line.get_color(), lw=0.8)
        top_axis.set_yscale("log")
        top_axis.set_ylabel("USD per GPU-hour")
        top_axis.set_title("Rental rates (solid) and trend with launch drops (dashed)")
        top_axis.legend(fontsize=7)
        bottom.plot(series.dates, shock, lw=1)
        bottom.axhline(0, color="grey", lw=0.5)
        bottom.set_ylabel("shock X (log)")

    state = {
        "last_date": str(series.dates[-1]),
        "rates": last,
        "shock": float(shock[-1]),
        "noise_sd": float(np.sqrt(params[n_coef + 2])) if noise else 0.0,
    }
    return Fit("rental", series.source, estimates, diagnostics, {"compute": compute}, plot, state)
