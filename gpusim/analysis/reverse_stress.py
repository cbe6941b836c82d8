"""Reverse stress: the smallest shock along named fields that makes a target metric reach a level.

The shock s >= 0 moves every named field along a direction d: field_j = base_j (1 + s d_j)
(relative, the default; a by-regime field scales in every regime) or base_j + s d_j
(`absolute`). Every evaluation runs the shocked scenario on the same seed (common random
numbers), so the metric is one fixed, nearly monotone function of s for this sample, and
scipy's brentq finds its crossing of the target to `tolerance` in s.

Uncertainty: the estimate s_hat solves m_hat(s) = target, with m_hat = m + e and e the Monte
Carlo error, so s_hat - s* ~ -e(s*) / m'(s*): the standard error of the shock is the standard
error of the metric at the crossing over the local slope. The slope is a central difference on
common random numbers at s_hat +- `slope_step`, where the paired errors keep it sharp.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from scipy.optimize import brentq

from gpusim.analysis.outcomes import (
    Estimate,
    PathOutcomes,
    covenant_breach,
    default_pd,
    instrument_el,
    paired_se,
    portfolio_el,
    tenor_steps,
)
from gpusim.analysis.sensitivities import field_override, field_value, scaled
from gpusim.backends import Backend, get_backend
from gpusim.engine import run
from gpusim.scenario import ConfigError, Scenario, load_scenario
from gpusim.spec import ChunkResult, RunSpec, build_spec

_TARGET = re.compile(r"^\s*(el|pd|breach)\s*(?:\[([^\]]*)\])?\s*(?:@\s*([0-9.]+)\s*y)?\s*(?:>=\s*(\S+))?\s*$", re.IGNORECASE)
_MONEY = {"": 1.0, "k": 1e3, "m": 1e6, "mm": 1e6, "bn": 1e9, "b": 1e9}
GRAMMAR = "el>=X (USD, e.g. 50m) | el[Instrument]>=X | pd[Borrower]@5y>=0.1 (or 10%) | breach[Instrument] | breach[Instrument]@2y>=0.25"
BREACH_DEFAULT = 0.5
"""`breach[I]` without a level: the shock from which a covenant breach is more likely than not."""


@dataclass(frozen=True)
class Target:
    """A metric of the outcomes and the level it must reach (metric >= level)."""

    text: str
    kind: str  # "el", "pd" or "breach"
    name: str | None
    years: float | None
    level: float

    def estimate(self, outcomes: PathOutcomes) -> Estimate:
        if self.kind == "el":
            return portfolio_el(outcomes) if self.name is None else instrument_el(outcomes, outcomes.instruments.index(self.name))
        if self.kind == "pd":
            return default_pd(outcomes, outcomes.borrowers.index(self.name or ""), self.years)
        return covenant_breach(outcomes, outcomes.instruments.index(self.name or ""), self.years)

    def label(self) -> str:
        what = {"el": "expected loss", "pd": "PD", "breach": "P(covenant breach)"}[self.kind]
        where = f" of {self.name}" if self.name else (" of the portfolio" if self.kind == "el" else "")
        by = f" by {self.years:g}y" if self.years is not None else ""
        return f"{what}{where}{by}"

    def check_names(self, borrowers: tuple[str, ...], instruments: tuple[str, ...]) -> None:
        """ConfigError when the named borrower or instrument is not in the scenario."""
        if self.name is None:
            return
        names, what = (borrowers, "borrower") if self.kind == "pd" else (instruments, "instrument")
        if self.name not in names:
            raise ConfigError([f"--target {self.text}: no {what} named {self.name!r} (have {', '.join(names)})"])


def _number(text: str, where: str, money: bool) -> float:
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1.0
    if raw.endswith("%") and not money:
        raw, scale = raw[:-1], 0.01
    elif money:
        for suffix in sorted(_MONEY, key=len, reverse=True):
            if suffix and raw.endswith(suffix):
                raw, scale = raw[: -len(suffix)], _MONEY[suffix]
                break
    try:
        value = float(raw) * scale
    except ValueError:
        raise ConfigError([f"--target {where}: {text!r} is not a number"]) from None
    if not math.isfinite(value):
        raise ConfigError([f"--target {where}: {text!r} is not a finite number"])
    return value


def parse_target(text: str) -> Target:
    """A target of the grammar GRAMMAR; ConfigError naming what is wrong."""
    match = _TARGET.match(text)
    if not match:
        raise ConfigError([f"--target {text!r}: not a target; expected {GRAMMAR}"])
    kind, name, years_text, level_text = match.groups()
    kind = kind.lower()
    name = name.strip() if name is not None else None
    if name == "":
        raise ConfigError([f"--target {text!r}: empty name in [...]"])
    if kind in ("pd", "breach") and name is None:
        what = "Borrower" if kind == "pd" else "Instrument"
        raise ConfigError([f"--target {text!r}: {kind} needs a name: {kind}[{what}]"])
    years = None
    if years_text is not None:
        if kind == "el":
            raise ConfigError([f"--target {text!r}: el is the expected loss over the whole horizon; @..y applies to pd and breach"])
        try:
            years = float(years_text)
        except ValueError:
            raise ConfigError([f"--target {text!r}: @{years_text}y is not a number of years"]) from None
    if level_text is None:
        if kind != "breach":
            raise ConfigError([f"--target {text!r}: give the level to reach, e.g. {kind}{f'[{name}]' if name else ''}>=..."])
        level = BREACH_DEFAULT
    else:
        level = _number(level_text, text, money=kind == "el")
    if kind == "el" and level <= 0:
        raise ConfigError([f"--target {text!r}: the expected loss to reach must be above 0 USD"])
    if kind != "el" and not 0.0 < level <= 1.0:
        raise ConfigError([f"--target {text!r}: a probability to reach must lie in (0, 1] (or (0 %, 100 %])"])
    return Target(text.strip(), kind, name, years, level)


@dataclass(frozen=True)
class ShockDirection:
    """The named fields, their base values and the direction a unit shock moves them."""

    fields: tuple[str, ...]
    direction: tuple[float, ...]
    base_values: tuple[Any, ...]
    relative: bool
    resolved: dict[str, Any] = field(repr=False, default_factory=dict)  # the base scenario, resolved

    def values(self, shock: float) -> list[Any]:
        out = []
        for f, d, base in zip(self.fields, self.direction, self.base_values, strict=True):
            if self.relative:
                out.append(scaled(base, 1.0 + shock * d, f"--over {f}"))
            elif isinstance(base, dict):
                out.append({k: v + shock * d for k, v in scaled(base, 1.0, f"--over {f}").items()})
            else:
                out.append(float(scaled(base, 1.0, f"--over {f}")) + shock * d)
        return out

    def overrides(self, shock: float) -> list[str]:
        settings = [field_override(self.resolved, f, v) for f, v in zip(self.fields, self.values(shock), strict=True)]
        return [f"{path}={json.dumps(value)}" for path, value in settings]


def plan_direction(scenario: Scenario, over: str, direction: str | None, relative: bool) -> ShockDirection:
    """Parse --over FIELD[,FIELD] and --direction d[,d] against the base scenario."""
    fields = tuple(f.strip() for f in over.split(",") if f.strip())
    if not fields:
        raise ConfigError(["--over: give at least one FIELD.PATH"])
    if len(set(fields)) != len(fields):
        raise ConfigError([f"--over {over}: a field is named twice"])
    if direction is None:
        weights = tuple(1.0 for _ in fields)
    else:
        try:
            weights = tuple(float(d) for d in direction.split(","))
        except ValueError:
            raise ConfigError([f"--direction {direction}: expected numbers separated by commas, one per --over field"]) from None
        if len(weights) != len(fields):
            raise ConfigError([f"--direction {direction}: {len(weights)} numbers for {len(fields)} fields of --over"])
        if not all(math.isfinite(w) for w in weights) or not any(weights):
            raise ConfigError([f"--direction {direction}: needs finite numbers, not all 0"])
    data = scenario.model_dump(mode="json")
    base = tuple(field_value(data, f, f"--over {f}") for f in fields)
    for f, b in zip(fields, base, strict=True):
        scaled(b, 1.0, f"--over {f}")  # a number, or numbers by regime
    return ShockDirection(fields, weights, base, relative, data)


@dataclass(frozen=True)
class Evaluation:
    """The target metric of one shocked run, with its standard error."""

    shock: float
    value: float
    se: float
    per_path: np.ndarray = field(repr=False)


@dataclass
class ReverseStressResult:
    """The search: every evaluation, the shock found and its Monte Carlo standard error."""

    target: Target
    shocks: ShockDirection
    evaluations: list[Evaluation]
    status: str  # "found", "at_base" (reached with no shock) or "not_reached" (not within max_shock)
    shock: float = math.nan
    shock_se: float = math.nan
    slope: float = math.nan
    slope_se: float = math.nan
    metric_se_at_shock: float = math.nan
    max_shock: float = math.nan
    tolerance: float = math.nan
    n_paths: int = 0
    seed: int = 0

    def field_values(self) -> list[Any]:
        return self.shocks.values(self.shock) if math.isfinite(self.shock) else []

    def headline(self) -> dict[str, Any]:
        """Plain data for --json and the output file's attributes."""

        def number(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "target": self.target.text,
            "metric": self.target.label(),
            "level": self.target.level,
            "over": list(self.shocks.fields),
            "direction": list(self.shocks.direction),
            "mode": "relative" if self.shocks.relative else "absolute",
            "status": self.status,
            "shock": number(self.shock),
            "shock_se": number(self.shock_se),
            "shock_interval_95": None
            if not math.isfinite(self.shock_se)
            else [self.shock - 1.96 * self.shock_se, self.shock + 1.96 * self.shock_se],
            "field_values": dict(zip(self.shocks.fields, self.field_values(), strict=False)),
            "slope": number(self.slope),
            "slope_se": number(self.slope_se),
            "metric_se_at_shock": number(self.metric_se_at_shock),
            "max_shock": self.max_shock,
            "tolerance": self.tolerance,
            "paths": self.n_paths,
            "seed": self.seed,
            "evaluations": [{"shock": e.shock, "value": e.value, "se": e.se} for e in sorted(self.evaluations, key=lambda e: e.shock)],
        }


