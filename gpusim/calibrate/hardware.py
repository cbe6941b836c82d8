"""Hardware block: economic life, scrap value and discount yield from used-GPU prices by age.

Each row is a used GPU's price with what the valuer of docs/model.md 4.8 sees: the GPU's age,
its rental rate r, the market utilization u and the power cost c (USD per GPU-hour). The model
values it at

    n = (L - age) / dt                               steps of economic life left
    n* = min(n, ln(u r / c) / (dbar dt))             if u r > c, else 0
    V = max(scrap, h [u r a (1 - a^n*) / (1 - a) - c d (1 - d^n*) / (1 - d)]),
    a = exp(-(y + dbar) dt), d = exp(-y dt), h = 8760 dt,

with the valuer's expected deflation dbar and the step dt taken from the base scenario. The
economic life L (years from release), the scrap value and the yield y are fitted by least
squares on log prices (scipy.optimize.least_squares; prices scatter multiplicatively around the
value), standard errors s^2 (J'J)^-1. The simulator floors n and n* to whole steps; the fit uses
them unfloored so that the life is a smooth parameter (the difference is under one step of
income). Scrap is identified only by prices on the floor: without any, it is reported as not
identified and left out of the fragment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import least_squares

from gpusim.calibrate.data import DataError, Table
from gpusim.calibrate.estimates import Estimate, Fit

HOURS_PER_YEAR = 8760.0


def income_value(
    params: np.ndarray, age: np.ndarray, rate: np.ndarray, util: np.ndarray, cost: np.ndarray, dbar: float, dt: float
) -> np.ndarray:
    """docs/model.md 4.8 with continuous n and n*: params = (life in years, scrap USD, yield per year)."""
    life, scrap, y = params
    gross = util * rate
    pays = gross > cost
    n = np.maximum(life - age, 0.0) / dt
    cutoff = np.log(np.where(pays, gross / cost, 1.0)) / max(dbar * dt, 1e-30)
    n_star = np.where(pays, np.minimum(n, cutoff), 0.0)
    a, d = np.exp(-(y + dbar) * dt), np.exp(-y * dt)
    income = gross * a * (1.0 - a**n_star) / (1.0 - a)
    power = cost * d * (1.0 - d**n_star) / (1.0 - d)
    return np.maximum(scrap, HOURS_PER_YEAR * dt * (income - power))


def fit_hardware(table: Table, expected_deflation: float, dt: float = 1.0 / 12.0) -> Fit:
    """Fit economic life, scrap and discount yield to used prices (columns of `table`)."""
    age, price = table.values["age_years"], table.values["price"]
    rate, util, cost = table.values["rental_rate"], table.values["utilization"], table.values["power_cost"]
    if np.any(util > 1.0):
        line = table.lines[int(np.argmax(util > 1.0))]
        raise DataError(f"{table.source} line {line}, column utilization: above 1 (a share of hours)")

    def residuals(params: np.ndarray) -> np.ndarray:
        return np.log(income_value(params, age, rate, util, cost, expected_deflation, dt)) - np.log(price)

    start = np.array([float(age.max()) + 1.0, float(price.min()) * 0.5, 0.15])
    bounds = ([float(age.min()) + dt, 1.0, 1e-3], [50.0, float(price.max()), 2.0])
    solution = least_squares(residuals, start, bounds=bounds, x_scale=[1.0, float(np.median(price)), 0.1])
    fitted = income_value(solution.x, age, rate, util, cost, expected_deflation, dt)
    on_floor = np.isclose(fitted, solution.x[1])
    dof = max(len(price) - 3, 1)
    s2 = float(solution.fun @ solution.fun) / dof
    jac = solution.jac
    free = [0, 2] if not on_floor.any() else [0, 1, 2]
    cov = np.full((3, 3), np.nan)
    cov[np.ix_(free, free)] = s2 * np.linalg.pinv(jac[:, free].T @ jac[:, free])
    se = np.sqrt(np.diag(cov))
    life, scrap, y = (float(v) for v in solution.x)
    estimates = [
        Estimate("compute.generations.*.economic_life_years", life, float(se[0]), "years from release"),
        Estimate("compute.valuation.discount_yield.easy", y, float(se[2]), "per year"),
    ]
    generations = sorted(set(table.text["generation"]))
    spec: list[dict[str, Any]] = [{"name": g, "economic_life_years": round(life, 4)} for g in generations]
    if on_floor.any():
        estimates.insert(1, Estimate("compute.generations.*.scrap_value", scrap, float(se[1]), "USD per GPU"))
        for item in spec:
            item["scrap_value"] = round(scrap, 2)
    diagnostics: dict[str, Any] = {
        "rows": len(price),
        "generations": ", ".join(generations),
        "residual sd of log price": round(float(np.sqrt(s2)), 4),
        "rows valued at scrap": int(on_floor.sum()),
        "expected deflation used (dbar)": expected_deflation,
    }
    if not on_floor.any():
        diagnostics["scrap"] = "not identified: no price sits on the floor; kept from the base scenario"
    fragment = {"compute": {"generations": spec, "valuation": {"discount_yield": {"easy": round(y, 6)}}}}

    def plot(figure: Any) -> None:
        axis = figure.subplots()
        order = np.argsort(age)
        axis.scatter(age, price, s=12, label="used prices")
        axis.plot(age[order], fitted[order], color="C1", lw=1, label="fitted income value")
        axis.set_xlabel("age, years")
        axis.set_ylabel("USD per GPU")
        axis.set_title("Used-GPU prices by age and the fitted income value")
        axis.legend()

    return Fit("hardware", table.source, estimates, diagnostics, fragment, plot, {})
