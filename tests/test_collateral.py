"""Data-centre assets as collateral and distributions to equity (docs/model.md 5.8, 6.5, 7.5a,
7.7), against hand ledgers on small zero-volatility cases: a pledged site's declining-balance
value in the collateral, the LTV covenant, the refinancing LTV test and the recovery waterfall,
exactly; distributions paid step by step and locked up while the DSCR test fails; numpy, JAX
and the host-compiled kernels agreeing path by path with both mechanisms on."""

from __future__ import annotations

import copy
from typing import Any

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from helpers import small_mapping, stressed_borrowers
from test_credit import instrument, neocloud, spec_of, steps, zero_vol_market

from gpusim.backends.array_model import simulate_chunk
from gpusim.model.constants import DefaultReason
from gpusim.model.debt import collateral_value
from gpusim.model.params import cast_params
from gpusim.scenario import ConfigError, validate_mapping
from gpusim.spec import DType, RunSpec, build_spec

SEED = 20261208
SITE_VALUE, DEPRECIATION, HAIRCUT = 80.0e6, 0.10, {"easy": 0.3, "tight": 0.5}
SENIOR, JUNIOR = 60.0e6, 40.0e6


def site(**changes: Any) -> dict[str, Any]:
    out = {"name": "Lake Mariner", "value": SITE_VALUE, "depreciation": DEPRECIATION, "fire_sale_haircut": HAIRCUT}
    out.update(changes)
    return out


def site_value(t_years: float, floor: float = 0.0) -> float:
    """The declining-balance value of `site()` at t years, by hand."""
    return max(SITE_VALUE * (1.0 - DEPRECIATION) ** t_years, floor)


def landlord(senior: dict[str, Any], pledge: bool = True, **site_changes: Any) -> dict[str, Any]:
    """A borrower whose only asset is one data centre: no fleets, cash, income or opex; a zero-coupon
    senior note (the site pledged to it) and an unsecured junior note due in 2030."""
    if pledge:
        senior.setdefault("collateral", {})["data_centres"] = ["Lake Mariner"]
    junior = instrument("Junior", "bond", JUNIOR, coupon=0.0, maturity_date="2030-01-01", seniority=2)
    return {
        "name": "Landlord",
        "type": "miner",
        "cash": 0.0,
        "fixed_opex_per_month": 0.0,
        "pue": 1.0,
        "revenue_shock": {"vol": 0.0, "mean_reversion": 1.0},
        "data_centres": [site(**site_changes)],
        "debt": [senior, junior],
    }


def senior_note(**fields: Any) -> dict[str, Any]:
    """Zero coupon, due 2027-01-01: the maturity falls in step 11, (t_11, t_12]."""
    return instrument("Senior", "bond", SENIOR, coupon=0.0, maturity_date="2027-01-01", **fields)


def outcome(borrower: dict[str, Any], n_steps: int = 24) -> tuple[Any, Any, Any]:
    """(spec, default step, final credit state) of one zero-volatility path."""
    m = zero_vol_market(n_steps)
    m["borrowers"] = [borrower]
    spec = spec_of(m)
    *_, (_, _, _, cs, _) = steps(spec, 1, SEED)
    return spec, int(cs.default_step[0, 0]), cs


def test_pledged_site_enters_the_collateral_at_mark_and_at_book() -> None:
    """collateral_value at t_7: the pledged site's V_0 (1 - d)^t exactly, on both bases, for the
    senior note only (the junior is unsecured)."""
    m = zero_vol_market(12)
    m["borrowers"] = [landlord(senior_note())]
    spec = spec_of(m)
    c, layout = cast_params(spec.credit, xnp, xnp.float64), spec.layout
    marks = np.ones((layout.n_generations, 1))
    pledged = np.zeros((layout.n_borrowers, layout.n_assets, 1))
    at_mark, at_book = collateral_value(marks, 7, pledged, np.ones((layout.n_assets, 1)), layout, c, xnp)
    expected = site_value(7 / 12)
    np.testing.assert_allclose(at_mark[:, 0], [expected, 0.0], rtol=1e-14)
    np.testing.assert_allclose(at_book[:, 0], [expected, 0.0], rtol=1e-14)


