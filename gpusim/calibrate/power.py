"""Power block: the log-OU power price of docs/model.md 4.7, as an AR(1) on log prices.

Sampled every dt years the model is exactly

    ln P_{t+dt} = c + phi ln P_t + e,   phi = exp(-kappa dt),  c = (1 - phi) ln Pbar,
    sd(e) = sigma_P sqrt((1 - phi^2) / (2 kappa)),

so an ordinary least-squares AR(1) (statsmodels OLS, conditional maximum likelihood) gives
kappa = -ln(phi) / dt, Pbar = exp(c / (1 - phi)) and sigma_P, with delta-method errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import statsmodels.api as sm

from gpusim.calibrate.data import Series
from gpusim.calibrate.estimates import Estimate, Fit, delta_method


def fit_power(series: Series, column: str) -> Fit:
    """Fit the log-OU to one price column (USD per kWh)."""
    keep = np.isfinite(series.values[column])
    log_price = np.log(series.values[column][keep])
    dates = np.array(series.dates)[keep]
    step = float((series.years[keep][-1] - series.years[keep][0]) / (keep.sum() - 1))
    ar = sm.OLS(log_price[1:], sm.add_constant(log_price[:-1])).fit()
    c, phi = ar.params
    sd = float(np.sqrt(ar.scale))
    cov = np.zeros((3, 3))
    cov[:2, :2] = ar.cov_params()
    cov[2, 2] = sd * sd / (2 * ar.nobs)

    def ou(x: np.ndarray) -> np.ndarray:
        kappa = -np.log(x[1]) / step
        return np.array([kappa, np.exp(x[0] / (1 - x[1])), x[2] * np.sqrt(2 * kappa / (1 - x[1] ** 2))])

    value, se = delta_method(ou, np.array([c, phi, sd]), cov)
    estimates = [
        Estimate("power.mean_reversion", float(value[0]), float(se[0]), "per year"),
        Estimate("power.long_run", float(value[1]), float(se[1]), "USD per kWh"),
        Estimate("power.vol", float(value[2]), float(se[2]), "per sqrt(year)"),
    ]
    last = float(np.exp(log_price[-1]))
    fragment = {
        "power": {
            "price": round(last, 6),
            "long_run": round(float(value[1]), 6),
            "mean_reversion": round(float(value[0]), 6),
            "vol": round(float(value[2]), 6),
        }
    }
    diagnostics: dict[str, Any] = {
        "observations": int(keep.sum()),
        "from": str(dates[0]),
        "to": str(dates[-1]),
        "step (years)": round(step, 5),
        "AR(1) phi": round(float(phi), 4),
        "R^2": round(float(ar.rsquared), 3),
        "Durbin-Watson of residuals": round(float(sm.stats.durbin_watson(ar.resid)), 3),
    }
    if phi >= 1:
        diagnostics["warning"] = "phi >= 1: no mean reversion in this sample (kappa <= 0)"

    def plot(figure: Any) -> None:
        axis = figure.subplots()
        axis.plot(dates, np.exp(log_price), lw=1, label=column)
        axis.axhline(value[1], color="grey", ls="--", lw=0.8, label="long-run level")
        axis.set_ylabel("USD per kWh")
        axis.set_title("Power price and its fitted long-run level")
        axis.legend()

    return Fit("power", series.source, estimates, diagnostics, fragment, plot, {"last_date": str(dates[-1]), "price": last})
