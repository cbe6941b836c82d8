"""The desk's tables for `gpusim run` and `gpusim inspect`: ratings, IFRS 9 / CECL loss, market
reconciliation and tranches, from the `desk` part of the headline (docs/desk.md)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

READING_STYLE = {"below break-even": "red", "premium": "green", "too wide to be a premium": "yellow"}


def _m(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:,.1f}"


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}%}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return "> 100x" if x > 100 else f"{x:,.2f}x"


def _grade(row: dict[str, Any]) -> str:
    spread = "" if row["grade_low"] == row["grade_high"] else f" ({row['grade_low']} to {row['grade_high']})"
    return row["grade"] + spread


def _table(title: str, columns: list[str], left: int) -> Table:
    table = Table(title=title)
    for k, column in enumerate(columns):
        table.add_column(column, justify="left" if k < left else "right", no_wrap=True)
    return table


def desk_tables(desk: dict[str, Any]) -> list[Table]:
    """Rich tables of `headline(...)["desk"]`; the same content as its JSON."""
    ratings = _table(
        "borrowers: rating grade of the horizon PD (S&P cumulative default rates 1981-2023; range: PD ± 1.96 s.e.)",
        ["borrower", "tenor", "PD", "grade"],
        1,
    )
    for b in desk["borrowers"]:
        ratings.add_row(b["name"], f"{b['tenor_years']:g}y", f"{_pct(b['pd'])} ± {_pct(b['pd_se'])}", _grade(b))

    ecl = _table(
        "instruments: grade to maturity and IFRS 9 / CECL expected credit loss (USD m, at the effective interest rate)",
        ["instrument", "borrower", "tenor", "PD", "grade", "EIR", "ECL 12m", "ECL lifetime", "EL (base curve)"],
        2,
    )
    for i in desk["instruments"]:
        ecl.add_row(
            i["name"],
            i["borrower"],
            f"{i['tenor_years']:.2f}y",
            _pct(i["pd"]),
            _grade(i),
            _pct(i["eir"], 2),
            f"{_m(i['ecl_12m'])} ± {_m(i['ecl_12m_se'])}",
            f"{_m(i['ecl_lifetime'])} ± {_m(i['ecl_lifetime_se'])}",
            _m(i["el"]),
        )

    market = _table(
        f"market reconciliation: spread charged against break-even; implied PD at {desk['recovery']:.0%} recovery "
        f"(too wide: ratio > {desk['max_spread_ratio']:g}x and more than {desk['max_premium_bps']:,.0f} bps above)",
        ["instrument", "market bps", "break-even bps", "market / model", "implied PD", "model PD", "implied / model PD", "reading"],
        1,
    )
    for i in desk["instruments"]:
        style = READING_STYLE[i["reading"]]
        market.add_row(
            i["name"],
            f"{i['market_spread_bps']:,.0f}",
            "-" if i["breakeven_spread_bps"] is None else f"{i['breakeven_spread_bps']:,.0f}",
            _ratio(i["spread_ratio"]),
            _pct(i["implied_pd"]),
            _pct(i["pd"]),
            _ratio(i["pd_ratio"]),
            f"[{style}]{i['reading']}[/]",
        )
    tables = [ratings, ecl, market]

    if desk["tranches"]:
        tranches = _table(
            "tranches: loss of a facility cut by attachment and detachment (USD m, discounted; PD = probability the tranche is hit)",
            ["facility", "tranche", "attach - detach", "notional", "EL", "EL % notional", "PD", "break-even bps"],
            2,
        )
        for t in desk["tranches"]:
            spread = t["breakeven_spread_bps"]
            tranches.add_row(
                t["facility"],
                t["tranche"],
                f"{t['attachment']:.0%} - {t['detachment']:.0%}",
                _m(t["notional"]),
                f"{_m(t['el'])} ± {_m(t['el_se'])}",
                _pct(t["el_share_of_notional"], 2),
                f"{_pct(t['pd'])} ± {_pct(t['pd_se'])}",
                "-" if spread is None else f"{spread:,.0f} ± {t['breakeven_spread_bps_se']:,.0f}",
            )
        tables.append(tranches)
    return tables
