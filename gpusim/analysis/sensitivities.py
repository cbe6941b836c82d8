"""Bump-and-revalue sensitivities on common random numbers, run as one resumable batch.

`gpusim sensitivities CONFIG --params FIELD=LOW:HIGH ...` writes a batch file of the base
scenario and, per field, the scenario with the field at LOW and at HIGH (every one on the same
seed), runs it with the batch runner (journaled, so `--resume` finishes it after a crash, and
on Dask with `--workers`/`--scheduler`), then reads the per-path outcomes of each scenario and
forms central differences (f(HIGH) - f(LOW)) / (HIGH - LOW) with paired standard errors.
LOW and HIGH are values of the field, or percentages of its base value (`-10%:+10%`, which
also scales both regimes of a by-regime field); the derivative is then per unit of relative
change (per 100 %).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
from rich.console import Console

from gpusim.analysis.outcomes import (
    Estimate,
    PathOutcomes,
    breakeven_bps,
    default_pd,
    independent_se,
    instrument_el,
    paired_se,
    paired_var_draws,
    portfolio_el,
    read_batch_outcomes,
    value_at_risk,
)
from gpusim.batch import load_batch, run_batch
from gpusim.batch.runner import BatchRun
from gpusim.output.sensitivities import open_sensitivities, write_sensitivities
from gpusim.scenario import ConfigError, load_scenario
from gpusim.scenario.loading import parse_yaml
from gpusim.version import __version__

METRICS = ("el", "pd", "breakeven", "var")
BASE = "base"
BATCH_YAML = "bumps_batch.yaml"
BATCH_H5 = "bumps.h5"
RESULT_H5 = "sensitivities.h5"
VAR_REPLICATES = 200
"""Bootstrap resamples for the paired standard error of a VaR difference."""

_BUMP = re.compile(r"^\s*([A-Za-z0-9_.\- ]+?)\s*=\s*([^:]+?)\s*:\s*([^:]+?)\s*$")


@dataclass(frozen=True)
class Bump:
    """One field bumped down and up: values of the field, or percentages of its base value."""

    field: str
    low: float
    high: float
    relative: bool

    def x(self, which: str) -> float:
        """The bump's coordinate on the derivative's axis: the value, or the relative change."""
        value = self.low if which == "low" else self.high
        return value / 100.0 if self.relative else value

    def value(self, which: str, base: Any) -> Any:
        """The field's value at the low or high bump."""
        if not self.relative:
            if isinstance(base, dict):
                raise ConfigError(
                    [
                        f"--params {self.field}: given per regime ({', '.join(base)}); bump {self.field}.easy or "
                        f"{self.field}.tight, or give percentages (-10%:+10%) to scale every regime"
                    ]
                )
            scaled(base, 1.0, f"--params {self.field}")  # a number
            return self.low if which == "low" else self.high
        return scaled(base, 1.0 + self.x(which), f"--params {self.field}")


def scaled(base: Any, factor: float, where: str) -> Any:
    """A number, or a by-regime mapping of numbers, times `factor`."""
    if isinstance(base, bool) or base is None:
        raise ConfigError([f"{where}: the field is {base!r}, not a number"])
    if isinstance(base, (int, float)):
        return float(base) * factor
    if isinstance(base, dict) and base and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in base.values()):
        return {k: float(v) * factor for k, v in base.items()}
    raise ConfigError([f"{where}: the field is not a number (or numbers by regime), so it cannot be bumped"])


def parse_bump(text: str) -> Bump:
    """FIELD=LOW:HIGH with numbers, or percentages of the base value on both sides (FIELD=-10%:+10%)."""
    match = _BUMP.match(text)
    if not match:
        raise ConfigError([f"--params {text}: expected FIELD.PATH=LOW:HIGH, e.g. crypto.assets.BTC.vol.tight=0.7:0.9 or ...=-10%:+10%"])
    field, low_text, high_text = match.groups()
    percent = [t.endswith("%") for t in (low_text, high_text)]
    if percent[0] != percent[1]:
        raise ConfigError([f"--params {text}: give both bounds as values or both as percentages"])
    try:
        low, high = (float(t.rstrip("%")) for t in (low_text, high_text))
    except ValueError:
        raise ConfigError([f"--params {text}: LOW and HIGH must be numbers"]) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError([f"--params {text}: LOW must be below HIGH (got {low_text} and {high_text})"])
    return Bump(field, low, high, percent[0])


