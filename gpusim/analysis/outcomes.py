"""Per-path credit outcomes of one scenario and the metrics the analyst commands differentiate.

Sensitivities and reverse stress compare scenarios run on common random numbers (same seed,
same streams), so path i of one scenario and path i of another saw the same shocks. The
standard error of a difference is then that of the per-path (paired) differences, which is
far smaller than the levels' own. Every metric here except VaR is a mean of per-path values
(or a ratio of means, linearised): `Estimate.per_path` holds the values whose sample mean
moves like the estimate, so a paired standard error is `sd(a.per_path - b.per_path) / sqrt(n)`.
VaR is a quantile, whose paired error comes from a bootstrap over paths (`paired_var_draws`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h5py
import numpy as np

from gpusim.model.constants import DefaultReason
from gpusim.risk import BPS, order_rank

COVENANT_REASONS = (int(DefaultReason.COVENANT_DSCR), int(DefaultReason.COVENANT_LTV))
"""Default reasons that are a covenant breach (a DSCR or LTV test failed beyond its cures)."""


@dataclass(frozen=True)
class PathOutcomes:
    """One scenario's per-path outcomes, path first, with the names and calendar to read them."""

    borrowers: tuple[str, ...]
    instruments: tuple[str, ...]
    instrument_borrower: np.ndarray  # (I,) borrower index of each instrument
    steps_per_year: int
    n_steps: int
    default_step: np.ndarray  # (n, B) step of the default, -1 none
    default_reason: np.ndarray  # (n, B) DefaultReason code
    loss: np.ndarray  # (n, I) discounted loss, USD
    annuity: np.ndarray  # (n, I) risky annuity per path, or (1, I) its mean where per-path values are not stored

    @property
    def n_paths(self) -> int:
        return int(self.loss.shape[0])

    @property
    def horizon_years(self) -> float:
        return self.n_steps / self.steps_per_year


@dataclass(frozen=True)
class Estimate:
    """A metric's value and the per-path values whose mean moves like it (for paired errors)."""

    value: float
    per_path: np.ndarray  # (n,)

    @property
    def se(self) -> float:
        return standard_error(self.per_path)


def standard_error(values: np.ndarray) -> float:
    """Sample sd / sqrt(n) (0 for a single path)."""
    n = values.shape[0]
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def paired_se(a: Estimate, b: Estimate) -> float:
    """Standard error of a.value - b.value when both come from the same paths (common random numbers)."""
    return standard_error(a.per_path - b.per_path)


def independent_se(a: Estimate, b: Estimate) -> float:
    """Standard error the same difference would have from two independent runs of these sizes."""
    return math.hypot(a.se, b.se)


def tenor_steps(years: float | None, steps_per_year: int, n_steps: int) -> int:
    """Steps in the first `years` (all `n_steps` when None); ValueError unless a whole number of steps within them."""
    if years is None:
        return n_steps
    steps = round(years * steps_per_year)
    if years <= 0 or steps > n_steps or abs(steps - years * steps_per_year) > 1e-9:
        raise ValueError(
            f"@{years:g}y: not a whole number of steps within the horizon "
            f"({n_steps / steps_per_year:g} years, {steps_per_year} steps a year)"
        )
    return steps


def horizon_step(outcomes: PathOutcomes, years: float | None) -> int:
    """Steps in the first `years` of these outcomes (the horizon when None)."""
    return tenor_steps(years, outcomes.steps_per_year, outcomes.n_steps)


def portfolio_el(outcomes: PathOutcomes) -> Estimate:
    """Expected discounted portfolio loss, USD."""
    total = outcomes.loss.sum(axis=1)
    return Estimate(float(total.mean()), total)


def instrument_el(outcomes: PathOutcomes, i: int) -> Estimate:
    """Expected discounted loss of instrument i, USD."""
    loss = outcomes.loss[:, i]
    return Estimate(float(loss.mean()), loss)


def default_pd(outcomes: PathOutcomes, b: int, years: float | None = None) -> Estimate:
    """Probability that borrower b defaults within `years` (the horizon when None)."""
    ds = outcomes.default_step[:, b]
    hit = ((ds >= 0) & (ds < horizon_step(outcomes, years))).astype(np.float64)
    return Estimate(float(hit.mean()), hit)


