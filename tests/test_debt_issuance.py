"""New debt issued through the market window (docs/model.md 7.10) against hand ledgers on one
borrower: an order funded by debt adds exactly gross = cost / (1 - fee) to the notes' principal
while the proceeds pay the order; the next coupon is paid at coupon + the regime's step-up; the
step's size limit is shared by the orders of the step; the commitment caps the principal; no
issuance while the window is closed, where a committed order still defaults. The backend
agreement case (tests/test_capex.py `capex_mapping`) funds an order from new debt too."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_capex import DELIVERY_STEP, SEED, growing_neocloud, one_borrower, order
from test_credit import instrument, steps, zero_vol_market

from gpusim.model.constants import NO_DEFAULT, DefaultReason
from gpusim.scenario import ConfigError, validate_mapping
from gpusim.spec import RunSpec

COST = 0.02
COUPON = 0.09
STEP_UP = {"easy": 0.01, "tight": 0.03}
ORDER_COST = 500 * 20000.0  # order(): 500 H100 at USD 20,000
NOTES = 1  # instrument index of the notes (after the token note)


def notes(commitment: float = 5.0e7) -> dict[str, Any]:
    """Senior notes with nothing outstanding at t_0, 9 % fixed, quarterly, due 2031: new issuance goes here."""
    return instrument("Neo notes", "bond", 0.0, commitment=commitment, coupon=COUPON, maturity_date="2031-01-01")


def issuer(orders: list[dict[str, Any]], probability: Any = 1.0, size: float = 2.0e7, commitment: float = 5.0e7) -> dict[str, Any]:
    issuance = {"instrument": "Neo notes", "size_per_month": size, "cost": COST, "spread_step_up": STEP_UP}
    neo = growing_neocloud(1.0e9, orders, market_access={"probability": probability, "debt": issuance})
    neo["debt"].append(notes(commitment))
    return neo


def ledger(spec: RunSpec) -> list[tuple[int, float, float, float, float]]:
    """Per step: k, cash, CFADS of the step, the notes' principal and spread add-on (path 0)."""
    return [
        (k, float(cs.cash[0, 0]), float(cs.cfads_window[0, -1, 0]), float(cs.outstanding[NOTES, 0]), float(cs.spread_add[NOTES, 0]))
        for k, _, _, cs, _ in steps(spec, 1, SEED)
    ]


@pytest.mark.parametrize("regime", ["easy", "tight"])
def test_debt_funds_the_order_and_pays_coupon_plus_step_up(regime: str) -> None:
    """A USD 10m order funded by debt alone at 2 % cost: the notes' principal rises by exactly
    10m / 0.98 in the delivery step and the proceeds 10m pay the order (cash moves by CFADS only);
    each coupon after it is principal x (9 % + the regime's step-up) / 4, paid on the notes'
    payment dates (the first one after the delivery included), and cash falls by it there."""
    spec = one_borrower(issuer([order(funding=["debt"])]), n_steps=12, regime=regime)
    gross = ORDER_COST / (1.0 - COST)
    rows = ledger(spec)
    payments = [k for k in range(DELIVERY_STEP + 1, spec.layout.n_steps) if spec.credit.payment_due[k][NOTES] > 0.0]
    assert payments
    for (k, cash, flow, principal, spread), (_, before, *_) in zip(rows[1:], rows[:-1], strict=True):
        assert principal == (gross if k >= DELIVERY_STEP else 0.0), k
        assert spread == (STEP_UP[regime] if k >= DELIVERY_STEP else 0.0), k
        interest = gross * (COUPON + STEP_UP[regime]) / 4.0 if k in payments else 0.0
        np.testing.assert_allclose(cash - before, flow - interest, rtol=1e-12, atol=1e-6, err_msg=f"step {k}")


def test_orders_of_a_step_share_its_limit() -> None:
    """Two USD 10m orders in the same step, each [debt, cash], USD 12m a month: the first issues
    10m / 0.98 gross, the second the 12m left less that; principal 12m, cash pays 20m - 12m x 0.98."""
    spec = one_borrower(issuer([order(funding=["debt", "cash"]), order(funding=["debt", "cash"])], size=1.2e7), n_steps=7)
    rows = ledger(spec)
    (_, before, *_), (k, cash, flow, principal, _) = rows[DELIVERY_STEP - 1], rows[DELIVERY_STEP]
    np.testing.assert_allclose(principal, 1.2e7, rtol=1e-12)
    np.testing.assert_allclose(cash - before, flow - 2.0 * ORDER_COST + 1.2e7 * (1.0 - COST), rtol=1e-12, err_msg=f"step {k}")


def test_commitment_caps_the_principal() -> None:
    """Commitment USD 15m: a first USD 10m order issues 10m / 0.98, a second one a month later only
    the 15m - 10m / 0.98 left, cash paying the rest; principal 15m after."""
    later = order(funding=["debt", "cash"], date="2026-08-01")
    spec = one_borrower(issuer([order(funding=["debt"]), later], commitment=1.5e7), n_steps=8)
    rows = ledger(spec)
    first = ORDER_COST / (1.0 - COST)
    assert rows[DELIVERY_STEP][3] == first
    (_, before, *_), (_, cash, flow, principal, spread) = rows[DELIVERY_STEP], rows[DELIVERY_STEP + 1]
    np.testing.assert_allclose(principal, 1.5e7, rtol=1e-12)
    np.testing.assert_allclose(cash - before, flow - ORDER_COST + (1.5e7 - first) * (1.0 - COST), rtol=1e-12)
    np.testing.assert_allclose(spread, STEP_UP["easy"], rtol=1e-12)


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "uncommitted"])
def test_closed_window_issues_nothing(committed: bool) -> None:
    """A freeze (tight probability 0) in the tight regime: nothing is issued; the debt-funded order
    is a payment default in its step when committed, cancelled when not."""
    spec = one_borrower(issuer([order(funding=["debt"], committed=committed)], {"easy": 1.0, "tight": 0.0}), n_steps=8, regime="tight")
    for k, _, _, cs, _ in steps(spec, 1, SEED):
        assert cs.outstanding[NOTES, 0] == 0.0 and cs.added.sum() == 0.0
        if committed and k >= DELIVERY_STEP:
            assert cs.default_step[0, 0] == DELIVERY_STEP and cs.reason[0, 0] == DefaultReason.PAYMENT.value
        else:
            assert cs.default_step[0, 0] == NO_DEFAULT


@pytest.mark.parametrize(
    "change,message",
    [
        ({"instrument": "Nope"}, r"market_access\.debt\.instrument: 'Nope' is not a term loan or bond of Neo"),
        ({"commitment": None}, r"debt\[1\]\.commitment: required on 'Neo notes'"),
        ({"principal": 6.0e7}, r"debt\[1\]\.principal: 6e\+07 exceeds its commitment 5e\+07"),
        ({"no_debt_access": True}, r"capex\[0\]\.funding: debt needs market_access\.debt"),
    ],
)
def test_bad_debt_issuance_is_refused_with_its_path(change: dict[str, Any], message: str) -> None:
    neo = issuer([order(funding=["debt"])])
    if "instrument" in change:
        neo["market_access"]["debt"]["instrument"] = change["instrument"]
    elif "no_debt_access" in change:
        del neo["market_access"]["debt"]
        neo["debt"][NOTES].pop("commitment")
    else:
        neo["debt"][NOTES].update(change)
    m = zero_vol_market(12)
    m["borrowers"] = [neo]
    with pytest.raises(ConfigError, match=message):
        validate_mapping(m, "bad debt issuance")