def field_value(data: Any, field: str, where: str) -> Any:
    """The value at a dotted --set path of a resolved scenario (list items by name or index)."""
    node = data
    for depth, part in enumerate(field.split(".")):
        here = ".".join(field.split(".")[: depth + 1])
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list):
            named = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
            if named:
                node = node[named[0]]
            elif part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
                node = node[int(part)]
            else:
                have = [item.get("name") for item in node if isinstance(item, dict)]
                raise ConfigError([f"{where}: {here}: no item named {part!r} (have {have})"])
        else:
            raise ConfigError([f"{where}: {here}: no such field in the scenario"])
    return node


REGIMES = ("easy", "tight")


def field_override(data: Any, field: str, value: Any) -> tuple[str, Any]:
    """(path, value) that sets `field` to `value` in a scenario whose resolved form is `data`.

    One regime of a by-regime field written as a single number in the YAML (`vol: 0.6`) is set
    by writing the whole mapping, so the other regime keeps its value rather than going missing.
    """
    parent, _, last = field.rpartition(".")
    if parent and last in REGIMES:
        regimes = field_value(data, parent, f"--set {field}")
        if isinstance(regimes, dict) and set(regimes) == set(REGIMES):
            return parent, {**regimes, last: value}
    return field, value


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{v:.6g}" for k, v in value.items()) + "}"
    return f"{value:.6g}"


@dataclass(frozen=True)
class BumpPlan:
    """The base scenario and one low and one high scenario per bump, with their batch names."""

    config: str
    bumps: tuple[Bump, ...]
    base_values: tuple[Any, ...]
    overrides: dict[str, Any]
    resolved: dict[str, Any]  # the base scenario, resolved

    def scenario_name(self, b: int, which: str) -> str:
        bump = self.bumps[b]
        bound = bump.low if which == "low" else bump.high
        return f"{bump.field}={bound:g}{'%' if bump.relative else ''}"

    def batch(self, paths: int, seed: int, contagion: bool, chunk_paths: int, common_random_numbers: bool = True) -> dict[str, Any]:
        """The batch file (as data) that runs every scenario of the plan."""
        scenarios: list[dict[str, Any]] = [{"name": BASE}]
        for b, bump in enumerate(self.bumps):
            for which in ("low", "high"):
                path, value = field_override(self.resolved, bump.field, bump.value(which, self.base_values[b]))
                scenarios.append({"name": self.scenario_name(b, which), "set": {path: value}})
        return {
            "name": "sensitivities",
            "description": f"bump-and-revalue sensitivities of {self.config}",
            "base": self.config,
            "paths": paths,
            "seed": seed,
            "common_random_numbers": common_random_numbers,
            "chunk_paths": chunk_paths,
            "save_paths": 0,
            "dtype": "float64",
            "contagion": contagion,
            "set": self.overrides,
            "scenarios": scenarios,
        }


def plan_bumps(config: str, bump_texts: list[str], overrides: list[str]) -> BumpPlan:
    """Parse the bumps, check each field exists and can be bumped, and read its base value."""
    if not bump_texts:
        raise ConfigError(["--params: give at least one FIELD.PATH=LOW:HIGH"])
    bumps = [parse_bump(t) for t in bump_texts]
    fields = [b.field for b in bumps]
    if duplicates := sorted({f for f in fields if fields.count(f) > 1}):
        raise ConfigError([f"--params {f}: given more than once" for f in duplicates])
    scenario = load_scenario(config, overrides)
    data = scenario.model_dump(mode="json")
    base_values = tuple(field_value(data, b.field, f"--params {b.field}") for b in bumps)
    for bump, base in zip(bumps, base_values, strict=True):
        bump.value("low", base)  # a per-regime field bumped by value, or a field that is not a number
    path = Path(config)
    ref = str(path.resolve()) if path.is_file() else config
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, _, raw = item.partition("=")
        parsed[key.strip()] = parse_yaml(raw)
    return BumpPlan(ref, tuple(bumps), base_values, parsed, data)


def write_batch_yaml(plan: BumpPlan, folder: Path, paths: int, seed: int, contagion: bool, common_random_numbers: bool = True) -> Path:
    """DIR/bumps_batch.yaml: the batch that `gpusim batch` can also run (or resume) by itself."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / BATCH_YAML
    chunk = min(paths, 10_000)
    text = yaml.safe_dump(plan.batch(paths, seed, contagion, chunk, common_random_numbers), sort_keys=False, allow_unicode=True)
    target.write_text("# written by gpusim sensitivities: the base scenario and each field at LOW and HIGH\n" + text)
    return target


# ---------------------------------------------------------------------------------------
# Differences


@dataclass(frozen=True)
class Metric:
    """A metric of one scenario's outcomes, per name of `entity` (or for the portfolio)."""

    name: str
    entity: str  # "instrument", "borrower" or "portfolio"
    units: str
    long_name: str


