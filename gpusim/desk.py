"""The numbers a credit desk reports, computed from a run's per-path outcomes (docs/desk.md).

Nothing here changes the model: every measure is a function of what a run already stores per
path (each borrower's default step, each instrument's loss discounted to t_0 at the base curve)
and of its summary (PD term structure, risky annuity, break-even spread). They stream over
chunks of paths, like `gpusim.risk`, so a file of any size is read once in bounded memory.

* A rating grade for a PD at a tenor, from a published table of cumulative default rates.
* IFRS 9 / CECL expected credit loss: the same per-path losses re-discounted from the base
  curve to the instrument's effective interest rate, 12 months (stage 1) and lifetime (stage 2).
* Tranche losses: an attachment/detachment cut of the loss of an instrument or a group.
* The credit-triangle inverse: the PD a market spread implies at a stated recovery.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpusim.model.params import build_credit_params
from gpusim.risk import BPS, Moments, chunk_moments, covariance, merge_moments, portfolio_loss
from gpusim.scenario import Scenario

# ---------------------------------------------------------------------------------------
# Rating scale

RATING_SOURCE = (
    "S&P Global Ratings, 'Default, Transition, and Recovery: 2023 Annual Global Corporate Default And Rating "
    "Transition Study' (28 March 2024), global corporate average cumulative default rates by rating, 1981-2023"
)
RATING_GRADES: tuple[str, ...] = ("AAA", "AA", "A", "BBB", "BB", "B", "CCC/C")
RATING_TENORS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
CUMULATIVE_DEFAULT_RATES = (
    np.array(
        [  # percent, years 1..10
            [0.00, 0.03, 0.13, 0.23, 0.34, 0.45, 0.51, 0.59, 0.65, 0.70],  # AAA
            [0.02, 0.04, 0.08, 0.16, 0.25, 0.34, 0.43, 0.51, 0.59, 0.66],  # AA
            [0.05, 0.12, 0.20, 0.31, 0.42, 0.55, 0.70, 0.84, 0.97, 1.11],  # A
            [0.15, 0.41, 0.69, 1.04, 1.40, 1.76, 2.08, 2.41, 2.73, 3.04],  # BBB
            [0.58, 1.79, 3.21, 4.57, 5.80, 6.93, 7.89, 8.75, 9.51, 10.19],  # BB
            [3.19, 7.34, 10.60, 12.98, 14.80, 16.20, 17.33, 18.24, 19.02, 19.69],  # B
            [26.94, 36.91, 41.87, 44.75, 46.82, 47.88, 48.95, 49.64, 50.36, 51.02],  # CCC/C
        ]
    )
    / 100.0
)
"""Cumulative default rates of `RATING_SOURCE` (rows `RATING_GRADES`, columns `RATING_TENORS`), as shares."""

RATE_FLOOR_PER_YEAR = 1e-4
"""Rates below 1 bp a year (times the tenor) count as that floor when boundaries are placed:
AAA's 0.00 % at one year would otherwise put the AAA/AA boundary at 0 and leave AAA to PDs of
exactly 0."""


def rating_rates(tenor_years: float) -> np.ndarray:
    """Each grade's cumulative default rate at a tenor: linear between whole years, 0 at 0, flat beyond 10."""
    t = min(max(float(tenor_years), 0.0), float(RATING_TENORS[-1]))
    grid = np.r_[0.0, RATING_TENORS]
    return np.array([np.interp(t, grid, np.r_[0.0, row]) for row in CUMULATIVE_DEFAULT_RATES])


def rating_boundaries(tenor_years: float) -> np.ndarray:
    """Upper PD bound of each grade but the last: the geometric mean of adjacent grades' rates.

    Rates are floored at 1 bp a year and made non-decreasing down the scale first (the study's AAA
    rates exceed AA's from three years on, a small-sample artefact of few AAA issuers), so the
    bounds rise and every PD has one grade.
    """
    floor = RATE_FLOOR_PER_YEAR * min(max(float(tenor_years), 1e-6), float(RATING_TENORS[-1]))
    rates = np.maximum.accumulate(np.maximum(rating_rates(tenor_years), floor))
    return np.sqrt(rates[:-1] * rates[1:])


