"""Dated shock paths (docs/model.md 4.13): the host tables against hand ledgers, the overlay in the
levels of the same random paths, a zero overlay, the shipped replay with its volatility off, and
bad shocks refused with the field named. Agreement of numpy, JAX, Pallas and the host-compiled
kernels on a shocked config is in tests/test_backend_agreement.py ("small-shocked")."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import ROOT, small_mapping, small_shocks, stressed_borrowers
from test_digest import chunk_digest

from gpusim.backends.numpy_backend import NumpyBackend
from gpusim.cli import main
from gpusim.model.debt import fire_sale_price
from gpusim.model.market import close_step, draw_step, initial_state, shocked_depth
from gpusim.model.params import shock_params
from gpusim.scenario import ConfigError, load_scenario, validate_mapping
from gpusim.scenario.loading import load_raw, market_only
from gpusim.scenario.schema import Scenario
from gpusim.spec import ChunkResult, build_spec

SEED = 20261201
N_PATHS = 64
HASHRATE_PROCESS = {"drift": 0.2, "vol": 0.1, "btc_elasticity": 0.5}


def small(shocks: list[dict[str, Any]] | None = None, **changes: Any) -> Scenario:
    """The small scenario with the stressed borrowers and, where given, shocks."""
    data = small_mapping(borrowers=stressed_borrowers(), **changes)
    if shocks is not None:
        data["shocks"] = shocks
    return validate_mapping(data, "small")


def run(s: Scenario, n_paths: int = N_PATHS) -> ChunkResult:
    return NumpyBackend().run_chunk(build_spec(s, "float64"), SEED, 0, n_paths, n_paths)


def test_points_and_rates_compound_as_stated() -> None:
    """Hand ledger of small_shocks on the monthly grid from 2026-01-01 (t_k = k / 12)."""
    tables = shock_params(small(small_shocks()))
    btc = np.exp(tables["shock_crypto"][:, 0])
    # -55 % reached log-linearly by July 2026 (step 6), then -30 % a year until July 2027 (step 18), then held
    for k, level in {0: 1.0, 3: 0.45**0.5, 6: 0.45, 9: 0.45 * 0.7**0.25, 12: 0.45 * 0.7**0.5, 18: 0.45 * 0.7, 24: 0.45 * 0.7}.items():
        assert btc[k] == pytest.approx(level, rel=1e-14), k
    eth = tables["shock_crypto"][:, 1]  # log -0.4 already at t_0, then linear to +0.2 at April 2026, held
    assert eth[0] == -0.4 and eth[1] == pytest.approx(-0.2, abs=1e-15) and eth[3] == pytest.approx(0.2) and eth[24] == pytest.approx(0.2)
    rent = np.exp(tables["shock_rental_rate"])  # columns H100, B200: -20 % a year on both from March 2026 to March 2027
    assert rent[2, 0] == 1.0 and rent[3, 0] == pytest.approx(0.8 ** (1 / 12), rel=1e-14)
    assert rent[14, 0] == pytest.approx(0.8, rel=1e-14) and rent[24, 0] == pytest.approx(0.8, rel=1e-14)
    # B200 also falls 35 % by October 2026 (step 9), log-linearly from t_0
    assert rent[4, 1] == pytest.approx(0.65 ** (4 / 9) * 0.8 ** (2 / 12), rel=1e-14)
    assert rent[24, 1] == pytest.approx(0.65 * 0.8, rel=1e-14)
    assert tables["shock_utilization"][2] == pytest.approx(-0.6) and tables["shock_utilization"][5:].tolist() == [-1.5] * 20
    power = np.exp(tables["shock_power_price"])
    assert power[2] == pytest.approx(1.8**0.5, rel=1e-14) and power[4] == pytest.approx(1.8, rel=1e-14) and power[24] == power[4]
    depth = np.exp(tables["shock_market_depth"])  # -50 % a year on both over two years; B200 also -90 % by April 2026
    assert depth[12, 0] == pytest.approx(0.5, rel=1e-14) and depth[24, 0] == pytest.approx(0.25, rel=1e-14)
    assert depth[3, 1] == pytest.approx(0.1 * 0.5**0.25, rel=1e-14) and depth[24, 1] == pytest.approx(0.1 * 0.25, rel=1e-14)


def test_market_depth_shock_thins_the_market_the_fire_sales_meet() -> None:
    """Hand ledger of one close of step: the distressed-supply memory takes (Q + 12 dt q_exo) / (D exp(s^D)),
    and the fire-sale price exp(-alpha Q / (D exp(s^D))) (docs/model.md 4.9, 4.10, 4.13)."""
    s = small([{"factor": "market_depth", "points": [{"date": "2026-04-01", "level_change": -0.75}]}])
    spec = build_spec(s, "float64")
    p, layout = spec.market, spec.layout
    state = initial_state(2, p, layout, np)  # easy regime, L = 0
    dumped = np.array([[1000.0, 0.0], [400.0, 400.0]])  # (G, n): H100, B200
    closed = close_step(state, dumped, draw_step(SEED, 0, 2, 2, layout, np.float64, np), 3, p, np)
    for g, generation in enumerate(s.compute.generations):
        outside = generation.exogenous_distressed_supply.easy * 12.0 * layout.dt
        expected = (dumped[g] + outside) / (generation.market_depth.easy * 0.25)
        np.testing.assert_allclose(closed.distress_memory[g], expected, rtol=1e-14)
    thinned = p._replace(market_depth=shocked_depth(p, 3, np))
    tight = np.array([False, False])
    marks = np.full((2, 2), 10_000.0)
    price = fire_sale_price(marks, dumped, tight, thinned, np)
    alpha, keep = s.secondary_market.price_impact.easy, 1.0 - s.secondary_market.integration_discount
    for g, generation in enumerate(s.compute.generations):
        expected = 10_000.0 * keep * np.exp(-alpha * dumped[g] / (generation.market_depth.easy * 0.25))
        np.testing.assert_allclose(price[g], expected, rtol=1e-14)


def test_anchor_places_historical_dates_from_the_start() -> None:
    """A replay keeps its own dates: with anchor 2021-12-01, a point dated 2022-03-01 is at t_0 + 3 months."""
    shock = {"factor": "BTC", "anchor": "2021-12-01", "points": [{"date": "2022-03-01", "level_change": -0.5}]}
    btc = np.exp(shock_params(small([shock]))["shock_crypto"][:, 0])
    assert btc[3] == pytest.approx(0.5, rel=1e-14) and btc[24] == pytest.approx(0.5, rel=1e-14)
    assert btc[1] == pytest.approx(0.5 ** (1 / 3), rel=1e-14)


def test_severe_path_tables() -> None:
    """configs/severe_path.yaml: BTC x 0.45 at six months, then x 0.7 a year for two years; rents x 0.7 and power x 1.5 after a year."""
    spec = build_spec(load_scenario(ROOT / "configs" / "severe_path.yaml"), "float64")
    btc = np.exp(spec.market.shock_crypto[:, 0])
    assert btc[6] == pytest.approx(0.45, rel=1e-14) and btc[18] == pytest.approx(0.45 * 0.7, rel=1e-14)
    assert btc[30] == pytest.approx(0.45 * 0.7**2, rel=1e-14) and btc[120] == pytest.approx(0.45 * 0.7**2, rel=1e-14)
    assert np.exp(spec.market.shock_rental_rate[12:]) == pytest.approx(0.7, rel=1e-14)
    assert np.exp(spec.market.shock_power_price[12:]) == pytest.approx(1.5, rel=1e-14)


def test_zero_overlay_changes_no_bit() -> None:
    """Shocks whose every change is 0 give the outputs of no shocks, bit for bit."""
    assert chunk_digest(run(small(small_shocks(0.0)))) == chunk_digest(run(small()))


def test_overlay_multiplies_the_levels_of_the_same_paths() -> None:
    """On the same random paths, each shocked level is the unshocked one times exp(s_k) (logit + s_k
    for utilization) at every step: the shock stays in the level even where the factor's own
    dynamics revert (power). Values read the shocked factors; the hashrate follows the shocked
    BTC with its elasticity."""
    mining = {**small_mapping()["mining"], "hashrate_process": HASHRATE_PROCESS}
    shocked_scenario = small(small_shocks(), mining=mining)
    shocked, plain = run(shocked_scenario).saved, run(small(mining=mining)).saved
    t = shock_params(shocked_scenario)

    def assert_shifted(name: str, shift: np.ndarray, transform: Any = np.log, atol: float = 1e-13) -> None:
        """transform(shocked level) - transform(plain level) = the table's shift at each step, on every path."""
        got = transform(shocked[name]) - transform(plain[name])
        np.testing.assert_allclose(got, np.broadcast_to(shift, got.shape), rtol=0, atol=atol, err_msg=name)

    assert_shifted("crypto", t["shock_crypto"])
    assert_shifted("rental_rate", t["shock_rental_rate"])
    assert_shifted("power_price", t["shock_power_price"])
    u_max = small_mapping()["compute"]["utilization"]["max"]
    assert_shifted("utilization", t["shock_utilization"], lambda u: np.log(u / (u_max - u)), atol=1e-9)
    assert_shifted("network_hashrate", HASHRATE_PROCESS["btc_elasticity"] * t["shock_crypto"][:, 0], atol=1e-12)
    # rent down, utilization down, power up: no GPU is worth more, and most are worth less
    assert np.all(shocked["gpu_value"][:, 12:] <= plain["gpu_value"][:, 12:] * (1 + 1e-12))
    assert np.mean(shocked["gpu_value"][:, 12:] < plain["gpu_value"][:, 12:]) > 0.9


