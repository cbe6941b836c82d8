"""Dated capex and market access (docs/model.md 5.9, 7.10): a delivery at a known date against the
hand ledger of revenue, power, cash and collateral; an unfunded committed order defaults on
payment and an uncommitted one is cancelled; an at-the-market issuance adds exactly gross x
(1 - cost); no access in a freeze; a convert refinanced only when the window is open, path by
path against the access draw. `capex_spec`, a portfolio that uses all of it, is a case of
tests/test_backend_agreement.py (numpy, JAX, the host-compiled and GPU kernels path by path)."""

from __future__ import annotations

import copy
import math
from typing import Any

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from helpers import small_mapping, stressed_borrowers, token_note
from test_credit import instrument, neocloud, spec_of, steps, zero_vol_market
from test_miners import miner

from gpusim.model.constants import NO_DEFAULT, DefaultReason
from gpusim.model.debt import collateral_value, owned_fleet
from gpusim.model.market import draw_step
from gpusim.model.params import cast_params
from gpusim.scenario import ConfigError, validate_mapping
from gpusim.spec import RunSpec, build_spec

SEED = 20261211
Z_TOL = 3.0
"""Statistical tolerance of the access-frequency check, in Monte Carlo standard errors."""

HOURS = 8760.0 / 12.0
DELIVERY = "2026-07-01"  # t_6 exactly: the order is paid in step 5 and earns from step 6
DELIVERY_STEP = 5


def order(**changes: Any) -> dict[str, Any]:
    """500 H100 at USD 20,000 each, delivered and paid on 2026-07-01, from cash, committed."""
    o = {"date": DELIVERY, "generation": "H100", "count": 500, "price_per_gpu": 20000.0, "funding": ["cash"], "committed": True}
    o.update(changes)
    return o