def test_site_value_in_the_borrower_ltv() -> None:
    """The fan-chart LTV at each t_{k+1}: debt / the site's value (no fleets, no treasury)."""
    m = zero_vol_market(10)
    m["borrowers"] = [landlord(senior_note())]
    for k, _, _, cs, ratios in steps(spec_of(m), 1, SEED):
        assert cs.alive[0, 0]
        np.testing.assert_allclose(ratios.ltv[0, 0], (SENIOR + JUNIOR) / site_value((k + 1) / 12), rtol=1e-13, err_msg=f"step {k}")


@pytest.mark.parametrize("floor", [0.0, 76.0e6], ids=["no-floor", "floor"])
def test_ltv_covenant_on_the_site_breaks_at_the_hand_step(floor: float) -> None:
    """Monthly LTV test at 80 %, no cure: 60 > 0.8 x 80 (0.9)^t first at t_8 = 8/12 (t > 0.613), so a
    covenant-LTV default in step 7; a floor of 76 above 75 keeps it passing until the note matures,
    when nothing repays it (a maturity default in step 11)."""
    covenants = {"ltv_max": 0.8, "test_every_months": 1, "cure_periods": 0}
    _, step, cs = outcome(landlord(senior_note(covenants=covenants), floor=floor), n_steps=14)
    breaches = [k for k in range(11) if 0.8 * site_value((k + 1) / 12, floor) < SENIOR]
    if floor:
        assert not breaches
        assert (step, int(cs.reason[0, 0])) == (11, DefaultReason.MATURITY.value)
    else:
        assert breaches[0] == 7
        assert (step, int(cs.reason[0, 0])) == (7, DefaultReason.COVENANT_LTV.value)


@pytest.mark.parametrize("max_ltv,refinanced", [(0.84, True), (0.83, False)])
def test_refinancing_ltv_test_uses_the_site(max_ltv: float, refinanced: bool) -> None:
    """At maturity (step 11) the senior note's refinancing LTV is 60 / (80 x 0.9) = 0.8333: refinanced
    with max_ltv 0.84, not with 0.83 (then a maturity default, with no cash to repay)."""
    refi = {"max_ltv": max_ltv, "min_dscr": 1.0, "tenor_years": 3.0}
    assert SENIOR / site_value(1.0) == pytest.approx(0.8333333333)
    _, step, _ = outcome(landlord(senior_note(refinancing=refi)), n_steps=14)
    assert step == (-1 if refinanced else 11)


def test_unpledged_site_cannot_be_refinanced_against() -> None:
    """The same note without the pledge is unsecured: its refinancing LTV is the borrower's (debt over
    all assets, the site included: 100 / 72 = 1.39), above 0.84, so it defaults at maturity."""
    refi = {"max_ltv": 0.84, "min_dscr": 1.0, "tenor_years": 3.0}
    _, step, _ = outcome(landlord(senior_note(refinancing=refi), pledge=False), n_steps=14)
    assert step == 11


@pytest.mark.parametrize("pledge", [True, False], ids=["pledged", "unpledged"])
def test_recovery_sells_the_site_at_its_haircut(pledge: bool) -> None:
    """Maturity default in step 11: the site sells for 72 x (1 - 0.3) = 50.4 at t_12, less the
    workout cost w x 100 pro rata; pledged, the senior note takes it all (its claim is 60); unpledged,
    the general pool pays senior first by rank too, so the recoveries match. Losses exactly."""
    spec, step, cs = outcome(landlord(senior_note(), pledge=pledge), n_steps=14)
    assert (step, int(cs.reason[0, 0])) == (11, DefaultReason.MATURITY.value)
    w = spec.scenario.recovery.workout_cost
    gross = site_value(1.0) * (1.0 - HAIRCUT["easy"])
    pool = gross * max(1.0 - w * (SENIOR + JUNIOR) / gross, 0.0)
    senior_recovery = min(pool, SENIOR)
    junior_recovery = min(pool - senior_recovery, JUNIOR)
    discount = spec.credit.discount[12]
    np.testing.assert_allclose(cs.loss[:, 0], [(SENIOR - senior_recovery) * discount, (JUNIOR - junior_recovery) * discount], rtol=1e-13)


