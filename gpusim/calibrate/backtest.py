"""`gpusim backtest`: fit on data up to a cut-off, simulate forward with gpusim's model, score the realised values.

Parameters are fitted once, on the data dated up to the cut-off, and then frozen. Forecasts start
from monthly origins: the cut-off and the months after it (`origins`), each from the level
observed at that origin, so the score pools many out-of-sample points instead of one path. Each
forecast is the distribution of the simulated market factor (`market_paths`, the numpy
reference of docs/model.md) at 1..horizon months; for crypto the regime at an origin is a mixture
of the two starting regimes, weighted by the fitted probability of the tight regime at the
cut-off carried forward by the fitted monthly chain (the data after the cut-off is not used); for
rental rates the forecast of the quoted index adds the fit's measurement noise (lognormal, the
fitted sd; none with one generation), since that is what the realised quotes carry.

Scores of each realised value y against the simulated sample X (all on log values, so that
scores are comparable across price levels):

- PIT = share of X at or below y (uniform on [0, 1] when the forecast is calibrated);
- coverage of the central 50 % and 90 % bands (quantiles 0.25-0.75 and 0.05-0.95);
- CRPS = E|X - y| - E|X - X'| / 2, the closed form for an ensemble (lower is better).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path
from typing import Any

import numpy as np

from gpusim.calibrate import base_releases, calibrate
from gpusim.calibrate.data import DataError, Series, read_series
from gpusim.calibrate.estimates import Fit
from gpusim.calibrate.fragment import combined_fragment
from gpusim.calibrate.simulate import market_paths, merged_scenario

HORIZONS_SHOWN = (1, 3, 6, 12)
"""Horizons (months) reported on their own besides the pooled score."""

PIT_BINS = 10

MIN_ROWS_BEFORE_CUTOFF = {"crypto": 200, "rental": 6}
"""Values a column needs up to the cut-off to take part in a backtest (the fits' own minimum)."""


def crps_ensemble(sample: np.ndarray, observed: float) -> float:
    """CRPS of an ensemble against one value: mean |X - y| - mean |X - X'| / 2 (sorted-sample form of the second term)."""
    x = np.sort(sample)
    n = len(x)
    spread = 2.0 * np.sum(x * (2 * np.arange(1, n + 1) - n - 1)) / (n * n)
    return float(np.mean(np.abs(x - observed)) - 0.5 * spread)


def add_months(day: Date, months: int) -> Date:
    """The same day of the month `months` later (the last day of the month when it is shorter)."""
    year, month = divmod(day.month - 1 + months, 12)
    for dom in range(day.day, 0, -1):
        try:
            return Date(day.year + year, month + 1, dom)
        except ValueError:
            continue
    raise ValueError(day)


def observed_at(series: Series, column: str, day: Date, tolerance_days: float) -> float | None:
    """The last value of `column` dated at or before `day`, if it is no older than the tolerance."""
    values = series.values[column]
    best = None
    for d, v in zip(series.dates, values, strict=True):
        if d > day:
            break
        if np.isfinite(v):
            best = (d, v)
    if best is None or (day - best[0]).days > tolerance_days:
        return None
    return float(best[1])


@dataclass
class Backtest:
    """Every scored point, the summary by horizon, and what the charts draw."""

    kind: str
    cutoff: Date
    fits: list[Fit]
    points: list[dict[str, Any]] = field(default_factory=list)
    fans: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self, variable: str | None = None) -> list[dict[str, Any]]:
        """Coverage, mean PIT, CRPS by horizon (the shown ones, then all pooled) for one variable or all."""
        rows = []
        chosen = [p for p in self.points if variable is None or p["variable"] == variable]
        for label, keep in [(f"{h} m", lambda p, h=h: p["horizon_months"] == h) for h in HORIZONS_SHOWN] + [("all", lambda p: True)]:
            pts = [p for p in chosen if keep(p)]
            if not pts:
                continue
            rows.append(
                {
                    "horizon": label,
                    "points": len(pts),
                    "coverage_50": float(np.mean([p["in_50"] for p in pts])),
                    "coverage_90": float(np.mean([p["in_90"] for p in pts])),
                    "mean_pit": float(np.mean([p["pit"] for p in pts])),
                    "crps_log": float(np.mean([p["crps_log"] for p in pts])),
                }
            )
        return rows

    def pit_histogram(self, variable: str | None = None) -> np.ndarray:
        pits = [p["pit"] for p in self.points if variable is None or p["variable"] == variable]
        return np.histogram(pits, bins=PIT_BINS, range=(0.0, 1.0))[0]

    @property
    def variables(self) -> list[str]:
        return list(dict.fromkeys(p["variable"] for p in self.points))


