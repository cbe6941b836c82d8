"""Miners (docs/model.md 4.12, 5.4): the network-hashrate factor against its closed-form log
moments, curtailment switching at the break-even hashprice against a hand ledger, and numpy, JAX
and the host-compiled kernels agreeing path by path on a miner that curtails under a random
network hashrate."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from helpers import HostModel, assert_agrees_with_numpy, small_mapping, stressed_borrowers, token_note
from test_credit import spec_of, steps, zero_vol_market
from test_factors import assert_close, mean_se, var_se

import gpusim.backends
import gpusim.engine
from gpusim.backends.array_model import simulate_chunk
from gpusim.scenario import validate_mapping
from gpusim.spec import build_spec

SEED = 20261205

HASHRATE_PROCESS = {"drift": {"easy": 0.30, "tight": -0.10}, "vol": 0.25, "btc_elasticity": 0.5}


def miner(curtail: bool, take_or_pay: float) -> dict[str, Any]:
    """A miner with no fleets and nothing to fear from its debt (a tiny bond, a large cash pile)."""
    return {
        "name": "Dig",
        "type": "miner",
        "cash": 1.0e12,
        "fixed_opex_per_month": 1.0e5,
        "pue": 1.05,
        "power_price_ratio": 0.8,
        "revenue_shock": {"vol": 0.0, "mean_reversion": 2.0},
        "mining": {"hashrate": 1000.0, "efficiency": 20.0, "curtail": curtail, "power_take_or_pay": take_or_pay},
        "debt": [token_note("Dig note")],
    }


@pytest.mark.parametrize("take_or_pay", [0.0, 0.3])
def test_curtailment_switches_at_break_even_hashprice(take_or_pay: float) -> None:
    """BTC falls deterministically through the break-even hashprice hp* = 24 e P rho: CFADS of
    every step against the hand ledger, with the miners on while hp >= hp* and off (revenue 0,
    the take-or-pay share of power paid) once it is below."""
    n_steps = 24
    m = zero_vol_market(n_steps)
    m["crypto"]["assets"][0]["drift"] = -0.6
    m["mining"] = {"hashprice": 50.0, "difficulty_growth": 0.2, "halvings": []}
    b = miner(True, take_or_pay)
    m["borrowers"] = [b]
    spec = spec_of(m)
    dt, s0 = 1.0 / 12, m["crypto"]["assets"][0]["spot"]
    power = m["power"]["long_run"] * b["power_price_ratio"]
    hashrate, efficiency = b["mining"]["hashrate"], b["mining"]["efficiency"]
    break_even = 24.0 * efficiency * power
    ran = []
    for k, _, _, cs, _ in steps(spec, 1, SEED):
        btc = s0 * math.exp(-0.6 * (k + 1) * dt)
        hp = 50.0 * math.exp(-0.2 * k * dt) * btc / s0
        running = hp >= break_even
        mining_power = 8760 * dt * power * hashrate * efficiency
        revenue = hashrate * hp * 365 * dt if running else 0.0
        cost = mining_power * (1.0 if running else take_or_pay) + 1.0e5
        np.testing.assert_allclose(cs.cfads_window[0, -1, 0], revenue - cost, rtol=1e-12, err_msg=f"step {k}")
        ran.append(running)
    assert ran[0] and not ran[-1], "the case must cross the break-even hashprice inside the horizon"


@pytest.mark.parametrize("side", [1.0 + 1e-9, 1.0 - 1e-9])
def test_curtailment_just_above_and_below_break_even(side: float) -> None:
    """Hashprice a hair above the break-even runs the miners, a hair below curtails them (step 0,
    BTC set so that hp_0 = side x 24 e P rho)."""
    m = zero_vol_market(1)
    m["crypto"]["assets"][0]["drift"] = 0.0
    b = miner(True, 0.0)
    power = m["power"]["long_run"] * b["power_price_ratio"]
    break_even = 24.0 * b["mining"]["efficiency"] * power
    m["mining"] = {"hashprice": break_even * side, "difficulty_growth": 0.0, "halvings": []}
    m["borrowers"] = [b]
    ((_, _, _, cs, _),) = steps(spec_of(m), 1, SEED)
    dt = 1.0 / 12
    revenue = b["mining"]["hashrate"] * break_even * side * 365 * dt
    mining_power = 8760 * dt * power * b["mining"]["hashrate"] * b["mining"]["efficiency"]
    expected = revenue - mining_power - 1.0e5 if side > 1.0 else -1.0e5
    np.testing.assert_allclose(cs.cfads_window[0, -1, 0], expected, rtol=1e-9)


def test_without_curtailment_miners_run_at_a_loss() -> None:
    """curtail: false (the default) keeps today's miners, which pay for power while mining loses money."""
    m = zero_vol_market(1)
    b = miner(False, 0.0)
    m["mining"] = {"hashprice": 1.0, "difficulty_growth": 0.0, "halvings": []}
    m["borrowers"] = [b]
    ((_, _, _, cs, _),) = steps(spec_of(m), 1, SEED)
    assert cs.cfads_window[0, -1, 0] < -1.0e5 - 1.0