def rating_grade(pd: float, tenor_years: float) -> str:
    """The grade whose band holds a cumulative PD at a tenor; a PD on a boundary takes the better grade."""
    return RATING_GRADES[int(np.searchsorted(rating_boundaries(tenor_years), pd, side="left"))]


def rating_range(pd: float, pd_se: float, tenor_years: float) -> tuple[str, str]:
    """Grades of PD -/+ 1.96 standard errors: the grades the Monte Carlo estimate cannot tell apart."""
    return rating_grade(max(pd - 1.96 * pd_se, 0.0), tenor_years), rating_grade(min(pd + 1.96 * pd_se, 1.0), tenor_years)


# ---------------------------------------------------------------------------------------
# Market reconciliation


def implied_pd(spread_bps: float | np.ndarray, tenor_years: float | np.ndarray, recovery: float) -> np.ndarray:
    """Cumulative PD over a tenor implied by a spread through the credit triangle: 1 - exp(-s T / LGD).

    The inverse of `gpusim.risk.credit_triangle_spread` with LGD = 1 - recovery: hazard
    h = s / LGD, survival exp(-h T). A spread at or below 0 implies no default risk.
    """
    s = np.maximum(np.asarray(spread_bps, dtype=np.float64), 0.0) / BPS
    return -np.expm1(-s * np.asarray(tenor_years, dtype=np.float64) / (1.0 - recovery))


ZERO_SPREAD_BPS = 1e-6
"""A break-even spread below this (bps) is the rounding of a zero loss: its ratio is taken as infinite."""


def spread_ratio(market_bps: float, breakeven_bps: float) -> float:
    """Market over break-even spread; infinite where the break-even is 0 (to rounding)."""
    return market_bps / breakeven_bps if breakeven_bps > ZERO_SPREAD_BPS else math.inf


def spread_reading(market_bps: float, breakeven_bps: float, max_ratio: float, max_premium_bps: float) -> str:
    """How to read market against break-even: "below break-even", "premium", or "too wide to be a premium".

    Too wide: the market spread is both more than `max_ratio` times the break-even spread and
    more than `max_premium_bps` above it (a break-even of 0 counts as an infinite ratio).
    """
    if market_bps < breakeven_bps:
        return "below break-even"
    ratio = spread_ratio(market_bps, breakeven_bps)
    if ratio > max_ratio and market_bps - breakeven_bps > max_premium_bps:
        return "too wide to be a premium"
    return "premium"


# ---------------------------------------------------------------------------------------
# Effective interest rate


def eir_discount(time_years: np.ndarray, base_discount: np.ndarray, coupon: float, payments_per_year: int, floating: bool) -> np.ndarray:
    """Discount factors at an instrument's effective interest rate on the time grid.

    The contractual rate at origination, compounded at the payment frequency: (1 + c / f)^(-f t)
    for a fixed coupon c, times the base curve's discount factor for a floating loan (c is then
    the spread). Step-ups after origination are not part of it: IFRS 9 B5.5.44 discounts at the EIR fixed at initial recognition.
    """
    spread_part = np.exp(-payments_per_year * math.log1p(coupon / payments_per_year) * np.asarray(time_years, dtype=np.float64))
    return spread_part * base_discount if floating else spread_part


# ---------------------------------------------------------------------------------------
# Tranches


def tranche_loss(loss: np.ndarray, attachment: float | np.ndarray, detachment: float | np.ndarray) -> np.ndarray:
    """Loss of the tranche [attachment, detachment) (USD) of a loss in USD: min(max(L - A, 0), D - A)."""
    return np.minimum(np.maximum(loss - attachment, 0.0), np.asarray(detachment) - np.asarray(attachment))


@dataclass(frozen=True)
class TrancheCut:
    """One tranche of a facility: the instruments whose summed loss it cuts, and its bounds in USD."""

    facility: str
    name: str
    instruments: tuple[int, ...]
    attachment: float  # share of the facility's principal at t_0
    detachment: float
    principal: float  # the facility's principal at t_0, USD

    @property
    def notional(self) -> float:
        return (self.detachment - self.attachment) * self.principal


