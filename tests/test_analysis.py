"""The analyst's commands against closed forms: sensitivities and reverse stress on a Merton borrower.

The case: a borrower that holds only BTC (geometric Brownian motion, no jumps, one regime) and
owes a zero-coupon bond of face F at T = 2 years, repaid from the BTC, which is sold at
S_T (1 - slip). It defaults iff u S_T (1 - slip) < F, so (Merton 1974)
PD = N(-d2), d2 = (ln(u S_0 (1 - slip) / F) + (mu - sigma^2 / 2) T) / (sigma sqrt T),
and with a workout cost w F off the proceeds, EL = DF(T) E[F - max(X - w F, 0); X < F] with
X = u S_T (1 - slip) lognormal (`merton_el`). Sensitivities are compared with the finite
difference of the closed form over the same bump (which is what their expectation is), and
reverse stress with the closed-form spot at which the PD reaches its target.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner
from helpers import small_mapping

from gpusim.analysis.outcomes import PathOutcomes, covenant_breach, default_pd, paired_var_draws, value_at_risk
from gpusim.analysis.reverse_stress import parse_target, reverse_stress
from gpusim.analysis.sensitivities import parse_bump, run_sensitivities
from gpusim.cli import main
from gpusim.model.constants import DefaultReason
from gpusim.output.sensitivities import open_sensitivities
from gpusim.scenario import ConfigError

NORMAL = NormalDist()
MU, SIGMA, YEARS, FACE, SPOT, SLIP, WORKOUT = 0.1, 0.6, 2.0, 1.0e6, 100_000.0, 0.02, 0.05
Z_TOL = 3.0


def merton_mapping(moneyness: float) -> dict[str, Any]:
    """One BTC holder owing a zero-coupon bond due at the end of the 24-month horizon; u S_0 / F = moneyness."""
    m = small_mapping(name="merton")
    m["time"] = {"start": "2026-01-01", "steps_per_year": 12, "n_steps": 24}
    m["regime"] = {"initial": "easy", "p_easy_to_tight": 0.0, "p_tight_to_easy": 0.0}
    asset = {"name": "BTC", "spot": SPOT, "drift": MU, "vol": SIGMA, "jump_rate": 0.0, "jump_mean": 0.0, "jump_std": 0.0}
    m["crypto"] = {"assets": [asset | {"sale_slippage": SLIP}]}
    m["recovery"] = {"workout_cost": WORKOUT}
    bond = {
        "name": "holder-zc",
        "kind": "bond",
        "principal": FACE,
        "rate_type": "fixed",
        "coupon": 0.0,
        "payments_per_year": 12,
        "issue_date": "2025-01-01",
        "maturity_date": "2028-01-01",
        "market_spread_bps": 0.0,
    }
    holder = {
        "name": "holder",
        "type": "miner",
        "cash": 0.0,
        "fixed_opex_per_month": 0.0,
        "pue": 1.0,
        "revenue_shock": {"vol": 0.0, "mean_reversion": 1.0},
        "treasury": [{"asset": "BTC", "units": moneyness * FACE / SPOT, "pledged_share": 0.0}],
        "debt": [bond],
    }
    m["borrowers"] = [holder]
    return m


def write_config(tmp_path: Path, moneyness: float) -> str:
    path = tmp_path / "merton.yaml"
    path.write_text(yaml.safe_dump(merton_mapping(moneyness), sort_keys=False))
    return str(path)


def merton_pd(moneyness: float, sigma: float = SIGMA) -> float:
    d2 = (math.log(moneyness * (1 - SLIP)) + (MU - 0.5 * sigma**2) * YEARS) / (sigma * math.sqrt(YEARS))
    return NORMAL.cdf(-d2)


def merton_el(moneyness: float, workout: float, discount: float) -> float:
    """DF(T) (F P(X < F) - E[X 1{wF <= X < F}] + w F P(wF <= X < F)), X = u S_T (1 - slip) lognormal."""
    forward = moneyness * FACE * (1 - SLIP) * math.exp(MU * YEARS)
    sd = SIGMA * math.sqrt(YEARS)

    def below(k: float) -> tuple[float, float]:
        d1 = (math.log(forward / k) + 0.5 * sd * sd) / sd
        return NORMAL.cdf(-(d1 - sd)), forward * NORMAL.cdf(-d1)

    p_face, x_face = below(FACE)
    p_cost, x_cost = below(workout * FACE)
    return discount * (FACE * p_face - (x_face - x_cost) + workout * FACE * (p_face - p_cost))


def discount_at_maturity(config: str) -> float:
    from gpusim.scenario import load_scenario
    from gpusim.spec import build_spec

    return float(build_spec(load_scenario(config), "float64").credit.discount[24])


# ---------------------------------------------------------------------------------------
# Sensitivities


def test_el_sensitivity_to_workout_cost_matches_closed_form_and_crn_beats_independent_runs(tmp_path: Path) -> None:
    """dEL/dw by central difference on common random numbers agrees with the closed form's finite
    difference within 3 paired standard errors, and the paired error is at least 5x below that of
    independent runs (about 22x here). Run again without common random numbers (each scenario its
    own seed), the difference carries the larger error `delta_se_independent` predicts, and still
    agrees with the closed form within 3 of those errors."""
    config = write_config(tmp_path, 1.0)
    low, high = 0.03, 0.07
    bumps = [f"recovery.workout_cost={low}:{high}"]
    crn = run_sensitivities(config, bumps, tmp_path / "crn", paths=4000, seed=5, contagion=False, show_progress=False)
    s = open_sensitivities(crn.result).groups["instrument"].isel(instrument=0, parameter=0)
    df = discount_at_maturity(config)
    exact = (merton_el(1.0, high, df) - merton_el(1.0, low, df)) / (high - low)
    derivative, se = float(s["el_derivative"]), float(s["el_derivative_se"])
    independent = float(s["el_delta_se_independent"]) / (high - low)
    print(f"dEL/dw {derivative:,.0f} exact {exact:,.0f} se {se:,.1f}; independent se {independent:,.0f}")
    assert se > 0
    assert abs(derivative - exact) < Z_TOL * se
    ratio = float(s["el_delta_se_independent"]) / float(s["el_delta_se"])
    print(f"common random numbers: {ratio:.1f}x smaller error of the difference")
    assert ratio >= 5.0, f"common random numbers cut the error of the difference only {ratio:.1f}x"

    ind = run_sensitivities(
        config, bumps, tmp_path / "ind", paths=4000, seed=5, contagion=False, common_random_numbers=False, show_progress=False
    )
    b = open_sensitivities(ind.result).groups["instrument"].isel(instrument=0, parameter=0)
    measured = float(b["el_delta_se_independent"])
    assert abs(float(b["el_delta"]) - exact * (high - low)) < Z_TOL * measured
    assert float(s["el_delta_se"]) * 5.0 <= measured
    # on independent runs the paired formula has no correlation to exploit and gives the same error
    assert float(b["el_delta_se"]) == pytest.approx(measured, rel=0.1)


def test_pd_sensitivity_to_volatility_matches_closed_form(tmp_path: Path) -> None:
    """dPD/dsigma by central difference agrees with the closed form's finite difference within 3 paired
    standard errors; every PD level agrees with N(-d2) within 3 standard errors. A default indicator
    changes only on the paths that cross the barrier between the bumps (in either direction: a higher
    volatility lifts some paths out of default and pushes others in), so the paired variance is the
    share of crossing paths, at least |dPD|, against 2 PD (1 - PD) for independent runs: here a
    ratio of errors of about 2.5, far less than for a smooth metric such as EL."""
    config = write_config(tmp_path, 1.0)
    low, high = 0.5, 0.7
    done = run_sensitivities(
        config, [f"crypto.assets.BTC.vol.easy={low}:{high}"], tmp_path / "out", paths=6000, seed=9, contagion=False, show_progress=False
    )
    s = open_sensitivities(done.result).groups["borrower"].isel(borrower=0, parameter=0)
    exact = (merton_pd(1.0, high) - merton_pd(1.0, low)) / (high - low)
    ratio = float(s["pd_delta_se_independent"]) / float(s["pd_delta_se"])
    print(f"dPD/dsigma {float(s['pd_derivative']):.4f} exact {exact:.4f} se {float(s['pd_derivative_se']):.4f}; CRN {ratio:.1f}x")
    assert abs(float(s["pd_derivative"]) - exact) < Z_TOL * float(s["pd_derivative_se"])
    base_se = float(s["pd_base_se"])
    for key, sigma in (("pd_base", SIGMA), ("pd_low", low), ("pd_high", high)):
        assert abs(float(s[key]) - merton_pd(1.0, sigma)) < Z_TOL * base_se, key
    assert ratio > 2.0


def test_sensitivities_file_layout_resume_and_report(tmp_path: Path) -> None:
    """The file opens with xarray per group; a second start with --resume recomputes nothing; the
    report page shows the tornado charts and tables; the CLI prints the table."""
    config = write_config(tmp_path, 1.0)
    out = tmp_path / "out"
    args = ["sensitivities", config, "--params", "recovery.workout_cost=0.03:0.07", "--params", "crypto.assets.BTC.spot=-10%:+10%"]
    args += ["--paths", "600", "--out", str(out), "--backend", "numpy", "--no-contagion", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert (out / "bumps.h5").is_file() and (out / "tornado.svg").is_file() and (out / "bumps_batch.yaml").is_file()
    ds = xr.open_dataset(out / "sensitivities.h5", group="portfolio", engine="h5netcdf")
    assert list(ds["parameter"].values) == ["recovery.workout_cost", "crypto.assets.BTC.spot"]
    spot = ds.sel(parameter="crypto.assets.BTC.spot")
    assert float(spot["el_delta"]) < 0  # more BTC behind the bond, less loss
    with h5py.File(out / "sensitivities.h5") as f:
        assert f.attrs["kind"] == "sensitivities"
    again = run_sensitivities(
        config,
        ["recovery.workout_cost=0.03:0.07", "crypto.assets.BTC.spot=-10%:+10%"],
        out,
        paths=600,
        contagion=False,
        backend="numpy",
        resume=True,
        show_progress=False,
    )
    assert again.batch.already_complete and again.batch.units_computed == 0
    page = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["report", str(out / "sensitivities.h5"), "--out", str(page), "--quiet"])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "Tornado charts" in html and "recovery.workout_cost" in html and "HIGH - LOW" in html


@pytest.mark.parametrize(
    ("bump", "message"),
    [
        ("recovery.workout_cost=0.07:0.03", "LOW must be below HIGH"),
        ("recovery.workout_cost=0.03", "expected FIELD.PATH=LOW:HIGH"),
        ("recovery.workout_cost=3%:0.07", "both bounds as values or both as percentages"),
        ("recovery.workout_csot=0.03:0.07", "recovery.workout_csot: no such field"),
        ("crypto.assets.DOGE.spot=1:2", "no item named 'DOGE'"),
        ("crypto.assets.BTC.name=1:2", "not a number"),
    ],
)
def test_bad_params_exit_2_naming_the_field(tmp_path: Path, bump: str, message: str) -> None:
    config = write_config(tmp_path, 1.0)
    result = CliRunner().invoke(main, ["sensitivities", config, "--params", bump, "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_per_regime_field_needs_a_regime_or_percentages(tmp_path: Path) -> None:
    m = merton_mapping(1.0)
    m["crypto"]["assets"][0]["vol"] = {"easy": 0.6, "tight": 0.9}
    config = tmp_path / "regimes.yaml"
    config.write_text(yaml.safe_dump(m))
    with pytest.raises(ConfigError, match="given per regime"):
        run_sensitivities(str(config), ["crypto.assets.BTC.vol=0.5:0.7"], tmp_path / "o", show_progress=False)
    assert parse_bump("crypto.assets.BTC.vol=-10%:+10%").relative


# ---------------------------------------------------------------------------------------
# Paired errors on hand-made outcomes


def outcomes(default_step: list[int], reason: list[int], loss: list[float]) -> PathOutcomes:
    n = len(default_step)
    return PathOutcomes(
        borrowers=("b",),
        instruments=("i",),
        instrument_borrower=np.array([0]),
        steps_per_year=12,
        n_steps=24,
        default_step=np.array(default_step)[:, None],
        default_reason=np.array(reason)[:, None],
        loss=np.array(loss, dtype=float)[:, None],
        annuity=np.ones((n, 1)),
    )


def test_pd_and_breach_by_a_tenor_count_the_right_paths() -> None:
    covenant, payment = int(DefaultReason.COVENANT_LTV), int(DefaultReason.PAYMENT)
    o = outcomes([-1, 3, 12, 20, 11], [0, covenant, covenant, payment, payment], [0, 1, 1, 1, 1])
    assert default_pd(o, 0).value == pytest.approx(4 / 5)
    assert default_pd(o, 0, 1.0).value == pytest.approx(2 / 5)  # steps 3 and 11 fall in the first 12
    assert covenant_breach(o, 0).value == pytest.approx(2 / 5)
    assert covenant_breach(o, 0, 1.0).value == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="within the horizon"):
        default_pd(o, 0, 3.0)


def test_var_bootstrap_uses_the_same_resample_for_every_scenario() -> None:
    """A scenario whose losses are another's plus a constant has a VaR difference with no error at all."""
    rng = np.random.default_rng(3)
    loss = rng.exponential(1.0, 5000)
    draws = paired_var_draws([loss, loss + 2.0], 0.99, replicates=50)
    np.testing.assert_allclose(draws[1] - draws[0], 2.0)
    assert draws[0].std() > 0.01
    assert value_at_risk(loss + 2.0, 0.99) - value_at_risk(loss, 0.99) == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------