def hashrate_scenario(process: dict[str, Any] | None) -> Any:
    m = small_mapping(name="hashrate")
    m["regime"] = {"initial": "easy", "p_easy_to_tight": 0.0, "p_tight_to_easy": 0.0}
    m["crypto"]["assets"] = [dict(m["crypto"]["assets"][0], jump_rate=0.0)]
    m["crypto"]["correlation"] = None
    m["mining"] = dict(m["mining"], network_hashrate=800.0, hashrate_process=process)
    m["borrowers"] = []
    return validate_mapping(m, "hashrate")


def test_network_hashrate_log_moments() -> None:
    """ln(H_t / H_0) = m t + sigma_H W_t + e ln(S_t / S_0): mean (m + e (mu - sigma^2 / 2)) t and
    variance (sigma_H^2 + e^2 sigma^2) t, at 1 and 2 years."""
    s = hashrate_scenario(HASHRATE_PROCESS)
    result = gpusim.engine.run(
        build_spec(s), gpusim.backends.get_backend("numpy"), n_paths=20000, seed=SEED, save_paths=20000, show_progress=False
    )
    saved = np.asarray(result.saved["network_hashrate"])
    btc = s.crypto.assets[0]
    mu, sigma = btc.drift.easy, btc.vol.easy
    m_h, sigma_h, e = HASHRATE_PROCESS["drift"]["easy"], HASHRATE_PROCESS["vol"], HASHRATE_PROCESS["btc_elasticity"]
    for k in (12, 24):
        t = k / 12
        x = np.log(saved[:, k] / 800.0)
        mean, mean_error = mean_se(x)
        var, var_error = var_se(x)
        assert_close(f"mean ln H at {t} y", mean, (m_h + e * (mu - 0.5 * sigma**2)) * t, mean_error)
        assert_close(f"var ln H at {t} y", var, (sigma_h**2 + e**2 * sigma**2) * t, var_error)


def test_network_hashrate_without_a_process_is_the_difficulty_trend() -> None:
    """No hashrate_process: H_k = H_0 exp(g_d t_k) on every path, the path the old hashprice assumed."""
    s = hashrate_scenario(None)
    result = gpusim.engine.run(build_spec(s), gpusim.backends.get_backend("numpy"), n_paths=8, seed=SEED, save_paths=8, show_progress=False)
    saved = np.asarray(result.saved["network_hashrate"])
    t = np.arange(s.time.n_steps + 1) / 12
    np.testing.assert_allclose(saved, np.broadcast_to(800.0 * np.exp(s.mining.difficulty_growth * t), saved.shape), rtol=1e-13)


def curtailing_spec(dtype: str) -> Any:
    """The stressed small scenario with a random network hashrate and a miner that curtails often
    (power at 1.2 x market: break-even near hp_0) on a take-or-pay power contract."""
    borrowers = stressed_borrowers()
    hash_miner = copy.deepcopy(borrowers[1])
    hash_miner["power_price_ratio"] = 1.2
    hash_miner["mining"] = dict(hash_miner["mining"], curtail=True, power_take_or_pay=0.25)
    mining = dict(small_mapping()["mining"], hashrate_process=HASHRATE_PROCESS)
    return build_spec(validate_mapping(small_mapping(borrowers=[borrowers[0], hash_miner], mining=mining), "curtail"), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_curtailing_miner_host_kernels_agree_with_numpy(dtype: str, tmp_path: Path) -> None:
    spec = curtailing_spec(dtype)
    got = HostModel(spec, tmp_path).run_chunk(SEED, 0, 400, 50)
    reference = simulate_chunk(spec, SEED, 0, 400, 50, xnp)
    assert_agrees_with_numpy(got, reference, "host-kernels", dtype)


def test_curtailing_miner_jax_agrees_with_numpy() -> None:
    jax_backend = pytest.importorskip("gpusim.backends.jax_backend")
    spec = curtailing_spec("float64")
    got = jax_backend.JaxBackend().run_chunk(spec, SEED, 0, 300, 50)
    assert_agrees_with_numpy(got, simulate_chunk(spec, SEED, 0, 300, 50, xnp), "jax", "float64")
