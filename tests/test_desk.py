"""The desk measures (docs/desk.md): hand ledgers and closed forms first, then a small run end to end."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping, stressed_borrowers

from gpusim.cli import main
from gpusim.desk import (
    CUMULATIVE_DEFAULT_RATES,
    RATING_GRADES,
    DeskAccumulator,
    DeskSetup,
    TrancheCut,
    eir_discount,
    implied_pd,
    rating_boundaries,
    rating_grade,
    rating_rates,
    spread_reading,
    tranche_breakeven_bps,
    tranche_loss,
)
from gpusim.risk import credit_triangle_spread
from gpusim.scenario import ConfigError, scenario_from

# ---------------------------------------------------------------------------------------
# Rating scale


@pytest.mark.parametrize("tenor", [1, 3, 5, 10])
def test_each_grade_s_own_default_rate_maps_to_that_grade(tenor):
    """Where the study's rates rise down the scale, each grade's rate lies inside its own band."""
    rates = CUMULATIVE_DEFAULT_RATES[:, tenor - 1]
    for g, grade in enumerate(RATING_GRADES):
        if g > 0 and rates[g] <= rates[:g].max():
            continue  # AAA above AA beyond two years: the band of AA starts at AAA's rate
        assert rating_grade(float(rates[g]), tenor) == grade


def test_a_pd_on_a_boundary_takes_the_better_grade_and_just_above_the_worse():
    bounds = rating_boundaries(5.0)
    bbb_bb = float(np.sqrt(0.0140 * 0.0580))  # geometric mean of BBB and BB at five years
    assert bounds[3] == pytest.approx(bbb_bb, rel=1e-12)
    assert rating_grade(bbb_bb, 5.0) == "BBB"
    assert rating_grade(bbb_bb * (1 + 1e-9), 5.0) == "BB"
    assert rating_grade(0.0, 5.0) == "AAA"
    assert rating_grade(1.0, 5.0) == "CCC/C"


def test_boundaries_rise_at_every_tenor_and_rates_interpolate_between_whole_years():
    for tenor in np.linspace(0.1, 12.0, 60):
        assert np.all(np.diff(rating_boundaries(float(tenor))) > 0)
    assert np.allclose(rating_rates(2.5), 0.5 * (CUMULATIVE_DEFAULT_RATES[:, 1] + CUMULATIVE_DEFAULT_RATES[:, 2]))
    assert np.allclose(rating_rates(0.5), 0.5 * CUMULATIVE_DEFAULT_RATES[:, 0])
    assert np.array_equal(rating_rates(15.0), CUMULATIVE_DEFAULT_RATES[:, -1])


# ---------------------------------------------------------------------------------------
# Market reconciliation


@pytest.mark.parametrize(("pd_annual", "recovery", "tenor"), [(0.02, 0.4, 5.0), (0.10, 0.25, 3.0), (0.005, 0.6, 7.5)])
def test_implied_pd_inverts_the_credit_triangle(pd_annual, recovery, tenor):
    spread_bps = float(credit_triangle_spread(pd_annual, 1.0 - recovery)) * 1e4
    assert float(implied_pd(spread_bps, tenor, recovery)) == pytest.approx(1.0 - (1.0 - pd_annual) ** tenor, rel=1e-12)


def test_a_spread_at_or_below_zero_implies_no_default():
    assert float(implied_pd(0.0, 5.0, 0.4)) == 0.0
    assert float(implied_pd(-50.0, 5.0, 0.4)) == 0.0


def test_spread_reading_bounds():
    assert spread_reading(300, 400, 3.0, 300) == "below break-even"
    assert spread_reading(400, 400, 3.0, 300) == "premium"
    assert spread_reading(1000, 200, 3.0, 300) == "too wide to be a premium"  # 5x and 800 bps above
    assert spread_reading(250, 50, 3.0, 300) == "premium"  # 5x but only 200 bps: a premium of a strong name
    assert spread_reading(900, 400, 3.0, 300) == "premium"  # 500 bps above but 2.25x
    assert spread_reading(500, 0, 3.0, 300) == "too wide to be a premium"


# ---------------------------------------------------------------------------------------
# IFRS 9 / CECL expected credit loss


def test_eir_discount_compounds_the_coupon_at_its_frequency():
    t = np.array([0.0, 0.5, 1.0, 2.0])
    base = np.exp(-0.04 * t)
    assert np.allclose(eir_discount(t, base, 0.08, 4, floating=False), (1 + 0.02) ** (-4 * t), rtol=1e-14)
    assert np.allclose(eir_discount(t, base, 0.03, 12, floating=True), base * (1 + 0.0025) ** (-12 * t), rtol=1e-14)
    assert np.array_equal(eir_discount(t, base, 0.0, 4, floating=True), base)


def _two_year_setup() -> DeskSetup:
    """One borrower, one instrument, yearly steps over two years: base DF 0.95, 0.90; EIR DF 0.90, 0.80."""
    base, eir = np.array([0.95, 0.90]), np.array([0.90, 0.80])
    return DeskSetup(
        instrument_borrower=np.array([0]),
        steps_per_year=1,
        rediscount=(eir / base)[:, None],
        undiscount=1.0 / base,
        eir=np.array([0.1]),
    )


def test_lifetime_ecl_on_a_two_period_hand_ledger():
    """Four paths: survives; defaults in year 1 losing 100; in year 2 losing 50; in year 2 losing 100 (nominal)."""
    default_step = np.array([[-1], [0], [1], [1]])
    loss = np.array([[0.0], [100 * 0.95], [50 * 0.90], [100 * 0.90]])  # as stored: discounted at the base curve
    acc = DeskAccumulator(_two_year_setup())
    acc.add(default_step, loss)
    out = acc.finalize()
    per_path = np.array([0.0, 100 * 0.90, 50 * 0.80, 100 * 0.80])
    assert out["ecl_lifetime"][0] == pytest.approx(per_path.mean(), rel=1e-14)  # 52.5
    assert out["ecl_12m"][0] == pytest.approx(90 / 4, rel=1e-14)
    assert out["ecl_lifetime_se"][0] == pytest.approx(per_path.std(ddof=1) / 2, rel=1e-12)
    assert np.allclose(out["marginal_pd"][0], [0.25, 0.5])
    assert np.allclose(out["nominal_loss_by_year"][0], [100 / 4, 150 / 4])
    assert np.allclose(out["ecl_by_year"][0], [90 / 4, 120 / 4])
    # PD_j x (LGD x EAD)_j x DF_j reproduces the period terms: year 2 = 0.5 x 75 x 0.8
    assert out["marginal_pd"][0, 1] * 75.0 * 0.80 == pytest.approx(out["ecl_by_year"][0, 1])


def test_the_accumulator_does_not_depend_on_the_chunking():
    rng = np.random.default_rng(3)
    ds = np.where(rng.random((500, 1)) < 0.3, rng.integers(0, 2, (500, 1)), -1)
    loss = np.where(ds >= 0, rng.random((500, 1)) * 100, 0.0)
    whole, parts = DeskAccumulator(_two_year_setup()), DeskAccumulator(_two_year_setup())
    whole.add(ds, loss)
    for rows in (slice(0, 123), slice(123, 400), slice(400, 500)):
        parts.add(ds[rows], loss[rows])
    a, b = whole.finalize(), parts.finalize()
    for key in a:
        assert np.allclose(a[key], b[key], rtol=1e-12, atol=0.0), key


# ---------------------------------------------------------------------------------------
# Tranches


def test_tranche_el_and_pd_of_a_uniform_loss():
    """L uniform on [0, P] (cell midpoints; bounds on cell edges, so the midpoint rule is exact)."""
    n, principal = 1000, 1e6
    loss = (np.arange(n) + 0.5) / n * principal
    for a, d in ((0.0, 0.1), (0.1, 0.35), (0.35, 1.0)):
        got = tranche_loss(loss, a * principal, d * principal).mean()
        assert got == pytest.approx(principal * ((d - a) ** 2 / 2 + (d - a) * (1 - d)), rel=1e-12)
        assert (loss > a * principal).mean() == pytest.approx(1 - a)


def _cut(name: str, a: float, d: float, principal: float) -> TrancheCut:
    return TrancheCut("F", name, (0,), a, d, principal)


def test_tranches_of_a_two_point_loss_and_their_breakeven_spreads():
    """Loss 0 with probability 0.9, half the principal with 0.1: the junior 0-20 % and mezzanine 20-60 % are hit, the senior not."""
    principal, n = 100.0, 1000
    loss = np.zeros((n, 1))
    loss[:100, 0] = 50.0
    cuts = (_cut("junior", 0.0, 0.2, principal), _cut("mezzanine", 0.2, 0.6, principal), _cut("senior", 0.6, 1.0, principal))
    setup = DeskSetup(np.array([0]), 1, np.ones((2, 1)), np.ones(2), np.array([0.0]), cuts)
    acc = DeskAccumulator(setup)
    acc.add(np.where(loss > 0, 0, -1), loss)
    out = acc.finalize()
    assert np.allclose(out["tranche_el"], [0.1 * 20, 0.1 * 30, 0.0])
    assert np.allclose(out["tranche_pd"], [0.1, 0.1, 0.0])
    assert out["tranche_el"].sum() == pytest.approx(loss.mean())
    annuity = np.array([300.0])  # USD years, e.g. 100 outstanding for 3 years
    spread, _ = tranche_breakeven_bps(out["tranche_el"], out["tranche_el_se"], cuts, annuity)
    assert np.allclose(spread, [2.0 / (0.2 * 300) * 1e4, 3.0 / (0.4 * 300) * 1e4, 0.0])
    widths = np.array([c.detachment - c.attachment for c in cuts])
    assert (widths * spread).sum() == pytest.approx(loss.mean() / annuity[0] * 1e4)  # the facility's break-even


# ---------------------------------------------------------------------------------------
# Config, a small run, the command line


def _desk_mapping(**desk: object) -> dict:
    borrowers = stressed_borrowers()
    return small_mapping(borrowers=borrowers, desk=desk)


def test_tranche_config_errors_name_the_field():
    with pytest.raises(ConfigError) as unknown:
        scenario_from(
            _desk_mapping(tranches=[{"name": "X", "instruments": ["Nope"], "tranches": [{"name": "a", "attachment": 0, "detachment": 1}]}])
        )
    assert any("desk.tranches[0].instruments" in p and "Nope" in p for p in unknown.value.problems)
    with pytest.raises(ConfigError) as inverted:
        scenario_from(
            _desk_mapping(
                tranches=[{"name": "X", "instruments": ["Hash Line"], "tranches": [{"name": "a", "attachment": 0.5, "detachment": 0.2}]}]
            )
        )
    assert any("desk.tranches[0].tranches[0]" in p and "detachment 0.2 must be above attachment 0.5" in p for p in inverted.value.problems)


TRANCHES = [
    {"name": "whole", "instruments": ["Hash Line"], "tranches": [{"name": "all", "attachment": 0.0, "detachment": 1.0}]},
    {
        "name": "split",
        "instruments": ["Hash Line"],
        "tranches": [{"name": "junior", "attachment": 0.0, "detachment": 0.15}, {"name": "senior", "attachment": 0.15, "detachment": 1.0}],
    },
]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The stressed small scenario, the miner's term loan made floating at a zero spread (its EIR is the base curve)."""
    mapping = _desk_mapping(tranches=TRANCHES)
    miner = mapping["borrowers"][1]
    miner["debt"][1] |= {"rate_type": "floating", "coupon": 0.0}
    path = tmp_path_factory.mktemp("desk") / "desk.yaml"
    path.write_text(yaml.safe_dump(mapping))
    out = path.with_suffix(".h5")
    result = CliRunner().invoke(
        main, ["run", str(path), "--paths", "600", "--seed", "5", "--out", str(out), "--backend", "numpy", "--quiet", "--json"]
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_a_run_reports_ecl_tranches_and_reconciliation_consistent_with_its_summary(small_run):
    _, numbers = small_run
    desk = numbers["desk"]
    instruments = {i["name"]: i for i in desk["instruments"]}
    headline = {i["name"]: i for i in numbers["instruments"]}
    loan = instruments["Hash Loan"]
    assert loan["el"] > 0, "the test needs losses on the zero-spread loan"
    assert loan["ecl_lifetime"] == pytest.approx(loan["el"], rel=1e-12)  # EIR = base curve: ECL is the model's EL
    for i in desk["instruments"]:
        assert sum(i["ecl_by_year"]) == pytest.approx(i["ecl_lifetime"], rel=1e-12, abs=1e-6)
        assert i["ecl_12m"] <= i["ecl_lifetime"] + 1e-9
        market, tenor = i["market_spread_bps"], i["tenor_years"]
        assert i["implied_pd"] == pytest.approx(1 - math.exp(-market / 1e4 * tenor / (1 - desk["recovery"])), rel=1e-12)
    converts = instruments["Hash Converts"]  # 3 % fixed, paid twice a year
    assert converts["eir"] == pytest.approx((1 + 0.03 / 2) ** 2 - 1)
    for b in desk["borrowers"]:
        by_horizon = next(x for x in numbers["borrowers"] if x["name"] == b["name"])["pd_horizon"]
        assert sum(b["marginal_pd_by_year"]) == pytest.approx(by_horizon, abs=1e-12)

    tranches = {(t["facility"], t["tranche"]): t for t in desk["tranches"]}
    line = headline["Hash Line"]
    whole = tranches[("whole", "all")]
    assert whole["el"] == pytest.approx(line["el"], rel=1e-12)
    assert whole["breakeven_spread_bps"] == pytest.approx(line["breakeven_spread_bps"], rel=1e-9)
    junior, senior = tranches[("split", "junior")], tranches[("split", "senior")]
    assert junior["el"] + senior["el"] == pytest.approx(line["el"], rel=1e-12)
    assert junior["pd"] >= senior["pd"]
    weighted = 0.15 * junior["breakeven_spread_bps"] + 0.85 * senior["breakeven_spread_bps"]
    assert weighted == pytest.approx(line["breakeven_spread_bps"], rel=1e-9)


def test_inspect_prints_the_desk_tables_and_a_changed_desk_block_needs_no_rerun(small_run):
    out, numbers = small_run
    result = CliRunner().invoke(main, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    for title in ("rating grade", "IFRS 9 / CECL", "market reconciliation", "tranches"):
        assert title in result.output
    from gpusim import open_results
    from gpusim.output.desk_numbers import desk_numbers

    results = open_results(out)
    changed = copy.deepcopy(results.scenario).model_copy(update={"desk": results.scenario.desk.model_copy(update={"recovery": 0.0})})
    again = desk_numbers(results, changed)
    assert again is not None
    loan = next(i for i in again["instruments"] if i["name"] == "Hash Loan")
    assert loan["implied_pd"] == pytest.approx(1 - math.exp(-loan["market_spread_bps"] / 1e4 * loan["tenor_years"]), rel=1e-12)
    assert again["borrowers"] == numbers["desk"]["borrowers"]


def test_a_bad_desk_block_is_refused_by_the_command_line_with_exit_2(tmp_path):
    bad = {"name": "X", "instruments": ["Hash Line", "Nope"], "tranches": [{"name": "a", "attachment": 0.3, "detachment": 0.3}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_desk_mapping(recovery=1.0, tranches=[bad])))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "desk.recovery" in result.output
    assert "desk.tranches[0].tranches[0]" in result.output and "detachment 0.3 must be above attachment 0.3" in result.output