# Reverse stress


def test_reverse_stress_finds_the_closed_form_spot_fall(tmp_path: Path) -> None:
    """The BTC fall at which the bond's PD reaches 50 % (from 27 % at the base): from N(-d2) = p,
    u S_0 (1 - s) (1 - slip) / F = exp(-N^-1(p) sigma sqrt T - (mu - sigma^2/2) T). The search's
    answer lies within 3 of its reported standard errors of it, and that error is small enough
    for the check to mean something."""
    moneyness, p = 2.0, 0.5
    config = write_config(tmp_path, moneyness)
    result = reverse_stress(
        config,
        f"pd[holder]>={p}",
        "crypto.assets.BTC.spot",
        direction="-1",
        tolerance=0.001,
        paths=6000,
        seed=3,
        contagion=False,
        backend="numpy",
        show_progress=False,
    )
    target_moneyness = math.exp(-NORMAL.inv_cdf(p) * SIGMA * math.sqrt(YEARS) - (MU - 0.5 * SIGMA**2) * YEARS) / (1 - SLIP)
    exact = 1.0 - target_moneyness / moneyness
    print(f"shock {result.shock:.4f} ± {result.shock_se:.4f}, exact {exact:.4f}, slope {result.slope:.3f}")
    assert result.status == "found"
    assert 0 < result.shock_se < 0.02
    assert abs(result.shock - exact) < Z_TOL * result.shock_se
    # the metric's slope at the crossing, dPD/ds, agrees with the closed form's
    h = 1e-4
    exact_slope = (merton_pd(moneyness * (1 - exact - h)) - merton_pd(moneyness * (1 - exact + h))) / (2 * h)
    assert abs(result.slope - exact_slope) < Z_TOL * result.slope_se + 0.05 * exact_slope
    evaluations = result.headline()["evaluations"]
    assert evaluations[0]["shock"] == 0.0 and evaluations[0]["value"] < p


