"""Checks of the streaming credit-risk summary (docs/model.md 8) on synthetic paths.

References are computed directly from the full sample with numpy (np.sort for VaR and ES,
np.corrcoef for default correlation, plain means and ratios), or are closed forms (the credit
triangle for a flat hazard, zero correlation of independent defaults). Standard errors are
checked against the spread of estimates over independent replications.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from gpusim.risk import RiskAccumulator, credit_triangle_spread, portfolio_loss

Z_TOL = 4.0
"""Statistical tolerance, in Monte Carlo standard errors."""

LEVELS = (0.95, 0.99, 0.999)
LEVEL_FRACTIONS = {0.95: (95, 100), 0.99: (99, 100), 0.999: (999, 1000)}
INSTRUMENT_BORROWER = np.array([0, 0, 1, 2, 3, 3])


@dataclass(frozen=True)
class Paths:
    default_step: np.ndarray  # (n, B) int16
    loss: np.ndarray  # (n, I)
    ead: np.ndarray  # (n, I)
    annuity: np.ndarray  # (n, I)

    @property
    def n(self) -> int:
        return self.default_step.shape[0]

    def rows(self, start: int, end: int) -> tuple[np.ndarray, ...]:
        return self.default_step[start:end], self.loss[start:end], self.ead[start:end], self.annuity[start:end]


def synthetic(n: int, seed: int, n_steps: int = 12) -> Paths:
    """Four borrowers with one-factor Gaussian defaults (borrower 3 never defaults), six
    amortizing instruments with a discrete severity, so that portfolio losses have many ties."""
    rng = np.random.default_rng(seed)
    thresholds = np.array([-1.0, -1.3, -0.8, -np.inf])  # borrower 3 never defaults
    latent = 0.5 * rng.standard_normal((n, 1)) + math.sqrt(0.75) * rng.standard_normal((n, 4))
    step = rng.integers(0, n_steps, size=(n, 4))
    default_step = np.where(latent < thresholds, step, -1).astype(np.int16)
    ds = default_step[:, INSTRUMENT_BORROWER].astype(np.int64)
    defaulted = ds >= 0
    notional = np.array([3.0, 1.0, 2.0, 4.0, 1.0, 2.0])
    alive_steps = np.where(defaulted, ds, n_steps)
    outstanding = notional * (1.0 - alive_steps / (2 * n_steps))
    ead = np.where(defaulted, outstanding, 0.0)
    severity = rng.choice([0.25, 0.5, 0.75], size=ead.shape)
    loss = ead * severity
    annuity = notional * alive_steps / n_steps
    return Paths(default_step, loss, ead, annuity)


def accumulate(paths: Paths, chunks: list[tuple[int, int]], instrument_borrower: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Feed the chunks (start, end) in the given order and finalize."""
    acc = RiskAccumulator(
        paths.default_step.shape[1], paths.loss.shape[1], 12, levels=LEVELS, expected_paths=paths.n, instrument_borrower=instrument_borrower
    )
    for start, end in chunks:
        acc.add(start, *paths.rows(start, end))
    return acc.finalize()


def chunkings(n: int, seed: int) -> dict[str, list[tuple[int, int]]]:
    """Several ways to cut [0, n) into chunks, some fed out of order."""
    rng = np.random.default_rng(seed)
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, size=150), [1, 2, 3]]))
    random_cuts = [(int(a), int(b)) for a, b in itertools.pairwise(cuts)]
    even = [(a, min(a + 997, n)) for a in range(0, n, 997)]
    shuffled = [random_cuts[i] for i in rng.permutation(len(random_cuts))]
    return {"single": [(0, n)], "even": even, "even_reversed": even[::-1], "random": random_cuts, "random_shuffled": shuffled}


