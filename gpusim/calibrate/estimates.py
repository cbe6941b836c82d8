"""What every block's fit returns: parameters with standard errors, diagnostics, a config fragment.

A `Fit` is what `gpusim calibrate` prints (parameters with standard errors, fit diagnostics),
what it writes (`fragment`, a partial scenario that merges into a base through `extends:`) and
what it draws (`plot`, a function of a matplotlib Figure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import approx_fprime


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

    def se(self, path: str) -> float:
        return next(e.se for e in self.estimates if e.path == path)


def delta_method(function: Callable[[np.ndarray], np.ndarray], x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and standard errors of `function(x)` when x has covariance `cov` (first-order delta method)."""
    x = np.asarray(x, dtype=float)
    value = np.atleast_1d(np.asarray(function(x), dtype=float))
    steps = np.sqrt(np.finfo(float).eps) * np.maximum(np.abs(x), 1e-3)
    jac = np.column_stack([(np.atleast_1d(function(x + np.eye(len(x))[i] * steps[i])) - value) / steps[i] for i in range(len(x))])
    var = np.einsum("ij,jk,ik->i", jac, cov, jac)
    return value, np.sqrt(np.maximum(var, 0.0))


def gradient(function: Callable[[np.ndarray], float], x: Sequence[float]) -> np.ndarray:
    """Numerical gradient (scipy's forward differences)."""
    return approx_fprime(np.asarray(x, dtype=float), function, np.sqrt(np.finfo(float).eps))


def monthly_probability(per_step: float, step_years: float) -> float:
    """A per-observation switching probability as the model's monthly one: p = 1 - (1 - q)^(1 / (12 dt)).

    The inverse of docs/model.md 4.1, pi = 1 - (1 - p)^(12 dt).
    """
    return float(1.0 - (1.0 - per_step) ** (1.0 / (12.0 * step_years)))


def set_path(tree: dict[str, Any], path: list[str | tuple[str, str]], value: Any) -> None:
    """Put `value` at `path` in a nested mapping; a ("name", X) step enters the list item named X."""
    node: Any = tree
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(step, tuple):
            items = node
            item = next((it for it in items if it.get("name") == step[1]), None)
            if item is None:
                item = {"name": step[1]}
                items.append(item)
            node = item
            continue
        nxt = path[i + 1] if not last else None
        if last:
            node[step] = value
        else:
            node = node.setdefault(step, [] if isinstance(nxt, tuple) else {})
