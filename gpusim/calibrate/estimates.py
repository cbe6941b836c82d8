"""What every block's fit returns: parameters with standard errors, diagnostics, a config fragment.

A `Fit` is what `gpusim calibrate` prints (parameters with standard errors, fit diagnostics),
what it writes (`fragment`, a partial scenario that merges into a base through `extends:`) and
what it draws (`plot`, a function of a matplotlib Figure).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """One fitted parameter: `path` is its config field (e.g. crypto.assets.BTC.vol.easy)."""

    path: str
    value: float
    se: float
    unit: str
    note: str = ""


@dataclass
class Fit:
    """A block's fit: parameters, diagnostics (name -> number or text), the YAML fragment, plots."""

    kind: str
    source: str
    estimates: list[Estimate]
    diagnostics: dict[str, Any]
    fragment: dict[str, Any]
    plot: Callable[[Any], None] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    """What a forward simulation needs beyond the fragment (last observation, current regime)."""

    def value(self, path: str) -> float:
        return next(e.value for e in self.estimates if e.path == path)


def delta_method(function: Callable[[np.ndarray], np.ndarray], x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and standard errors of `function(x)` when x has covariance `cov` (first-order delta method)."""
    x = np.asarray(x, dtype=float)
    value = np.atleast_1d(np.asarray(function(x), dtype=float))
    steps = np.sqrt(np.finfo(float).eps) * np.maximum(np.abs(x), 1e-3)
    jac = np.column_stack([(np.atleast_1d(function(x + np.eye(len(x))[i] * steps[i])) - value) / steps[i] for i in range(len(x))])
    var = np.einsum("ij,jk,ik->i", jac, cov, jac)
    return value, np.sqrt(np.maximum(var, 0.0))


def monthly_probability(per_step: float, step_years: float) -> float:
    """A per-observation switching probability as the model's monthly one: p = 1 - (1 - q)^(1 / (12 dt)).

    The inverse of docs/model.md 4.1, pi = 1 - (1 - p)^(12 dt).
    """
    return float(1.0 - (1.0 - per_step) ** (1.0 / (12.0 * step_years)))
