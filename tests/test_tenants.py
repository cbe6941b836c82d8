"""Tenant contracts (docs/model.md 5.7): a tenant default at a known date moving its capacity to
spot after the re-leasing lag, against a hand ledger; the default frequency against
1 - exp(-h t); numpy, JAX and the host-compiled kernels agreeing path by path with tenants."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from helpers import HostModel, assert_agrees_with_numpy, small_mapping, stressed_borrowers, token_note
from test_credit import neocloud, spec_of, steps, zero_vol_market

from gpusim.backends.array_model import simulate_chunk
from gpusim.scenario import ConfigError, validate_mapping
from gpusim.spec import build_spec

SEED = 20261207
Z_TOL = 3.0
"""Statistical tolerance of the default-frequency check, in Monte Carlo standard errors."""

NEVER, FIRST_STEP = 0.0, 1e9
"""Tenant hazards per year: a tenant that never defaults, and one that defaults in the first step."""


def gpu_tenant(hazard: Any, **changes: Any) -> dict[str, Any]:
    tenant = {
        "name": "AI lab",
        "kind": "gpu_hours",
        "generation": "H100",
        "gpus": 400,
        "rate": 3.0,
        "expiry": "2027-01-01",
        "releasing_lag_months": 3,
        "credit": {"hazard": hazard},
    }
    tenant.update(changes)
    return tenant


def colocation_tenant(hazard: float, **changes: Any) -> dict[str, Any]:
    tenant = {
        "name": "Hyperscaler lease",
        "kind": "colocation",
        "capacity_kw": 20000.0,
        "rate": 150.0,
        "escalator": 0.03,
        "expiry": "2027-07-01",
        "releasing_lag_months": 6,
        "spot_rate_per_kw_month": 90.0,
        "credit": {"hazard": 5.0, "backstop": {"name": "Hyperscaler parent", "hazard": hazard}},
    }
    tenant.update(changes)
    return tenant


@pytest.mark.parametrize("hazard", [NEVER, FIRST_STEP], ids=["performs", "defaults-at-once"])
def test_tenant_default_moves_capacity_to_spot_after_the_lag(hazard: float) -> None:
    """A GPU-hour tenant (400 of 1000 H100s at 3.0 USD/GPU-hour to 2027-01-01, lag 3 months) and a
    backstopped colocation lease (20 MW at 150 USD/kW-month, +3 % a year, to 2027-07-01, lag 6
    months, then 90 USD/kW-month): CFADS of every step against the hand ledger. With the
    (backstop) hazard 0 both pay to expiry, then their capacity is at spot; with an infinite one
    both default in step 0, earn nothing for the lag and are at spot from then on."""
    n_steps = 30
    m = zero_vol_market(n_steps)
    neo = neocloud([], cash=1.0e12)
    neo["fleets"][0].update(contracted_share=0.0, contract_expiry=None)
    neo["debt"] = [token_note("Neo note")]
    neo["tenants"] = [gpu_tenant(hazard), colocation_tenant(hazard)]
    m["borrowers"] = [neo]
    spec = spec_of(m)
    h = 8760.0 / 12  # hours a month; the 30 months cross the escalator's anniversary and both expiries
    kw = m["compute"]["generations"][0]["kw_per_gpu"]
    defaulted = hazard > 0.0
    for k, _, view, cs, _ in steps(spec, 1, SEED):
        u, r, power = float(view.utilization[0]), float(view.rental_rate[0, 0]), float(view.power_price[0]) * neo["power_price_ratio"]
        np.testing.assert_array_equal(cs.tenant_default_step[:, 0], 0.0 if defaulted else -1.0)
        if defaulted:
            gpu_contract, gpu_spot = 0.0, float(k >= 3)
            colo_contract, colo_spot = 0.0, float(k >= 6)
        else:
            gpu_contract, gpu_spot = float(k < 12), float(k >= 12)
            colo_contract, colo_spot = float(k < 18), float(k >= 18)
        revenue = (
            h * 600 * u * r
            + gpu_contract * 400 * 3.0 * h
            + gpu_spot * 400 * u * r * h
            + colo_contract * 20000 * 150.0 * 1.03 ** (k // 12)
            + colo_spot * 20000 * 90.0
        )
        gpus_running = 600 * u + 400 * (gpu_contract + gpu_spot * u)
        cost = h * power * kw * neo["pue"] * gpus_running + neo["fixed_opex_per_month"]
        np.testing.assert_allclose(cs.cfads_window[0, -1, 0], revenue - cost, rtol=1e-12, err_msg=f"step {k}")


@pytest.mark.parametrize("hazard,backstop", [(0.3, None), (5.0, 0.3)], ids=["own-hazard", "backstop"])
def test_tenant_default_frequency_is_exponential(hazard: float, backstop: float | None) -> None:
    """Share of paths whose tenant has defaulted by t: 1 - exp(-h t), h the tenant's own hazard, or
    its backstop's where it has one (the contract fails only when the guarantor does)."""
    m = zero_vol_market(24)
    neo = neocloud([], cash=1.0e12)
    neo["debt"] = [token_note("Neo note")]
    credit = {"hazard": hazard} if backstop is None else {"hazard": hazard, "backstop": {"name": "Parent", "hazard": backstop}}
    neo["tenants"] = [gpu_tenant(hazard, expiry="2030-01-01", credit=credit)]
    m["borrowers"] = [neo]
    n = 20000
    *_, (_, _, _, cs, _) = steps(spec_of(m), n, SEED)
    default_step = cs.tenant_default_step[0]
    rate = backstop if backstop is not None else hazard
    for k in (6, 12, 24):
        share = float(np.mean((default_step >= 0) & (default_step < k)))
        exact = 1.0 - math.exp(-rate * k / 12)
        se = math.sqrt(exact * (1.0 - exact) / n)
        print(f"defaulted by {k} months: {share:.4f} exact {exact:.4f} z {(share - exact) / se:+.2f}")
        assert abs(share - exact) < Z_TOL * se


