"""Deal portfolios in spreadsheets: `gpusim import` and `gpusim export` (docs/deals.md).

The shipped template is the shipped baseline's borrowers and must import back to exactly the
baseline scenario; every bad spreadsheet gives exit code 2 and a message naming its sheet, row
and column, never a traceback.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml
from click.testing import CliRunner
from pydantic import Field

from gpusim.cli import main
from gpusim.scenario import ConfigError, load_scenario, scenario_from
from gpusim.scenario.loading import MAX_PROBLEMS
from gpusim.scenario.schema import ByRegime, Strict
from gpusim.scenario.spreadsheet import Table, csv_text, layout, read_portfolio, read_tables, sheet_contents, table_rows

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "deals.xlsx"
REGENERATE = "gpusim export baseline --out templates/deals.xlsx --overwrite"


def _invoke(*args: Any):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _same_scenario_but_labels(imported, reference) -> bool:
    return imported.model_copy(update={"name": reference.name, "description": reference.description}) == reference


def test_shipped_template_imports_to_the_shipped_baseline_exactly(tmp_path):
    out = tmp_path / "portfolio.yaml"
    result = _invoke("import", TEMPLATE, "--out", out)
    assert result.exit_code == 0, result.output
    imported, baseline = load_scenario(out), load_scenario("baseline")
    n_instruments = sum(len(b.debt) for b in baseline.borrowers)
    assert f"{len(baseline.borrowers)} borrowers, {n_instruments} instruments" in result.output
    assert imported.borrowers == baseline.borrowers
    assert _same_scenario_but_labels(imported, baseline)


def test_the_same_portfolio_on_another_market(tmp_path):
    """--market names the scenario the portfolio extends: the baseline's borrowers on the crypto-winter
    market are exactly crypto_winter (which changes the market only)."""
    out = tmp_path / "winter.yaml"
    assert _invoke("import", TEMPLATE, "--out", out, "--market", "crypto_winter").exit_code == 0
    assert yaml.safe_load(out.read_text())["extends"] == "crypto_winter"
    assert _same_scenario_but_labels(load_scenario(out), load_scenario("crypto_winter"))


def test_shipped_template_is_current(tmp_path):
    """templates/deals.xlsx is what `gpusim export baseline` writes today: the schema and baseline.yaml
    decide its sheets and columns, so a new field or a changed baseline needs the file regenerated."""
    fresh = tmp_path / "deals.xlsx"
    assert _invoke("export", "baseline", "--out", fresh).exit_code == 0
    assert sheet_contents(TEMPLATE) == sheet_contents(fresh), f"templates/deals.xlsx is stale: regenerate it with `{REGENERATE}`"


def test_layout_follows_the_schema():
    """Nested models flatten to dotted columns, lists of models are child sheets keyed by their parents,
    by-regime values have .easy and .tight columns."""
    tables = {t.sheet: t for t in layout()}
    assert list(tables)[:1] == ["borrowers"] and {"fleets", "treasury", "debt", "tenants"} <= set(tables)
    assert tables["fleets"].keys == ("borrower",)
    debt = {c.name for c in tables["debt"].columns}
    assert {"covenants.dscr_min", "refinancing.window_months", "collateral.fleets"} <= debt
    tenants = {c.name for c in tables["tenants"].columns}
    assert {"credit.hazard.easy", "credit.hazard.tight", "credit.backstop.hazard.easy"} <= tenants
    assert "revenue_shock.vol" in {c.name for c in tables["borrowers"].columns}


class Lease(Strict):
    tenant: str = Field(description="tenant")
    kw: float = Field(gt=0, description="capacity leased, kW")
    start: date = Field(description="start of the lease")


class Hall(Strict):
    name: str = Field(description="hall")
    racks: int = Field(description="racks")


class Site(Strict):
    name: str = Field(description="site")
    mw: ByRegime[float] = Field(description="IT load, MW")
    leases: list[Lease] = Field(default_factory=list, description="leases at the site")


class Campus(Strict):
    halls: list[Hall] = Field(default_factory=list, description="halls of the campus")
    opened: date = Field(description="opening date")


class Owner(Strict):
    name: str = Field(description="owner")
    campus: Campus | None = Field(None, description="a campus")
    weights: dict[str, float] = Field(default_factory=dict, description="weights by region")
    sites: list[Site] = Field(min_length=1, description="sites owned")


OWNERS = [
    Owner(
        name="A",
        campus={"halls": [{"name": "h1", "racks": 20}], "opened": "2026-01-01"},
        weights={"us": 0.5},
        sites=[
            {"name": "north", "mw": 20.0, "leases": [{"tenant": "lab", "kw": 500.0, "start": "2026-02-01"}]},
            {"name": "south", "mw": {"easy": 10.0, "tight": 8.0}},
        ],
    ),
    Owner(name="B", sites=[{"name": "north", "mw": 5.0, "leases": [{"tenant": "x", "kw": 1.0, "start": "2027-01-01"}] * 2}]),
]


def _write_csv_folder(folder: Path, owners: list[Owner], tables: list[Table]) -> None:
    folder.mkdir()
    for sheet, rows in table_rows(owners, tables).items():
        (folder / f"{sheet}.csv").write_text(csv_text(rows))


def test_the_layout_of_any_schema_round_trips(tmp_path):
    """The layout works from the schema alone: a list under a list is a sheet keyed by both ancestors
    (`owner`, `site`), a list of models inside a nested model and a mapping are YAML cells. A field
    other engineers add to `Borrower` is handled the same way."""
    tables = layout(Owner, "owners")
    assert [(t.sheet, t.keys) for t in tables] == [("owners", ()), ("sites", ("owner",)), ("leases", ("owner", "site"))]
    kinds = {c.name: c.kind for c in tables[0].columns}
    assert kinds == {"name": "str", "campus.halls": "yaml", "campus.opened": "date", "weights": "yaml"}
    assert table_rows(OWNERS, tables)["owners"][2][1] == "[{name: h1, racks: 20}]"
    _write_csv_folder(tmp_path / "owners", OWNERS, tables)
    assert read_tables(tmp_path / "owners", tables).models == OWNERS


def test_a_row_under_an_unknown_parent_names_both_keys(tmp_path):
    tables = layout(Owner, "owners")
    _write_csv_folder(tmp_path / "owners", OWNERS, tables)
    leases = tmp_path / "owners" / "leases.csv"
    leases.write_text(leases.read_text().replace("A,north", "A,nowhere"))
    with pytest.raises(ConfigError, match=r"leases.csv, row 3, column site \(B\): site 'A / nowhere' is not on sheet sites"):
        read_tables(tmp_path / "owners", tables)


def _with_tenants() -> Any:
    """The baseline with two tenant contracts of Helios: GPU-hours, and a colocation lease with a backstop."""
    data = load_scenario("baseline").model_dump(mode="json")
    data["borrowers"][0]["tenants"] = [
        {"name": "AI lab", "kind": "gpu_hours", "generation": "H100", "gpus": 400, "rate": 3.0, "expiry": "2027-01-01",
         "credit": {"hazard": {"easy": 0.05, "tight": 0.2}}},
        {"name": "Hyperscaler lease", "kind": "colocation", "capacity_kw": 20000.0, "rate": 150.0, "escalator": 0.03,
         "expiry": "2027-07-01", "spot_rate_per_kw_month": 90.0,
         "credit": {"hazard": 5.0, "backstop": {"name": "Hyperscaler parent", "hazard": 0.01}}},
    ]  # fmt: skip
    return scenario_from(data)


@pytest.mark.parametrize("form", ["deals.zip", "deals_csv"])
def test_csv_files_round_trip_with_tenants(tmp_path, form):
    scenario = _with_tenants()
    market = tmp_path / "market.yaml"
    market.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    assert _invoke("export", market, "--out", tmp_path / form).exit_code == 0
    out = tmp_path / "portfolio.yaml"
    result = _invoke("import", tmp_path / form, "--out", out, "--market", market)
    assert result.exit_code == 0, result.output
    assert _same_scenario_but_labels(load_scenario(out), scenario)


def test_one_column_sets_both_regimes_and_a_fragment_holds_only_borrowers(tmp_path):
    """`credit.hazard` without .easy/.tight sets both regimes, as a plain number does in YAML."""
    folder = tmp_path / "csv"
    _invoke("export", "baseline", "--out", folder)
    (folder / "tenants.csv").write_text(
        "borrower,name,kind,generation,gpus,rate,expiry,credit.hazard\n"
        "-,-,-,-,-,-,-,-\n"
        "Helios Compute,AI lab,gpu_hours,H100,400,3.0,2027-01-01,0.25\n"
    )
    out = tmp_path / "fragment.yaml"
    assert _invoke("import", folder, "--out", out, "--fragment").exit_code == 0
    data = yaml.safe_load(out.read_text())
    assert list(data) == ["borrowers"]
    tenant = read_portfolio(folder)[0].tenants[0]
    assert tenant.credit.hazard.pair() == (0.25, 0.25) and tenant.gpus == 400


def test_a_hand_made_workbook_with_only_the_required_columns(tmp_path):
    """Columns in any order, optional ones left out (their defaults apply), rows of two borrowers
    interleaved (each keeps its own order), dates as date cells or text, no notes sheet."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "borrowers"
    ws.append(["name", "type", "pue", "cash", "fixed_opex_per_month", "revenue_shock.vol", "revenue_shock.mean_reversion"])
    ws.append([])
    ws.append(["Alpha", "neocloud", 1.2, 5e7, 1e6, 0.2, 1.0])
    ws.append(["Beta", "miner", 1.1, 2e7, 5e5, 0.3, 2.0])
    ws = wb.create_sheet("debt")
    ws.append(["borrower", "name", "kind", "principal", "rate_type", "coupon", "issue_date", "maturity_date", "market_spread_bps"])
    ws.append([])
    ws.append(["Alpha", "Alpha Notes", "bond", 1e8, "fixed", 0.09, datetime(2025, 1, 1), "2030-01-01", 550])
    ws.append(["Beta", "Beta Loan", "term_loan", 5e7, "floating", 0.05, "2025-06-01", "2029-06-01", 500])
    ws.append(["Alpha", "Alpha Converts", "convertible", 2e7, "fixed", 0.01, "2025-03-01", "2031-03-01", 600])
    path = tmp_path / "hand.xlsx"
    wb.save(path)
    alpha, beta = read_portfolio(path)
    assert [i.name for i in alpha.debt] == ["Alpha Notes", "Alpha Converts"] and [i.name for i in beta.debt] == ["Beta Loan"]
    assert alpha.power_price_ratio == 1.0 and alpha.fleets == [] and alpha.mining is None and alpha.min_liquidity is None
    notes = alpha.debt[0]
    assert notes.issue_date == date(2025, 1, 1) and notes.maturity_date == date(2030, 1, 1)
    assert (notes.payments_per_year, notes.seniority, notes.amortization, notes.covenants) == (4, 1, "bullet", None)
    assert beta.revenue_shock.mean_reversion == 2.0 and beta.debt[0].coupon == 0.05


