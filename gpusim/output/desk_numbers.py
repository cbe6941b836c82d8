"""The desk's numbers of a stored run, computed on read from its per-path outcomes (docs/desk.md).

Nothing of this is stored in the file: ratings, IFRS 9 / CECL expected credit loss, tranche
losses and the market reconciliation are functions of `/outcomes` (default steps, discounted
losses), `/summary` (PD term structure, risky annuity, break-even spreads) and the resolved
scenario (coupons, maturities, `desk:` settings). So a file written before these measures
existed gets them too, and changing `desk:` (a tranche split, the stated recovery) needs no
rerun: `gpusim inspect` reads the scenario stored in the file; the Python API takes any.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from gpusim.desk import (
    RATING_SOURCE,
    DeskAccumulator,
    desk_setup,
    implied_pd,
    rating_grade,
    rating_range,
    spread_ratio,
    spread_reading,
    tranche_breakeven_bps,
)
from gpusim.scenario import Scenario
from gpusim.scenario.calendar import step_holding, year_fraction

if TYPE_CHECKING:
    from gpusim.output.read import Results

READ_PATHS = 1 << 18
"""Paths read from /outcomes at a time: memory stays bounded for a file of any size."""


def _number(x: Any) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


def desk_numbers(results: Results, scenario: Scenario | None = None) -> dict[str, Any] | None:
    """Ratings, ECL, market reconciliation and tranches of a run as plain JSON-ready Python.

    None for a run without borrowers or without per-path outcomes. `scenario` replaces the
    stored one for the reporting settings (`desk:`); its portfolio must be the run's.
    """
    s = results.summary
    o = results.outcomes
    if o is None or "pd" not in s:
        return None
    scenario = scenario or results.scenario
    setup = desk_setup(scenario)
    accumulator = DeskAccumulator(setup)
    n = int(o.sizes["path"])
    for start in range(0, n, READ_PATHS):
        rows = slice(start, min(start + READ_PATHS, n))
        accumulator.add(np.asarray(o["default_step"].isel(path=rows).values), np.asarray(o["loss"].isel(path=rows).values))
    sums = accumulator.finalize()

    grid = scenario.time
    spy, n_steps = grid.steps_per_year, grid.n_steps
    pd, pd_se = s["pd"].values, s["pd_se"].values
    horizon = n_steps / spy
    borrowers = [str(b) for b in s["borrower"].values]
    instruments = [i for b in scenario.borrowers for i in b.debt]
    owner = setup.instrument_borrower
    desk = scenario.desk

    borrower_rows = []
    for b, name in enumerate(borrowers):
        low, high = rating_range(float(pd[b, -1]), float(pd_se[b, -1]), horizon)
        borrower_rows.append(
            {
                "name": name,
                "tenor_years": horizon,
                "pd": _number(pd[b, -1]),
                "pd_se": _number(pd_se[b, -1]),
                "grade": rating_grade(float(pd[b, -1]), horizon),
                "grade_low": low,
                "grade_high": high,
                "marginal_pd_by_year": [_number(x) for x in sums["marginal_pd"][b]],
            }
        )

    maturity = np.asarray(_maturity_steps(scenario), dtype=np.int64)
    market, breakeven = s["market_spread_bps"].values, s["breakeven_spread_bps"].values
    instrument_rows = []
    for i, inst in enumerate(instruments):
        b = int(owner[i])
        # PD by t_j: defaults up to the maturity step, within the horizon; a loan with refinancing terms may roll to the horizon
        j = n_steps if inst.refinancing is not None else int(min(maturity[i] + 1, n_steps))
        tenor = j / spy
        model_pd = float(pd[b, j])
        implied = float(implied_pd(float(market[i]), tenor, desk.recovery))
        low, high = rating_range(model_pd, float(pd_se[b, j]), tenor)
        instrument_rows.append(
            {
                "name": inst.name,
                "borrower": borrowers[b],
                "tenor_years": tenor,
                "pd": _number(model_pd),
                "pd_se": _number(pd_se[b, j]),
                "grade": rating_grade(model_pd, tenor),
                "grade_low": low,
                "grade_high": high,
                "eir": _number(setup.eir[i]),
                "el": _number(s["el"].values[i]),
                "ecl_12m": _number(sums["ecl_12m"][i]),
                "ecl_12m_se": _number(sums["ecl_12m_se"][i]),
                "ecl_lifetime": _number(sums["ecl_lifetime"][i]),
                "ecl_lifetime_se": _number(sums["ecl_lifetime_se"][i]),
                "ecl_by_year": [_number(x) for x in sums["ecl_by_year"][i]],
                "nominal_loss_by_year": [_number(x) for x in sums["nominal_loss_by_year"][i]],
                "market_spread_bps": _number(market[i]),
                "breakeven_spread_bps": _number(breakeven[i]),
                "spread_ratio": _number(spread_ratio(float(market[i]), float(breakeven[i]))),
                "implied_pd": _number(implied),
                "pd_ratio": _number(implied / model_pd) if model_pd > 0 else None,
                "reading": spread_reading(float(market[i]), float(breakeven[i]), desk.max_spread_ratio, desk.max_premium_bps),
            }
        )

    tranche_rows = []
    if setup.tranches:
        annuity = s["risky_annuity"].values if "risky_annuity" in s else None
        spread, spread_se = (None, None)
        if annuity is not None:
            spread, spread_se = tranche_breakeven_bps(sums["tranche_el"], sums["tranche_el_se"], setup.tranches, annuity)
        for t, cut in enumerate(setup.tranches):
            tranche_rows.append(
                {
                    "facility": cut.facility,
                    "tranche": cut.name,
                    "attachment": cut.attachment,
                    "detachment": cut.detachment,
                    "notional": cut.notional,
                    "el": _number(sums["tranche_el"][t]),
                    "el_se": _number(sums["tranche_el_se"][t]),
                    "el_share_of_notional": _number(sums["tranche_el"][t] / cut.notional) if cut.notional > 0 else None,
                    "pd": _number(sums["tranche_pd"][t]),
                    "pd_se": _number(sums["tranche_pd_se"][t]),
                    "breakeven_spread_bps": None if spread is None else _number(spread[t]),
                    "breakeven_spread_bps_se": None if spread_se is None else _number(spread_se[t]),
                }
            )

    return {
        "rating_source": RATING_SOURCE,
        "recovery": desk.recovery,
        "max_spread_ratio": desk.max_spread_ratio,
        "max_premium_bps": desk.max_premium_bps,
        "years": [min(float(y + 1), horizon) for y in range(setup.n_periods)],
        "borrowers": borrower_rows,
        "instruments": instrument_rows,
        "tranches": tranche_rows,
    }


def _maturity_steps(scenario: Scenario) -> list[int]:
    """Step holding each instrument's maturity date (beyond the horizon: past the last step)."""
    grid = scenario.time
    return [step_holding(year_fraction(grid.start, i.maturity_date), grid.steps_per_year) for b in scenario.borrowers for i in b.debt]