def tranche_cuts(scenario: Scenario) -> list[TrancheCut]:
    """The tranches of `desk.tranches`, in config order, with instrument indices in the run's order."""
    index = {i.name: k for k, i in enumerate(i for b in scenario.borrowers for i in b.debt)}
    principal = [i.principal for b in scenario.borrowers for i in b.debt]
    cuts = []
    for split in scenario.desk.tranches:
        members = tuple(index[name] for name in split.instruments)
        total = float(sum(principal[k] for k in members))
        for t in split.tranches:
            cuts.append(TrancheCut(split.name, t.name, members, t.attachment, t.detachment, total))
    return cuts


# ---------------------------------------------------------------------------------------
# The accumulator


@dataclass(frozen=True)
class DeskSetup:
    """What the desk measures need beside the per-path outcomes, fixed per run."""

    instrument_borrower: np.ndarray  # (I,) owner of each instrument
    steps_per_year: int
    rediscount: np.ndarray  # (K, I) DF_EIR(t_k+1) / DF_base(t_k+1): a loss of a default in step k, from base to EIR
    undiscount: np.ndarray  # (K,) 1 / DF_base(t_k+1): the same loss undiscounted
    eir: np.ndarray  # (I,) effective interest rate at t_0, per year, compounded at the payment frequency
    tranches: tuple[TrancheCut, ...] = ()

    @property
    def n_steps(self) -> int:
        return int(self.undiscount.shape[0])

    @property
    def n_periods(self) -> int:
        """Reporting years: the last one is partial when the horizon is not a whole number of years."""
        return -(-self.n_steps // self.steps_per_year)


def desk_setup(scenario: Scenario) -> DeskSetup:
    """The setup of a scenario's run: its base discount curve, each instrument's EIR discount curve, its tranches."""
    grid = scenario.time
    params = build_credit_params(scenario)
    time = np.arange(grid.n_steps + 1) / grid.steps_per_year
    base = np.asarray(params.discount, dtype=np.float64)
    instruments = [i for b in scenario.borrowers for i in b.debt]
    curves = [eir_discount(time, base, i.coupon, i.payments_per_year, i.rate_type == "floating") for i in instruments]
    eir = [(1.0 + i.coupon / i.payments_per_year) ** i.payments_per_year - 1.0 for i in instruments]
    owner = [b for b, borrower in enumerate(scenario.borrowers) for _ in borrower.debt]
    rediscount = np.stack([c[1:] / base[1:] for c in curves], axis=1) if curves else np.zeros((grid.n_steps, 0))
    return DeskSetup(
        instrument_borrower=np.asarray(owner, dtype=np.int64),
        steps_per_year=grid.steps_per_year,
        rediscount=rediscount,
        undiscount=1.0 / base[1:],
        eir=np.asarray(eir, dtype=np.float64),
        tranches=tuple(tranche_cuts(scenario)),
    )


_LIFETIME, _TWELVE_MONTHS = range(2)
_TRANCHE_LOSS, _TRANCHE_HIT = range(2)


class DeskAccumulator:
    """ECL and tranche statistics fed chunk by chunk (any order), then `finalize`d; see docs/desk.md."""

    def __init__(self, setup: DeskSetup) -> None:
        self.setup = setup
        n_inst, n_tranches = setup.instrument_borrower.shape[0], len(setup.tranches)
        n_borrowers = int(setup.instrument_borrower.max(initial=-1)) + 1
        self._ecl = Moments(0, np.zeros((n_inst, 2)), np.zeros((n_inst, 2, 2)))
        self._tranche = Moments(0, np.zeros((n_tranches, 2)), np.zeros((n_tranches, 2, 2)))
        self._defaults = np.zeros((n_borrowers, setup.n_steps), dtype=np.int64)  # defaults by step
        self._loss_by_step = np.zeros((n_inst, setup.n_steps))  # sum of the stored (base-discounted) loss by default step

    @property
    def n_paths(self) -> int:
        return self._ecl.count

    def add(self, default_step: np.ndarray, loss: np.ndarray) -> None:
        """Fold in the outcomes of n paths: default steps (n, B) (-1 = none) and discounted losses (n, I)."""
        s = self.setup
        ds = np.asarray(default_step, dtype=np.int64)
        loss = np.asarray(loss, dtype=np.float64)
        n, n_inst = loss.shape
        if n == 0:
            return
        step = ds[:, s.instrument_borrower]  # (n, I): the owner's default step
        defaulted = step >= 0
        k = np.where(defaulted, step, 0)
        columns = np.arange(n_inst)
        lifetime = np.where(defaulted, loss * s.rediscount[k, columns], 0.0)
        twelve = np.where(k < s.steps_per_year, lifetime, 0.0)
        self._ecl = merge_moments(self._ecl, chunk_moments([lifetime, twelve]))

        n_steps = s.n_steps
        cells = (columns * n_steps + k)[defaulted]
        by_step = np.bincount(cells, weights=loss[defaulted], minlength=n_inst * n_steps).reshape(n_inst, n_steps)
        self._loss_by_step += by_step
        hit = ds >= 0
        by_borrower = (np.arange(ds.shape[1]) * n_steps + ds)[hit]
        self._defaults += np.bincount(by_borrower, minlength=self._defaults.size).reshape(self._defaults.shape)

        if s.tranches:
            tranche_losses, hits = [], []
            for cut in s.tranches:
                group = portfolio_loss(loss[:, list(cut.instruments)])
                tranche_losses.append(tranche_loss(group, cut.attachment * cut.principal, cut.detachment * cut.principal))
                hits.append((group > cut.attachment * cut.principal).astype(np.float64))
            self._tranche = merge_moments(self._tranche, chunk_moments([np.stack(tranche_losses, axis=1), np.stack(hits, axis=1)]))

    def _by_year(self, by_step: np.ndarray) -> np.ndarray:
        """Per-step sums (rows, K) summed into reporting years (rows, years)."""
        return np.add.reduceat(by_step, np.arange(0, self.setup.n_steps, self.setup.steps_per_year), axis=1)

    def finalize(self) -> dict[str, np.ndarray]:
        """ECL (12 months, lifetime) per instrument, its split by default year, and tranche EL, PD; each with `_se`."""
        n = self.n_paths
        if n == 0:
            raise ValueError("no paths were added")
        mean, cov = self._ecl.mean, covariance(self._ecl)
        out = {
            "ecl_lifetime": mean[:, _LIFETIME].copy(),
            "ecl_lifetime_se": np.sqrt(cov[:, _LIFETIME, _LIFETIME] / n),
            "ecl_12m": mean[:, _TWELVE_MONTHS].copy(),
            "ecl_12m_se": np.sqrt(cov[:, _TWELVE_MONTHS, _TWELVE_MONTHS] / n),
            "marginal_pd": self._by_year(self._defaults) / n,  # (B, years)
            "nominal_loss_by_year": self._by_year(self._loss_by_step * self.setup.undiscount) / n,  # (I, years): E[loss, default in j]
            "ecl_by_year": self._by_year(self._loss_by_step * self.setup.rediscount.T) / n,  # (I, years), sums to ecl_lifetime
        }
        if self.setup.tranches:
            t_mean, t_cov = self._tranche.mean, covariance(self._tranche)
            out["tranche_el"] = t_mean[:, _TRANCHE_LOSS].copy()
            out["tranche_el_se"] = np.sqrt(t_cov[:, _TRANCHE_LOSS, _TRANCHE_LOSS] / n)
            out["tranche_pd"] = t_mean[:, _TRANCHE_HIT].copy()
            out["tranche_pd_se"] = np.sqrt(t_cov[:, _TRANCHE_HIT, _TRANCHE_HIT] / n)
        return out


def tranche_breakeven_bps(
    tranche_el: np.ndarray, tranche_el_se: np.ndarray, cuts: Sequence[TrancheCut], instrument_annuity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Break-even spread of each tranche, bps a year, and its se: EL_T / ((d - a) sum_i E[Annuity_i]).

    The tranche pays its spread on (d - a) of the facility's outstanding while the borrower is
    alive (pro-rata amortization, losses written down only at default). The se counts the
    noise of EL_T only (the annuity's relative error is far smaller). 0 where the annuity is 0.
    """
    annuity = np.array([(c.detachment - c.attachment) * float(np.sum(instrument_annuity[list(c.instruments)])) for c in cuts])
    safe = np.where(annuity > 0, annuity, 1.0)
    return np.where(annuity > 0, tranche_el / safe * BPS, 0.0), np.where(annuity > 0, tranche_el_se / safe * BPS, 0.0)