def test_tenants_must_fit_in_their_fleet() -> None:
    """GPU-hour tenants cannot lease more of a fleet than its contracted share leaves."""
    m = small_mapping()
    m["borrowers"][0]["tenants"] = [gpu_tenant(0.1, gpus=7000)]  # 20,000 H100 of which 70 % already contracted
    with pytest.raises(ConfigError, match="more than the 6000"):
        validate_mapping(m, "too many")


def tenant_spec(dtype: str) -> Any:
    """The stressed small scenario with tenants of both kinds whose defaults change the outcomes."""
    neo, hash_miner = stressed_borrowers()
    neo["tenants"] = [gpu_tenant({"easy": 0.3, "tight": 1.5}, gpus=5000, expiry="2027-06-01")]
    hash_miner = copy.deepcopy(hash_miner)
    hash_miner["tenants"] = [
        colocation_tenant(0.4, capacity_kw=30000.0),
        gpu_tenant(1.0, generation="B200", gpus=1000, rate=3.5, expiry="2027-09-01"),
    ]
    return build_spec(validate_mapping(small_mapping(borrowers=[neo, hash_miner]), "tenants"), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tenants_host_kernels_agree_with_numpy(dtype: str, tmp_path: Path) -> None:
    spec = tenant_spec(dtype)
    got = HostModel(spec, tmp_path).run_chunk(SEED, 0, 400, 50)
    assert_agrees_with_numpy(got, simulate_chunk(spec, SEED, 0, 400, 50, xnp), "host-kernels", dtype)


def test_tenants_jax_agrees_with_numpy() -> None:
    jax_backend = pytest.importorskip("gpusim.backends.jax_backend")
    spec = tenant_spec("float64")
    got = jax_backend.JaxBackend().run_chunk(spec, SEED, 0, 300, 50)
    assert_agrees_with_numpy(got, simulate_chunk(spec, SEED, 0, 300, 50, xnp), "jax", "float64")