METRIC_TABLE = {
    "el": (
        Metric("el", "instrument", "USD", "expected discounted loss"),
        Metric("el", "portfolio", "USD", "expected discounted portfolio loss"),
    ),
    "pd": (Metric("pd", "borrower", "1", "probability of default by the horizon"),),
    "breakeven": (Metric("breakeven_bps", "instrument", "1e-4 year^-1", "break-even spread: expected discounted loss / risky annuity"),),
    "var": (Metric("var", "portfolio", "USD", "value at risk of the discounted portfolio loss"),),
}


def _estimates(metric: Metric, outcomes: PathOutcomes) -> list[Estimate]:
    if metric.name == "el":
        if metric.entity == "portfolio":
            return [portfolio_el(outcomes)]
        return [instrument_el(outcomes, i) for i in range(len(outcomes.instruments))]
    if metric.name == "pd":
        return [default_pd(outcomes, b) for b in range(len(outcomes.borrowers))]
    if metric.name == "breakeven_bps":
        return [breakeven_bps(outcomes, i) for i in range(len(outcomes.instruments))]
    raise AssertionError(metric.name)


@dataclass
class _Columns:
    """Per (parameter, name) arrays of one metric, filled parameter by parameter."""

    base: np.ndarray
    base_se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    low_change_se: np.ndarray
    high_change_se: np.ndarray
    delta_se: np.ndarray
    delta_se_independent: np.ndarray

    @classmethod
    def empty(cls, n_params: int, n_names: int) -> _Columns:
        return cls(*(np.full((n_params, n_names), np.nan) for _ in range(8)))


def _fill(columns: _Columns, p: int, base: list[Estimate], low: list[Estimate], high: list[Estimate]) -> None:
    for e, (b, lo, hi) in enumerate(zip(base, low, high, strict=True)):
        columns.base[p, e], columns.base_se[p, e] = b.value, b.se
        columns.low[p, e], columns.high[p, e] = lo.value, hi.value
        columns.low_change_se[p, e] = paired_se(lo, b)
        columns.high_change_se[p, e] = paired_se(hi, b)
        columns.delta_se[p, e] = paired_se(hi, lo)
        columns.delta_se_independent[p, e] = independent_se(hi, lo)


def _fill_var(columns: _Columns, p: int, base: PathOutcomes, low: PathOutcomes, high: PathOutcomes, level: float) -> None:
    losses = [o.loss.sum(axis=1) for o in (base, low, high)]
    draws = paired_var_draws(losses, level, VAR_REPLICATES)
    values = [value_at_risk(x, level) for x in losses]
    sd = draws.std(axis=1, ddof=1)
    columns.base[p, 0], columns.low[p, 0], columns.high[p, 0] = values
    columns.base_se[p, 0] = sd[0]
    columns.low_change_se[p, 0] = float(np.std(draws[1] - draws[0], ddof=1))
    columns.high_change_se[p, 0] = float(np.std(draws[2] - draws[0], ddof=1))
    columns.delta_se[p, 0] = float(np.std(draws[2] - draws[1], ddof=1))
    columns.delta_se_independent[p, 0] = math.hypot(sd[1], sd[2])


def _variables(metric: Metric, c: _Columns, dims: tuple[str, ...], width: np.ndarray) -> dict[str, Any]:
    """The metric's datasets: levels, changes from the base, the central difference and their errors."""
    m, u = metric.name, metric.units
    per = width[:, None]
    delta = c.high - c.low
    squeeze = (lambda a: a[:, 0]) if len(dims) == 1 else (lambda a: a)
    items = {
        f"{m}_base": (c.base, u, f"{metric.long_name} of the base scenario"),
        f"{m}_base_se": (c.base_se, u, "its Monte Carlo standard error"),
        f"{m}_low": (c.low, u, f"{metric.long_name} with the field at LOW"),
        f"{m}_high": (c.high, u, f"{metric.long_name} with the field at HIGH"),
        f"{m}_low_change": (c.low - c.base, u, "LOW minus base"),
        f"{m}_low_change_se": (c.low_change_se, u, "paired (common random numbers) standard error of LOW minus base"),
        f"{m}_high_change": (c.high - c.base, u, "HIGH minus base"),
        f"{m}_high_change_se": (c.high_change_se, u, "paired standard error of HIGH minus base"),
        f"{m}_delta": (delta, u, "HIGH minus LOW"),
        f"{m}_delta_se": (c.delta_se, u, "paired (common random numbers) standard error of HIGH minus LOW"),
        f"{m}_delta_se_independent": (c.delta_se_independent, u, "standard error HIGH minus LOW would have from independent runs"),
        f"{m}_derivative": (delta / per, f"({u})/(field unit)", "central difference (HIGH - LOW) / (x_high - x_low)"),
        f"{m}_derivative_se": (c.delta_se / per, f"({u})/(field unit)", "its paired standard error"),
    }
    return {name: (dims, squeeze(values), {"units": units, "long_name": long}) for name, (values, units, long) in items.items()}


