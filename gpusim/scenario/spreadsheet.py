"""Deal portfolios in spreadsheets: `gpusim import` and `gpusim export` (docs/deals.md).

A deal team keeps its borrowers, fleets, tenant contracts, treasury and debt tranches in a
workbook, one sheet per table (or one CSV file per table, in a folder or a .zip). The layout is
derived from the pydantic schema, not listed by hand, so a field added to `Borrower` or to any
model under it appears in the template and is read by the importer without a change here:

- one row of the `borrowers` sheet per borrower; a nested model flattens to dotted columns
  (`revenue_shock.vol`, `covenants.dscr_min`), a by-regime value to `.easy` / `.tight` columns
  (or one column without the suffix for both regimes);
- a list of models (`fleets`, `debt`, ...) is its own sheet, each row keyed by the name of its
  parent in a column named after the parent (`borrower`, and for a list under an instrument
  also `instrument`); rows keep their order;
- a list of plain values (`collateral.fleets`) is one cell, comma separated; anything else (a list
  of models inside a nested model, a mapping) is one cell of YAML such as `[{name: a, x: 1}]`;
- row 1 holds the column names, row 2 each column's meaning and units (ignored on import), data
  start in row 3; the `notes` sheet lists every column with its range and default.

Every cell goes through the same pydantic models as a YAML file, and every problem names the
sheet, row and column it comes from.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
import types
import typing
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import annotated_types
import openpyxl
import yaml
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from gpusim.scenario.loading import MAX_PROBLEMS, ConfigError, format_validation_errors, load_raw, resolve_path, shipped_scenarios, shown
from gpusim.scenario.schema import Borrower, ByRegime, Scenario, check_references

ROOT_SHEET = "borrowers"
NOTES_SHEET = "notes"
HEADER_ROWS = 2
"""Row 1: column names; row 2: meaning and units; data from row 3."""
LIST_SEPARATOR = ","
FORMULA_ERRORS = ("#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!", "#SPILL!", "#CALC!", "#GETTING_DATA")

Kind = Literal["str", "int", "float", "bool", "date", "list", "yaml"]


# ---------------------------------------------------------------------------------------
# The layout, derived from the schema


@dataclass(frozen=True)
class Column:
    """One spreadsheet column: a leaf field of the table's model at a dotted path."""

    name: str
    kind: Kind
    description: str
    required: bool
    default: Any = None
    limits: str = ""
    item_kind: Kind | None = None
    both_regimes: bool = False
    """An import-only column without `.easy` / `.tight`: one value for both regimes."""

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))


@dataclass
class Table:
    """One sheet: the rows of a list of models, keyed by the names of their parents."""

    sheet: str
    model: type[BaseModel]
    field: str
    parent: Table | None
    required: bool
    keys: tuple[str, ...]
    columns: list[Column]
    children: list[Table] = field(default_factory=list)

    @property
    def identity(self) -> str:
        """The field that names a row for its child sheets: `name`, else the first required text field."""
        name = identity_field(self.model)
        assert name is not None, "a table has child sheets only when its rows have a name"
        return name

    def exported_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.both_regimes]


def identity_field(model: type[BaseModel]) -> str | None:
    """The field that names a row of `model` for rows under it: `name`, else the first required text field."""
    fields = model.model_fields
    if "name" in fields:
        return "name"
    return next((n for n, info in fields.items() if info.is_required() and _strip(info.annotation)[0] is str), None)