def test_replace_states_a_field_whole_instead_of_merging(tmp_path):
    """`replace: [borrowers, desk]` drops the parent's borrowers (and its tranche splits, which name them); without it
    the borrowers merge by name."""
    one = load_scenario("baseline").borrowers[2].model_dump(mode="json")
    one["name"] = "Solo"
    for inst in one["debt"]:
        inst["name"] = "Solo " + inst["name"]
    merged, replaced = tmp_path / "merged.yaml", tmp_path / "replaced.yaml"
    merged.write_text(yaml.safe_dump({"extends": "baseline", "borrowers": [one]}))
    replaced.write_text(yaml.safe_dump({"extends": "baseline", "replace": ["borrowers", "desk"], "borrowers": [one]}))
    assert [b.name for b in load_scenario(merged).borrowers][-1] == "Solo" and len(load_scenario(merged).borrowers) == 8
    assert [b.name for b in load_scenario(replaced).borrowers] == ["Solo"]
    replaced.write_text(yaml.safe_dump({"extends": "baseline", "replace": "borrowers"}))
    with pytest.raises(ConfigError, match="replace: must be a list"):
        load_scenario(replaced)
    alone = load_scenario("baseline").model_dump(mode="json") | {"replace": ["borrowers"]}
    replaced.write_text(yaml.safe_dump(alone))
    with pytest.raises(ConfigError, match="replace: unknown field"):  # nothing to replace without extends:
        load_scenario(replaced)


