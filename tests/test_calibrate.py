"""`gpusim calibrate` and `gpusim backtest`: each estimator recovers what gpusim itself simulated,
runs on every shipped dataset, writes fragments that extend a scenario, and refuses bad files.

Synthetic recovery: market paths come from gpusim's own numpy model (`market_paths`, seeds
fixed) with known parameters; every fitted parameter must lie within 3 of its own reported
standard errors of the truth.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import norm

from gpusim.calibrate import base_releases, calibrate
from gpusim.calibrate.backtest import add_months, crps_ensemble, parameter_draws
from gpusim.calibrate.crypto import fit_crypto
from gpusim.calibrate.data import DataError, Series, Table, shipped_dataset
from gpusim.calibrate.estimates import Estimate, Fit, monthly_probability
from gpusim.calibrate.fragment import write_fragment
from gpusim.calibrate.hardware import fit_hardware, income_value
from gpusim.calibrate.power import fit_power
from gpusim.calibrate.rental import fit_rental
from gpusim.calibrate.simulate import market_paths, merged_scenario
from gpusim.cli import main
from gpusim.model.params import per_step_probability
from gpusim.scenario import load_scenario

TOLERANCE_SE = 3.0


def weekly_dates(start: date, n: int) -> tuple[date, ...]:
    return tuple(start + timedelta(days=round(k * 365.25 / 52)) for k in range(n))


def month_starts(start_year: int, n: int) -> tuple[date, ...]:
    return tuple(date(start_year + k // 12, 1 + k % 12, 1) for k in range(n))


def assert_recovered(fit, truth: dict[str, float]) -> None:
    """Every estimate is within TOLERANCE_SE of its standard errors from the truth (and every truth was estimated)."""
    fitted = {e.path: e for e in fit.estimates}
    assert set(truth) <= set(fitted), set(truth) - set(fitted)
    for path, value in truth.items():
        e = fitted[path]
        assert np.isfinite(e.se) and e.se > 0, (path, e)
        assert abs(e.value - value) <= TOLERANCE_SE * e.se, f"{path}: fitted {e.value:.4g} ± {e.se:.3g}, truth {value:.4g}"


def test_crypto_recovers_regimes_and_jumps_simulated_by_gpusim():
    truth_asset = {
        "name": "BTC",
        "spot": 20000,
        "drift": {"easy": 0.3, "tight": -0.2},
        "vol": {"easy": 0.35, "tight": 0.9},
        "jump_rate": {"easy": 10, "tight": 20},
        "jump_mean": {"easy": -0.02, "tight": -0.08},
        "jump_std": {"easy": 0.15, "tight": 0.2},
    }
    mapping = merged_scenario(
        "baseline",
        {
            "regime": {"initial": "easy", "p_easy_to_tight": 0.04, "p_tight_to_easy": 0.06},
            "crypto": {"assets": [truth_asset]},
            "time": {"start": "2000-01-01", "steps_per_year": 52, "n_steps": 52 * 30},
        },
    )
    mapping["crypto"]["assets"] = [a for a in mapping["crypto"]["assets"] if a["name"] == "BTC"]
    mapping["crypto"].pop("correlation")
    closes = market_paths(mapping, 1, seed=3)["crypto"][0, :, 0]
    fit = fit_crypto(Series("synthetic", weekly_dates(date(2000, 1, 1), len(closes)), {"BTC": closes}), "BTC")
    truth = {"regime.p_easy_to_tight": 0.04, "regime.p_tight_to_easy": 0.06}
    for name in ("drift", "vol", "jump_rate", "jump_mean", "jump_std"):
        for regime in ("easy", "tight"):
            truth[f"crypto.assets.BTC.{name}.{regime}"] = truth_asset[name][regime]
    assert_recovered(fit, truth)


def test_rental_recovers_deflation_launch_drops_and_shock_simulated_by_gpusim():
    launches = [date(2012, 6, 1), date(2015, 3, 1), date(2019, 1, 1), date(2022, 1, 1)]
    mapping = merged_scenario(
        "baseline",
        {
            "time": {"start": "2010-01-01", "steps_per_year": 52, "n_steps": 52 * 15},
            "compute": {
                "deflation": 0.2,
                "shock": {"mean_reversion": 2.0, "vol": 0.3},
                "obsolescence": {
                    "drop": 0.1,
                    "curvature": 1.5,
                    "random_launch_rate": 0.0,
                    "launches": [{"name": f"N{i}", "date": str(d)} for i, d in enumerate(launches)],
                },
            },
        },
    )
    mapping["compute"]["generations"] = [g for g in mapping["compute"]["generations"] if g["name"] == "H100"]
    rates = market_paths(mapping, 1, seed=1)["rental_rate"][0, :, 0]
    fit = fit_rental(Series("synthetic", weekly_dates(date(2010, 1, 1), len(rates)), {"H100": rates}), launches)
    assert_recovered(
        fit,
        {
            "compute.deflation": 0.2,
            "compute.shock.mean_reversion": 2.0,
            "compute.shock.vol": 0.3,
            "compute.obsolescence.drop": 0.1,
            "compute.obsolescence.curvature": 1.5,
        },
    )


def test_power_recovers_the_log_ou_simulated_by_gpusim():
    mapping = merged_scenario(
        "baseline",
        {
            "time": {"start": "1990-01-01", "steps_per_year": 12, "n_steps": 360},
            "power": {"price": 0.05, "long_run": 0.07, "mean_reversion": 1.0, "vol": 0.2},
        },
    )
    prices = market_paths(mapping, 1, seed=1)["power_price"][0]
    fit = fit_power(Series("synthetic", month_starts(1990, len(prices)), {"price": prices}), "price")
    assert_recovered(fit, {"power.mean_reversion": 1.0, "power.long_run": 0.07, "power.vol": 0.2})
    assert fit.fragment["power"]["price"] == pytest.approx(prices[-1], rel=1e-4)


def test_hardware_recovers_life_scrap_and_yield_from_gpusim_values():
    """Used prices are gpusim's income values (docs/model.md 4.8) along a simulated path, scattered 5 % (dealer quotes)."""
    mapping = merged_scenario(
        "baseline",
        {
            "time": {"start": "2023-03-01", "steps_per_year": 12, "n_steps": 84},
            "compute": {
                "valuation": {"expected_deflation": 0.25, "discount_yield": 0.15, "pue": 1.3},
                "generations": [{"name": "H100", "release": "2023-03-01", "economic_life_years": 5.0, "scrap_value": 1500.0}],
            },
        },
    )
    mapping["compute"]["generations"] = [g for g in mapping["compute"]["generations"] if g["name"] == "H100"]
    paths = market_paths(mapping, 1, seed=1)
    value, rate = paths["gpu_value"][0, :, 0], paths["rental_rate"][0, :, 0]
    steps = np.arange(len(value))
    table = Table(
        "synthetic",
        {
            "age_years": steps / 12,
            "price": value * np.exp(0.05 * np.random.default_rng(1).standard_normal(len(value))),
            "rental_rate": rate,
            "utilization": paths["utilization"][0],
            "power_cost": 1.3 * 1.3 * paths["power_price"][0],
        },
        {"generation": ("H100",) * len(value)},
        tuple(steps + 2),
    )
    fit = fit_hardware(table, expected_deflation=0.25)
    assert_recovered(
        fit,
        {
            "compute.generations.*.economic_life_years": 5.0,
            "compute.generations.*.scrap_value": 1500.0,
            "compute.valuation.discount_yield.easy": 0.15,
        },
    )