def _strip(annotation: Any) -> tuple[Any, bool]:
    """The annotation without Annotated[...] and without `| None`, and whether None is allowed."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _scalar_kind(annotation: Any) -> Kind:
    inner, _ = _strip(annotation)
    if typing.get_origin(inner) is Literal:
        values = typing.get_args(inner)
        return "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else "str"
    for python_type, kind in ((bool, "bool"), (date, "date"), (int, "int"), (float, "float"), (str, "str")):
        if inner is python_type:
            return kind  # type: ignore[return-value]
    return "yaml"


def _limits(info: FieldInfo, annotation: Any) -> str:
    """The allowed values as the notes sheet states them: `>= 0, <= 1e+13`, `one of a, b`, a date."""
    inner, _ = _strip(annotation)
    if typing.get_origin(inner) is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(inner))
    kind = _scalar_kind(inner)
    if kind in ("date", "bool"):
        return {"date": "a date cell or YYYY-MM-DD", "bool": "TRUE or FALSE"}[kind]
    metadata = list(info.metadata)
    for arg in typing.get_args(annotation):  # `Amount | None` keeps Amount's range inside the union
        if typing.get_origin(arg) is typing.Annotated:
            for meta in typing.get_args(arg)[1:]:
                metadata += meta.metadata if isinstance(meta, FieldInfo) else [meta]
    parts = []
    for meta in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(meta, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{sign} {getattr(meta, attr):g}")
    return ", ".join(parts)


def _is_by_regime(model: type[BaseModel]) -> bool:
    return issubclass(model, ByRegime)


def _columns(
    model: type[BaseModel], prefix: str, required: bool, context: str, table: Table, tables: list[Table], defaults: Any = None
) -> list[Column]:
    """The leaf columns of `model` under `prefix`; lists of models become child tables. `defaults`: the
    enclosing field's default as a mapping (a by-regime hazard defaulting to 0 has leaves defaulting to 0)."""
    columns: list[Column] = []
    for name, info in model.model_fields.items():
        inner, optional = _strip(info.annotation)
        path = f"{prefix}{name}"
        needed = required and info.is_required()
        description = info.description or context
        default = _default(info) if not info.is_required() else defaults.get(name) if isinstance(defaults, dict) else None
        if _is_model(inner):
            if _is_by_regime(inner):
                item = _strip(inner.model_fields["easy"].annotation)[0]
                if not _is_model(item) and _scalar_kind(item) != "yaml":
                    columns.append(Column(path, _scalar_kind(item), description, False, None, "", both_regimes=True))
            if _is_by_regime(inner) and default is not None and not isinstance(default, dict):
                default = {"easy": default, "tight": default}
            columns += _columns(inner, f"{path}.", needed and not optional, description, table, tables, default)
        elif typing.get_origin(inner) is list and _is_model(_strip(typing.get_args(inner)[0])[0]) and not prefix and identity_field(model):
            child_model = _strip(typing.get_args(inner)[0])[0]
            _add_table(child_model, name, table, info.is_required(), tables)
        elif typing.get_origin(inner) is list and _scalar_kind(typing.get_args(inner)[0]) != "yaml":
            item_kind = _scalar_kind(typing.get_args(inner)[0])
            columns.append(Column(path, "list", description, needed, default, "comma-separated", item_kind))
        else:
            kind = _scalar_kind(inner)
            if _is_by_regime(model):
                description = f"{context} ({name} regime)"
            columns.append(Column(path, kind, description, needed, default, _limits(info, info.annotation)))
    return columns


def _default(info: FieldInfo) -> Any:
    if info.is_required():
        return None
    value = info.get_default(call_default_factory=True)
    return value.model_dump(mode="json", warnings=False) if isinstance(value, BaseModel) else value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _add_table(model: type[BaseModel], field_name: str, parent: Table | None, required: bool, tables: list[Table]) -> Table:
    keys = () if parent is None else (*parent.keys, _snake(parent.model.__name__))
    table = Table(field_name, model, field_name, parent, required, keys, [])
    if parent is not None:
        parent.children.append(table)
    tables.append(table)
    table.columns = _columns(model, "", True, "", table, tables)
    clash = set(keys) & {c.path[0] for c in table.columns}
    if clash:
        raise TypeError(f"{model.__name__}: field {sorted(clash)} clashes with the key column naming its parent")
    return table


def layout(root: type[BaseModel] = Borrower, sheet: str = ROOT_SHEET) -> list[Table]:
    """Every table of a spreadsheet of `root` rows (a portfolio: borrowers), parents before children, from the schema."""
    tables: list[Table] = []
    _add_table(root, sheet, None, True, tables)
    taken: dict[str, int] = {}
    for t in tables:
        taken[t.sheet] = taken.get(t.sheet, 0) + 1
    for t in tables:
        if taken[t.sheet] > 1 and t.parent is not None:
            t.sheet = f"{t.parent.sheet}.{t.field}"
        if len(t.sheet) > 31 or t.sheet == NOTES_SHEET:
            raise TypeError(f"sheet name {t.sheet!r} is not usable in a workbook")
    return tables


# ---------------------------------------------------------------------------------------
# Reading cells


class CellProblem(ValueError):
    """A cell that cannot be read as its column's type."""


EMPTY = object()


def _number(text: str) -> float:
    try:
        return float(text.replace("_", ""))
    except ValueError:
        raise CellProblem(f"expected a number, got {shown(text)}") from None