@dataclass(frozen=True)
class SensitivityRun:
    """What `run_sensitivities` did: the files it wrote and the batch run."""

    folder: Path
    batch_yaml: Path
    batch_h5: Path
    result: Path
    batch: BatchRun


def sensitivity_groups(batch_h5: Path, plan: BumpPlan, level: float) -> dict[str, xr.Dataset]:
    """The sensitivities file's groups, from the batch of the plan's scenarios."""
    base = read_batch_outcomes(str(batch_h5), BASE)
    n_params = len(plan.bumps)
    entity_names = {"instrument": base.instruments, "borrower": base.borrowers, "portfolio": ("portfolio",)}
    metrics = [m for name in METRICS for m in METRIC_TABLE[name]]
    columns = {(m.name, m.entity): _Columns.empty(n_params, len(entity_names[m.entity])) for m in metrics}
    base_estimates = {(m.name, m.entity): _estimates(m, base) for m in metrics if m.name != "var"}
    x = np.array([[b.x("low"), b.x("high")] for b in plan.bumps])
    for p in range(n_params):
        low = read_batch_outcomes(str(batch_h5), plan.scenario_name(p, "low"))
        high = read_batch_outcomes(str(batch_h5), plan.scenario_name(p, "high"))
        for m in metrics:
            if m.name == "var":
                _fill_var(columns[(m.name, m.entity)], p, base, low, high, level)
            else:
                _fill(columns[(m.name, m.entity)], p, base_estimates[(m.name, m.entity)], _estimates(m, low), _estimates(m, high))
    width = x[:, 1] - x[:, 0]

    parameter = [b.field for b in plan.bumps]
    params = xr.Dataset(
        {
            "x_low": ("parameter", x[:, 0], {"long_name": "LOW on the derivative's axis: the value, or the relative change (0.1 = +10 %)"}),
            "x_high": ("parameter", x[:, 1], {"long_name": "HIGH on the derivative's axis"}),
            "relative": ("parameter", np.array([b.relative for b in plan.bumps], dtype=np.int8), {"long_name": "1: LOW:HIGH in % of base"}),
            "base_value": ("parameter", np.array([_value_text(v) for v in plan.base_values], dtype=object), {"long_name": "field at base"}),
            "low_value": (
                "parameter",
                np.array([_value_text(b.value("low", v)) for b, v in zip(plan.bumps, plan.base_values, strict=True)], dtype=object),
            ),
            "high_value": (
                "parameter",
                np.array([_value_text(b.value("high", v)) for b, v in zip(plan.bumps, plan.base_values, strict=True)], dtype=object),
            ),
            "scenario_low": ("parameter", np.array([plan.scenario_name(p, "low") for p in range(n_params)], dtype=object)),
            "scenario_high": ("parameter", np.array([plan.scenario_name(p, "high") for p in range(n_params)], dtype=object)),
        },
        coords={"parameter": np.array(parameter, dtype=object)},
    )
    groups: dict[str, xr.Dataset] = {"parameters": params}
    for entity in ("portfolio", "instrument", "borrower"):
        dims: tuple[str, ...] = ("parameter",) if entity == "portfolio" else ("parameter", entity)
        variables: dict[str, Any] = {}
        for m in metrics:
            if m.entity == entity:
                variables.update(_variables(m, columns[(m.name, m.entity)], dims, width))
        coords: dict[str, Any] = {"parameter": np.array(parameter, dtype=object)}
        if entity != "portfolio":
            coords[entity] = np.array(entity_names[entity], dtype=object)
        if entity == "instrument":
            coords["instrument_borrower"] = ("instrument", np.array([base.borrowers[b] for b in base.instrument_borrower], dtype=object))
        groups[entity] = xr.Dataset(variables, coords=coords)
    groups["portfolio"]["var_base"].attrs["level"] = level
    return groups