# ---------------------------------------------------------------------------------------
# Bad spreadsheets: one clear line each, exit code 2, no traceback


@pytest.fixture(scope="module")
def template_copy(tmp_path_factory) -> Path:
    return Path(shutil.copy(TEMPLATE, tmp_path_factory.mktemp("template") / "deals.xlsx"))


def _delete_sheet(sheet: str):
    def change(wb: openpyxl.Workbook) -> None:
        del wb[sheet]

    return change


def _rename_sheet(sheet: str, new: str):
    def change(wb: openpyxl.Workbook) -> None:
        wb[sheet].title = new

    return change


def _append(sheet: str, values: list[Any]):
    def change(wb: openpyxl.Workbook) -> None:
        wb[sheet].append(values)

    return change


def _column(wb: openpyxl.Workbook, sheet: str, name: str) -> str:
    """The letter of a column by its name in row 1, so the cases name fields, not positions."""
    for cell in wb[sheet][1]:
        if cell.value == name:
            return cell.column_letter
    raise KeyError(name)


def _edit_named(sheet: str, column: str, row: int, value: Any, number_format: str | None = None):
    def change(wb: openpyxl.Workbook) -> None:
        cell = wb[sheet][f"{_column(wb, sheet, column)}{row}"]
        cell.value = value
        if number_format is not None:
            cell.number_format = number_format

    return change