def test_the_hardware_fit_values_as_the_simulator_does_on_whole_steps():
    """With whole steps of life and cut-off, the fit's valuation is gpusim's income_value (docs/model.md 4.8)."""
    from gpusim.model.market import income_value as model_value
    from gpusim.model.params import build_market_params
    from gpusim.scenario import scenario_from

    scenario = scenario_from(merged_scenario("baseline", {"compute": {"valuation": {"expected_deflation": 0.0}}}), ())
    p = build_market_params(scenario)
    g = 1  # H100
    rate, util, power, steps = np.array([[2.0]]), 0.8, 0.08, 30.0
    expected = model_value(rate, util, power, np.array([[steps]]), np.array([0]), p, 1 / 12, np)
    kw = float(p.kw_per_gpu[g]) * float(p.valuation_pue)
    life, scrap, y = steps / 12 + 1.0, float(p.scrap_value[g]), scenario.compute.valuation.discount_yield.easy
    ours = income_value(np.array([life, scrap, y]), np.array([1.0]), np.array([2.0]), np.array([util]), np.array([kw * power]), 0.0, 1 / 12)
    assert ours[0] == pytest.approx(float(expected[g, 0]), rel=1e-12)


def test_monthly_probability_inverts_the_models_per_step_scaling():
    for p in (0.0, 0.02, 0.3, 0.9):
        for dt in (1 / 365.25, 1 / 52, 1 / 12, 0.25):
            assert monthly_probability(per_step_probability(p, dt), dt) == pytest.approx(p, abs=1e-12)