def run_sensitivities(
    config: str,
    bump_texts: list[str],
    out_dir: str | Path,
    *,
    overrides: list[str] | None = None,
    paths: int = 2000,
    seed: int = 1,
    metric: str = "el",
    level: float = 0.99,
    contagion: bool = True,
    common_random_numbers: bool = True,
    backend: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> SensitivityRun:
    """Run the bumps as one batch into DIR/bumps.h5 and write DIR/sensitivities.h5 (layout: docs/analyst.md)."""
    if metric not in METRICS:
        raise ValueError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"--level must lie in (0, 1), got {level}")
    plan = plan_bumps(config, bump_texts, list(overrides or []))
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder}: not a folder")
    batch_yaml = write_batch_yaml(plan, folder, paths, seed, contagion, common_random_numbers)
    batch_h5 = folder / BATCH_H5
    done = run_batch(
        load_batch(batch_yaml),
        batch_h5,
        backend=backend,
        resume=resume,
        overwrite=overwrite,
        workers=workers,
        scheduler=scheduler,
        console=console,
        show_progress=show_progress,
    )
    groups = sensitivity_groups(batch_h5, plan, level)
    attrs = {
        "config": config,
        "seed": seed,
        "n_paths": paths,
        "metric": metric,
        "var_level": level,
        "common_random_numbers": int(common_random_numbers),
        "contagion": int(contagion),
        "batch_file": BATCH_H5,
        "batch_yaml": batch_yaml.read_text(),
        "gpusim_version": __version__,
    }
    result = write_sensitivities(folder / RESULT_H5, groups, attrs)
    return SensitivityRun(folder, batch_yaml, batch_h5, result, done)


@dataclass(frozen=True)
class Headline:
    """What the command prints for --metric: the rows per name and field, and the tornado's dataset."""

    title: str
    variable: str
    dataset: xr.Dataset  # (parameter) for the tornado chart
    rows: list[dict[str, Any]]
    columns: tuple[str, ...] = ("name", "field", "base", "low", "high", "delta", "delta_se", "delta_se_independent", "derivative")
    unit: str = ""  # the printed unit of the levels and differences (the derivative stays in the file's units)
    scale: float = 1.0  # printed value = value / scale


def sensitivity_headline(path: str | Path, metric: str) -> Headline:
    """The table rows of one metric (per instrument and the portfolio, per borrower, or the portfolio) and its tornado."""
    groups = open_sensitivities(path).groups
    variable = "breakeven_bps" if metric == "breakeven" else metric
    parts: list[tuple[xr.Dataset, str | None]] = []
    if metric in ("el", "var"):
        parts.append((groups["portfolio"], None))
    if metric in ("el", "breakeven"):
        parts.append((groups["instrument"], "instrument"))
    if metric == "pd":
        parts.append((groups["borrower"], "borrower"))
    rows = []
    for ds, entity in parts:
        names = [str(n) for n in ds[entity].values] if entity else ["portfolio"]
        for e, name in enumerate(names):
            for p, field in enumerate(str(f) for f in ds["parameter"].values):
                row: dict[str, Any] = {"name": name, "field": field}
                for key in ("base", "low", "high", "delta", "delta_se", "delta_se_independent", "derivative", "derivative_se"):
                    values = np.asarray(ds[f"{variable}_{key}"].values, dtype=float)
                    value = float(values[p, e] if values.ndim == 2 else values[p])
                    row[key] = value if math.isfinite(value) else None
                rows.append(row)
    ds, entity = parts[0]
    title = {"el": "Portfolio expected loss", "var": "Portfolio VaR", "pd": "PD by the horizon", "breakeven": "Break-even spread, bps"}[
        metric
    ]
    if entity is not None:
        swing = np.nan_to_num(np.abs(np.asarray(ds[f"{variable}_delta"].values, dtype=float))).max(axis=0)
        top = int(np.argmax(swing))
        title = f"{title}: {ds[entity].values[top]}"
        ds = ds.isel({entity: top})
    unit, scale = {"el": ("USD m", 1e6), "var": ("USD m", 1e6), "pd": ("%", 0.01), "breakeven": ("bps", 1.0)}[metric]
    return Headline(title, variable, ds, rows, unit=unit, scale=scale)