# Row 3 of each sheet is its first data row: Helios Compute, its H100 fleet, its DDTL-1.
BAD = {
    "missing sheet": (
        _delete_sheet("debt"),
        "deals.xlsx: sheet debt is missing (every borrower needs rows there)",
    ),
    "unknown sheet": (
        _rename_sheet("fleets", "fleet"),
        "sheet fleet: unknown sheet (did you mean 'fleets'?",
    ),
    "unknown column": (
        _edit_named("borrowers", "cash", 1, "csh"),
        "sheet borrowers, column C: unknown column 'csh'; did you mean 'cash'?",
    ),
    "missing required column": (
        _edit_named("fleets", "count", 1, None),
        "sheet fleets: column 'count' is missing (GPUs owned)",
    ),
    "wrong type": (
        _edit_named("fleets", "count", 3, "lots"),
        "sheet fleets, row 3, column count (C): expected a number, got 'lots'",
    ),
    "fractional count": (
        _edit_named("fleets", "count", 3, 10.5),
        "sheet fleets, row 3, column count (C): Input should be a valid integer",
    ),
    "out of range": (
        _edit_named("borrowers", "pue", 4, 0.5),
        "sheet borrowers, row 4, column pue (F): Input should be greater than or equal to 1",
    ),
    "duplicate borrower": (
        _edit_named("borrowers", "name", 4, "Helios Compute"),
        "sheet borrowers, row 4, column name (A): name 'Helios Compute' is already on row 3",
    ),
    "duplicate instrument": (
        _edit_named("debt", "name", 8, "Helios DDTL-1"),
        "sheet debt, column name (B): name 'Helios DDTL-1' appears more than once (rows 3, 8)",
    ),
    "orphan child row": (
        _edit_named("fleets", "borrower", 5, "Nobody"),
        "sheet fleets, row 5, column borrower (A): borrower 'Nobody' is not on sheet borrowers",
    ),
    "empty key": (
        _edit_named("fleets", "borrower", 5, None),
        "sheet fleets, row 5, column borrower (A): empty: name the borrower this row belongs to",
    ),
    "unknown generation": (
        _edit_named("fleets", "generation", 4, "X300"),
        "sheet fleets, row 4, column generation (B): 'X300' is not one of",
    ),
    "two fleets of one generation": (
        _edit_named("fleets", "generation", 4, "H100"),
        "sheet fleets, rows 3, 4, 5: generation 'H100' appears more than once (merge the fleets)",
    ),
    "collateral not owned": (
        _edit_named("debt", "collateral.fleets", 3, "H100, A100"),
        "sheet debt, row 3, column collateral.fleets (N): 'A100' is not a fleet of Helios Compute",
    ),
    "bad date": (
        _edit_named("debt", "issue_date", 3, "2023-02-30"),
        "sheet debt, row 3, column issue_date (K): expected a date as YYYY-MM-DD, got '2023-02-30'",
    ),
    "number in a date": (
        _edit_named("debt", "issue_date", 3, 45000, "General"),
        "sheet debt, row 3, column issue_date (K): expected a date (a date cell or YYYY-MM-DD), got the number 45000",
    ),
    "empty required cell": (
        _edit_named("debt", "coupon", 3, None),
        "sheet debt, row 3, column coupon (I): required field is missing (empty cell)",
    ),
    "formula error": (
        _edit_named("borrowers", "cash", 3, "#DIV/0!"),
        "sheet borrowers, row 3, column cash (C): formula error #DIV/0!",
    ),
    "formula without result": (
        _edit_named("borrowers", "cash", 3, "=2*3"),
        "sheet borrowers, row 3, column cash (C): formula '=2*3' has no saved result",
    ),
    "kind rule": (
        _edit_named("debt", "commitment", 4, None),
        "sheet debt, row 4: a facility needs commitment and advance_rate",
    ),
    "unknown choice": (
        _edit_named("debt", "kind", 3, "loan"),
        "sheet debt, row 3, column kind (C): Input should be 'term_loan', 'facility', 'bond' or 'convertible'",
    ),
    "data in row 2": (
        _edit_named("fleets", "count", 2, 100),
        "sheet fleets, column C: row 2 holds each column's meaning and units, not data (got 100); data start in row 3",
    ),
    "borrower without debt": (
        _append("borrowers", ["Lonely", "neocloud", 1e6, None, 1e5, 1.2, 1.0, 0.1, 1.0]),
        "sheet borrowers, row 10: List should have at least 1 item after validation, not 0: no rows on sheet debt for this borrower",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_spreadsheet_names_sheet_row_and_column(case, template_copy, tmp_path):
    change, expected = BAD[case]
    wb = openpyxl.load_workbook(template_copy)
    change(wb)
    bad = tmp_path / "deals.xlsx"
    wb.save(bad)
    result = _invoke("import", bad, "--out", tmp_path / "p.yaml")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert expected in result.output, result.output
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"PK\x03\x04 not really a workbook", "not a readable .xlsx workbook"),
        (b"name,type\n", "expected an .xlsx workbook, a folder of .csv files or a .zip of them"),
    ],
    ids=["corrupt-xlsx", "wrong-suffix"],
)
def test_unreadable_sources_exit_2(tmp_path, content, expected):
    bad = tmp_path / ("deals.xlsx" if content.startswith(b"PK") else "deals.txt")
    bad.write_bytes(content)
    result = _invoke("import", bad, "--out", tmp_path / "p.yaml")
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_a_mistake_down_a_whole_sheet_is_listed_then_counted(tmp_path):
    folder = tmp_path / "deals"
    _invoke("export", "baseline", "--out", folder)
    lines = (folder / "fleets.csv").read_text().splitlines()
    rows = [",".join(["Helios Compute", "H100", "many", *line.split(",")[3:]]) for line in lines[2:3] * 100]
    (folder / "fleets.csv").write_text("\n".join(lines[:2] + rows) + "\n")
    result = _invoke("import", folder, "--out", tmp_path / "p.yaml")
    assert result.exit_code == 2
    errors = result.output.splitlines()
    assert len(errors) == MAX_PROBLEMS + 1 and errors[-1].endswith(f"... and {100 - MAX_PROBLEMS} more problems")
    assert errors[0].endswith("deals/fleets.csv, row 3, column count (C): expected a number, got 'many'")