def test_replay_follows_the_dated_points_where_volatility_is_zero() -> None:
    """configs/replay_2022.yaml with BTC and ETH drift, volatility and jumps at 0: every path is the
    historical monthly path, spot x (1 + level_change) at each dated month, held after December 2022."""
    data = load_raw(ROOT / "configs" / "replay_2022.yaml")
    for asset in data["crypto"]["assets"]:
        asset["drift"], asset["vol"], asset["jump_rate"] = 0.0, 0.0, 0.0
    s = validate_mapping(market_only(data) | {"name": "replay_2022"}, "replay_2022")
    crypto = run(s, n_paths=3).saved["crypto"]  # (paths, steps+1, assets)
    for a, asset in enumerate(s.crypto.assets):
        shock = next(x for x in s.shocks if x.factor == asset.name)
        expected = [asset.spot] + [asset.spot * (1.0 + p.level_change) for p in shock.points]  # month ends Nov 2021 .. Dec 2022
        np.testing.assert_allclose(crypto[:, : len(expected), a], np.broadcast_to(expected, (3, len(expected))), rtol=1e-13)
        np.testing.assert_allclose(crypto[:, len(expected) :, a], expected[-1], rtol=1e-13)
    assert crypto[0, 7, 0] == pytest.approx(88000 * 19784.73 / 57005.43, rel=1e-4)  # the June 2022 close, CoinMarketCap