def _score(bt: Backtest, variable: str, origin: Date, months: int, sample: np.ndarray, realised: float) -> None:
    logs = np.log(sample)
    y = float(np.log(realised))
    q05, q25, q75, q95 = np.quantile(logs, [0.05, 0.25, 0.75, 0.95])
    bt.points.append(
        {
            "variable": variable,
            "origin": str(origin),
            "horizon_months": months,
            "realised": realised,
            "median": float(np.exp(np.median(logs))),
            "pit": float(np.mean(logs <= y)),
            "in_50": bool(q25 <= y <= q75),
            "in_90": bool(q05 <= y <= q95),
            "crps_log": crps_ensemble(logs, y),
        }
    )


BOUNDS = {
    "drift": (-5.0, 5.0),
    "vol": (1e-3, 10.0),
    "jump_rate": (0.0, 1000.0),
    "jump_mean": (-10.0, 10.0),
    "jump_std": (0.0, 10.0),
    "p_easy_to_tight": (1e-4, 1.0),
    "p_tight_to_easy": (1e-4, 1.0),
    "deflation": (-5.0, 5.0),
    "mean_reversion": (1e-3, 1000.0),
    "drop": (0.0, 10.0),
    "curvature": (1e-3, 10.0),
}
"""Schema ranges a drawn parameter is clipped to (the field name decides)."""


def _set_fitted(fragment: dict[str, Any], path: str, value: float) -> bool:
    """Put a value at an estimate's config path in a fragment (both regimes where the field has two); False if absent."""
    parts = path.split(".")
    node: Any = fragment
    i = 0
    while i < len(parts) - 1:
        if not isinstance(node, dict) or parts[i] not in node:
            return False
        node = node[parts[i]]
        if isinstance(node, list):
            i += 1
            node = next((item for item in node if item.get("name") == parts[i]), None)
        i += 1
    if not isinstance(node, dict) or parts[-1] not in node:
        return False
    low, high = BOUNDS[parts[-1] if parts[-1] not in ("easy", "tight") else parts[-2]]
    value = float(np.clip(value, low, high))
    node[parts[-1]] = {"easy": value, "tight": value} if isinstance(node[parts[-1]], dict) else value
    return True


def parameter_draws(fits: list[Fit], fragment: dict[str, Any], draws: int, seed: int) -> list[dict[str, Any]]:
    """`draws` copies of the fragment with every fitted parameter drawn from N(estimate, s.e.^2), clipped to its range.

    With 0 draws, the fragment itself: forecasts from the point estimates. The draws are
    independent across parameters (the reported standard errors, not their covariance).
    """
    if draws == 0:
        return [fragment]
    rng = np.random.default_rng(seed)
    variants = []
    for _ in range(draws):
        variant = copy.deepcopy(fragment)
        for fit in fits:
            for e in fit.estimates:
                if np.isfinite(e.se):
                    _set_fitted(variant, e.path, e.value + e.se * rng.standard_normal())
        variants.append(variant)
    return variants