def growing_neocloud(cash: float, orders: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    """The credit tests' neocloud (1000 H100) all at spot, owing only a token note."""
    neo = neocloud([token_note("Neo note")], cash=cash, capex=orders, **changes)
    neo["fleets"][0].update(contracted_share=0.0, contract_expiry=None)
    return neo


def one_borrower(b: dict[str, Any], n_steps: int = 12, regime: str = "easy") -> RunSpec:
    m = zero_vol_market(n_steps, regime)
    m["borrowers"] = [b]
    return spec_of(m)


def access(p: Any, size: float = 4.0e6, cost: float = 0.05, **changes: Any) -> dict[str, Any]:
    a = {"probability": p, "equity": {"size_per_month": size, "cost": cost}}
    a.update(changes)
    return a


@pytest.mark.parametrize("priced", ["fixed", "at_mark"])
def test_delivery_adds_revenue_power_and_collateral(priced: str) -> None:
    """A committed order of 500 H100 paid from cash on 2026-07-01: cash falls by exactly its cost in
    step 5 (500 x 20,000, or 500 x the H100 mark at t_6), and from step 6 the 500 GPUs rent at
    spot and draw power at the market utilization (CFADS of every step against the hand ledger);
    the facility pledged on H100 sees 1500 GPUs at mark and the order's cost depreciated over its
    book life at book, besides the 1000 at t_0."""
    fields = {"price_per_gpu": None} if priced == "at_mark" else {}
    neo = growing_neocloud(1.0e9, [order(book_life_years=5.0, **fields)])
    abl = instrument("ABL", "facility", 0.0, commitment=1.0e7, advance_rate=0.5, collateral={"fleets": ["H100"]})
    neo["debt"].append(abl)
    spec = one_borrower(neo)
    c = cast_params(spec.credit, xnp, xnp.float64)
    pue, opex = neo["pue"], neo["fixed_opex_per_month"]
    kw = spec.market.kw_per_gpu[spec.layout.generations.index("H100")]
    h100 = spec.layout.generations.index("H100")
    cash = neo["cash"]
    paid = 0.0
    for k, _, view, cs, _ in steps(spec, 1, SEED):
        u, r = float(view.utilization[0]), float(view.rental_rate[h100, 0])
        power = float(view.power_price[0]) * neo["power_price_ratio"]
        gpus = 1000 + 500 * (k > DELIVERY_STEP)
        flow = HOURS * gpus * u * r - HOURS * power * kw * pue * gpus * u - opex
        np.testing.assert_allclose(cs.cfads_window[0, -1, 0], flow, rtol=1e-12, err_msg=f"step {k}")
        if k == DELIVERY_STEP:
            mark = float(view.gpu_mark[h100, 0])
            paid = 500 * (mark if priced == "at_mark" else 20000.0)
        cash = cash + flow - (paid if k == DELIVERY_STEP else 0.0)
        np.testing.assert_allclose(cs.cash[0, 0], cash, rtol=1e-12, err_msg=f"step {k}")
        assert cs.alive[0, 0]
        np.testing.assert_array_equal(cs.added[0, h100, 0], 500.0 * (k >= DELIVERY_STEP))
        fleet = owned_fleet(cs.added, spec.layout, c)
        no_crypto = np.zeros((1, 1, 1))
        at_mark, at_book = collateral_value(view.gpu_mark, k + 1, no_crypto, view.crypto, spec.layout, c, xnp, fleet, cs.order_paid)
        fleet_book = 30000.0 * max(1.0 - ((k + 1) + 19) / 60.0, 0.0)  # bought 2024-06-01, 19 months before t_0, 5-year life
        delivered_book = paid * (1.0 - (k + 1 - 6) / 60.0) if k >= DELIVERY_STEP else 0.0
        np.testing.assert_allclose(at_mark[1, 0], (1000 + 500 * (k >= DELIVERY_STEP)) * float(view.gpu_mark[h100, 0]), rtol=1e-12)
        np.testing.assert_allclose(at_book[1, 0], 1000 * fleet_book + delivered_book, rtol=1e-12, err_msg=f"step {k}")


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "uncommitted"])
def test_unfunded_order(committed: bool) -> None:
    """An order its cash cannot pay: committed, a payment default in the delivery step; uncommitted,
    cancelled on that path (nothing paid, no GPUs, the borrower runs on)."""
    spec = one_borrower(growing_neocloud(2.0e6, [order(committed=committed)]))
    for k, _, _, cs, _ in steps(spec, 1, SEED):
        if committed and k >= DELIVERY_STEP:
            assert cs.default_step[0, 0] == DELIVERY_STEP
            assert cs.reason[0, 0] == DefaultReason.PAYMENT.value
        else:
            assert cs.default_step[0, 0] == NO_DEFAULT
            assert cs.added.sum() == 0.0 and cs.order_paid.sum() == 0.0


def test_facility_funds_the_order_on_its_own_collateral() -> None:
    """An order drawn on a delayed-draw facility secured on H100: the draw is the order's cost, up
    to the advance rate times the GPUs at mark with the delivered ones counted."""
    ddtl = instrument("DDTL", "facility", 0.0, commitment=2.0e7, advance_rate=0.8, collateral={"fleets": ["H100"]}, coupon=0.0)
    neo = growing_neocloud(1.0e6, [order(funding=["facility"], facility="DDTL")])
    neo["debt"].append(ddtl)
    spec = one_borrower(neo, n_steps=7)
    for k, _, _, cs, _ in steps(spec, 1, SEED):
        assert cs.alive[0, 0]
        np.testing.assert_allclose(cs.outstanding[1, 0], 1.0e7 if k >= DELIVERY_STEP else 0.0, rtol=1e-12)


def test_at_the_market_issuance_adds_size_times_one_minus_cost() -> None:
    """A window open with probability 1, USD 4m a month at 5 % cost, funding [equity, cash] a USD 10m
    order: the issuance raises exactly 4m x 0.95 and cash pays the rest, so cash moves by CFADS -
    10m + 3.8m in the delivery step."""
    neo = growing_neocloud(1.0e9, [order(funding=["equity", "cash"])], market_access=access(1.0))
    spec = one_borrower(neo, n_steps=7)
    before = None
    for k, _, _, cs, _ in steps(spec, 1, SEED):
        if k == DELIVERY_STEP:
            np.testing.assert_allclose(cs.cash[0, 0] - before, cs.cfads_window[0, -1, 0] - 1.0e7 + 4.0e6 * 0.95, rtol=1e-12)
            assert cs.added.sum() == 500.0
        before = float(cs.cash[0, 0])