def _shock_problem(shock: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        small([shock])
    return "\n".join(err.value.problems)


@pytest.mark.parametrize(
    ("shock", "named"),
    [
        ({"factor": "DOGE", "points": [{"date": "2026-06-01", "level_change": -0.5}]}, "shocks[0].factor"),
        ({"factor": "utilization", "generation": "H100", "points": [{"date": "2026-06-01", "log_change": -1}]}, "shocks[0].generation"),
        ({"factor": "market_depth", "generation": "A100", "points": [{"date": "2026-06-01", "log_change": -1}]}, "shocks[0].generation"),
        ({"factor": "rental_rate", "generation": "A100", "points": [{"date": "2026-06-01", "level_change": -0.5}]}, "shocks[0].generation"),
        ({"factor": "BTC", "points": [{"date": "2025-06-01", "level_change": -0.5}]}, "shocks[0].points[0].date"),
        ({"factor": "BTC", "points": [{"date": "2026-06-01", "level_change": -0.5, "log_change": -0.7}]}, "shocks[0].points[0]"),
        ({"factor": "BTC", "points": [{"date": "2026-06-01", "level_change": -1.2}]}, "shocks[0].points[0].level_change"),
        ({"factor": "BTC", "rates": [{"from": "2026-06-01", "to": "2026-03-01", "annual_rate": -0.3}]}, "shocks[0].rates[0]"),
        ({"factor": "BTC", "rates": [{"from": "2025-06-01", "to": "2026-03-01", "annual_rate": -0.3}]}, "shocks[0].rates[0].from"),
        ({"factor": "BTC", "rates": [{"from": "2026-06-01", "to": "2027-03-01"}]}, "shocks[0].rates[0].annual_rate"),
        ({"factor": "BTC"}, "shocks[0]"),
        (
            {"factor": "BTC", "points": [{"date": "2026-06-01", "level_change": -0.5}, {"date": "2026-03-01", "level_change": -0.2}]},
            "shocks[0]",
        ),
    ],
)
def test_bad_shocks_name_the_field(shock: dict[str, Any], named: str) -> None:
    assert named in _shock_problem(shock)


def test_validate_refuses_a_bad_shock_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad_shock.yaml"
    config.write_text(yaml.safe_dump({"extends": str(ROOT / "configs" / "baseline.yaml"), "shocks": [{"factor": "ETC", "points": []}]}))
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "shocks[0]" in result.output


def test_rates_keep_their_keys_in_the_resolved_scenario() -> None:
    """`validate` prints (and the HDF5 file stores) from/to as written, and they read back."""
    s = small(small_shocks())
    dumped = s.model_dump(mode="json")
    assert dumped["shocks"][0]["rates"][0].keys() == {"from", "to", "annual_rate"}
    assert validate_mapping(dumped, "again") == s
    assert math.isclose(dumped["shocks"][0]["rates"][0]["annual_rate"], -0.3)
