"""What charts and tables read from a run's Results: labels along a dimension, the time axis,
the scenario's name and covenants. Each tolerates a field the file does not have (a
factor-only run, an older file) by returning an empty or neutral value."""

from __future__ import annotations

from typing import Any

import numpy as np


def has_credit(results: Any) -> bool:
    """True for a run with borrowers (credit outcomes and summaries), False for a factor-only run."""
    summary = results.summary
    return results.outcomes is not None and summary is not None and "pd" in summary and summary.sizes.get("borrower", 0) > 0


def dimension_labels(ds: Any, dim: str) -> list[str]:
    if ds is None or dim not in ds.coords:
        return []
    return [str(v) for v in ds[dim].values]


def coordinate_labels(ds: Any, name: str, n: int) -> np.ndarray:
    return np.asarray([str(v) for v in ds[name].values]) if name in ds.coords else np.array([""] * n)


def time_axis(ds: Any) -> np.ndarray:
    if "time" in ds.coords or "time" in ds:
        return np.asarray(ds["time"].values, dtype=float)
    return np.arange(ds.sizes["step"], dtype=float)


def saved_path_count(results: Any) -> int:
    paths = results.paths
    return 0 if paths is None else int(paths.sizes.get("path", 0))


def borrower_type(summary: Any, borrower: str) -> str:
    if summary is None or "borrower_type" not in summary.coords:
        return ""
    return str(summary["borrower_type"].sel(borrower=borrower).values)


def scenario_name(results: Any) -> str:
    return str(results.attrs.get("scenario", getattr(results.scenario, "name", "")))


def time_axis_label(results: Any, short: bool = False) -> str:
    start = getattr(getattr(results.scenario, "time", None), "start", None)
    if short or start is None:
        return "years from scenario start"
    return f"years from scenario start ({start})"


def covenant_levels(scenario: Any, borrower: str) -> dict[str, dict[float, list[str]]]:
    """{'dscr_min': {level: [instrument names]}, 'ltv_max': {...}} for one borrower's instruments."""
    out: dict[str, dict[float, list[str]]] = {"dscr_min": {}, "ltv_max": {}}
    for b in getattr(scenario, "borrowers", None) or []:
        if b.name != borrower:
            continue
        for inst in b.debt:
            if inst.covenants is None:
                continue
            for key in out:
                level = getattr(inst.covenants, key)
                if level is not None:
                    out[key].setdefault(float(level), []).append(inst.name)
    return out


def integration_discount(scenario: Any) -> float | None:
    market = getattr(scenario, "secondary_market", None)
    h = getattr(market, "integration_discount", None)
    return None if h is None else float(h)