def access_draws(spec: RunSpec, n: int, step: int) -> np.ndarray:
    """The market-access uniforms of borrower 0 in a step, as the model draws them."""
    return draw_step(SEED, 0, n, step, spec.layout, np.float64, xnp).market_access[0]


@pytest.mark.parametrize("regime", ["easy", "tight"])
def test_issuance_follows_the_access_draw_and_freezes(regime: str) -> None:
    """Probability 0.4 easy, 0 tight (a freeze): an uncommitted order funded by equity alone is
    delivered on exactly the paths whose access uniform is below 0.4 in the easy regime, on none
    in the tight one; in the easy regime that share is 0.4 within Monte Carlo error."""
    neo = growing_neocloud(1.0e9, [order(funding=["equity"], committed=False)], market_access=access({"easy": 0.4, "tight": 0.0}, 1.0e8))
    spec = one_borrower(neo, n_steps=6, regime=regime)
    n = 4000
    *_, (_, _, _, cs, _) = steps(spec, n, SEED)
    delivered = cs.added[0, spec.layout.generations.index("H100")] > 0.0
    expected = access_draws(spec, n, DELIVERY_STEP) < 0.4 if regime == "easy" else np.zeros(n, dtype=bool)
    np.testing.assert_array_equal(delivered, expected)
    if regime == "easy":
        se = math.sqrt(0.4 * 0.6 / n)
        assert abs(delivered.mean() - 0.4) < Z_TOL * se


def test_no_issuance_above_the_leverage_limit() -> None:
    """The same window always open, but max_ltv below the borrower's LTV: nothing is issued."""
    neo = growing_neocloud(1.0e9, [order(funding=["equity"], committed=False)], market_access=access(1.0, max_ltv=1e-9))
    *_, (_, _, _, cs, _) = steps(one_borrower(neo, n_steps=6), 50, SEED)
    assert cs.added.sum() == 0.0


def test_convert_rolls_only_when_the_window_is_open() -> None:
    """A convertible due in step 5 that the borrower cannot repay, refinanced via market access with
    terms it always meets: it rolls into a new convert exactly on the paths whose access draw of
    that step is open (probability 0.5), and defaults at maturity on the others."""
    convert = instrument(
        "Convert",
        "convertible",
        5.0e8,
        maturity_date="2026-06-15",
        coupon=0.0,
        refinancing={"max_ltv": 100.0, "min_dscr": 0.01, "tenor_years": 5.0, "via_market_access": True},
    )
    neo = growing_neocloud(1.0e6, [], market_access={"probability": 0.5})
    neo["debt"] = [convert]
    spec = one_borrower(neo, n_steps=7)
    n = 2000
    *_, (_, _, _, cs, _) = steps(spec, n, SEED)
    rolled = access_draws(spec, n, DELIVERY_STEP) < 0.5
    np.testing.assert_array_equal(cs.alive[0], rolled)
    assert (cs.reason[0, ~rolled] == DefaultReason.MATURITY.value).all()
    assert 0.4 < rolled.mean() < 0.6


