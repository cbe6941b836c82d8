"""`gpusim calibrate` and `gpusim backtest`: market blocks fitted to data, and scored out of sample.

One module per market block of docs/model.md section 4 (crypto, rental, hardware, power), each
turning a checked data file (`data`) into a `Fit`: parameters with standard errors, diagnostics,
a YAML fragment a scenario can `extends:` (`fragment`) and a fit plot. `backtest` simulates the
fitted market forward with gpusim's own model and scores the realised values.
"""

from __future__ import annotations

from datetime import date as Date
from pathlib import Path

from gpusim.calibrate.data import DataError, read_series, read_table
from gpusim.calibrate.estimates import Fit

KINDS = ("crypto", "rental", "hardware", "power")

HARDWARE_COLUMNS = ["age_years", "price", "rental_rate", "utilization", "power_cost"]


def calibrate(
    kind: str,
    path: str | Path,
    start: Date | None = None,
    end: Date | None = None,
    columns: tuple[str, ...] = (),
    launches: tuple[Date, ...] = (),
    expected_deflation: float = 0.25,
    max_jump_rate: float | None = None,
    releases: dict[str, Date] | None = None,
) -> list[Fit]:
    """Fit one block to a data file: one Fit per crypto asset column, one Fit otherwise.

    `releases` are the generations' release dates (rental: the launches that leave older
    generations behind), normally the base scenario's (`base_releases`).
    """
    if kind == "crypto":
        from gpusim.calibrate.crypto import MAX_JUMP_RATE, fit_crypto

        series = read_series(path, list(columns) or None, min_rows=200, start=start, end=end)
        return [fit_crypto(series, asset, max_jump_rate or MAX_JUMP_RATE) for asset in series.values]
    if kind == "rental":
        from gpusim.calibrate.rental import fit_rental

        series = read_series(path, list(columns) or None, min_rows=6, start=start, end=end)
        return [fit_rental(series, list(launches), releases or {})]
    if kind == "power":
        from gpusim.calibrate.power import fit_power

        series = read_series(path, list(columns) or None, min_rows=24, start=start, end=end)
        return [fit_power(series, column) for column in list(series.values)[:1]]
    if kind == "hardware":
        from gpusim.calibrate.hardware import fit_hardware

        table = read_table(path, HARDWARE_COLUMNS, text=["generation"], non_negative=["age_years"], min_rows=5)
        return [fit_hardware(table, expected_deflation)]
    raise DataError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")


def base_releases(base: str) -> dict[str, Date]:
    """Release date of every generation of a scenario (a shipped name or a file)."""
    from gpusim.scenario.loading import load_raw, resolve_path

    generations = load_raw(resolve_path(base)).get("compute", {}).get("generations", [])
    return {g["name"]: Date.fromisoformat(str(g["release"])) for g in generations if "release" in g}


def draw_plots(fits: list[Fit], folder: str | Path) -> list[Path]:
    """Each fit's plot as a PNG in `folder` (created if needed), named by kind and first parameter."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    directory = Path(folder)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{directory}: cannot create the plot folder: {exc.strerror or exc}") from None
    written = []
    for i, fit in enumerate(fits):
        if fit.plot is None:
            continue
        figure = Figure(figsize=(8, 5), layout="constrained")
        fit.plot(figure)
        name = fit.state.get("asset") or (str(i) if len(fits) > 1 else "")
        path = directory / f"{fit.kind}{'_' + name if name else ''}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


__all__ = ["KINDS", "DataError", "Fit", "calibrate", "draw_plots"]
