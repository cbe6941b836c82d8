"""Batch files: a base scenario plus named stresses and/or a grid of parameter values.

A batch file is YAML validated against `BatchFile`. It resolves into one fully validated
`Scenario` per batch scenario (`resolve_batch`), each with its seed, and a hash of everything
that decides the numbers (`ResolvedBatch.digest`), so a resumed batch can prove it is still
the batch it started as. Problems become one `ConfigError` naming the batch file and the field.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from gpusim.scenario.loading import (
    SHIPPED_BATCH_SUFFIX,
    SHIPPED_PACKAGE,
    ConfigError,
    apply_overrides,
    format_validation_errors,
    load_raw,
    resolve_path,
    validate_mapping,
)
from gpusim.scenario.schema import Scenario, Strict

BATCH_FORMAT = 1
"""Version of the resolved-batch description that `digest` hashes; part of the hash."""

ParamPath = Annotated[str, Field(min_length=1, description="dotted field path as for --set, e.g. compute.deflation.tight")]


class NamedScenario(Strict):
    """One stress of the batch: a config (default: the batch's base) with field overrides."""

    name: str = Field(description="scenario name in the output (/scenarios/<name>); unique in the batch, no '/'")
    config: str | None = Field(None, description="scenario file (relative to the batch file) or shipped scenario name; default: base")
    overrides: dict[ParamPath, Any] = Field(
        default_factory=dict, alias="set", description="field path -> value, applied like --set after the batch-wide `set`"
    )


class BatchFile(Strict):
    """The batch file schema (docs/batches.md)."""

    model_config = Strict.model_config | {"populate_by_name": True}

    name: str = Field("", description="batch name (defaults to the file name)")
    description: str = Field("", description="what the batch compares")
    base: str = Field("baseline", description="scenario file or shipped name the grid and unconfigured named scenarios start from")
    paths: Annotated[int, Field(ge=1)] = Field(description="Monte Carlo paths per scenario")
    seed: Annotated[int, Field(ge=0, lt=2**64)] = Field(1, description="random seed (64-bit)")
    common_random_numbers: bool = Field(
        True, description="every scenario uses `seed` (same shocks), so differences between scenarios are not noise"
    )
    chunk_paths: Annotated[int, Field(ge=1)] = Field(10_000, description="paths per work unit; fixes the unit boundaries")
    dtype: Literal["float64", "float32"] = Field("float64", description="floating-point precision")
    contagion: bool = Field(True, description="fire-sale chain on, with the attribution pass that reruns the paths without it")
    save_paths: Annotated[int, Field(ge=0)] = Field(100, description="full factor paths stored for the first K paths of each scenario")
    overrides: dict[ParamPath, Any] = Field(default_factory=dict, alias="set", description="field path -> value for every scenario")
    scenarios: list[NamedScenario] = Field(default_factory=list, description="named stresses")
    grid: dict[ParamPath, list[Any]] = Field(
        default_factory=dict, description="field path -> values on `base`; every combination is one scenario (cartesian product)"
    )
    grid_labels: dict[ParamPath, str] = Field(
        default_factory=dict, description="field path -> short label used in grid scenario names (default: its last two parts)"
    )


def _shape_problems(spec: BatchFile) -> list[str]:
    """Problems across fields of a batch file that pydantic checks field by field."""
    problems = [
        f"grid.{param}: empty list of values (give at least one, or remove the parameter)" for param, v in spec.grid.items() if not v
    ]
    problems += [
        f"grid_labels.{param}: not a parameter of grid (have {list(spec.grid)})" for param in spec.grid_labels if param not in spec.grid
    ]
    if not spec.scenarios and not spec.grid:
        problems.append("scenarios: no scenarios; give `scenarios` (named stresses) and/or `grid`")
    return problems


@dataclass(frozen=True)
class BatchScenario:
    """One resolved scenario of a batch: validated, with its seed and how it was made."""

    name: str
    scenario: Scenario
    seed: int
    source: str  # the config it started from
    overrides: tuple[str, ...]  # FIELD.PATH=VALUE, batch-wide first


@dataclass(frozen=True)
class ResolvedBatch:
    """A batch file with every scenario resolved and validated."""

    spec: BatchFile
    scenarios: tuple[BatchScenario, ...]
    source: str

    @property
    def name(self) -> str:
        return self.spec.name

    def settings(self) -> dict[str, Any]:
        """The batch-wide settings that decide the numbers (hashed with the scenarios)."""
        s = self.spec
        return {
            "paths": s.paths,
            "seed": s.seed,
            "common_random_numbers": s.common_random_numbers,
            "chunk_paths": s.chunk_paths,
            "dtype": s.dtype,
            "contagion": s.contagion,
            "save_paths": min(s.save_paths, s.paths),
        }

    @cached_property
    def scenario_digests(self) -> dict[str, str]:
        """Scenario name -> hash of its seed and resolved config (what a resume checks, and names when it changed)."""
        return {b.name: _sha256({"seed": b.seed, "config": b.scenario.model_dump(mode="json")}) for b in self.scenarios}

    @cached_property
    def digest(self) -> str:
        """Hash of the format, the settings and every resolved scenario in order."""
        return _sha256({"format": BATCH_FORMAT, "settings": self.settings(), "scenarios": list(self.scenario_digests.items())})


def _sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _value_text(value: Any) -> str:
    """A value as it would be written after `--set FIELD=`: JSON, which YAML parses back."""
    return json.dumps(value, default=str, separators=(",", ":"))


def _label_text(value: Any) -> str:
    return value if isinstance(value, str) else _value_text(value)


def derived_seed(seed: int, name: str) -> int:
    """An independent 64-bit seed per scenario when common random numbers are off."""
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def grid_points(spec: BatchFile) -> list[tuple[str, dict[str, Any]]]:
    """(scenario name, overrides) for every combination of the grid, first parameter slowest."""
    params = list(spec.grid)
    if not params:
        return []
    default = [".".join(p.split(".")[-2:]) for p in params]
    labels = [spec.grid_labels.get(p) or (d if default.count(d) == 1 else p) for p, d in zip(params, default, strict=True)]
    points = []
    for values in itertools.product(*(spec.grid[p] for p in params)):
        name = "grid[" + ",".join(f"{label}={_label_text(v)}" for label, v in zip(labels, values, strict=True)) + "]"
        points.append((name, dict(zip(params, values, strict=True))))
    return points


def _check_name(name: str, where: str) -> str | None:
    if not name.strip():
        return f"{where}: scenario name is empty"
    if "/" in name or name.startswith("."):
        return f"{where}: scenario name {name!r} may not contain '/' or start with '.' (it names an HDF5 group)"
    return None


def _shipped_batch(ref: str) -> Path:
    """A batch file shipped with the package (configs/*_batch.yaml), by name."""
    shipped = {p.name.removesuffix(".yaml"): p for p in resources.files(SHIPPED_PACKAGE).iterdir() if p.name.endswith(SHIPPED_BATCH_SUFFIX)}
    name = ref.removesuffix(".yaml")
    if "/" in ref or name not in shipped:
        raise ConfigError([f"{ref}: no such batch file (and not a shipped batch: {', '.join(sorted(shipped))})"])
    return Path(str(shipped[name]))


def load_batch(path: str | Path) -> ResolvedBatch:
    """Read and validate a batch file (a path or a shipped batch name) and resolve every scenario; ConfigError lists every problem."""
    p = Path(path)
    source = str(path)
    if not p.is_file():
        p = _shipped_batch(source)
    raw = load_raw(p)  # YAML syntax, top-level mapping (a batch file has no `extends:`)
    try:
        spec = BatchFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(source, exc)) from None
    if problems := _shape_problems(spec):
        raise ConfigError([f"{source}: {p}" for p in problems])
    if not spec.name:
        spec = spec.model_copy(update={"name": p.name.removesuffix(".yaml").removesuffix(".yml")})

    planned: list[tuple[str, str, str, str, dict[str, Any]]] = []  # (where, name, config, field naming the config, overrides)
    for i, named in enumerate(spec.scenarios):
        config_field = f"scenarios[{i}].config" if named.config else "base"
        planned.append((f"scenarios[{i}]", named.name, named.config or spec.base, config_field, named.overrides))
    # a grid point's errors say `grid` and the value, not the point: the same mistake is reported once
    planned += [("grid", name, spec.base, "base", overrides) for name, overrides in grid_points(spec)]

    problems: list[str] = []
    seen: dict[str, str] = {}
    for where, name, *_ in planned:
        bad = _check_name(name, f"{source}: {where}.name")
        if bad:
            problems.append(bad)
        elif name in seen:
            field = "grid (a value repeated?)" if where == "grid" else f"{where}.name"
            problems.append(f"{source}: {field}: duplicate scenario name {name!r} (also {seen[name]})")
        else:
            seen[name] = where
    if problems:
        raise ConfigError(problems)

    scenarios = []
    parsed: dict[Path, dict[str, Any]] = {}  # each config file is read once, however many grid points start from it
    for where, name, config, config_field, overrides in planned:
        try:
            scenarios.append(_resolve_one(spec, p, where, name, config, config_field, overrides, parsed))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # a bad base is reported once, not once per grid point
    return ResolvedBatch(spec=spec, scenarios=tuple(scenarios), source=source)