def test_pledged_site_pays_its_own_lender_before_a_senior_unsecured_one() -> None:
    """Ranks reversed: the unsecured note is senior (rank 1), the site's note junior (rank 2). The site's
    proceeds pay its own lender first (secured pool), and only what is left joins the general pool."""
    secured = senior_note(seniority=2)
    borrower = landlord(secured)
    borrower["debt"][1]["seniority"] = 1
    spec, step, cs = outcome(borrower, n_steps=14)
    assert step == 11
    w = spec.scenario.recovery.workout_cost
    gross = site_value(1.0) * (1.0 - HAIRCUT["easy"])
    pool = gross * (1.0 - w * (SENIOR + JUNIOR) / gross)
    secured_recovery = min(pool, SENIOR)
    discount = spec.credit.discount[12]
    expected = [(SENIOR - secured_recovery) * discount, (JUNIOR - min(pool - secured_recovery, JUNIOR)) * discount]
    np.testing.assert_allclose(cs.loss[:, 0], expected, rtol=1e-13)


def test_site_names_are_checked() -> None:
    m = zero_vol_market(12)
    m["borrowers"] = [landlord(senior_note())]
    m["borrowers"][0]["debt"][0]["collateral"]["data_centres"] = ["Elsewhere"]
    with pytest.raises(ConfigError, match=r"borrowers\[0\]\.debt\[0\]\.collateral\.data_centres: 'Elsewhere'"):
        validate_mapping(m, "bad site")
    m["borrowers"][0]["data_centres"] = [site(floor=SITE_VALUE * 2)]
    with pytest.raises(ConfigError, match="floor"):
        validate_mapping(m, "bad floor")


# ---------------------------------------------------------------------------------------
# Distributions and lock-up


SHARE, FLOOR = 0.5, 1.0e6


def sponsor_owned(lockup: dict[str, Any]) -> dict[str, Any]:
    """The zero-volatility neocloud with a quarterly amortizing loan, paying half its cash above
    1 MUSD to its sponsor each month, with the lock-up `lockup`."""
    loan = instrument("Loan", "term_loan", 3.0e7, amortization="level_principal", maturity_date="2030-01-01")
    return neocloud([loan], cash=4.0e6, distributions={"share": SHARE, "cash_floor": FLOOR, **lockup})


def distribution_ledger(borrower: dict[str, Any], n_steps: int) -> list[tuple[bool, float, float]]:
    """Per step while the borrower lives: (locked by hand, the model's cash, the hand ledger's cash).
    The hand ledger takes the step's CFADS, debt service and breach counters from the model and
    applies the distribution rule, cash <- avail - service - share x max(avail - service - floor, 0)
    unless locked; with no crypto and no facility, avail < service is a payment default, where the
    model must default too."""
    m = zero_vol_market(n_steps)
    m["borrowers"] = [borrower]
    plan = borrower["distributions"]
    cash, rows = borrower["cash"], []
    for k, _, _, cs, _ in steps(spec_of(m), 1, SEED):
        flow, service = float(cs.cfads_window[0, -1, 0]), float(cs.service_window[0, -1, 0])
        after_service = cash + flow - service
        if after_service < 0.0:
            assert (int(cs.default_step[0, 0]), int(cs.reason[0, 0])) == (k, DefaultReason.PAYMENT.value)
            break
        assert cs.alive[0, 0], f"step {k}"
        dscr = float(cs.cfads_window[0, :, 0].sum() / cs.service_window[0, :, 0].sum())
        in_breach = bool((cs.dscr_breaches[:, 0] + cs.ltv_breaches[:, 0] > 0).any())
        locked = (plan.get("lockup_dscr") is not None and dscr < plan["lockup_dscr"]) or (plan.get("lockup_on_breach", True) and in_breach)
        cash = after_service - (0.0 if locked else SHARE * max(after_service - FLOOR, 0.0))
        rows.append((locked, float(cs.cash[0, 0]), cash))
    return rows


