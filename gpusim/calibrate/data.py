"""Reading calibration data files: one CSV per market block, checked row by row.

Every problem a user's file can have (missing file, missing column, too few rows, dates out of
order or repeated, gaps in a regular series, non-positive prices, text where a number belongs)
becomes one `DataError` naming the file, the column and the line, so the command line can print
it and exit 2 instead of showing a traceback.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import date as Date
from importlib import resources
from pathlib import Path

import numpy as np

DAYS_PER_YEAR = 365.25
"""Calendar days in a year: converts date differences to the model's years."""

MAX_GAP_FACTOR = 2.5
"""A step longer than this many times the series' median step is a gap (a missing observation)."""


class DataError(ValueError):
    """A calibration data file that cannot be used; the message names the file, column and line."""


@dataclass(frozen=True)
class Series:
    """Dated observations: `values[column]` holds one float per date (NaN where the cell is empty)."""

    source: str
    dates: tuple[Date, ...]
    values: dict[str, np.ndarray]

    @property
    def years(self) -> np.ndarray:
        """Time of each observation in years from the first one (days / 365.25)."""
        first = self.dates[0]
        return np.array([(d - first).days / DAYS_PER_YEAR for d in self.dates])

    def step_years(self) -> float:
        """The series' regular step in years (median of the date differences)."""
        return float(np.median(np.diff(self.years)))

    def mean_step_years(self) -> float:
        """The average step in years: exactly 1/12 for month starts over whole years, where the median day count is not."""
        years = self.years
        return float((years[-1] - years[0]) / (len(years) - 1))

    def between(self, start: Date | None, end: Date | None) -> Series:
        """The observations dated in [start, end]."""
        keep = [i for i, d in enumerate(self.dates) if (start is None or d >= start) and (end is None or d <= end)]
        return Series(self.source, tuple(self.dates[i] for i in keep), {k: v[keep] for k, v in self.values.items()})


@dataclass(frozen=True)
class Table:
    """Undated rows (used-GPU prices by age): `values[column]` one float per row, `text` the text columns."""

    source: str
    values: dict[str, np.ndarray]
    text: dict[str, tuple[str, ...]]
    lines: tuple[int, ...]


def shipped_dataset(name: str) -> Path:
    """Path of a dataset shipped in gpusim/data (e.g. "crypto_daily.csv")."""
    return Path(str(resources.files("gpusim.data") / name))


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(row for row in fh if not row.lstrip().startswith("#"))
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [(reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}) for row in reader]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not header:
        raise DataError(f"{path}: empty file (expected a header line)")
    return header, rows


def _number(path: Path, line: int, column: str, text: str, positive: bool) -> float:
    """The number in a cell (NaN when empty), refused with its place when it is not one."""
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path} line {line}, column {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path} line {line}, column {column}: {text!r} is not a finite number")
    if positive and value <= 0:
        raise DataError(f"{path} line {line}, column {column}: {value:g} is not positive (prices must be > 0)")
    return value


def _require_columns(path: Path, header: list[str], needed: list[str]) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{path}: missing column {', '.join(repr(c) for c in missing)} (the file has {', '.join(header)})")


def read_series(
    path: str | Path,
    columns: list[str] | None = None,
    min_rows: int = 24,
    regular: bool = True,
    start: Date | None = None,
    end: Date | None = None,
) -> Series:
    """A dated CSV: a `date` column (YYYY-MM-DD, strictly increasing) and numeric columns.

    `columns` are required (default: every column after date, at least one); rows dated in
    [start, end] are kept, and `min_rows` of them with a value in each required column are
    needed; with `regular`, a step longer than MAX_GAP_FACTOR times the median step is refused
    as a gap. Every value is a price, so it must be positive.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    _require_columns(path, header, ["date"])
    wanted = columns if columns is not None else [c for c in header if c != "date"]
    if not wanted:
        raise DataError(f"{path}: no value column after 'date'")
    _require_columns(path, header, wanted)
    dates: list[Date] = []
    lines: list[int] = []
    values: dict[str, list[float]] = {c: [] for c in wanted}
    previous: Date | None = None
    for line, row in rows:
        try:
            day = Date.fromisoformat(row["date"])
        except ValueError:
            raise DataError(f"{path} line {line}, column date: {row['date']!r} is not a date (YYYY-MM-DD)") from None
        if previous is not None and day == previous:
            raise DataError(f"{path} line {line}, column date: {day} appears twice (dates must be unique)")
        if previous is not None and day < previous:
            raise DataError(f"{path} line {line}, column date: {day} comes after {previous} (dates must increase)")
        previous = day
        if (start is not None and day < start) or (end is not None and day > end):
            continue
        dates.append(day)
        lines.append(line)
        for c in wanted:
            values[c].append(_number(path, line, c, row.get(c, ""), positive=True))
    arrays = {c: np.array(v, dtype=float) for c, v in values.items()}
    for c, v in arrays.items():
        count = int(np.isfinite(v).sum())
        if count < min_rows:
            window = "" if start is None and end is None else f" between {start or 'the start'} and {end or 'the end'}"
            raise DataError(f"{path}, column {c}: {count} values{window}, at least {min_rows} needed")
    if regular and len(dates) > 2:
        days = np.diff([d.toordinal() for d in dates])
        step = float(np.median(days))
        for i, gap in enumerate(days):
            if gap > MAX_GAP_FACTOR * step:
                raise DataError(
                    f"{path} line {lines[i + 1]}, column date: gap of {gap} days after {dates[i]} in a series stepped every {step:g} days"
                )
    return Series(str(path), tuple(dates), arrays)


def read_table(path: str | Path, numeric: list[str], text: list[str] = (), non_negative: list[str] = (), min_rows: int = 3) -> Table:
    """An undated CSV with required numeric and text columns, each cell filled; numbers positive except `non_negative` ones."""
    path = Path(path)
    header, rows = _read_rows(path)
    _require_columns(path, header, [*text, *numeric])
    if len(rows) < min_rows:
        raise DataError(f"{path}: {len(rows)} rows of data, at least {min_rows} needed")
    values: dict[str, list[float]] = {c: [] for c in numeric}
    texts: dict[str, list[str]] = {c: [] for c in text}
    for line, row in rows:
        for c in values:
            value = _number(path, line, c, row.get(c, ""), positive=c not in non_negative)
            if math.isnan(value):
                raise DataError(f"{path} line {line}, column {c}: empty cell")
            if value < 0:
                raise DataError(f"{path} line {line}, column {c}: {value:g} is negative")
            values[c].append(value)
        for c in text:
            if not row.get(c):
                raise DataError(f"{path} line {line}, column {c}: empty cell")
            texts[c].append(row[c])
    return Table(
        str(path),
        {c: np.array(v) for c, v in values.items()},
        {c: tuple(v) for c, v in texts.items()},
        tuple(line for line, _ in rows),
    )
