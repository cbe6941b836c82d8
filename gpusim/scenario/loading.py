"""Reading scenario files: YAML, `extends:`, `--set` overrides, shipped scenarios, error messages.

A file may say `extends: other.yaml` (a path relative to it, or the name of a shipped scenario)
and override any field; mappings merge recursively and lists of named items (assets,
generations, borrowers, debt, ...) merge by `name`, so a stress file states only what it
changes. Errors users can cause become one `ConfigError` that lists every problem with its
field path.
"""

from __future__ import annotations

import copy
import re
import reprlib
from collections.abc import Mapping, Sequence
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpusim.scenario.schema import Scenario, check_references


class ConfigError(Exception):
    """A scenario that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


SHIPPED_PACKAGE = "gpusim.configs"
"""The package the shipped scenarios (configs/*.yaml) are installed as."""

SHIPPED_BATCH_SUFFIX = "_batch.yaml"
"""configs/*_batch.yaml are batch files (gpusim.batch), not scenarios."""


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading every float spelling YAML 1.2 allows (`5e-1`, `1E6`, `1.5e3`):
    PyYAML alone follows YAML 1.1, which reads `5e-1` as a string."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text as Python data, numbers read as YAML 1.2 reads them."""
    return yaml.load(text, Loader=YamlLoader)


SHOWN_CHARS = 80
"""At most this much of an offending value is echoed in a message (a YAML alias bomb expands to gigabytes)."""

_brief = reprlib.Repr()
_brief.maxlevel, _brief.maxdict, _brief.maxlist, _brief.maxtuple = 2, 4, 4, 4
_brief.maxstring = _brief.maxother = _brief.maxlong = SHOWN_CHARS


def shown(value: Any) -> str:
    """`repr(value)` cut to about SHOWN_CHARS characters, without building the whole of a huge value."""
    text = _brief.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package (configs/*.yaml, except the batch files)."""
    root = resources.files(SHIPPED_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml") and not p.name.endswith(SHIPPED_BATCH_SUFFIX))


def resolve_path(ref: str | Path, relative_to: Path | None = None) -> Path:
    """A config reference: an existing path (relative to the including file) or a shipped name."""
    candidates = []
    ref_path = Path(ref)
    if relative_to is not None and not ref_path.is_absolute():
        candidates.append(relative_to.parent / ref_path)
    candidates.append(ref_path)
    for c in candidates:
        if c.is_file():
            return c
    name = ref_path.name[:-5] if ref_path.name.endswith(".yaml") else ref_path.name
    if ref_path.parent == Path(".") and name in shipped_scenarios():
        return Path(str(resources.files(SHIPPED_PACKAGE) / f"{name}.yaml"))
    raise ConfigError([f"{ref}: no such config file (and not a shipped scenario: {', '.join(shipped_scenarios())})"])


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not a YAML text file (byte {exc.start} is not UTF-8 text)"]) from None
    try:
        data = parse_yaml(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigError([f"{path}: not a YAML text file ({exc.reason} at character {exc.position})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{where}: YAML syntax error: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping of fields, got {type(data).__name__}"])
    return data


def _is_named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value)


def deep_merge(base: Any, override: Any) -> Any:
    """Override wins; mappings merge recursively; lists of named mappings merge by name."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    if _is_named_list(base) and _is_named_list(override) and override:
        by_name = {item["name"]: item for item in override}
        merged_list = [deep_merge(item, by_name.pop(item["name"])) if item["name"] in by_name else item for item in base]
        return merged_list + [item for item in override if item["name"] in by_name]
    return override


def load_raw(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The merged mapping of a config file and everything it extends."""
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise ConfigError([f"{path}: extends forms a cycle: {cycle}"])
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    replaced = _replaced_fields(path, data.pop("replace", None))
    if not isinstance(parent, str):
        raise ConfigError([f"{path}: extends: must be a file name or shipped scenario name, got {shown(parent)}"])
    try:
        parent_path = resolve_path(parent, path)
    except ConfigError as exc:
        raise ConfigError([f"{path}: extends: {exc.problems[0]}"]) from None
    base = load_raw(parent_path, (*_chain, resolved))
    base.pop("name", None)
    base.pop("description", None)
    for key in replaced:
        base.pop(key, None)
    return deep_merge(base, data)


PORTFOLIO_FIELDS = ("borrowers", "desk")
"""Top-level fields that describe the portfolio, not the market: the desk block names the
portfolio's instruments, so a scenario without the borrowers is without it too."""


def market_only(data: dict[str, Any]) -> dict[str, Any]:
    """A scenario mapping's market: every top-level field but the portfolio's, with no borrowers."""
    return {k: v for k, v in data.items() if k not in PORTFOLIO_FIELDS} | {"borrowers": []}


def _replaced_fields(path: Path, replace: Any) -> list[str]:
    """`replace: [borrowers]`: top-level fields this file states whole instead of merging into its parent's
    (a portfolio imported onto a market scenario keeps none of the market file's borrowers)."""
    if replace is None:
        return []
    if not isinstance(replace, list) or not all(isinstance(key, str) for key in replace):
        raise ConfigError([f"{path}: replace: must be a list of top-level field names, got {shown(replace)}"])
    return replace


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `dotted.path=value` overrides (value parsed as YAML); list items by index or name."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError([f"--set {shown(item)}: expected FIELD.PATH=VALUE"])
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError:
            raise ConfigError([f"--set {shown(item)}: value is not valid YAML"]) from None
        parts = key.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]))
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError([f"--set {key}: {'.'.join(parts[:-1])} is not a mapping or list"])
    return data


def _list_index(node: list[Any], part: str, where: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if -len(node) <= index < len(node):
            return index
        raise ConfigError([f"--set {where}: index {index} out of range (list has {len(node)} items)"])
    for index, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return index
    names = [item.get("name") for item in node if isinstance(item, dict)]
    raise ConfigError([f"--set {where}: no item named {part!r} (have {names})"])


def _child(node: Any, part: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, where)]
    if isinstance(node, dict):
        if part not in node or not isinstance(node[part], (dict, list)):
            node[part] = {}
        return node[part]
    raise ConfigError([f"--set {where}: not a mapping or list"])


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("easy", "tight") or not str(part).startswith(("function-", "ByRegime")):
            out += f".{part}" if out else str(part)
    return out or "(top level)"


MAX_PROBLEMS = 30
"""Validation problems listed at most; the rest are counted (one mistake in a generated file can repeat thousands of times)."""


def _message(err: Any) -> str:
    """pydantic's message in the terms of the YAML file: no internal type names."""
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; `gpusim schema` lists the allowed fields)"
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if str(err.get("ctx", {}).get("class_name", "")).startswith("ByRegime"):
            return "expected a number (for both regimes) or a mapping with `easy` and `tight`"
        return "expected a mapping of fields"
    return err["msg"]


def format_validation_errors(source: str, exc: ValidationError) -> list[str]:
    """One line per pydantic error: `source: field.path: message (got value)`, in the terms of the YAML file."""
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_PROBLEMS]:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        value = err.get("input")
        got = "" if err["type"] == "missing" or isinstance(value, dict) else f" (got {shown(value)})"
        lines.append(f"{source}: {_format_loc(loc)}: {_message(err)}{got}")
    if len(errors) > MAX_PROBLEMS:
        lines.append(f"{source}: ... and {len(errors) - MAX_PROBLEMS} more problems")
    return lines


def load_scenario(ref: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, merge (extends), override and validate a scenario; raise ConfigError listing every problem."""
    path = resolve_path(ref)
    data = apply_overrides(load_raw(path), list(overrides or []))
    data.setdefault("name", path.name[:-5] if path.name.endswith(".yaml") else path.name)
    return validate_mapping(data, str(ref))


def validate_mapping(data: dict[str, Any], source: str = "config") -> Scenario:
    """A Scenario from an already merged mapping; ConfigError lists every problem, each prefixed by `source`."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(source, exc)) from None
    problems = check_references(scenario)
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    return scenario


def to_yaml(s: Scenario) -> str:
    """The resolved scenario as YAML (what `validate` prints and the HDF5 file stores)."""
    return yaml.safe_dump(s.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def scenario_from(config: str | PathLike[str] | Scenario | Mapping[str, Any], overrides: Sequence[str] = ()) -> Scenario:
    """A scenario from a path, a shipped name, a Scenario or a mapping, with `--set`-style overrides."""
    if isinstance(config, Scenario):
        if not overrides:
            return config
        return validate_mapping(apply_overrides(config.model_dump(mode="json"), list(overrides)), config.name)
    if isinstance(config, Mapping):
        data = apply_overrides(copy.deepcopy(dict(config)), list(overrides))
        return validate_mapping(data, str(data.get("name", "config")))
    return load_scenario(config, list(overrides))
