"""What charts and tables read from a run's Results: labels along a dimension, the time axis,
the scenario's name and covenants. Each tolerates a field the file does not have (a
factor-only run, an older file) by returning an empty or neutral value."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpusim.model.constants import DefaultReason


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


def instrument_names(results: Any) -> list[str]:
    return dimension_labels(results.summary, "instrument")


def summary_column(results: Any, name: str) -> np.ndarray:
    """A per-instrument (or per-level) summary estimate as floats; NaN where the file lacks it."""
    s = results.summary
    if name in s:
        return np.asarray(s[name].values, dtype=float)
    return np.full(s.sizes.get("instrument", 0), np.nan)


def instrument_owners(results: Any) -> np.ndarray:
    s = results.summary
    return coordinate_labels(s, "instrument_borrower", s.sizes.get("instrument", 0))


def instrument_principal(results: Any) -> np.ndarray:
    """Drawn principal at t0 of each instrument (from the resolved scenario), USD."""
    debt = {inst.name: inst for b in getattr(results.scenario, "borrowers", None) or [] for inst in b.debt}
    return np.array([float(debt[name].principal) if name in debt else np.nan for name in instrument_names(results)])


def instrument_commitment(results: Any) -> np.ndarray:
    """What the lender has at stake at t0: the facility limit for a facility, else the drawn principal, USD."""
    debt = {inst.name: inst for b in getattr(results.scenario, "borrowers", None) or [] for inst in b.debt}
    out = []
    for name in instrument_names(results):
        inst = debt.get(name)
        out.append(np.nan if inst is None else float(inst.commitment if inst.commitment is not None else inst.principal))
    return np.array(out)


def defaulted(results: Any) -> np.ndarray:
    """(path, borrower) True where the borrower defaulted within the horizon."""
    return np.asarray(results.outcomes["default_step"].values) >= 0


def exposure_at_default(results: Any) -> np.ndarray:
    """Mean exposure at default of each instrument over the paths where its borrower defaulted,
    discounted to t0, USD: the mean loss there divided by LGD (LGD = loss / exposure, pooled).
    NaN where no path defaulted or nothing was lost (LGD 0 leaves the exposure unrecoverable)."""
    loss = np.asarray(results.outcomes["loss"].values, dtype=float)
    dead = defaulted(results)
    borrowers = dimension_labels(results.summary, "borrower")
    lgd = summary_column(results, "lgd")
    out = np.full(len(lgd), np.nan)
    for i, owner in enumerate(instrument_owners(results)):
        if owner not in borrowers:
            continue
        mask = dead[:, borrowers.index(owner)]
        if mask.any() and lgd[i] > 0:
            out[i] = float(loss[mask, i].mean()) / lgd[i]
    return out


def default_split(results: Any) -> dict[str, np.ndarray]:
    """Per borrower, shares of all paths: PD by the horizon, split by the reason of default
    (`DefaultReason` labels), and the PD with no loss on any of its instruments (technical defaults)."""
    reason = np.asarray(results.outcomes["default_reason"].values)
    dead = defaulted(results)
    n = max(dead.shape[0], 1)
    loss = np.asarray(results.outcomes["loss"].values, dtype=float)
    owners = instrument_owners(results)
    borrowers = dimension_labels(results.summary, "borrower")
    out = {"pd": dead.sum(axis=0) / n}
    for code in DefaultReason:
        if code is not DefaultReason.NONE:
            out[code.label] = (dead & (reason == int(code))).sum(axis=0) / n
    lossless = np.column_stack([loss[:, owners == b].sum(axis=1) <= 0 for b in borrowers]) if borrowers else dead
    out["no_loss"] = (dead & lossless).sum(axis=0) / n
    return out


def contagion_by_borrower(results: Any) -> dict[str, np.ndarray]:
    """Per borrower: PD by the horizon and EL of its instruments with and without the fire-sale chain."""
    c = results.contagion
    borrowers = dimension_labels(c, "borrower") or dimension_labels(results.summary, "borrower")
    owner = coordinate_labels(c, "instrument_borrower", c.sizes.get("instrument", 0))
    return {
        "borrower": np.array(borrowers, dtype=object),
        "pd_with": np.asarray(c["pd_with_chain"].values, dtype=float),
        "pd_without": np.asarray(c["pd_without_chain"].values, dtype=float),
        "el_with": np.array([float(np.sum(c["el_with_chain"].values[owner == b])) for b in borrowers]),
        "el_without": np.array([float(np.sum(c["el_without_chain"].values[owner == b])) for b in borrowers]),
    }


def contagion_attrs(results: Any) -> dict[str, float]:
    """The contagion share of EL and the portfolio EL with and without the chain, where stored."""
    c = results.contagion
    if c is None:
        return {}
    keys = ("contagion_share_of_el", "portfolio_el_with_chain", "portfolio_el_without_chain")
    return {key: float(c.attrs[key]) for key in keys if key in c.attrs}


def portfolio_el(results: Any) -> tuple[float, float | None]:
    """Portfolio EL discounted to t0 and its standard error, USD."""
    s = results.summary
    el = float(s.attrs["portfolio_el"]) if "portfolio_el" in s.attrs else float(np.nansum(summary_column(results, "el")))
    se = s.attrs.get("portfolio_el_se")
    return el, None if se is None else float(se)


def risk_levels(results: Any) -> dict[str, np.ndarray]:
    """VaR and ES of the portfolio loss at each level, with standard errors, USD; without the chain where stored."""
    s = results.summary
    out = {"level": np.asarray(s["level"].values, dtype=float)}
    for name in ("var", "es", "var_se", "es_se"):
        out[name] = np.asarray(s[name].values, dtype=float) if name in s else np.full(out["level"].size, np.nan)
    c = results.contagion
    if c is not None:
        for name in ("var_without_chain", "es_without_chain"):
            out[name] = np.asarray(c[name].values, dtype=float)
    return out


def portfolio_losses(results: Any) -> np.ndarray:
    return np.asarray(results.outcomes["portfolio_loss"].values, dtype=float)
