"""The report's desk section: rating grades, IFRS 9 / CECL expected credit loss, the market
reconciliation and the tranche table, from `gpusim.output.desk_numbers` (docs/desk.md)."""

from __future__ import annotations

from typing import Any

from gpusim.output.desk_numbers import desk_numbers
from gpusim.report.tables import Money, Table, number_cell

READING_CLASS = {"below break-even": "neg", "premium": "pos", "too wide to be a premium": "neg"}


def _share(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}%}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "> 100x" if x > 100 else f"{x:,.2f}x"


def _grade(row: dict[str, Any]) -> str:
    return row["grade"] if row["grade_low"] == row["grade_high"] else f"{row['grade']} ({row['grade_low']} to {row['grade_high']})"


def _money(money: Money, x: float | None) -> str:
    return "n/a" if x is None else money(x)


def desk_tables(results: Any, money: Money) -> list[Table]:
    """The desk section's tables, or none for a run without per-path outcomes."""
    desk = desk_numbers(results)
    if desk is None:
        return []
    return [
        rating_table(desk),
        ecl_table(desk, money),
        reconciliation_table(desk),
        *([tranche_table(desk, money)] if desk["tranches"] else []),
    ]


def rating_table(desk: dict[str, Any]) -> Table:
    rows = [
        [b["name"], number_cell(f"{b['tenor_years']:g}"), number_cell(f"{_share(b['pd'])} ± {_share(b['pd_se'])}"), _grade(b)]
        for b in desk["borrowers"]
    ]
    title = f"Rating grade of each borrower's horizon PD ({desk['rating_source']}; in brackets: the grades of PD ± 1.96 s.e.)"
    return Table(title, ("borrower", "tenor, years", "PD ± s.e.", "grade"), rows, "desk-rating-table")


def ecl_table(desk: dict[str, Any], money: Money) -> Table:
    rows = []
    for i in desk["instruments"]:
        rows.append(
            [
                i["name"],
                i["borrower"],
                number_cell(f"{i['tenor_years']:.2f}"),
                number_cell(_share(i["pd"])),
                _grade(i),
                number_cell(_share(i["eir"], 2)),
                number_cell(f"{_money(money, i['ecl_12m'])} ± {_money(money, i['ecl_12m_se'])}"),
                number_cell(f"{_money(money, i['ecl_lifetime'])} ± {_money(money, i['ecl_lifetime_se'])}"),
                number_cell(_money(money, i["el"])),
            ]
        )
    u = money.unit
    header = (
        "instrument",
        "borrower",
        "tenor, years",
        "PD to maturity",
        "grade",
        "EIR",
        f"ECL 12 months (stage 1), {u}",
        f"ECL lifetime (stage 2), {u}",
        f"EL at the base curve, {u}",
    )
    return Table(
        "Instruments: rating grade to maturity and IFRS 9 / CECL expected credit loss at the effective rate", header, rows, "ecl-table"
    )


def reconciliation_table(desk: dict[str, Any]) -> Table:
    rows = []
    for i in desk["instruments"]:
        breakeven = i["breakeven_spread_bps"]
        rows.append(
            [
                i["name"],
                number_cell(f"{i['market_spread_bps']:,.0f}"),
                number_cell("n/a" if breakeven is None else f"{breakeven:,.0f}"),
                number_cell(_ratio(i["spread_ratio"])),
                number_cell(_share(i["implied_pd"])),
                number_cell(_share(i["pd"])),
                number_cell(_ratio(i["pd_ratio"])),
                (i["reading"], READING_CLASS[i["reading"]]),
            ]
        )
    header = ("instrument", "market, bps", "break-even, bps", "market / model", "implied PD", "model PD", "implied / model PD", "reading")
    title = (
        f"Market reconciliation: implied PD from the credit triangle at {desk['recovery']:.0%} recovery; too wide to be a premium "
        f"where market / model > {desk['max_spread_ratio']:g}x and the gap exceeds {desk['max_premium_bps']:,.0f} bps"
    )
    return Table(title, header, rows, "reconciliation-table")


def tranche_table(desk: dict[str, Any], money: Money) -> Table:
    rows = []
    for t in desk["tranches"]:
        spread = t["breakeven_spread_bps"]
        rows.append(
            [
                t["facility"],
                t["tranche"],
                number_cell(f"{t['attachment']:.0%} - {t['detachment']:.0%}"),
                number_cell(money(t["notional"])),
                number_cell(f"{_money(money, t['el'])} ± {_money(money, t['el_se'])}"),
                number_cell(_share(t["el_share_of_notional"], 2)),
                number_cell(f"{_share(t['pd'])} ± {_share(t['pd_se'])}"),
                number_cell("n/a" if spread is None else f"{spread:,.0f} ± {t['breakeven_spread_bps_se']:,.0f}"),
            ]
        )
    u = money.unit
    header = (
        "facility",
        "tranche",
        "attach - detach",
        f"notional, {u}",
        f"EL, {u} ± s.e.",
        "EL, % of notional",
        "PD (hit) ± s.e.",
        "break-even, bps",
    )
    return Table("Tranches: the facility's discounted loss cut by attachment and detachment", header, rows, "tranche-table")