def read_cell(raw: Any, kind: Kind, item_kind: Kind | None = None) -> Any:
    """The Python value of one cell for a column of `kind` (EMPTY for a blank cell); pydantic checks ranges."""
    if isinstance(raw, str):
        raw = raw.strip()
        if raw in FORMULA_ERRORS:
            raise CellProblem(f"formula error {raw} (fix the formula or type the value)")
    if raw is None or raw == "":
        return EMPTY
    if kind == "list":
        items = raw.split(LIST_SEPARATOR) if isinstance(raw, str) else [raw]
        return [read_cell(item, item_kind or "str") for item in items if str(item).strip()]
    if kind == "yaml":
        if not isinstance(raw, str):
            return raw
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            raise CellProblem(f"expected a YAML value, got {shown(raw)}") from None
    if isinstance(raw, bool) and kind != "bool":
        raise CellProblem(f"expected {'text' if kind == 'str' else 'a ' + kind}, got the boolean {raw}")
    if kind == "str":
        if isinstance(raw, float) and raw.is_integer():
            return str(int(raw))
        if isinstance(raw, (int, float, str)):
            return str(raw)
        raise CellProblem(f"expected text, got {shown(raw)}")
    if kind in ("int", "float"):
        if isinstance(raw, (date, datetime)):
            raise CellProblem(f"expected a number, got the date {raw:%Y-%m-%d}")
        number = _number(raw) if isinstance(raw, str) else raw
        if kind == "int" and isinstance(number, float) and number.is_integer():
            return int(number)
        return number
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in ("true", "yes", "1", "1.0"):
            return True
        if text in ("false", "no", "0", "0.0"):
            return False
        raise CellProblem(f"expected true or false, got {shown(raw)}")
    # a date
    if isinstance(raw, datetime):
        if raw.time() != datetime.min.time():
            raise CellProblem(f"expected a date, got a date and time {raw.isoformat()}")
        return raw.date()
    if isinstance(raw, date):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise CellProblem(f"expected a date as YYYY-MM-DD, got {shown(raw)}") from None
    raise CellProblem(f"expected a date (a date cell or YYYY-MM-DD), got the number {shown(raw)}")


def cell_text(value: Any, column: Column) -> Any:
    """The cell a model value is written as: numbers, text and dates as themselves, a list as `a, b`."""
    if value is None:
        return None
    if column.kind == "list":
        return f"{LIST_SEPARATOR} ".join(v.isoformat() if isinstance(v, date) else str(v) for v in value) or None
    if column.kind == "yaml":
        return yaml.safe_dump(to_jsonable_python(value), default_flow_style=True, sort_keys=False, width=10**9).strip()
    return value


# ---------------------------------------------------------------------------------------
# Sheets: a workbook, or CSV files in a folder or a zip


@dataclass
class Sheet:
    """The cells of one sheet as read: `rows[i]` is spreadsheet row `i + 1`."""

    name: str
    where: str
    """How messages name the sheet: `deals.xlsx: sheet fleets` or `deals/fleets.csv`."""
    rows: list[list[Any]]
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)
    """Formula cells without a saved result, by (row, column), both from 1."""


def _read_workbook(path: Path) -> list[Sheet]:
    try:
        values = openpyxl.load_workbook(path, data_only=True)
        formulas = openpyxl.load_workbook(path, data_only=False)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ConfigError([f"{path}: not a readable .xlsx workbook ({exc})"]) from None
    sheets = []
    for ws in values.worksheets:
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        missing: dict[tuple[int, int], str] = {}
        for r, row in enumerate(formulas[ws.title].iter_rows(values_only=True), start=1):
            for c, cell in enumerate(row, start=1):
                if isinstance(cell, str) and cell.startswith("=") and r <= len(rows) and rows[r - 1][c - 1] is None:
                    missing[(r, c)] = cell
        sheets.append(Sheet(ws.title, f"{path}: sheet {ws.title}", rows, missing))
    return sheets