def _paths(
    base: str, variants: list[dict[str, Any]], extra: dict[str, Any], factor: str, n_paths: int, seed: int, edit: Any = None
) -> np.ndarray:
    """One factor's paths, n_paths split evenly over the parameter variants (each a scenario on `base`)."""
    each = max(1, n_paths // len(variants))
    out = []
    for i, variant in enumerate(variants):
        mapping = merged_scenario(base, variant, extra)
        if edit is not None:
            edit(mapping)
        out.append(market_paths(mapping, each, seed + 7919 * i)[factor])
    return np.concatenate(out)


def _horizon_time(months: int) -> dict[str, Any]:
    return {"steps_per_year": 12, "n_steps": months}


def backtest(
    kind: str,
    path: str | Path,
    cutoff: Date,
    horizon_months: int = 12,
    n_paths: int = 2000,
    origins: int = 12,
    base: str = "baseline",
    seed: int = 1,
    columns: tuple[str, ...] = (),
    launches: tuple[Date, ...] = (),
    draws: int = 0,
) -> Backtest:
    """Fit `kind` on `path` up to `cutoff`, simulate forward from each origin, score what was realised.

    With `draws` > 0 every forecast mixes `draws` parameter sets drawn from the estimates'
    sampling distribution (`parameter_draws`), so that the fan carries estimation error.
    """
    if kind not in ("crypto", "rental"):
        raise DataError(f"backtest covers the market factors with a time path: crypto or rental, not {kind!r}")
    full = read_series(path, list(columns) or None, min_rows=2)
    if not columns:  # every column with enough history before the cut-off to be fitted
        before = full.between(None, cutoff)
        columns = tuple(c for c, v in before.values.items() if np.isfinite(v).sum() >= MIN_ROWS_BEFORE_CUTOFF[kind])
        if not columns:
            raise DataError(f"{path}: no column has {MIN_ROWS_BEFORE_CUTOFF[kind]} values up to the cut-off {cutoff}")
        full = read_series(path, list(columns), min_rows=2)
    fits = calibrate(kind, path, end=cutoff, columns=columns, launches=launches, releases=base_releases(base))
    if full.dates[-1] <= cutoff:
        raise DataError(f"{path}: no data after the cut-off {cutoff} (last date {full.dates[-1]}) to score")
    fragment, _ = combined_fragment(fits, base)
    bt = Backtest(kind, cutoff, fits)
    variants = parameter_draws(fits, fragment, draws, seed)
    tolerance = 1.5 * full.step_years() * 365.25
    if kind == "crypto":
        _crypto(bt, full, fragment, variants, cutoff, horizon_months, n_paths, origins, base, seed, tolerance)
    else:
        _rental(bt, full, fragment, variants, cutoff, horizon_months, n_paths, origins, base, seed, tolerance, launches)
    if not bt.points:
        raise DataError(f"{path}: no realised value within {horizon_months} months after {cutoff} to score")
    return bt


def _crypto(
    bt: Backtest,
    full: Series,
    fragment: dict[str, Any],
    variants: list[dict[str, Any]],
    cutoff: Date,
    horizon: int,
    n_paths: int,
    origins: int,
    base: str,
    seed: int,
    tol: float,
) -> None:
    fitted = [a["name"] for a in fragment["crypto"]["assets"]]
    names = [a["name"] for a in merged_scenario(base, fragment)["crypto"]["assets"] if a["name"] in fitted]
    runs = {}
    for start in ("easy", "tight"):

        def only_fitted(mapping: dict[str, Any], start: str = start) -> None:
            mapping["regime"]["initial"] = start
            kept = [a for a in mapping["crypto"]["assets"] if a["name"] in fitted]
            if len(kept) != len(mapping["crypto"]["assets"]):
                mapping["crypto"]["assets"] = kept
                mapping["crypto"].pop("correlation", None)

        extra = {"time": {"start": str(cutoff), **_horizon_time(horizon)}}
        runs[start] = _paths(base, variants, extra, "crypto", n_paths, seed, only_fitted)  # (path, step, asset)
    n_paths = len(runs["easy"])
    p_et, p_te = fragment["regime"]["p_easy_to_tight"], fragment["regime"]["p_tight_to_easy"]
    chain = np.array([[1 - p_et, p_et], [p_te, 1 - p_te]])
    weights = np.array([1.0 - bt.fits[0].state["p_tight"], bt.fits[0].state["p_tight"]])
    for j in range(origins):
        origin = add_months(cutoff, j)
        n_tight = round(weights[1] * n_paths)
        relative = np.concatenate([runs["tight"][:n_tight], runs["easy"][: n_paths - n_tight]])
        relative = relative / relative[:, :1, :]
        for a, asset in enumerate(names):
            spot = observed_at(full, asset, origin, tol)
            if spot is None:
                continue
            for k in range(1, horizon + 1):
                realised = observed_at(full, asset, add_months(origin, k), tol)
                if realised is not None:
                    _score(bt, asset, origin, k, spot * relative[:, k, a], realised)
            if j == 0:
                bt.fans[asset] = _fan(full, asset, cutoff, horizon, spot * relative[:, :, a], tol)
        weights = weights @ chain


def _rental(
    bt: Backtest,
    full: Series,
    fragment: dict[str, Any],
    variants: list[dict[str, Any]],
    cutoff: Date,
    horizon: int,
    n_paths: int,
    origins: int,
    base: str,
    seed: int,
    tol: float,
    launches: tuple[Date, ...],
) -> None:
    releases = base_releases(base)
    noise_sd = bt.fits[0].state["noise_sd"]
    firsts = {g: next(d for d, v in zip(full.dates, full.values[g], strict=True) if np.isfinite(v)) for g in full.values}
    firsts = {g: releases.get(g, d) for g, d in firsts.items()}
    known = [g["name"] for g in fragment["compute"].get("generations", [])]
    live = [g for g in known if np.isfinite(full.between(None, cutoff).values[g]).any()]
    future = sorted({d for g, d in firsts.items() if d > cutoff} | {d for d in launches if d > cutoff})
    for j in range(origins):
        origin = add_months(cutoff, j)
        spots = {g: observed_at(full, g, origin, tol) for g in live}
        gens = [g for g in live if spots[g] is not None]
        if not gens:
            continue

        def at_origin(mapping: dict[str, Any], origin: Date = origin, gens: list[str] = gens, spots: dict[str, Any] = spots) -> None:
            mapping["compute"]["generations"] = [
                dict(g, rental_rate=spots[g["name"]]) for g in mapping["compute"]["generations"] if g["name"] in gens
            ]
            obsolescence = mapping["compute"]["obsolescence"]
            scheduled = [item for item in obsolescence.get("launches", []) if Date.fromisoformat(str(item["date"])) > origin]
            scheduled += [{"name": f"launch {d}", "date": str(d)} for d in future if d > origin]
            obsolescence["launches"] = scheduled

        extra = {"time": {"start": str(origin), **_horizon_time(horizon)}}
        rates = _paths(base, variants, extra, "rental_rate", n_paths, seed + j, at_origin)  # (path, step, generation)
        # the index is observed with the fitted measurement noise (rental.py), so its forecast carries it too
        rates = rates * np.exp(noise_sd * np.random.default_rng(seed + j).standard_normal(rates.shape))
        for i, g in enumerate(gens):
            for k in range(1, horizon + 1):
                realised = observed_at(full, g, add_months(origin, k), tol)
                if realised is not None:
                    _score(bt, g, origin, k, rates[:, k, i], realised)
            if j == 0:
                bt.fans[g] = _fan(full, g, cutoff, horizon, rates[:, :, i], tol)


def _fan(full: Series, column: str, origin: Date, horizon: int, paths: np.ndarray, tol: float) -> dict[str, Any]:
    dates = [add_months(origin, k) for k in range(horizon + 1)]
    realised = [observed_at(full, column, d, tol) for d in dates]
    return {
        "dates": dates,
        "quantiles": {q: np.quantile(paths, q, axis=0) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        "realised": [np.nan if r is None else r for r in realised],
        "history": [(d, v) for d, v in zip(full.dates, full.values[column], strict=True) if np.isfinite(v) and d <= origin],
    }


def draw_backtest(bt: Backtest, folder: str | Path) -> list[Path]:
    """Per variable: the fan chart from the cut-off with the realised path, the PIT histogram and coverage by horizon."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for variable in bt.variables:
        figure = Figure(figsize=(11, 3.6), layout="constrained")
        fan_axis, pit_axis, cover_axis = figure.subplots(1, 3, width_ratios=[2, 1, 1])
        fan = bt.fans.get(variable)
        if fan is not None:
            history = fan["history"][-3 * len(fan["dates"]) * 30 :]
            fan_axis.plot([d for d, _ in history], [v for _, v in history], color="black", lw=0.8, label="data to the cut-off")
            q = fan["quantiles"]
            fan_axis.fill_between(fan["dates"], q[0.05], q[0.95], alpha=0.2, color="C0", label="90 % band")
            fan_axis.fill_between(fan["dates"], q[0.25], q[0.75], alpha=0.35, color="C0", label="50 % band")
            fan_axis.plot(fan["dates"], q[0.5], color="C0", lw=1, label="median")
            fan_axis.plot(fan["dates"], fan["realised"], "o-", color="C3", ms=3, lw=1, label="realised")
            fan_axis.set_yscale("log")
            fan_axis.set_title(f"{variable}: forecast from {bt.cutoff}")
            fan_axis.tick_params(axis="x", labelrotation=30)
            fan_axis.legend(fontsize=7)
        counts = bt.pit_histogram(variable)
        pit_axis.bar((np.arange(PIT_BINS) + 0.5) / PIT_BINS, counts, width=1 / PIT_BINS, edgecolor="white")
        pit_axis.axhline(counts.sum() / PIT_BINS, color="grey", ls="--", lw=0.8)
        pit_axis.set_title("PIT histogram (flat = calibrated)")
        horizons = sorted({p["horizon_months"] for p in bt.points if p["variable"] == variable})
        for band, color in (("in_90", "C0"), ("in_50", "C1")):
            cover = [np.mean([p[band] for p in bt.points if p["variable"] == variable and p["horizon_months"] == h]) for h in horizons]
            cover_axis.plot(horizons, cover, "o-", color=color, label=band.replace("in_", "") + " % band")
        cover_axis.axhline(0.9, color="C0", ls=":", lw=0.8)
        cover_axis.axhline(0.5, color="C1", ls=":", lw=0.8)
        cover_axis.set_ylim(0, 1.02)
        cover_axis.set_xlabel("horizon, months")
        cover_axis.set_title("coverage")
        cover_axis.legend(fontsize=7)
        path = directory / f"backtest_{bt.kind}_{variable}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def write_points(bt: Backtest, folder: str | Path) -> Path:
    """Every scored point as CSV (variable, origin, horizon, realised, median, PIT, bands, CRPS)."""
    import csv

    path = Path(folder) / f"backtest_{bt.kind}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(bt.points[0]))
        writer.writeheader()
        writer.writerows(bt.points)
    return path