def test_miner_upgrade_changes_hashrate_power_and_break_even() -> None:
    """A curtailing miner (1000 PH/s at 20 J/TH) buys 500 PH/s of 12 J/TH miners on 2026-07-01 at
    USD 15,000 per PH/s and retires 400 PH/s of its old ones: cash falls by exactly 7.5m in step 5;
    from step 6 it mines 1100 PH/s drawing 20,000 - 8,000 + 6,000 kW, and curtails at the new break-even
    hashprice 24 x (18,000 / 1100) x P rho instead of 24 x 20 x P rho (BTC falling through both)."""
    m = zero_vol_market(30)
    m["crypto"]["assets"][0]["drift"] = -0.6
    m["mining"] = {"hashprice": 50.0, "difficulty_growth": 0.2, "halvings": []}
    upgrade = {"date": DELIVERY, "kind": "miners", "hashrate": 500.0, "efficiency": 12.0, "price_per_ph": 15000.0, "replaces": 400.0}
    dig = miner(True, 0.0)
    dig["capex"] = [upgrade]
    m["borrowers"] = [dig]
    spec = spec_of(m)
    dt, s0 = 1.0 / 12, m["crypto"]["assets"][0]["spot"]
    power = m["power"]["long_run"] * dig["power_price_ratio"]
    cash, saved_by_upgrade, running = dig["cash"], [], True
    for k, _, _, cs, _ in steps(spec, 1, SEED):
        hashrate, kw = (1100.0, 18000.0) if k > DELIVERY_STEP else (1000.0, 20000.0)
        hp = 50.0 * math.exp(-0.2 * k * dt) * s0 * math.exp(-0.6 * (k + 1) * dt) / s0
        running = hp >= 24.0 * (kw / hashrate) * power
        flow = (hashrate * hp * 365 * dt if running else 0.0) - (8760 * dt * power * kw if running else 0.0) - 1.0e5
        np.testing.assert_allclose(cs.cfads_window[0, -1, 0], flow, rtol=1e-12, err_msg=f"step {k}")
        cash = cash + flow - (500 * 15000.0 if k == DELIVERY_STEP else 0.0)
        np.testing.assert_allclose(cs.cash[0, 0], cash, rtol=1e-12, err_msg=f"step {k}")
        saved_by_upgrade.append(running and hp < 24.0 * 20.0 * power)
    assert any(saved_by_upgrade), "the upgraded miners run where the old ones would have curtailed"
    assert not running, "and curtail below the new break-even"


def test_later_tenant_leases_delivered_gpus() -> None:
    """A tenant leasing 200 of the 500 delivered H100s from the delivery date at 3.0 USD/GPU-hour:
    before delivery 1000 GPUs at spot; from step 6, 1300 at spot and 200 at the contract rate."""
    tenant = {"name": "Lab", "kind": "gpu_hours", "generation": "H100", "gpus": 200, "rate": 3.0, "start": DELIVERY, "expiry": "2030-01-01"}
    neo = growing_neocloud(1.0e9, [order()], tenants=[tenant])
    spec = one_borrower(neo, n_steps=9)
    kw = spec.market.kw_per_gpu[spec.layout.generations.index("H100")]
    for k, _, view, cs, _ in steps(spec, 1, SEED):
        u, r = float(view.utilization[0]), float(view.rental_rate[spec.layout.generations.index("H100"), 0])
        power = float(view.power_price[0]) * neo["power_price_ratio"]
        spot, leased = (1300, 200) if k > DELIVERY_STEP else (1000, 0)
        flow = HOURS * (spot * u * r + leased * 3.0) - HOURS * power * kw * neo["pue"] * (spot * u + leased) - neo["fixed_opex_per_month"]
        np.testing.assert_allclose(cs.cfads_window[0, -1, 0], flow, rtol=1e-12, err_msg=f"step {k}")


@pytest.mark.parametrize(
    "bad,message",
    [
        (order(funding=["facility"], facility="Neo note"), r"capex\[0\]\.facility: 'Neo note' is not a facility"),
        (order(funding=["equity"]), r"capex\[0\]\.funding: equity needs market_access\.equity"),
        (order(generation="X1"), r"capex\[0\]\.generation: 'X1' is not one of"),
        (order(funding=["cash", "facility"]), r"capex\[0\]: .*name a facility exactly when funding lists 'facility'"),
        (order(count=900, date="2026-03-01", committed=True), r"tenants: 1400 H100 GPUs leased to tenants, more than the 1000"),
    ],
)
def test_bad_capex_is_refused_with_its_path(bad: dict[str, Any], message: str) -> None:
    m = zero_vol_market(12)
    lab = {"name": "Lab", "kind": "gpu_hours", "generation": "H100", "gpus": 1400, "rate": 3.0}
    lab.update(start="2026-02-01", expiry="2030-01-01")
    m["borrowers"] = [growing_neocloud(1.0e6, [bad], tenants=[lab])]
    with pytest.raises(ConfigError, match=message):
        validate_mapping(m, "bad capex")