def test_crps_of_an_ensemble_matches_the_pairwise_definition_and_the_normal_closed_form():
    rng = np.random.default_rng(0)
    small = rng.normal(size=50)
    pairwise = np.mean(np.abs(small - 0.3)) - 0.5 * np.mean(np.abs(small[:, None] - small[None, :]))
    assert crps_ensemble(small, 0.3) == pytest.approx(pairwise, rel=1e-12)
    sigma, y, n = 2.0, 1.0, 20000
    z = y / sigma
    closed = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    sample = rng.normal(scale=sigma, size=n)
    # Monte Carlo error of the two sample means, about sd(|X - y|) / sqrt(n) each
    assert crps_ensemble(sample, y) == pytest.approx(closed, abs=4 * sigma / np.sqrt(n))


def test_parameter_draws_scatter_each_estimate_by_its_standard_error_within_its_range():
    fit = Fit(
        "rental",
        "x",
        [
            Estimate("compute.deflation", 0.2, 0.05, "per year"),
            Estimate("compute.shock.mean_reversion", 0.01, 1.0, "per year"),
            Estimate("regime.p_easy_to_tight", 0.02, 0.5, "per month"),
        ],
        {},
        {},
    )
    fragment = {
        "compute": {"deflation": {"easy": 0.2, "tight": 0.2}, "shock": {"mean_reversion": 0.01, "vol": 0.3}},
        "regime": {"p_easy_to_tight": 0.02},
    }
    variants = parameter_draws([fit], fragment, 400, seed=1)
    deflation = np.array([v["compute"]["deflation"]["easy"] for v in variants])
    assert all(v["compute"]["deflation"]["tight"] == v["compute"]["deflation"]["easy"] for v in variants)
    assert deflation.mean() == pytest.approx(0.2, abs=4 * 0.05 / np.sqrt(400))
    assert deflation.std() == pytest.approx(0.05, rel=0.15)
    assert min(v["compute"]["shock"]["mean_reversion"] for v in variants) >= 1e-3  # a speed stays positive
    assert all(1e-4 <= v["regime"]["p_easy_to_tight"] <= 1.0 for v in variants)
    assert all(v["compute"]["shock"]["vol"] == 0.3 for v in variants)  # not estimated here: untouched
    assert parameter_draws([fit], fragment, 0, seed=1) == [fragment]


def test_add_months_keeps_the_day_or_takes_the_last_of_a_shorter_month():
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 11, 15), 3) == date(2024, 2, 15)


@pytest.mark.parametrize(
    ("kind", "name", "columns"),
    [
        ("crypto", "crypto_daily.csv", ("BTC",)),
        ("rental", "gpu_rental_weekly.csv", ()),
        ("rental", "gpu_rental_monthly.csv", ()),
        ("hardware", "used_gpu_prices.csv", ()),
        ("power", "power_industrial_monthly.csv", ()),
    ],
)
def test_every_shipped_dataset_calibrates_into_a_fragment_a_scenario_extends(tmp_path, kind, name, columns):
    fits = calibrate(kind, shipped_dataset(name), columns=columns, releases=base_releases("baseline"))
    assert fits and all(np.isfinite(e.value) for fit in fits for e in fit.estimates)
    out = tmp_path / f"{kind}.yaml"
    write_fragment(fits, out, "baseline")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {out.name}\nname: calibrated\n")
    scenario = load_scenario(child)
    assert scenario.name == "calibrated"
    assert len(scenario.borrowers) == len(load_scenario("baseline").borrowers)
    if kind == "power":
        assert scenario.power.vol == pytest.approx(fits[0].value("power.vol"), rel=1e-5)
    if kind == "rental":
        assert scenario.compute.deflation.easy == pytest.approx(fits[0].value("compute.deflation"), abs=1e-6)


