"""Writing a fit as a YAML fragment that extends a base scenario.

The fragment says `extends: BASE` (a shipped scenario or a file, `baseline` by default) and
holds only the fitted fields, so it runs as it is (`gpusim run fragment.yaml`), a scenario can
extend it, and fragments chain: calibrate rental rates with `--base crypto.yaml` to stack them.
Named items (assets, generations) merge by name, as every `extends:` does; items the base does
not have are left out (a new generation needs fields no market data gives), and the merged
scenario is validated before the file is written.
"""

from __future__ import annotations

import copy
from datetime import date as Date
from pathlib import Path
from typing import Any

import yaml

from gpusim.calibrate.data import DataError
from gpusim.calibrate.estimates import Fit
from gpusim.scenario import ConfigError, scenario_from
from gpusim.scenario.loading import deep_merge, load_raw, resolve_path

NAMED_LISTS = (("crypto", "assets"), ("compute", "generations"))


def combined_fragment(fits: list[Fit], base: str) -> tuple[dict[str, Any], list[str]]:
    """The fits' fragments merged (the first fit's regime chain wins), less items the base lacks; and notes on what was left out."""
    raw = load_raw(resolve_path(base))
    merged: dict[str, Any] = {}
    for fit in fits:
        piece = copy.deepcopy(fit.fragment)
        if "regime" in merged:
            piece.pop("regime", None)
        merged = deep_merge(merged, piece) if merged else piece
    notes = []
    for section, key in NAMED_LISTS:
        items = merged.get(section, {}).get(key)
        if items is None:
            continue
        known = {item["name"] for item in raw.get(section, {}).get(key, [])}
        kept = [item for item in items if item["name"] in known]
        for item in items:
            if item["name"] not in known:
                notes.append(f"{section}.{key}: {item['name']} is not in {base}; left out of the fragment")
        merged[section][key] = kept
        if not kept:
            del merged[section][key]
            if not merged[section]:
                del merged[section]
    return merged, notes


def write_fragment(fits: list[Fit], out: str | Path, base: str = "baseline", command: str = "") -> list[str]:
    """Write the fragment to `out` after checking that the base merged with it is a valid scenario."""
    fragment, notes = combined_fragment(fits, base)
    path = Path(out)
    sources = ", ".join(dict.fromkeys(Path(fit.source).name for fit in fits))
    fragment = {
        "name": path.stem,
        "description": f"{base} with the {fits[0].kind} block calibrated to {sources} by gpusim calibrate",
        **fragment,
    }
    try:
        scenario_from(deep_merge(copy.deepcopy(load_raw(resolve_path(base))), fragment), ())
    except ConfigError as exc:
        raise DataError(f"the fitted parameters do not make a valid scenario on {base}: " + "; ".join(exc.problems)) from None
    lines = [
        f"# Calibrated by gpusim calibrate on {Date.today()}: {command}".rstrip(": "),
        "# Fitted parameters (value, standard error):",
    ]
    for fit in fits:
        lines.append(f"#   from {fit.source}")
        lines += [f"#   {e.path} = {e.value:.6g} (s.e. {e.se:.3g}) {e.unit}" for e in fit.estimates]
    if len(fits) > 1 and fits[0].kind == "crypto":
        lines.append(f"# regime chain: from {fits[0].state['asset']} (the first column); the other assets' chains are shown above only")
    lines += [f"# {note}" for note in notes]
    parent = str(Path(base).resolve()) if Path(base).is_file() else base
    body = yaml.safe_dump({"extends": parent, **fragment}, sort_keys=False, default_flow_style=False)
    try:
        path.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return notes