def _resolve_one(
    spec: BatchFile,
    batch_path: Path,
    where: str,
    name: str,
    config: str,
    config_field: str,
    overrides: dict[str, Any],
    parsed: dict[Path, dict[str, Any]],
) -> BatchScenario:
    """Load `config` relative to the batch file, apply the batch-wide then the scenario's overrides, validate."""
    location = f"{batch_path}: {where}"
    try:
        config_path = resolve_path(config, batch_path)
    except ConfigError as exc:
        raise ConfigError([f"{batch_path}: {config_field}: {exc.problems[0]}"]) from None
    if config_path not in parsed:
        parsed[config_path] = load_raw(config_path)
    data = copy.deepcopy(parsed[config_path])
    settings = [f"{k}={_value_text(v)}" for k, v in spec.overrides.items()] + [f"{k}={_value_text(v)}" for k, v in overrides.items()]
    try:
        data = apply_overrides(data, settings)
    except ConfigError as exc:
        raise ConfigError([f"{location}: {line.removeprefix('--set ')}" for line in exc.problems]) from None
    data["name"] = name
    scenario = validate_mapping(data, location if where == "grid" else f"{location} ({name})")
    seed = spec.seed if spec.common_random_numbers else derived_seed(spec.seed, name)
    return BatchScenario(name=name, scenario=scenario, seed=seed, source=config, overrides=tuple(settings))