def test_reverse_stress_cli_writes_json_and_chart(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2.0)
    out = tmp_path / "rs"
    args = ["reverse-stress", config, "--target", "pd[holder]>=0.3", "--over", "crypto.assets.BTC.spot", "--direction", "-1"]
    args += ["--paths", "500", "--tolerance", "0.01", "--backend", "numpy", "--no-contagion", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "reverse_stress.json").is_file() and (out / "reverse_stress.svg").is_file()
    unreachable = CliRunner().invoke(main, [*args[:3], "pd[holder]>=0.999", *args[4:-3], "--json"])
    assert unreachable.exit_code == 0, unreachable.output
    assert '"status": "not_reached"' in unreachable.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("pd>=0.1", "pd needs a name"),
        ("pd[holder]", "give the level to reach"),
        ("pd[holder]>=1.5", "must lie in (0, 1]"),
        ("pd[holder]>=abc", "'abc' is not a number"),
        ("el@2y>=1m", "applies to pd and breach"),
        ("lgd>=0.4", "not a target"),
        ("el>=-5", "must be above 0 USD"),
        ("breach[]", "empty name"),
    ],
)
def test_target_grammar_errors_exit_2(tmp_path: Path, target: str, message: str) -> None:
    config = write_config(tmp_path, 2.0)
    result = CliRunner().invoke(main, ["reverse-stress", config, "--target", target, "--over", "crypto.assets.BTC.spot"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_target_names_and_tenors_are_checked_against_the_scenario(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2.0)
    runner = CliRunner()
    common = ["--over", "crypto.assets.BTC.spot", "--paths", "64", "--backend", "numpy", "--quiet"]
    unknown = runner.invoke(main, ["reverse-stress", config, "--target", "pd[nobody]>=0.1", *common])
    assert unknown.exit_code == 2 and "no borrower named 'nobody'" in unknown.output
    beyond = runner.invoke(main, ["reverse-stress", config, "--target", "breach[holder-zc]@5y>=0.1", *common])
    assert beyond.exit_code == 2 and "within the horizon" in beyond.output
    bad_field = runner.invoke(main, ["reverse-stress", config, "--target", "el>=1m", "--over", "crypto.assets.BTC.spto", *common[2:]])
    assert bad_field.exit_code == 2 and "crypto.assets.BTC.spto: no such field" in bad_field.output
    assert parse_target("el>=2.5m").level == 2.5e6
    assert parse_target("breach[holder-zc]").level == 0.5
    assert parse_target("pd[holder]@1.5y>=10%").years == 1.5