def covenant_breach(outcomes: PathOutcomes, i: int, years: float | None = None) -> Estimate:
    """Probability that instrument i's borrower defaults on a covenant test (DSCR or LTV) within `years`."""
    b = int(outcomes.instrument_borrower[i])
    ds, reason = outcomes.default_step[:, b], outcomes.default_reason[:, b]
    hit = ((ds >= 0) & (ds < horizon_step(outcomes, years)) & np.isin(reason, COVENANT_REASONS)).astype(np.float64)
    return Estimate(float(hit.mean()), hit)


def breakeven_bps(outcomes: PathOutcomes, i: int) -> Estimate:
    """Break-even spread EL_i / E[risky annuity_i] in bps a year (NaN where the annuity is 0 on every path).

    Linearised as (loss - R annuity) / E[annuity] per path (the delta method). Where only the
    annuity's mean is stored (a batch file), the annuity is held at its mean, which leaves out
    its covariance with the loss: the error is then that of the loss term alone.
    """
    loss, annuity = outcomes.loss[:, i], outcomes.annuity[:, i]
    mean_annuity = float(annuity.mean())
    if mean_annuity <= 0.0:
        return Estimate(math.nan, np.full(loss.shape[0], math.nan))
    ratio = float(loss.mean()) / mean_annuity
    return Estimate(ratio * BPS, ratio * BPS + (loss - ratio * annuity) / mean_annuity * BPS)


def value_at_risk(portfolio_loss: np.ndarray, level: float) -> float:
    """VaR_q = L_(k), k = ceil(q n): the convention of gpusim.risk."""
    k, _, _ = order_rank(level, portfolio_loss.shape[0])
    return float(np.partition(portfolio_loss, k - 1)[k - 1])


def paired_var_draws(portfolio_losses: list[np.ndarray], level: float, replicates: int = 200, seed: int = 0) -> np.ndarray:
    """(scenario, replicate) VaRs of bootstrap resamples of the paths, the same resample for every scenario.

    The sd over replicates of a difference of two rows is the paired standard error of that
    difference of VaRs; of one row, the standard error of that VaR.
    """
    n = portfolio_losses[0].shape[0]
    k, _, _ = order_rank(level, n)
    rng = np.random.default_rng(seed)
    draws = np.empty((len(portfolio_losses), replicates))
    for r in range(replicates):
        rows = rng.integers(0, n, n)
        for s, loss in enumerate(portfolio_losses):
            draws[s, r] = np.partition(loss[rows], k - 1)[k - 1]
    return draws


def read_batch_outcomes(path: str, scenario: str) -> PathOutcomes:
    """The per-path outcomes of one scenario of a batch file (`gpusim batch`, docs/batches.md)."""
    with h5py.File(path, "r") as f:
        g = f[f"scenarios/{scenario}"]
        o, s = g["outcomes"], g["summary"]
        instruments = tuple(o["instrument"].asstr()[...])
        borrowers = tuple(o["borrower"].asstr()[...])
        owners = list(o["instrument_borrower"].asstr()[...])
        time = g["time"][...]
        loss = o["loss"][...].astype(np.float64)
        el = s["el"][...]
        spread = s["breakeven_spread_bps"][...] / BPS
        # where EL is 0 every loss is 0, so any positive annuity gives the break-even of 0
        mean_annuity = np.where(spread > 0, el / np.where(spread > 0, spread, 1.0), 1.0)
        return PathOutcomes(
            borrowers=borrowers,
            instruments=instruments,
            instrument_borrower=np.array([borrowers.index(b) for b in owners], dtype=np.int64),
            steps_per_year=round(1.0 / float(time[1] - time[0])),
            n_steps=int(time.shape[0] - 1),
            default_step=o["default_step"][...].astype(np.int64),
            default_reason=o["default_reason"][...].astype(np.int64),
            loss=loss,
            annuity=mean_annuity[None, :].repeat(loss.shape[0], axis=0),
        )