def _read_csv_text(data: bytes, where: str) -> list[list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{where}: not UTF-8 CSV text (byte {exc.start})"]) from None
    try:
        return [list(row) for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        raise ConfigError([f"{where}: not readable as CSV ({exc})"]) from None


def _read_csv_files(source: Path) -> list[Sheet]:
    files: dict[str, tuple[str, bytes]] = {}
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for member in archive.namelist():
                if member.endswith(".csv") and not Path(member).name.startswith("."):
                    files[Path(member).stem] = (f"{source}/{member}", archive.read(member))
    else:
        for p in sorted(source.glob("*.csv")):
            files[p.stem] = (f"{source}/{p.name}", p.read_bytes())
    return [Sheet(name, where, _read_csv_text(data, where)) for name, (where, data) in files.items()]


def read_sheets(source: str | Path) -> list[Sheet]:
    """The sheets of an .xlsx workbook, or of the CSV files of a folder or a .zip (one file per sheet)."""
    path = Path(source)
    if not path.exists():
        raise ConfigError([f"{source}: no such file or folder"])
    if path.is_dir() or path.suffix.lower() == ".zip":
        if path.is_file() and not zipfile.is_zipfile(path):
            raise ConfigError([f"{source}: not a readable .zip of CSV files"])
        try:
            sheets = _read_csv_files(path)
        except OSError as exc:
            raise ConfigError([f"{source}: cannot read ({exc.strerror or exc})"]) from None
        if not sheets:
            raise ConfigError([f"{source}: no .csv files (one per sheet: {', '.join(t.sheet for t in layout())})"])
        return sheets
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_workbook(path)
    raise ConfigError([f"{source}: expected an .xlsx workbook, a folder of .csv files or a .zip of them"])


# ---------------------------------------------------------------------------------------
# Import: sheets -> borrowers


@dataclass
class Record:
    """One data row on its way to a model: its values, its place, and its child rows."""

    table: Table
    row: int
    keys: tuple[Any, ...]
    """The names in the key columns: the parents this row belongs to (None where a cell was unreadable)."""
    data: dict[str, Any]
    children: dict[str, list[Record]] = field(default_factory=dict)

    def mapping(self) -> dict[str, Any]:
        out = dict(self.data)
        for name, records in self.children.items():
            out[name] = [r.mapping() for r in records]
        return out


class Problems:
    """Problems found so far, each naming its sheet, row and column."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, where: str, message: str, row: int | None = None, column: str | None = None, letter: str | None = None) -> None:
        place = where + (f", row {row}" if row else "") + (f", column {column}" if column else "") + (f" ({letter})" if letter else "")
        self.lines.append(f"{place}: {message}")

    def raise_if_any(self) -> None:
        """Stop with every problem so far; a mistake repeated down a generated sheet is listed MAX_PROBLEMS times, then counted."""
        if len(self.lines) > MAX_PROBLEMS:
            raise ConfigError([*self.lines[:MAX_PROBLEMS], f"{self.source}: ... and {len(self.lines) - MAX_PROBLEMS} more problems"])
        if self.lines:
            raise ConfigError(self.lines)


@dataclass
class ReadTable:
    table: Table
    sheet: Sheet
    letters: dict[str, str]
    records: list[Record]


def _read_header(table: Table, sheet: Sheet, problems: Problems) -> dict[int, Column | str] | None:
    """Column index -> Column (or key name), after checking the header names."""
    header = sheet.rows[0] if sheet.rows else []
    by_name: dict[str, Column | str] = {c.name: c for c in table.columns} | {k: k for k in table.keys}
    found: dict[int, Column | str] = {}
    seen: dict[str, int] = {}
    ok = True
    for index, raw in enumerate(header, start=1):
        name = str(raw).strip() if raw is not None else ""
        letter = get_column_letter(index)
        if not name:
            if any(len(r) >= index and r[index - 1] not in (None, "") for r in sheet.rows[HEADER_ROWS:]):
                problems.add(sheet.where, "column has data but no name in row 1", column=letter)
                ok = False
            continue
        if name in seen:
            problems.add(sheet.where, f"column {name!r} appears twice (also column {get_column_letter(seen[name])})", column=letter)
            ok = False
            continue
        seen[name] = index
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the columns are listed on the {NOTES_SHEET} sheet"
            problems.add(sheet.where, f"unknown column {name!r}{hint}", column=letter)
            ok = False
            continue
        found[index] = by_name[name]
    for key in table.keys:
        if key not in seen:
            problems.add(sheet.where, f"column {key!r} is missing: it names the {key} each row belongs to")
            ok = False
    for c in table.columns:
        if c.required and c.name not in seen and not (c.path[-1] in ("easy", "tight") and ".".join(c.path[:-1]) in seen):
            problems.add(sheet.where, f"column {c.name!r} is missing ({c.description})")
            ok = False
    if len(sheet.rows) > 1:
        for index, raw in enumerate(sheet.rows[1], start=1):
            if _looks_like_data(raw):
                problems.add(
                    sheet.where,
                    f"row 2 holds each column's meaning and units, not data (got {shown(raw)}); data start in row 3",
                    column=get_column_letter(index),
                )
                ok = False
                break
    return found if ok else None


def _looks_like_data(raw: Any) -> bool:
    if isinstance(raw, (int, float, date)):
        return True
    if isinstance(raw, str) and raw.strip():
        try:
            float(raw.strip())
        except ValueError:
            return False
        return True
    return False


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CellProblem("given both for both regimes and per regime; use one or the other")
    if path[-1] in node:
        raise CellProblem("given both for both regimes and per regime; use one or the other")
    node[path[-1]] = value


def _read_rows(table: Table, sheet: Sheet, problems: Problems) -> ReadTable | None:
    columns = _read_header(table, sheet, problems)
    if columns is None:
        return None
    letters = {(c if isinstance(c, str) else c.name): get_column_letter(i) for i, c in columns.items()}
    records = []
    for row_number, row in enumerate(sheet.rows[HEADER_ROWS:], start=HEADER_ROWS + 1):
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in row) and not any(
            (row_number, c) in sheet.formulas for c in columns
        ):
            continue
        data: dict[str, Any] = {}
        keys: dict[str, Any] = {}
        for index, column in columns.items():
            name = column if isinstance(column, str) else column.name
            raw = row[index - 1] if index <= len(row) else None
            if (row_number, index) in sheet.formulas:
                formula = sheet.formulas[(row_number, index)]
                problems.add(
                    sheet.where,
                    f"formula {shown(formula)} has no saved result (open and save the workbook in Excel, or type the value)",
                    row_number,
                    name,
                    letters[name],
                )
                continue
            try:
                if isinstance(column, str):
                    value = read_cell(raw, "str")
                    if value is EMPTY:
                        raise CellProblem(f"empty: name the {column} this row belongs to")
                    keys[column] = value
                    continue
                value = read_cell(raw, column.kind, column.item_kind)
                if value is not EMPTY:
                    _set_path(data, column.path, value)
            except CellProblem as exc:
                problems.add(sheet.where, str(exc), row_number, name, letters[name])
        children: dict[str, list[Record]] = {child.field: [] for child in table.children}
        records.append(Record(table, row_number, tuple(keys.get(k) for k in table.keys), data, children))
    return ReadTable(table, sheet, letters, records)


def _attach_children(read: dict[str, ReadTable], problems: Problems) -> list[Record]:
    """Link every child row to its parent by the key columns; returns the borrower records."""
    index: dict[tuple[str, tuple[Any, ...]], Record] = {}
    roots: list[Record] = []
    for rt in read.values():
        table = rt.table
        identity = table.identity if table.children else None
        for record in rt.records:
            keys = record.keys
            if table.parent is None:
                roots.append(record)
            elif None not in keys:
                parent = index.get((table.parent.sheet, keys))
                if parent is None:
                    owner = " / ".join(str(k) for k in keys)
                    problems.add(
                        rt.sheet.where,
                        f"{table.keys[-1]} {owner!r} is not on sheet {table.parent.sheet}",
                        record.row,
                        table.keys[-1],
                        rt.letters.get(table.keys[-1]),
                    )
                else:
                    parent.children[table.field].append(record)
            if identity is not None and None not in keys:
                own = record.data.get(identity)
                if own is None:
                    continue  # pydantic names the empty required cell
                full = (*keys, own)
                if (table.sheet, full) in index:
                    first = index[(table.sheet, full)].row
                    problems.add(
                        rt.sheet.where, f"{identity} {own!r} is already on row {first}", record.row, identity, rt.letters.get(identity)
                    )
                else:
                    index[(table.sheet, full)] = record
    return roots


def _error_place(record: Record, loc: tuple[Any, ...]) -> tuple[Record, str]:
    """The row and the column a pydantic error location points at, from the borrower's record."""
    parts = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    i = 0
    while i + 1 < len(parts) and parts[i] in record.children and isinstance(parts[i + 1], int):
        rows = record.children[parts[i]]
        if parts[i + 1] >= len(rows):
            break
        record = rows[parts[i + 1]]
        i += 2
    return record, ".".join(str(p) for p in parts[i:])


def _validation_problems(record: Record, exc: ValidationError, read: dict[str, ReadTable], problems: Problems) -> None:
    errors = exc.errors(include_url=False)[:MAX_PROBLEMS]
    for err, line in zip(errors, format_validation_errors("", exc)[: len(errors)], strict=True):
        message = line.split(": ", 2)[-1].removeprefix("Value error, ")
        row_record, column = _error_place(record, err["loc"])
        rt = read[row_record.table.sheet]
        child = next((t for t in row_record.table.children if t.field == column), None)
        if child is not None:
            problems.add(rt.sheet.where, f"{err['msg']}: no rows on sheet {child.sheet} for this {child.keys[-1]}", row_record.row)
        elif column in rt.letters or column in {c.name for c in row_record.table.columns}:
            if err["type"] == "missing":
                message += " (empty cell)" if column in rt.letters else " (no such column on the sheet)"
            problems.add(rt.sheet.where, message, row_record.row, column or None, rt.letters.get(column))
        else:
            problems.add(rt.sheet.where, f"{column}: {message}" if column else message, row_record.row)


_REFERENCE = re.compile(r"^borrowers\[(\d+)\]((?:\.\w+\[\d+\])*)\.?([\w.]*): (.*)$", re.DOTALL)
_DUPLICATE = re.compile(r"^borrowers\[\*\]\.(\w+): \w+ name '(.+)' appears more than once$")


def _reference_problem(message: str, roots: list[Record], read: dict[str, ReadTable], problems: Problems, market: str) -> None:
    """A check_references message (`borrowers[0].fleets[1].generation: ...`) placed on its sheet, row and column."""
    duplicate = _DUPLICATE.match(message)
    if duplicate:
        field_name, name = duplicate.groups()
        rt = next(rt for rt in read.values() if rt.table.field == field_name)
        rows = [str(r.row) for r in rt.records if r.data.get("name") == name]
        problems.add(
            rt.sheet.where, f"name {name!r} appears more than once (rows {', '.join(rows)})", column="name", letter=rt.letters.get("name")
        )
        return
    match = _REFERENCE.match(message)
    if not match:
        problems.add(market, message)  # the market scenario's own problem
        return
    loc: list[Any] = []
    for name, index in re.findall(r"\.(\w+)\[(\d+)\]", match.group(2)):
        loc += [name, int(index)]
    record, column = _error_place(roots[int(match.group(1))], (*loc, *(match.group(3).split(".") if match.group(3) else ())))
    rows = record.children.get(column)
    if rows is not None:  # about the rows of a child sheet together (two fleets of one generation)
        child = read[rows[0].table.sheet] if rows else read[record.table.sheet]
        where = f"{child.sheet.where}, rows {', '.join(str(r.row) for r in rows)}"
        problems.add(where, match.group(4))
        return
    rt = read[record.table.sheet]
    problems.add(rt.sheet.where, match.group(4), record.row, column or None, rt.letters.get(column))


def _portfolio_desk(data: dict[str, Any], borrowers: list[Borrower]) -> dict[str, Any]:
    """The market scenario's mapping, less its `desk.tranches` when they name an instrument the imported
    portfolio does not hold: a tranche split belongs to the portfolio it was written for."""
    held = {i.name for b in borrowers for i in b.debt}
    desk = data.get("desk") or {}
    splits = desk.get("tranches") or []
    if all(name in held for split in splits for name in split.get("instruments", [])):
        return data
    return data | {"desk": {k: v for k, v in desk.items() if k != "tranches"}}


def _market_mapping(market: str) -> dict[str, Any]:
    path = resolve_path(market)
    data = load_raw(path)
    data.setdefault("name", path.stem)
    return data


@dataclass
class Parsed:
    """The validated root rows of a spreadsheet, and where each value came from."""

    models: list[Any]
    roots: list[Record]
    read: dict[str, ReadTable]
    problems: Problems


def read_tables(source: str | Path, tables: list[Table]) -> Parsed:
    """Every sheet of `tables` read, linked by the key columns and validated by the root table's model;
    ConfigError lists every problem with its sheet, row and column."""
    sheets = {s.name: s for s in read_sheets(source)}
    problems = Problems(str(source))
    names = [t.sheet for t in tables]
    for name, sheet in sheets.items():
        if name not in names and name != NOTES_SHEET:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.add(sheet.where, f"unknown sheet ({hint}the sheets are {', '.join(names)})")
    for t in tables:
        if t.sheet not in sheets and t.required:
            owner = "" if t.parent is None else f" (every {_snake(t.parent.model.__name__)} needs rows there)"
            problems.add(str(source), f"sheet {t.sheet} is missing{owner}")
    problems.raise_if_any()
    read: dict[str, ReadTable] = {}
    for t in tables:
        if t.sheet in sheets:
            rt = _read_rows(t, sheets[t.sheet], problems)
            if rt is not None:
                read[t.sheet] = rt
    problems.raise_if_any()
    roots = _attach_children(read, problems)
    root = tables[0]
    if not roots:
        problems.add(read[root.sheet].sheet.where, f"no rows: add one row per {_snake(root.model.__name__)} from row 3")
    problems.raise_if_any()
    models = []
    for record in roots:
        try:
            models.append(root.model.model_validate(record.mapping()))
        except ValidationError as exc:
            _validation_problems(record, exc, read, problems)
    problems.raise_if_any()
    return Parsed(models, roots, read, problems)


def read_portfolio(source: str | Path, market: str = "baseline") -> list[Borrower]:
    """The borrowers of a spreadsheet, validated against the market scenario `market` (its generations
    and assets); ConfigError lists every problem with its sheet, row and column."""
    parsed = read_tables(source, layout())
    borrowers, roots, read, problems = parsed.models, parsed.roots, parsed.read, parsed.problems
    data = _portfolio_desk(_market_mapping(market), borrowers) | {"borrowers": [b.model_dump() for b in borrowers]}
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(market, exc)) from None
    for message in check_references(scenario):
        _reference_problem(message, roots, read, problems, market)
    problems.raise_if_any()
    return borrowers


def portfolio_yaml(borrowers: list[Borrower], source: str, market: str | None, out: Path) -> str:
    """The YAML `gpusim import` writes: a scenario that extends `market` with these borrowers in place
    of the market's own (`replace: [borrowers]`), or, with market None, the borrowers alone."""
    body: dict[str, Any] = {}
    head = f"# Borrowers imported by `gpusim import {Path(source).name}`"
    if market is not None:
        body["extends"] = _extends(market, out)
        body["replace"] = ["borrowers"]
        market_desk = _market_mapping(market).get("desk")
        kept = _portfolio_desk({"desk": market_desk}, borrowers).get("desk")
        if kept != market_desk:
            body["replace"].append("desk")
            if kept:
                body["desk"] = kept
        body["description"] = f"Portfolio from {Path(source).name} on the market of {Path(market).stem}"
        head += f"; every other field is {market}'s"
    body["borrowers"] = [b.model_dump(exclude_defaults=True) for b in borrowers]
    return head + ".\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120)


def _extends(market: str, out: Path) -> str:
    """How the written file names its market: a shipped scenario by name, a file relative to the output file."""
    name = market[:-5] if market.endswith(".yaml") else market
    if Path(market).parent == Path(".") and not Path(market).exists() and name in shipped_scenarios():
        return name
    return os.path.relpath(resolve_path(market).resolve(), out.resolve().parent)


# ---------------------------------------------------------------------------------------
# Export: borrowers -> sheets


def _value_at(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


def table_rows(rows: Sequence[BaseModel], tables: list[Table] | None = None) -> dict[str, list[list[Any]]]:
    """Every sheet's rows for these root rows (borrowers): the column names, their descriptions, then the data."""
    tables = tables or layout()
    out: dict[str, list[list[Any]]] = {}
    items: dict[str, list[tuple[tuple[Any, ...], BaseModel]]] = {tables[0].sheet: [((), b) for b in rows]}
    for t in tables:
        columns = t.exported_columns()
        sheet: list[list[Any]] = [
            [*t.keys, *(c.name for c in columns)],
            [*(f"name of the {k}" for k in t.keys), *(c.description for c in columns)],
        ]
        for keys, obj in items.get(t.sheet, []):
            sheet.append([*keys, *(cell_text(_value_at(obj, c.path), c) for c in columns)])
            for child in t.children:
                own = getattr(obj, t.identity)
                items.setdefault(child.sheet, []).extend(((*keys, own), c) for c in getattr(obj, child.field))
        out[t.sheet] = sheet
    return out


def notes_rows(tables: list[Table] | None = None) -> list[list[Any]]:
    """The notes sheet: every column of every sheet with its type, range, default and meaning."""
    rows: list[list[Any]] = [["sheet", "column", "type", "required", "default", "allowed", "meaning and units"]]
    for t in tables or layout():
        ancestors = []
        parent = t.parent
        while parent is not None:
            ancestors.insert(0, parent)
            parent = parent.parent
        for k, owner in zip(t.keys, ancestors, strict=True):
            rows.append([t.sheet, k, "str", "yes", None, f"a {owner.identity} on sheet {owner.sheet}", f"the {k} this row belongs to"])
        for c in t.columns:
            kind = f"list of {c.item_kind}" if c.kind == "list" else c.kind
            default = (
                None
                if c.required or c.default is None or c.default == []
                else cell_text(c.default, c)
                if c.kind == "list"
                else str(c.default)
            )
            note = "instead of .easy and .tight: one value for both regimes" if c.both_regimes else c.description
            rows.append([t.sheet, c.name, kind, "yes" if c.required else "no", default, c.limits or None, note])
    return rows


def write_workbook(sheets: dict[str, list[list[Any]]], out: Path) -> None:
    """An .xlsx workbook: one sheet per table, bold names in row 1, meanings in row 2, the notes sheet last."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for sheet, rows in sheets.items():
        ws = wb.create_sheet(sheet)
        for row in rows:
            ws.append(row)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        if sheet != NOTES_SHEET:
            for cell in ws[2]:
                cell.font = Font(italic=True, color="666666")
                cell.alignment = Alignment(wrap_text=True, vertical="top")
            for row in ws.iter_rows(min_row=HEADER_ROWS + 1):
                for cell in row:
                    if isinstance(cell.value, date):
                        cell.number_format = "yyyy-mm-dd"
        ws.freeze_panes = ws.cell(row=HEADER_ROWS + 1 if sheet != NOTES_SHEET else 2, column=1)
        for index in range(1, ws.max_column + 1):
            ws.column_dimensions[get_column_letter(index)].width = 22
    wb.save(out)


def csv_text(rows: list[list[Any]]) -> str:
    """One sheet as CSV: dates as YYYY-MM-DD, floats in their shortest exact form, booleans as true/false."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(
            [
                ""
                if v is None
                else str(v).lower()
                if isinstance(v, bool)
                else v.isoformat()
                if isinstance(v, date)
                else repr(v)
                if isinstance(v, float)
                else v
                for v in row
            ]
        )
    return buffer.getvalue()


def export_portfolio(borrowers: list[Borrower], out: str | Path, overwrite: bool = False) -> Path:
    """Write the borrowers as an .xlsx workbook, a .zip of CSV files, or CSV files in a folder."""
    path = Path(out)
    sheets = {**table_rows(borrowers), NOTES_SHEET: notes_rows()}
    try:
        if path.suffix.lower() in (".xlsx", ".zip"):
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise ConfigError([f"{out}: not a regular file; not replaced"])
            if path.exists() and not overwrite:
                raise ConfigError([f"{out}: exists (use --overwrite to replace it)"])
            if not path.parent.is_dir():
                raise ConfigError([f"{out}: folder {path.parent} does not exist"])
            if path.suffix.lower() == ".xlsx":
                write_workbook(sheets, path)
            else:
                with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                    for name, rows in sheets.items():
                        archive.writestr(f"{name}.csv", csv_text(rows))
            return path
        if path.exists() and not path.is_dir():
            raise ConfigError([f"{out}: exists and is not a folder (CSV export writes one file per sheet into a folder)"])
        existing = [n for n in sheets if (path / f"{n}.csv").exists()]
        if existing and not overwrite:
            raise ConfigError([f"{out}: already holds {', '.join(f'{n}.csv' for n in existing)} (use --overwrite to replace them)"])
        path.mkdir(parents=True, exist_ok=True)
        for name, rows in sheets.items():
            (path / f"{name}.csv").write_text(csv_text(rows), encoding="utf-8")
        return path
    except OSError as exc:
        raise ConfigError([f"{out}: cannot write ({exc.strerror or exc})"]) from None


def sheet_contents(source: str | Path) -> dict[str, list[list[Any]]]:
    """Every cell of every sheet, without formats: what a shipped template is compared by."""
    return {s.name: [[v for v in row] for row in s.rows] for s in read_sheets(source)}


def import_portfolio(
    source: str | Path, out: str | Path, market: str = "baseline", fragment: bool = False, overwrite: bool = False
) -> list[Borrower]:
    """`gpusim import`: read and check the spreadsheet, then write the portfolio scenario (or fragment) to `out`."""
    path = Path(out)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ConfigError([f"{out}: not a regular file; not replaced"])
    if path.exists() and not overwrite:
        raise ConfigError([f"{out}: exists (use --overwrite to replace it)"])
    borrowers = read_portfolio(source, market)
    text = portfolio_yaml(borrowers, str(source), None if fragment else market, path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{out}: cannot write ({exc.strerror or exc})"]) from None
    return borrowers
