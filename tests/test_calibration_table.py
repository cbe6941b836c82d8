"""docs/make_calibration_table.py: the analogue quotes it reads, and its arithmetic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from gpusim import desk
from gpusim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_calibration_table", ROOT / "docs" / "make_calibration_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


table = _script()


def test_shipped_quotes_name_baseline_borrowers_and_instruments():
    quotes = table.read_quotes(table.QUOTES)
    assert quotes, "gpusim/data/analogue_credit.csv has no quotes"
    baseline = load_scenario(ROOT / "configs" / "baseline.yaml")
    borrowers = {b.name: {i.name for i in b.debt} for b in baseline.borrowers}
    for q in quotes:
        assert q.borrower in borrowers, f"line {q.line}: {q.borrower}"
        assert not q.instrument or q.instrument in borrowers[q.borrower], f"line {q.line}: {q.instrument}"
        if q.rating not in ("", "NR", "WR"):
            assert table.rating_grade(q.rating) in desk.RATING_GRADES


@pytest.mark.parametrize(
    ("rating", "grade"),
    [("B+", "B"), ("BB-", "BB"), ("Ba3", "BB"), ("B2", "B"), ("Caa1", "CCC/C"), ("CCC+", "CCC/C"), ("Baa2", "BBB"), ("AAA", "AAA")],
)
def test_rating_grades_of_both_scales(rating, grade):
    assert table.rating_grade(rating) == grade


@pytest.mark.parametrize("rating", ["", "NR", "WR"])
def test_no_rating_has_no_grade(rating):
    assert table.rating_grade(rating) is None
    assert table.rating_pd(rating, 5.0) is None


def test_unknown_rating_stops_with_its_name():
    with pytest.raises(SystemExit, match="Xx1"):
        table.rating_grade("Xx1")


@pytest.mark.parametrize("spread", [50.0, 400.0, 1500.0])
def test_triangle_spread_inverts_the_desk_implied_pd(spread):
    pd = float(desk.implied_pd(spread, 5.0, 0.4))
    assert table.triangle_spread_bps(pd, 5.0, 0.4) == pytest.approx(spread, rel=1e-12)


def test_ratio_flags_gaps_beyond_two_times_either_way():
    assert table.ratio_text(500.0, 240.0) == ("2.08", True)
    assert table.ratio_text(500.0, 260.0) == ("1.92", False)
    assert table.ratio_text(100.0, 210.0) == ("0.48", True)
    assert table.ratio_text(500.0, 0.0) == ("inf", True)
    assert table.ratio_text(None, 10.0) == ("-", False)
    assert table.ratio_text(500.0, 1.0) == (">100", True)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("Helios Compute,,CoreWeave,CDS,cds,abc,,,2025-12,s", "not a number"),
        ("Helios Compute,,CoreWeave,CDS,cds,-5,,,2025-12,s", "must be positive"),
        ("Helios Compute,,CoreWeave,CDS,swap,100,,,2025-12,s", "quote_kind"),
        ("Helios Compute,,CoreWeave,CDS,cds,100,,,2025-12,", "needs its source"),
        ("Helios Compute,,CoreWeave,CDS,rating_only,,,,2025-12,s", "needs a rating"),
        ("Helios Compute,,CoreWeave,CDS,cds,100", "columns"),
    ],
)
def test_bad_quote_rows_are_named(tmp_path, row, message):
    path = tmp_path / "quotes.csv"
    path.write_text(",".join(table.COLUMNS) + "\n" + row + "\n")
    with pytest.raises(SystemExit, match=message) as caught:
        table.read_quotes(path)
    assert f"{path}:2" in str(caught.value)


def test_rates_grow_down_the_scale_at_five_years():
    rates = [table.rating_pd(g, 5.0) for g in ("BBB", "BB", "B", "CCC")]
    assert np.all(np.diff(rates) > 0)