class _Collector:
    """Sink of engine.run keeping each chunk's per-path outcomes, put in path order at the end."""

    def __init__(self) -> None:
        self.chunks: list[ChunkResult] = []

    def write_chunk(self, chunk: ChunkResult) -> None:
        self.chunks.append(chunk)

    def outcomes(self, spec: RunSpec) -> PathOutcomes:
        ordered = sorted(self.chunks, key=lambda c: c.path_start)
        parts = [c.outcomes for c in ordered if c.outcomes is not None]
        layout = spec.layout
        return PathOutcomes(
            borrowers=layout.borrowers,
            instruments=layout.instruments,
            instrument_borrower=np.asarray(layout.instrument_owner, dtype=np.int64),
            steps_per_year=layout.steps_per_year,
            n_steps=layout.n_steps,
            default_step=np.concatenate([p.default_step for p in parts]).astype(np.int64),
            default_reason=np.concatenate([p.default_reason for p in parts]).astype(np.int64),
            loss=np.concatenate([p.loss for p in parts]),
            annuity=np.concatenate([p.risky_annuity for p in parts]),
        )


def simulate_outcomes(scenario: Scenario, backend: Backend, n_paths: int, seed: int, contagion: bool, workers: int | None) -> PathOutcomes:
    """Per-path outcomes of one scenario (the fire-sale chain as asked, no attribution pass)."""
    spec = dataclasses.replace(build_spec(scenario, "float64", contagion=contagion), attribution=False)
    if not spec.has_credit:
        raise ConfigError([f"{scenario.name}: the scenario has no borrowers, so there is no credit metric to stress"])
    collector = _Collector()
    run(spec, backend, n_paths=n_paths, seed=seed, save_paths=0, workers=workers, sink=collector, show_progress=False)
    return collector.outcomes(spec)