def test_refinancing_via_market_access_needs_market_access() -> None:
    m = zero_vol_market(12)
    refi = {"max_ltv": 1.0, "min_dscr": 1.0, "tenor_years": 3.0, "via_market_access": True}
    neo = growing_neocloud(1.0e6, [])
    neo["debt"] = [instrument("Convert", "convertible", 1.0e6, refinancing=refi)]
    m["borrowers"] = [neo]
    with pytest.raises(ConfigError, match=r"debt\[0\]\.refinancing\.via_market_access: Neo has no market_access"):
        validate_mapping(m, "no access")


def capex_mapping() -> dict[str, Any]:
    """The stressed small scenario grown: the neocloud buys B200s at the mark from cash, a new ABL
    on them and ATM equity (committed, and later once more from new notes through the
    window, cash and equity), and H100s (uncommitted, equity only), with a tenant starting on the B200s;
    the miner upgrades its miners (and curtails), and its convert rolls only through market access,
    which closes in the tight regime."""
    neo, hash_miner = stressed_borrowers()
    neo = copy.deepcopy(neo)
    neo["market_access"] = access({"easy": 0.5, "tight": 0.0}, 1.0e8, 0.04, max_ltv=2.0)
    abl = instrument("Neo-ABL", "facility", 0.0, commitment=1.0e8, advance_rate=0.6, collateral={"fleets": ["B200"]})
    neo["debt"].append({**abl, "maturity_date": "2029-06-01"})
    neo["debt"].append(instrument("Neo-Notes", "bond", 0.0, commitment=1.5e8, maturity_date="2030-06-01", seniority=2))
    issuance = {"size_per_month": 6.0e7, "cost": 0.015, "spread_step_up": {"easy": 0.0075, "tight": 0.03}}
    neo["market_access"]["debt"] = {"instrument": "Neo-Notes", **issuance}
    neo["capex"] = [
        {"date": "2026-09-01", "generation": "B200", "count": 9000, "funding": ["cash", "facility", "equity"], "facility": "Neo-ABL"},
        {"date": "2027-03-01", "generation": "H100", "count": 3000, "price_per_gpu": 22000.0, "funding": ["equity"], "committed": False},
        {"date": "2027-06-01", "generation": "B200", "count": 6000, "funding": ["debt", "cash", "equity"]},
    ]
    neo["tenants"] = [
        {"name": "Lab", "kind": "gpu_hours", "generation": "B200", "gpus": 1500, "rate": 3.2, "start": "2026-09-01", "expiry": "2028-01-01"}
    ]
    hash_miner = copy.deepcopy(hash_miner)
    hash_miner["market_access"] = {"probability": {"easy": 0.7, "tight": 0.0}}
    hash_miner["mining"]["curtail"] = True
    hash_miner["capex"] = [
        {"date": "2026-08-01", "kind": "miners", "hashrate": 2000.0, "efficiency": 15.0, "price_per_ph": 20000.0, "replaces": 1500.0}
    ]
    for inst in hash_miner["debt"]:
        if inst["kind"] == "convertible":
            inst["refinancing"] = {"max_ltv": 5.0, "min_dscr": 0.1, "tenor_years": 4.0, "via_market_access": True}
    return small_mapping(borrowers=[neo, hash_miner])


def capex_spec(dtype: str) -> RunSpec:
    return build_spec(validate_mapping(capex_mapping(), "capex"), dtype)


def test_capex_case_moves_outcomes() -> None:
    """The agreement case is not vacuous: each order is delivered on some paths and not on others,
    and payment and maturity defaults both happen."""
    spec = capex_spec("float64")
    *_, (_, _, _, cs, _) = steps(spec, 300, SEED)
    delivered = (cs.order_paid > 0.0).mean(axis=1)
    assert ((delivered > 0.05) & (delivered < 0.95)).all(), delivered
    reasons = set(cs.reason[~cs.alive].tolist())
    assert {DefaultReason.PAYMENT.value, DefaultReason.MATURITY.value} <= reasons, reasons
    notes = spec.layout.instruments.index("Neo-Notes")
    issued = (cs.outstanding[notes] > 0.0).mean()
    assert 0.05 < issued < 0.95, issued