def test_distributions_paid_every_month_without_a_lockup() -> None:
    """Half the cash above the floor leaves every month; after the contract expiry (2027-01-01) the
    thinner cash cannot meet a quarterly payment: a payment default the same loan survives when the
    borrower keeps its cash (distributions change default risk)."""
    rows = distribution_ledger(sponsor_owned({}), 24)
    assert len(rows) < 24
    for k, (locked, model, hand) in enumerate(rows):
        assert not locked
        np.testing.assert_allclose(model, hand, rtol=1e-12, err_msg=f"step {k}")
    m = zero_vol_market(24)
    m["borrowers"] = [neocloud(sponsor_owned({})["debt"], cash=4.0e6)]
    *_, (_, _, _, cs, _) = steps(spec_of(m), 1, SEED)
    assert cs.alive[0, 0]


def test_distributions_locked_while_the_dscr_test_fails() -> None:
    """A lock-up at a trailing DSCR of 1.5: the DSCR dips below it in each quarter's payment month
    and falls below it for good after the contract expiry; distributions stop and resume with it,
    and the ledger matches the model in every step, locked or not."""
    rows = distribution_ledger(sponsor_owned({"lockup_dscr": 1.5}), 24)
    flags = [locked for locked, _, _ in rows]
    assert not flags[0] and flags[2] and not flags[3] and all(flags[11:])
    for k, (_, model, hand) in enumerate(rows):
        np.testing.assert_allclose(model, hand, rtol=1e-12, err_msg=f"step {k}")


def test_distributions_locked_while_a_covenant_is_in_breach() -> None:
    """A DSCR covenant that the loan fails from its first quarterly test (step 2) on, with cure periods
    to spare: in breach from then on, so distributions stop at step 2 and never resume."""
    borrower = sponsor_owned({})
    borrower["debt"][0]["covenants"] = {"dscr_min": 50.0, "test_every_months": 3, "cure_periods": 100}
    rows = distribution_ledger(borrower, 12)
    assert [locked for locked, _, _ in rows] == [k >= 2 for k in range(12)]
    for k, (_, model, hand) in enumerate(rows):
        np.testing.assert_allclose(model, hand, rtol=1e-12, err_msg=f"step {k}")


# ---------------------------------------------------------------------------------------
# Backends agree with both mechanisms on


def collateral_mapping() -> dict[str, Any]:
    """The stressed small scenario with a data centre pledged to the miner's facility and one
    unpledged, distributions with a lock-up at both borrowers: defaults of every kind."""
    neo, hash_miner = stressed_borrowers()
    neo["distributions"] = {"share": 0.3, "cash_floor": 5.0e7, "lockup_dscr": 1.3}
    hash_miner = copy.deepcopy(hash_miner)
    hash_miner["data_centres"] = [
        site(name="North campus", value=2.0e8, depreciation=0.08, floor=5.0e7),
        site(name="South campus", value=6.0e7, depreciation=0.2),
    ]
    hash_miner["debt"][0]["collateral"]["data_centres"] = ["North campus"]
    hash_miner["distributions"] = {"share": 0.5, "cash_floor": 1.0e7}
    return small_mapping(borrowers=[neo, hash_miner])


def collateral_spec(dtype: DType) -> RunSpec:
    """The backend agreement case `small-collateral` (tests/test_backend_agreement.py)."""
    return build_spec(validate_mapping(collateral_mapping(), "collateral"), dtype)


def test_collateral_case_sees_defaults_and_distributions() -> None:
    """The agreement case exercises the mechanisms: defaults happen, and cash paid out lowers the
    cash the borrowers end with compared with the same paths without distributions."""
    spec = collateral_spec("float64")
    with_plans = simulate_chunk(spec, SEED, 0, 200, 0, xnp)
    assert (with_plans.outcomes.default_step >= 0).any()
    plain = collateral_mapping()
    for b in plain["borrowers"]:
        b.pop("distributions")
    without = simulate_chunk(build_spec(validate_mapping(plain, "plain"), "float64"), SEED, 0, 200, 0, xnp)
    assert (with_plans.outcomes.default_step >= 0).sum() >= (without.outcomes.default_step >= 0).sum()