def test_crypto_fragment_chains_under_a_rental_fragment(tmp_path):
    """--base chains fragments: a rental fit extending a crypto fragment keeps both."""
    rows = ["date,H100"] + [f"{d},{2.5 * np.exp(-0.2 * k / 12 + 0.05 * np.sin(k)):.4f}" for k, d in enumerate(month_starts(2020, 48))]
    data = tmp_path / "rent.csv"
    data.write_text("\n".join(rows) + "\n")
    crypto = tmp_path / "crypto.yaml"
    crypto.write_text("extends: baseline\nname: btc_fitted\ncrypto:\n  assets:\n  - name: BTC\n    spot: 12345\n")
    write_fragment(calibrate("rental", data), tmp_path / "both.yaml", str(crypto))
    scenario = load_scenario(tmp_path / "both.yaml")
    assert scenario.crypto.assets[0].spot == 12345
    assert scenario.compute.generations[1].rental_rate == pytest.approx(float(rows[-1].split(",")[1]))


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_calibrate_command_prints_parameters_writes_fragment_and_plot(tmp_path):
    out, plots = tmp_path / "power.yaml", tmp_path / "plots"
    result = _run(
        "calibrate", "power", shipped_dataset("power_industrial_monthly.csv"), "--out", out, "--plot", plots, "--start", "2000-01-01"
    )
    assert result.exit_code == 0, result.output
    assert "power.mean_reversion" in result.output and "s.e." in result.output
    assert "extends: baseline" in out.read_text()
    assert (plots / "power.png").stat().st_size > 1000


def test_backtest_command_scores_the_rental_index_and_writes_charts(tmp_path):
    result = _run(
        "backtest",
        "rental",
        shipped_dataset("gpu_rental_monthly.csv"),
        "--cutoff",
        "2025-06-30",
        "--horizon-months",
        "6",
        "--origins",
        "3",
        "--paths",
        "300",
        "--column",
        "H100",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "90 % band" in result.output and "PIT histogram" in result.output
    scored = (tmp_path / "backtest_rental.csv").read_text().splitlines()
    assert scored[0].startswith("variable,origin,horizon_months,realised")
    assert len(scored) > 10
    assert (tmp_path / "backtest_rental_H100.png").exists()


BAD_FILES = {
    "missing column": ("date,price\n2020-01-01,1\n", "rental", "missing column 'H100'"),
    "too few rows": ("date,H100\n2020-01-01,1\n2020-02-01,1.1\n", "rental", "column H100: 2 values, at least 6 needed"),
    "dates out of order": ("date,H100\n2020-02-01,1\n2020-01-01,1\n", "rental", "line 3, column date: 2020-01-01 comes after 2020-02-01"),
    "duplicate dates": ("date,H100\n2020-01-01,1\n2020-01-01,1\n", "rental", "line 3, column date: 2020-01-01 appears twice"),
    "non-positive price": ("date,H100\n2020-01-01,1\n2020-02-01,-2\n", "rental", "line 3, column H100: -2 is not positive"),
    "not a number": ("date,H100\n2020-01-01,1\n2020-02-01,abc\n", "rental", "line 3, column H100: 'abc' is not a number"),
    "bad date": ("date,H100\n2020-13-01,1\n", "rental", "line 2, column date: '2020-13-01' is not a date"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_data_files_exit_2_naming_file_column_and_line(tmp_path, case):
    text, kind, message = BAD_FILES[case]
    path = tmp_path / "data.csv"
    path.write_text(text)
    result = _run("calibrate", kind, path, "--column", "H100")
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and message in result.output
    assert "Traceback" not in result.output


def test_gaps_missing_files_and_missing_hardware_columns_exit_2(tmp_path):
    gap = tmp_path / "gap.csv"
    gap.write_text("date,H100\n" + "".join(f"{d},1\n" for d in month_starts(2020, 8)) + "2021-06-01,1\n")
    result = _run("calibrate", "rental", gap)
    assert result.exit_code == 2 and "line 10, column date: gap of" in result.output
    result = _run("calibrate", "power", tmp_path / "absent.csv")
    assert result.exit_code == 2 and "absent.csv: no such data file" in result.output
    table = tmp_path / "used.csv"
    table.write_text("generation,age_years,price\nH100,1,20000\n")
    result = _run("calibrate", "hardware", table)
    assert result.exit_code == 2 and "missing column 'rental_rate', 'utilization', 'power_cost'" in result.output


def test_backtest_refuses_a_cutoff_after_the_data(tmp_path):
    result = _run("backtest", "rental", shipped_dataset("gpu_rental_monthly.csv"), "--cutoff", "2030-01-01")
    assert result.exit_code == 2
    assert "no data after the cut-off 2030-01-01" in result.output


def test_shipped_power_fit_needs_enough_rows_in_the_window():
    with pytest.raises(DataError, match="between 2022-01-01 and the end, at least 24 needed"):
        calibrate("power", shipped_dataset("power_industrial_monthly.csv"), start=date(2022, 1, 1))