def test_csv_problems_name_the_file_row_and_column(tmp_path):
    folder = tmp_path / "deals"
    _invoke("export", "baseline", "--out", folder)
    lines = (folder / "treasury.csv").read_text().splitlines()
    lines[2] = lines[2].replace("BTC", "DOGE", 1)
    (folder / "treasury.csv").write_text("\n".join(lines) + "\n")
    result = _invoke("import", folder, "--out", tmp_path / "p.yaml")
    assert result.exit_code == 2
    assert "deals/treasury.csv, row 3, column asset (B): 'DOGE' is not one of ['BTC', 'ETH']" in result.output, result.output


def test_export_and_import_refuse_to_overwrite(tmp_path):
    out = tmp_path / "deals.xlsx"
    out.write_text("keep")
    result = _invoke("export", "baseline", "--out", out)
    assert result.exit_code == 2 and "exists (use --overwrite" in result.output and out.read_text() == "keep"
    target = tmp_path / "p.yaml"
    target.write_text("keep")
    result = _invoke("import", TEMPLATE, "--out", target)
    assert result.exit_code == 2 and "exists (use --overwrite" in result.output and target.read_text() == "keep"
    result = _invoke("export", "baseline", "--out", tmp_path / "no" / "such" / "deals.xlsx")
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "folder.xlsx").mkdir()
    result = _invoke("export", "baseline", "--out", tmp_path / "folder.xlsx", "--overwrite")
    assert result.exit_code == 2 and "not a regular file; not replaced" in result.output


def test_an_imported_portfolio_drops_tranche_splits_naming_instruments_it_lacks(tmp_path):
    """The baseline splits Helios's DDTLs into tranches; a workbook without Helios imports onto the
    baseline market with the split dropped (and stated), not as an error."""
    folder = tmp_path / "deals"
    assert _invoke("export", "baseline", "--out", folder).exit_code == 0
    for sheet in folder.glob("*.csv"):
        rows = sheet.read_text().splitlines(keepends=True)
        sheet.write_text("".join(r for i, r in enumerate(rows) if i < 2 or "Helios" not in r))
    out = tmp_path / "portfolio.yaml"
    result = _invoke("import", folder, "--out", out)
    assert result.exit_code == 0, result.output
    assert "desk" in yaml.safe_load(out.read_text())["replace"]
    scenario = load_scenario(out)
    assert scenario.desk.tranches == [] or all("Helios" not in n for t in scenario.desk.tranches for n in t.instruments)
    assert "Helios Compute" not in [b.name for b in scenario.borrowers]
