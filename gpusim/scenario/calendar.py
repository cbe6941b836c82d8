"""The calendar: dated events of a scenario placed on its time grid.

Dates become years from t_0 on a calendar-month basis, so an event on the first of a month
falls exactly on a monthly step. One rule says which step holds a time: the step k -> k+1
whose interval (t_k, t_{k+1}] contains it. Every dated input (launches, halvings, payments,
covenant tests, contract expiries, maturities) goes through `step_holding`.
"""

from __future__ import annotations

import math
from datetime import date as Date

from gpusim.scenario.schema import TimeGrid

ON_STEP_TOLERANCE = 1e-9
"""Steps by which a time may exceed t_k and still count as on t_k: month fractions are not exact in binary."""


def year_fraction(start: Date, date: Date) -> float:
    """Years from start to date on a calendar-month basis, so monthly dates fall on monthly steps."""
    months = (date.year - start.year) * 12 + (date.month - start.month)
    days_in_month = (Date(date.year + date.month // 12, date.month % 12 + 1, 1) - Date(date.year, date.month, 1)).days
    return (months + (date.day - start.day) / days_in_month) / 12.0


def step_holding(t_years: float, steps_per_year: int) -> int:
    """Index k of the step whose interval (t_k, t_{k+1}] holds time t (years from t_0).

    Not clipped to the grid: k < 0 is at or before t_0, k >= n_steps is after the horizon.
    """
    return math.ceil(t_years * steps_per_year - ON_STEP_TOLERANCE) - 1


def event_step(grid: TimeGrid, date: Date) -> int | None:
    """Index k of the step k -> k+1 whose interval (t_k, t_{k+1}] holds the date; None if outside."""
    k = step_holding(year_fraction(grid.start, date), grid.steps_per_year)
    return k if 0 <= k < grid.n_steps else None


def add_months(d: Date, months: int) -> Date:
    """The same day `months` later, clipped to the end of a shorter month (Jan 31 + 1 = Feb 28)."""
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    last_day = (Date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1) - Date(year, month + 1, 1)).days
    return Date(year, month + 1, min(d.day, last_day))