def reverse_stress(
    config: str,
    target_text: str,
    over: str,
    *,
    direction: str | None = None,
    relative: bool = True,
    overrides: list[str] | None = None,
    max_shock: float = 0.9,
    tolerance: float = 0.005,
    slope_step: float = 0.02,
    paths: int = 2000,
    seed: int = 1,
    contagion: bool = True,
    backend: str = "auto",
    workers: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> ReverseStressResult:
    """Search the shock along `over` at which the target is reached; every run on the same seed."""
    target = parse_target(target_text)
    if not (math.isfinite(max_shock) and max_shock > 0):
        raise ValueError(f"--max-shock must be above 0, got {max_shock}")
    if not 0 < tolerance < max_shock:
        raise ValueError(f"--tolerance must lie in (0, --max-shock), got {tolerance}")
    if not 0 < slope_step < max_shock:
        raise ValueError(f"--slope-step must lie in (0, --max-shock), got {slope_step}")
    base_overrides = list(overrides or [])
    base = load_scenario(config, base_overrides)
    target.check_names(tuple(b.name for b in base.borrowers), tuple(d.name for b in base.borrowers for d in b.debt))
    tenor_steps(target.years, base.time.steps_per_year, base.time.n_steps)  # a tenor beyond the horizon is refused before any run
    shocks = plan_direction(base, over, direction, relative)
    engine_backend = get_backend(backend, None)
    seen: dict[float, Evaluation] = {}

    bar = Progress(
        TextColumn("reverse stress"),
        BarColumn(),
        TextColumn("{task.completed} runs"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console or Console(stderr=True),
        disable=not show_progress,
    )
    expected = 5 + math.ceil(math.log2(max_shock / tolerance))

    def evaluate(shock: float) -> Evaluation:
        shock = float(shock)
        if shock in seen:
            return seen[shock]
        try:
            scenario = load_scenario(config, base_overrides + shocks.overrides(shock))
        except ConfigError as exc:
            raise ConfigError([f"--over at shock {shock:.4g}: {p}" for p in exc.problems]) from None
        outcomes = simulate_outcomes(scenario, engine_backend, paths, seed, contagion, workers)
        est = target.estimate(outcomes)
        seen[shock] = Evaluation(shock, est.value, est.se, est.per_path)
        bar.update(task, advance=1, description=f"shock {shock:.4f}: {target.label()} = {est.value:.4g} (target {target.level:.4g})")
        return seen[shock]

    with bar:
        task = bar.add_task("", total=expected)
        result = _search(target, shocks, evaluate, max_shock, tolerance, slope_step)
        bar.update(task, total=len(seen), completed=len(seen))
    result.evaluations = list(seen.values())
    result.max_shock, result.tolerance, result.n_paths, result.seed = max_shock, tolerance, paths, seed
    return result


def _search(
    target: Target,
    shocks: ShockDirection,
    evaluate: Callable[[float], Evaluation],
    max_shock: float,
    tolerance: float,
    slope_step: float,
) -> ReverseStressResult:
    at_base = evaluate(0.0)
    if at_base.value >= target.level:
        return ReverseStressResult(target, shocks, [], "at_base", shock=0.0)
    at_max = evaluate(max_shock)
    if at_max.value < target.level:
        return ReverseStressResult(target, shocks, [], "not_reached")
    shock = float(brentq(lambda s: evaluate(s).value - target.level, 0.0, max_shock, xtol=tolerance, maxiter=100))
    crossing = evaluate(shock)
    lo, hi = max(shock - slope_step, 0.0), min(shock + slope_step, max_shock)
    below, above = evaluate(lo), evaluate(hi)
    slope = (above.value - below.value) / (hi - lo)
    slope_se = paired_se(_as_estimate(above), _as_estimate(below)) / (hi - lo)
    shock_se = crossing.se / slope if slope > 0 else math.nan
    return ReverseStressResult(
        target, shocks, [], "found", shock=shock, shock_se=shock_se, slope=slope, slope_se=slope_se, metric_se_at_shock=crossing.se
    )


def _as_estimate(e: Evaluation) -> Estimate:
    return Estimate(e.value, e.per_path)


def write_reverse_stress(folder: str | Path, headline: dict[str, Any]) -> Path:
    """DIR/reverse_stress.json: the search and its answer (`ReverseStressResult.headline`)."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "reverse_stress.json"
    partial = out / f".reverse_stress.json.partial-{os.getpid()}"
    try:
        partial.write_text(json.dumps(headline, indent=2, allow_nan=False) + "\n")
        os.replace(partial, target)
    except OSError as exc:
        raise ValueError(f"{target}: cannot write: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target