def upper_rank(q: float, n: int) -> int:
    """ceil(q n) in integer arithmetic."""
    num, den = LEVEL_FRACTIONS[q]
    return -(-n * num // den)


def exact_var_es(losses: np.ndarray, q: float) -> tuple[float, float]:
    """VaR = ceil(q n)-th order statistic, ES = tail mean with the fractional boundary weight."""
    n = losses.shape[0]
    s = np.sort(losses)
    k = upper_rank(q, n)
    num, den = LEVEL_FRACTIONS[q]
    return float(s[k - 1]), float((s[k:].sum() + (k - n * num / den) * s[k - 1]) / (n * (den - num) / den))


# ---------------------------------------------------------------------------------------
# Exactness and chunking


def test_portfolio_loss_is_the_row_sum() -> None:
    paths = synthetic(1000, seed=1)
    np.testing.assert_array_equal(portfolio_loss(paths.loss), paths.loss.sum(axis=1))


@pytest.mark.parametrize("n", [20_000, 7])
def test_var_es_exact_for_any_chunking(n: int) -> None:
    paths = synthetic(n, seed=2)
    losses = paths.loss.sum(axis=1)
    assert np.unique(losses).shape[0] < n // 2 or n < 100  # many ties in the large sample
    reference = [exact_var_es(losses, q) for q in LEVELS]
    summaries = {name: accumulate(paths, chunks) for name, chunks in chunkings(n, seed=3).items()}
    for summary in summaries.values():
        assert int(summary["n_paths"]) == n
        for j, (var, es) in enumerate(reference):
            assert summary["var"][j] == var
            assert summary["es"][j] == pytest.approx(es, rel=1e-12, abs=1e-12)
    first = summaries["single"]
    for summary in summaries.values():
        assert set(summary) == set(first)
        for key, value in first.items():
            if np.issubdtype(value.dtype, np.integer) or value.dtype == bool or key in ("var", "risk_contribution"):
                np.testing.assert_array_equal(summary[key], value, err_msg=key)
            else:
                np.testing.assert_allclose(summary[key], value, rtol=1e-10, atol=1e-14, err_msg=key)


def test_every_estimate_has_a_finite_se() -> None:
    paths = synthetic(5000, seed=4)
    summary = accumulate(paths, [(0, paths.n)], instrument_borrower=INSTRUMENT_BORROWER)
    for key in ("pd", "el", "lgd", "portfolio_el", "var", "es", "risk_contribution", "default_correlation", "breakeven_spread_bps"):
        assert summary[f"{key}_se"].shape == summary[key].shape
        assert np.isfinite(summary[key]).all() and np.isfinite(summary[f"{key}_se"]).all(), key
        assert (summary[f"{key}_se"] >= 0).all()


def test_pd_el_lgd_spread_match_numpy() -> None:
    paths = synthetic(30_000, seed=5)
    n, K = paths.n, 12
    summary = accumulate(paths, chunkings(n, seed=6)["random_shuffled"], instrument_borrower=INSTRUMENT_BORROWER)
    ds = paths.default_step
    pd = np.stack([((ds >= 0) & (ds < k)).mean(axis=0) for k in range(K + 1)], axis=1)
    np.testing.assert_allclose(summary["pd"], pd, rtol=1e-15, atol=0)
    np.testing.assert_allclose(summary["pd_se"], np.sqrt(pd * (1 - pd) / n), rtol=1e-12)
    assert (summary["pd"][:, 0] == 0).all()

    np.testing.assert_allclose(summary["el"], paths.loss.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(summary["el_se"], paths.loss.std(axis=0, ddof=1) / math.sqrt(n), rtol=1e-10)
    portfolio = paths.loss.sum(axis=1)
    assert float(summary["portfolio_el"]) == pytest.approx(portfolio.mean(), rel=1e-12)
    assert float(summary["portfolio_el_se"]) == pytest.approx(portfolio.std(ddof=1) / math.sqrt(n), rel=1e-10)

    defaulted = ds[:, INSTRUMENT_BORROWER] >= 0
    x, y = np.where(defaulted, paths.loss, 0.0), np.where(defaulted, paths.ead, 0.0)
    with np.errstate(invalid="ignore"):
        lgd = x.sum(axis=0) / y.sum(axis=0)
    defined = defaulted.any(axis=0)
    np.testing.assert_array_equal(summary["lgd_defined"], defined)
    np.testing.assert_array_equal(summary["lgd_n_defaults"], defaulted.sum(axis=0))
    np.testing.assert_allclose(summary["lgd"][defined], lgd[defined], rtol=1e-12)
    assert (summary["lgd"][~defined] == 0).all() and (summary["lgd_se"][~defined] == 0).all()
    # delta method for a ratio of means, written out
    r = lgd[defined]
    z = x[:, defined] - r * y[:, defined]
    np.testing.assert_allclose(summary["lgd_se"][defined], z.std(axis=0, ddof=1) / (math.sqrt(n) * y[:, defined].mean(axis=0)), rtol=1e-8)

    spread = paths.loss.mean(axis=0) / paths.annuity.mean(axis=0)
    np.testing.assert_allclose(summary["breakeven_spread_bps"], spread * 1e4, rtol=1e-12)
    z = paths.loss - spread * paths.annuity
    np.testing.assert_allclose(
        summary["breakeven_spread_bps_se"], 1e4 * z.std(axis=0, ddof=1) / (math.sqrt(n) * paths.annuity.mean(axis=0)), rtol=1e-8
    )


def test_lgd_without_mapping_uses_positive_exposure() -> None:
    paths = synthetic(5000, seed=7)
    with_map = accumulate(paths, [(0, paths.n)], instrument_borrower=INSTRUMENT_BORROWER)
    without = accumulate(paths, [(0, paths.n)])
    # here EAD > 0 exactly on default paths, so both definitions agree
    np.testing.assert_allclose(without["lgd"], with_map["lgd"], rtol=1e-12)
    np.testing.assert_array_equal(without["lgd_defined"], with_map["lgd_defined"])


def test_contributions_sum_to_es_and_match_the_sorted_tail() -> None:
    paths = synthetic(20_000, seed=8)
    n = paths.n
    losses = paths.loss.sum(axis=1)
    order = np.lexsort((np.arange(n), losses))  # ascending in (loss, path index)
    k = upper_rank(0.99, n)
    rows = paths.loss[order]
    weight = k - n * 0.99
    expected = (rows[k:].sum(axis=0) + weight * rows[k - 1]) / (n * 0.01)
    _, es99 = exact_var_es(losses, 0.99)
    for chunks in chunkings(n, seed=9).values():
        summary = accumulate(paths, chunks)
        np.testing.assert_allclose(summary["risk_contribution"], expected, rtol=1e-12, atol=1e-12)
        assert summary["risk_contribution"].sum() == pytest.approx(es99, rel=1e-12)
        assert summary["es"][LEVELS.index(0.99)] == pytest.approx(es99, rel=1e-12)


# ---------------------------------------------------------------------------------------
# Default correlation


def test_default_correlation_matches_corrcoef() -> None:
    paths = synthetic(20_000, seed=10)
    summary = accumulate(paths, chunkings(paths.n, seed=11)["random"])
    indicators = (paths.default_step >= 0).astype(float)
    defined = summary["default_correlation_defined"]
    np.testing.assert_array_equal(defined, [True, True, True, False])
    with np.errstate(invalid="ignore", divide="ignore"):
        reference = np.corrcoef(indicators.T)
    np.testing.assert_allclose(summary["default_correlation"][np.ix_(defined, defined)], reference[np.ix_(defined, defined)], atol=1e-12)
    assert (summary["default_correlation"][3] == 0).all() and (summary["default_correlation"][:, 3] == 0).all()
    assert (summary["default_correlation_se"][3] == 0).all()
    off = ~np.eye(4, dtype=bool) & np.outer(defined, defined)
    assert (summary["default_correlation"][off] > 0.05).all()  # the common factor correlates defaults


def test_independent_defaults_are_uncorrelated() -> None:
    rng = np.random.default_rng(12)
    n, B, p = 50_000, 5, 0.1
    default_step = np.where(rng.random((n, B)) < p, rng.integers(0, 12, size=(n, B)), -1).astype(np.int16)
    zeros = np.zeros((n, 1))
    acc = RiskAccumulator(n_borrowers=B, n_instruments=1, n_steps=12, expected_paths=n)
    acc.add(0, default_step, zeros, zeros, zeros + 1.0)
    summary = acc.finalize()
    off = ~np.eye(B, dtype=bool)
    corr, se = summary["default_correlation"][off], summary["default_correlation_se"][off]
    assert (np.abs(corr) < Z_TOL * se).all()
    np.testing.assert_allclose(se, 1 / math.sqrt(n), rtol=0.05)  # the phi coefficient's se at independence
    np.testing.assert_allclose(np.diag(summary["default_correlation"]), 1.0)
    # a portfolio that never loses: VaR and ES are 0, spreads 0
    assert (summary["var"] == 0).all() and (summary["es"] == 0).all() and (summary["var_se"] == 0).all()
    assert summary["breakeven_spread_bps"][0] == 0 and not summary["lgd_defined"][0]


# ---------------------------------------------------------------------------------------
# Credit triangle


def test_credit_triangle_spread_closed_form() -> None:
    h, lgd = 0.03, 0.6
    assert credit_triangle_spread(1 - math.exp(-h), lgd) == pytest.approx(h * lgd, rel=1e-14)
    np.testing.assert_allclose(credit_triangle_spread(np.array([0.0, 0.5]), 0.4), [0.0, 0.4 * math.log(2)], rtol=1e-14)


def test_breakeven_spread_flat_hazard() -> None:
    """Exponential default times, loss LGD at default, premium paid continuously until default or
    maturity, discounting at a flat rate r: E[loss] / E[annuity] = h LGD exactly."""
    rng = np.random.default_rng(13)
    n, T, r, K = 200_000, 5.0, 0.03, 60
    hazard, lgd = np.array([0.02, 0.05]), np.array([0.6, 0.4])
    tau = rng.exponential(1.0 / hazard, size=(n, 2))
    defaulted = tau < T
    dt = T / K
    default_step = np.where(defaulted, np.floor(tau / dt), -1).astype(np.int16)
    loss = np.where(defaulted, lgd * np.exp(-r * tau), 0.0)
    ead = defaulted.astype(float)
    annuity = (1 - np.exp(-r * np.minimum(tau, T))) / r
    acc = RiskAccumulator(n_borrowers=2, n_instruments=2, n_steps=K, expected_paths=n, instrument_borrower=[0, 1])
    for start in range(0, n, 30_000):
        acc.add(
            start,
            default_step[start : start + 30_000],
            loss[start : start + 30_000],
            ead[start : start + 30_000],
            annuity[start : start + 30_000],
        )
    summary = acc.finalize()
    triangle = credit_triangle_spread(1 - np.exp(-hazard), lgd) * 1e4
    np.testing.assert_allclose(triangle, hazard * lgd * 1e4, rtol=1e-12)
    assert (np.abs(summary["breakeven_spread_bps"] - triangle) < Z_TOL * summary["breakeven_spread_bps_se"]).all()
    t = np.arange(K + 1) * dt
    pd = 1 - np.exp(-np.outer(hazard, t))
    assert (np.abs(summary["pd"] - pd) <= Z_TOL * summary["pd_se"] + 1e-15).all()


# ---------------------------------------------------------------------------------------
# Honest standard errors


def test_standard_errors_match_the_spread_over_replications() -> None:
    """Over 200 independent samples, the sd of each estimate matches its mean reported se within
    20 % (the sd of 200 draws is itself uncertain by about 5 %); tail estimates, whose se rests on
    asymptotics and a density estimate, within 25 %."""
    rng = np.random.default_rng(14)
    reps, n, B = 200, 10_000, 2
    estimates: dict[str, list[np.ndarray]] = {}
    errors: dict[str, list[np.ndarray]] = {}
    for _ in range(reps):
        latent = 0.6 * rng.standard_normal((n, 1)) + 0.8 * rng.standard_normal((n, B))
        defaulted = latent < -1.0
        default_step = np.where(defaulted, rng.integers(0, 12, size=(n, B)), -1).astype(np.int16)
        ead = np.where(defaulted, rng.uniform(0.5, 1.5, size=(n, B)), 0.0)
        loss = ead * rng.beta(2.0, 3.0, size=(n, B)) + rng.lognormal(-3.0, 0.7, size=(n, B))
        annuity = np.where(defaulted, rng.uniform(0.0, 5.0, size=(n, B)), 5.0)
        acc = RiskAccumulator(n_borrowers=B, n_instruments=B, n_steps=12, levels=(0.95, 0.99), expected_paths=n, instrument_borrower=[0, 1])
        for start in range(0, n, 2500):
            acc.add(
                start,
                default_step[start : start + 2500],
                loss[start : start + 2500],
                ead[start : start + 2500],
                annuity[start : start + 2500],
            )
        summary = acc.finalize()
        for key in ("el", "lgd", "breakeven_spread_bps", "default_correlation", "var", "es", "risk_contribution"):
            estimates.setdefault(key, []).append(np.ravel(summary[key]))
            errors.setdefault(key, []).append(np.ravel(summary[f"{key}_se"]))
    ratios = {}
    for key in estimates:
        spread = np.std(np.array(estimates[key]), axis=0, ddof=1)
        reported = np.mean(np.array(errors[key]), axis=0)
        keep = spread > 0
        ratios[key] = reported[keep] / spread[keep]
    for key in ("el", "lgd", "breakeven_spread_bps", "default_correlation"):
        assert (np.abs(ratios[key] - 1) < 0.2).all(), (key, ratios[key])
    for key in ("var", "es", "risk_contribution"):
        assert (np.abs(ratios[key] - 1) < 0.25).all(), (key, ratios[key])


# ---------------------------------------------------------------------------------------
# Memory and misuse


def test_memory_stays_bounded() -> None:
    n, chunk = 1_000_000, 100_000
    rng = np.random.default_rng(15)
    acc = RiskAccumulator(n_borrowers=2, n_instruments=2, n_steps=12, expected_paths=n)
    all_losses = []
    for start in range(0, n, chunk):
        default_step = np.where(rng.random((chunk, 2)) < 0.05, 3, -1).astype(np.int16)
        loss = rng.exponential(1.0, size=(chunk, 2))
        all_losses.append(loss.sum(axis=1))
        acc.add(start, default_step, loss, loss, loss)
        assert acc.tail_size <= 50_001
    assert acc.tail_size == 50_001  # ceil((1 - 0.95) * 10^6) + 1, not 10^6
    assert acc.contribution_capacity == 10_001
    assert acc.nbytes < 2_000_000  # a full sample would hold 10^6 * 8 bytes per loss alone
    summary = acc.finalize()
    losses = np.concatenate(all_losses)
    for j, q in enumerate(LEVELS):
        var, es = exact_var_es(losses, q)
        assert summary["var"][j] == var
        assert summary["es"][j] == pytest.approx(es, rel=1e-12)


def test_refuses_more_paths_than_expected_and_overlaps() -> None:
    paths = synthetic(100, seed=16)
    acc = RiskAccumulator(n_borrowers=4, n_instruments=6, n_steps=12, expected_paths=80)
    acc.add(0, *paths.rows(0, 50))
    with pytest.raises(ValueError, match="expected_paths"):
        acc.add(50, *paths.rows(50, 100))
    with pytest.raises(ValueError, match="overlap"):
        acc.add(40, *paths.rows(40, 60))
    with pytest.raises(ValueError, match="expected_paths"):
        RiskAccumulator(n_borrowers=4, n_instruments=6, n_steps=12, expected_paths=0)
    with pytest.raises(ValueError, match="default_step"):
        acc.add(60, paths.default_step[60:70] + 20, *paths.rows(60, 70)[1:])
    bad = paths.loss[60:70].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        acc.add(60, paths.default_step[60:70], bad, *paths.rows(60, 70)[2:])
    acc.add(50, *paths.rows(50, 80))  # fewer paths than expected is fine, more is not
    assert acc.finalize()["n_paths"] == 80


def test_merge_equals_one_accumulator() -> None:
    paths = synthetic(12_000, seed=17)
    single = accumulate(paths, [(0, paths.n)])
    parts = []
    for start, end in [(0, 5000), (5000, 12_000)]:
        acc = RiskAccumulator(n_borrowers=4, n_instruments=6, n_steps=12, expected_paths=paths.n)
        acc.add(start, *paths.rows(start, end))
        parts.append(acc)
    parts[1].merge(parts[0])
    merged = parts[1].finalize()
    for key, value in single.items():
        np.testing.assert_allclose(merged[key], value, rtol=1e-10, atol=1e-14, err_msg=key)
    np.testing.assert_array_equal(merged["var"], single["var"])


def test_var_on_an_atom_has_zero_standard_error() -> None:
    """With 97 % of paths losing nothing, VaR 95 % is exactly 0 in every sample: se 0."""
    rng = np.random.default_rng(5)
    n = 20_000
    loss = np.where(rng.random(n) < 0.97, 0.0, rng.exponential(1e6, n))
    acc = RiskAccumulator(1, 1, 4, expected_paths=n)
    acc.add(0, np.where(loss > 0, 1, -1).astype(np.int16)[:, None], loss[:, None], loss[:, None], np.ones((n, 1)))
    summary = acc.finalize()
    assert summary["var"][0] == 0.0 and summary["var_se"][0] == 0.0
    assert summary["var"][1] > 0.0 and summary["var_se"][1] > 0.0


def test_loss_bearing_pd_counts_defaults_where_a_lender_loses() -> None:
    """By hand: three borrowers (the second owns two instruments), six paths. A default counts as
    loss-bearing when some instrument of that borrower loses more than 0; the count does not
    depend on chunking or on merging accumulators."""
    default_step = np.array([[2, -1, 0], [5, 3, -1], [-1, 1, 4], [0, 0, 0], [-1, -1, -1], [7, 2, 1]], dtype=np.int16)
    loss = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],  # borrower 0 loses; borrower 2 defaults with a full recovery
            [0.0, 0.0, 0.5, 0.0],  # borrower 0 recovers in full; borrower 1 loses on its second instrument
            [0.0, 0.0, 0.0, 2.0],  # borrower 1 recovers in full; borrower 2 loses
            [3.0, 1.0, 0.0, 0.0],  # all three default; 0 and 1 lose
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],  # all three default with full recoveries
        ]
    )
    ead = np.where(loss > 0.0, loss, 0.0)
    annuity = np.ones_like(loss)
    expected = np.array([2, 2, 1]) / 6.0

    def accumulator() -> RiskAccumulator:
        return RiskAccumulator(n_borrowers=3, n_instruments=4, n_steps=8, expected_paths=6, instrument_borrower=[0, 1, 1, 2])

    whole = accumulator()
    whole.add(0, default_step, loss, ead, annuity)
    first, second = accumulator(), accumulator()
    first.add(0, default_step[:4], loss[:4], ead[:4], annuity[:4])
    second.add(4, default_step[4:], loss[4:], ead[4:], annuity[4:])
    first.merge(second)
    for summary in (whole.finalize(), first.finalize()):
        np.testing.assert_array_equal(summary["pd_loss_bearing"], expected)
        np.testing.assert_allclose(summary["pd_loss_bearing_se"], np.sqrt(expected * (1.0 - expected) / 6.0))
        np.testing.assert_array_equal(summary["pd"][:, -1], np.array([4, 4, 4]) / 6.0)
