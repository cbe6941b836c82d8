"""Credit-risk summary (docs/model.md 8) that streams over chunks of paths.

A run may hold 10^7 paths or more, so nothing here keeps a row per path. What is kept, and
why the result does not depend on how the paths were chunked or in which order chunks came:

* Default counts per borrower and step, and joint default counts by the horizon: integers,
  exact for any chunking.
* Means and co-moment sums of the per-instrument losses, exposures and annuities: float64,
  one (mean, centred cross-product) pair per chunk merged with the update of Chan, Golub and
  LeVeque, which avoids the cancellation of raw sums of squares. A different chunking changes
  them only in the last bits.
* The largest ceil((1 - q_min) N) + 1 portfolio losses (N = `expected_paths`), with their
  global path index, and the per-instrument losses of the largest ceil((1 - q_c) N) + 1
  paths (q_c = `contribution_level`). Paths are ordered by (portfolio loss, path index), a
  total order, so ties are broken by the path index and the kept set is the same for any
  chunking: VaR, ES and the contributions are exact and bitwise reproducible. The tail must be
  sized before the first path arrives, hence `expected_paths`; more paths are refused.

Conventions (n paths, losses sorted ascending L_(1) <= ... <= L_(n), ties by path index):

* Levels are taken as the decimals they print as (0.95 is 19/20 exactly), so k = ceil(q n)
  is an exact integer and does not jump with the rounding of q * n.
* VaR_q = L_(k), k = ceil(q n): the lower empirical quantile, inf{x : F_n(x) >= q}.
* ES_q = (sum_{j > k} L_(j) + (k - q n) L_(k)) / (n (1 - q)): the tail mean of Acerbi and
  Tasche with the fractional weight at the boundary, equal to VaR_q + E[(L - VaR_q)^+] / (1 - q),
  which is coherent. Risk contributions use the same weights on the instruments' losses of the
  same paths, so they sum to ES (up to rounding).
* LGD_i = sum(loss_i) / sum(EAD_i) over the paths where instrument i's borrower defaulted
  (`instrument_borrower`), or where EAD_i > 0 when no mapping is given. Where nobody defaulted
  (or the exposures sum to 0) LGD is 0 with se 0 and `lgd_defined` is False.
* Default correlation: the Pearson (phi) correlation of the indicators "defaulted by the
  horizon". A borrower that never or always defaults has no defined correlation: its row and
  column are 0 (diagonal included) and `default_correlation_defined` is False.
* Break-even spread: EL_i / E[risky annuity_i] in bps; 0 and `breakeven_spread_defined` False
  where the annuity is 0 on every path.

Standard errors: binomial for PD; sample sd / sqrt(n) for means; the delta method for ratios
(LGD, break-even spread) and for the phi correlation; sqrt(q (1 - q) / n) / f(VaR) for VaR
with the density f from a spacing of the kept order statistics; the asymptotic variance of the
tail mean (Var(L | tail) + q (ES - VaR)^2) / (n (1 - q)) for ES, and its analogue with
E[loss_i | L = VaR] in place of VaR for the contributions.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from gpusim.model.constants import DefaultReason
from gpusim.statistics import proportion_with_se

DEFAULT_TYPES: dict[str, tuple[DefaultReason, ...]] = {
    "payment": (DefaultReason.PAYMENT,),
    "covenant": (DefaultReason.COVENANT_DSCR, DefaultReason.COVENANT_LTV),
    "maturity": (DefaultReason.MATURITY,),
}
"""Default types reported beside PD any (docs/model.md 8.2): payment default, covenant acceleration
(DSCR or LTV, after the remedies failed) and maturity default; they partition the defaults, so
their PDs sum to the PD by the horizon."""

DEFAULT_LEVELS: tuple[float, ...] = (0.95, 0.99, 0.999)
CONTRIBUTION_LEVEL = 0.99
BPS = 1e4

# Per-instrument variables whose moments are kept: loss, loss on default paths, EAD on default
# paths, risky annuity.
_LOSS, _LOSS_D, _EAD_D, _ANNUITY = range(4)


def credit_triangle_spread(pd_annual: float | np.ndarray, lgd: float | np.ndarray) -> float | np.ndarray:
    """Fair spread of a flat-hazard name: hazard x LGD, with hazard = -ln(1 - annual PD).

    With a constant hazard h, a loss of LGD paid at default and a premium paid continuously
    until default, E[discounted loss] / E[risky annuity] = h LGD for any rate and maturity (the
    "credit triangle"). Multiply by 1e4 for bps.
    """
    return -np.log1p(-np.asarray(pd_annual, dtype=np.float64)) * lgd


def portfolio_loss(loss: np.ndarray) -> np.ndarray:
    """Loss of each path summed over instruments left to right, the same bits for any chunking.

    np.sum over an axis may pick a summation order from the array's layout; this does not.
    """
    loss = np.asarray(loss, dtype=np.float64)
    total = np.zeros(loss.shape[0])
    for i in range(loss.shape[1]):
        total += loss[:, i]
    return total


def order_rank(q: float, n: int) -> tuple[int, float, float]:
    """k = ceil(q n), the boundary weight k - q n and the tail mass n (1 - q), with q exact.

    q is read as the decimal it prints as, so that e.g. 0.95 * 100 is exactly 95.
    """
    exact = Fraction(repr(float(q)))
    k = max(1, math.ceil(exact * n))
    return k, float(k - exact * n), float(n * (1 - exact))


# ---------------------------------------------------------------------------------------
# Moments


@dataclass(frozen=True)
class Moments:
    """Count, means (G, V) and centred cross-product sums (G, V, V) of V variables in G groups."""

    count: int
    mean: np.ndarray
    m2: np.ndarray


def chunk_moments(variables: Sequence[np.ndarray]) -> Moments:
    """Moments of one chunk of V variables, each (n, G), centred on the chunk's own mean.

    One product per pair of variables in the (n, G) layout: no transposed copies, ~3x faster
    than a single einsum over a stacked (n, G, V) array.
    """
    means = [x.mean(axis=0) for x in variables]
    centred = [x - m for x, m in zip(variables, means, strict=True)]
    n_groups, n_vars = variables[0].shape[1], len(variables)
    m2 = np.empty((n_groups, n_vars, n_vars))
    for v in range(n_vars):
        for w in range(v, n_vars):
            m2[:, v, w] = m2[:, w, v] = np.einsum("ng,ng->g", centred[v], centred[w])
    return Moments(variables[0].shape[0], np.stack(means, axis=-1), m2)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Moments of the union of two disjoint samples (Chan, Golub and LeVeque 1979)."""
    if a.count == 0:
        return b
    if b.count == 0:
        return a
    count = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / count)
    m2 = a.m2 + b.m2 + np.einsum("gv,gw->gvw", delta, delta) * (a.count * b.count / count)
    return Moments(count, mean, m2)


def covariance(m: Moments) -> np.ndarray:
    """Sample covariance (G, V, V) with n - 1 in the denominator; 0 for a single path."""
    return m.m2 / max(m.count - 1, 1)


def ratio_with_se(
    mx: np.ndarray, my: np.ndarray, vxx: np.ndarray, vxy: np.ndarray, vyy: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratio of means mx / my, its delta-method se, and where it is defined (my != 0).

    Var(R) ~ (Var X - 2 R Cov(X, Y) + R^2 Var Y) / (n E[Y]^2), set to 0 where the terms
    cancel to rounding (e.g. X = R Y on every path); undefined entries are 0.
    """
    defined = my != 0
    safe = np.where(defined, my, 1.0)
    ratio = np.where(defined, mx / safe, 0.0)
    scale = vxx + ratio**2 * vyy
    var = vxx - 2.0 * ratio * vxy + ratio**2 * vyy
    var = np.where(var > 1e-12 * scale, var, 0.0)  # below that it is rounding noise of the terms
    return ratio, np.where(defined, np.sqrt(var / (n * safe**2)), 0.0), defined


# ---------------------------------------------------------------------------------------
# Tail of the portfolio loss


@dataclass(frozen=True)
class Tail:
    """The largest paths seen so far, ascending in (loss, path index), with optional payload."""

    loss: np.ndarray  # (m,) float64
    path: np.ndarray  # (m,) int64
    payload: np.ndarray | None  # (m, I) float64 per-instrument losses, or None


def empty_tail(n_payload: int | None) -> Tail:
    """A tail with no paths yet; n_payload instrument losses per path, or none."""
    payload = None if n_payload is None else np.empty((0, n_payload))
    return Tail(np.empty(0), np.empty(0, dtype=np.int64), payload)


def merge_tail(tail: Tail, capacity: int, loss: np.ndarray, path: np.ndarray, payload: np.ndarray | None) -> Tail:
    """The `capacity` largest of the tail and the new paths, ascending in (loss, path index).

    Candidates are cut first at the smallest loss that can still enter, keeping every tie, so
    that only the (loss, path) order decides and the result is independent of the chunking.
    """
    if tail.loss.shape[0] == capacity:
        keep = loss >= tail.loss[0]
        loss, path = loss[keep], path[keep]
        payload = None if payload is None else payload[keep]
    if loss.shape[0] > capacity:
        threshold = np.partition(loss, loss.shape[0] - capacity)[loss.shape[0] - capacity]
        keep = loss >= threshold
        loss, path = loss[keep], path[keep]
        payload = None if payload is None else payload[keep]
    if loss.shape[0] == 0:
        return tail
    all_loss = np.concatenate([tail.loss, loss])
    all_path = np.concatenate([tail.path, path])
    top = np.lexsort((all_path, all_loss))[-capacity:]
    new_payload = None
    if tail.payload is not None and payload is not None:
        new_payload = np.concatenate([tail.payload, payload])[top]
    return Tail(all_loss[top], all_path[top], new_payload)


def _spacing_window(tail_loss: np.ndarray, first_rank: int, n: int, k: int, q: float) -> tuple[int, int]:
    """Ranks (lo, hi) around k with L_(hi) > L_(lo) where possible, for the density at VaR.

    The half-width starts at sqrt(n (1 - q)) (a rule of thumb balancing the noise of the
    spacing, ~1/sqrt(2 m), against the curvature of the quantile function) and doubles while
    the spacing is 0 (an atom of the loss distribution) and the kept tail allows.
    """
    m = max(1, math.isqrt(max(1, int(n * (1.0 - q)))))
    while True:
        lo, hi = max(k - m, first_rank), min(k + m, n)
        if tail_loss[hi - first_rank] > tail_loss[lo - first_rank] or (lo == first_rank and hi == n):
            return lo, hi
        m *= 2


@dataclass(frozen=True)
class TailEstimate:
    """VaR and ES at one level, each with its Monte Carlo standard error."""

    var: float
    var_se: float
    es: float
    es_se: float


def tail_estimate(tail_loss: np.ndarray, n: int, q: float) -> TailEstimate:
    """Exact VaR and ES at level q from the largest losses (ascending) of n paths, with se."""
    first_rank = n - tail_loss.shape[0] + 1
    k, weight, mass = order_rank(q, n)
    if k < first_rank:
        raise ValueError(f"the kept tail ({tail_loss.shape[0]} losses) does not reach rank {k} of {n} for level {q}")
    at = k - first_rank
    var = float(tail_loss[at])
    above = tail_loss[at + 1 :]
    es = (float(np.sum(above)) + weight * var) / mass
    tail_var = (float(np.sum((above - es) ** 2)) + weight * (var - es) ** 2) / mass
    es_se = math.sqrt(max(tail_var + q * (es - var) ** 2, 0.0) / mass)
    if _atom_covers_rank(tail_loss, first_rank, n, k, q, var):
        return TailEstimate(var, 0.0, es, es_se)
    lo, hi = _spacing_window(tail_loss, first_rank, n, k, q)
    spacing = float(tail_loss[hi - first_rank] - tail_loss[lo - first_rank])
    var_se = math.sqrt(q * (1.0 - q) / n) * n * spacing / (hi - lo) if hi > lo else 0.0
    return TailEstimate(var, var_se, es, es_se)


def _atom_covers_rank(tail_loss: np.ndarray, first_rank: int, n: int, k: int, q: float, var: float) -> bool:
    """True when every order statistic within 4 standard deviations of rank k equals VaR.

    Then VaR sits on an atom of the loss distribution (typically "no loss" at 95 %) and does
    not move between samples, so its standard error is 0 rather than a density estimate.
    Losses are non-negative, so ranks below the kept tail equal VaR when VaR is 0.
    """
    reach = math.ceil(4.0 * math.sqrt(n * q * (1.0 - q)))
    low_known = k - reach >= first_rank
    low = tail_loss[max(k - reach, first_rank) - first_rank]
    high = tail_loss[min(k + reach, n) - first_rank]
    return bool(high == var and low == var and (low_known or var <= 0.0))


def contribution_estimate(tail: Tail, n: int, q: float, main_tail_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[loss_i | portfolio loss in the q tail] with the ES weights, and its se.

    se^2 = (Var(loss_i | tail) + q (c_i - g_i)^2) / (n (1 - q)) with g_i = E[loss_i | L = VaR]
    estimated by the mean of loss_i over the kept paths ranked in the spacing window of VaR.
    """
    assert tail.payload is not None
    first_rank = n - tail.loss.shape[0] + 1
    k, weight, mass = order_rank(q, n)
    at = k - first_rank
    rows = tail.payload
    contribution = (rows[at + 1 :].sum(axis=0) + weight * rows[at]) / mass
    centred = rows[at:] - contribution
    weights = np.ones(centred.shape[0])
    weights[0] = weight
    tail_var = (weights[:, None] * centred**2).sum(axis=0) / mass
    lo, hi = _spacing_window(main_tail_loss, n - main_tail_loss.shape[0] + 1, n, k, q)
    lo = max(lo, first_rank)
    near = rows[lo - first_rank : hi - first_rank + 1].mean(axis=0)
    se = np.sqrt(np.maximum(tail_var + q * (contribution - near) ** 2, 0.0) / mass)
    return contribution, se


# ---------------------------------------------------------------------------------------
# Default correlation


def phi_correlation_with_se(joint: np.ndarray, single: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation of default indicators from joint (B, B) and single (B,) counts, with se.

    The se is the delta method on the means of (D_b D_c, D_b, D_c), which is multinomial; at
    independence it is 1 / sqrt(n). Borrowers with p in {0, 1} get 0 and defined False.
    """
    p = single / n
    p11 = joint / n
    pq = p * (1.0 - p)
    defined = pq > 0
    safe_pq = np.where(defined, pq, 1.0)
    s = np.sqrt(np.outer(safe_pq, safe_pq))
    pb, pc = p[:, None], p[None, :]
    phi = (p11 - pb * pc) / s
    # gradient with respect to (p11, pb, pc)
    g11 = 1.0 / s
    gb = -pc / s - phi * (1.0 - 2.0 * pb) / (2.0 * safe_pq[:, None])
    gc = -pb / s - phi * (1.0 - 2.0 * pc) / (2.0 * safe_pq[None, :])
    v11 = p11 * (1.0 - p11)
    v1b, v1c = p11 * (1.0 - pb), p11 * (1.0 - pc)
    vbb, vcc, vbc = pb * (1.0 - pb), pc * (1.0 - pc), p11 - pb * pc
    var = g11**2 * v11 + gb**2 * vbb + gc**2 * vcc + 2.0 * (g11 * gb * v1b + g11 * gc * v1c + gb * gc * vbc)
    both = np.outer(defined, defined)
    phi = np.where(both, phi, 0.0)
    se = np.where(both, np.sqrt(np.maximum(var, 0.0) / n), 0.0)
    diagonal = np.arange(len(p))
    phi[diagonal, diagonal] = np.where(defined, 1.0, 0.0)
    se[diagonal, diagonal] = 0.0
    return phi, se, defined


# ---------------------------------------------------------------------------------------
# The accumulator


class RiskAccumulator:
    """Credit-risk statistics fed chunk by chunk (any size, any order), then `finalize`d.

    Memory is bounded by the kept tails, about (1 - min level) * expected_paths portfolio
    losses plus (1 - contribution_level) * expected_paths rows of instrument losses. Not
    thread-safe: feed it from one thread (chunks may complete in any order).
    """

    def __init__(
        self,
        n_borrowers: int,
        n_instruments: int,
        n_steps: int,
        *,
        expected_paths: int,
        levels: Sequence[float] = DEFAULT_LEVELS,
        contribution_level: float = CONTRIBUTION_LEVEL,
        instrument_borrower: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if expected_paths <= 0:
            raise ValueError("expected_paths must be the total number of paths (> 0): the exact tail is sized from it")
        self.levels = tuple(float(q) for q in levels)
        if not self.levels or any(not 0.0 < q < 1.0 for q in (*self.levels, contribution_level)):
            raise ValueError(f"levels and contribution_level must lie in (0, 1), got {self.levels}, {contribution_level}")
        self.n_borrowers, self.n_instruments, self.n_steps = n_borrowers, n_instruments, n_steps
        self.expected_paths = expected_paths
        self.contribution_level = float(contribution_level)
        self.instrument_borrower: np.ndarray | None = None
        if instrument_borrower is not None:
            ib = np.asarray(instrument_borrower, dtype=np.int64)
            if ib.shape != (n_instruments,) or ib.min(initial=0) < 0 or ib.max(initial=0) >= n_borrowers:
                raise ValueError(f"instrument_borrower must hold {n_instruments} borrower indices in [0, {n_borrowers})")
            self.instrument_borrower = ib
        self.tail_capacity = tail_capacity(min(self.levels), expected_paths)
        self.contribution_capacity = tail_capacity(self.contribution_level, expected_paths)
        self._tail = empty_tail(None)
        self._contribution_tail = empty_tail(n_instruments)
        self._default_counts = np.zeros((n_borrowers, n_steps), dtype=np.int64)
        self._joint_defaults = np.zeros((n_borrowers, n_borrowers), dtype=np.int64)
        self._instrument = Moments(0, np.zeros((n_instruments, 4)), np.zeros((n_instruments, 4, 4)))
        self._portfolio = Moments(0, np.zeros((1, 1)), np.zeros((1, 1, 1)))
        self._n_defaults = np.zeros(n_instruments, dtype=np.int64)
        self._loss_bearing = np.zeros(n_borrowers, dtype=np.int64)  # defaults by the horizon with a loss > 0
        self._by_type: np.ndarray | None = None  # (types, B) defaults by the horizon per DEFAULT_TYPES, once reasons arrive
        self._starts: list[int] = []  # disjoint, merged ranges of global path indices seen
        self._ends: list[int] = []

    @property
    def n_paths(self) -> int:
        return self._portfolio.count

    @property
    def tail_size(self) -> int:
        """Portfolio losses kept now (at most `tail_capacity`)."""
        return int(self._tail.loss.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the accumulator's arrays, for checks that it stays bounded."""
        arrays = [self._tail.loss, self._tail.path, self._contribution_tail.loss, self._contribution_tail.path]
        arrays += [self._contribution_tail.payload, self._default_counts, self._joint_defaults, self._n_defaults, self._loss_bearing]
        arrays += [self._instrument.mean, self._instrument.m2, self._portfolio.mean, self._portfolio.m2, self._by_type]
        return sum(a.nbytes for a in arrays if a is not None) + 16 * len(self._starts)

    def _claim(self, start: int, end: int) -> None:
        """Record paths [start, end); refuse overlaps and paths beyond expected_paths."""
        if start < 0 or end > self.expected_paths:
            raise ValueError(
                f"paths [{start}, {end}) fall outside [0, expected_paths={self.expected_paths}); "
                "the exact VaR/ES tail is sized from expected_paths, so build the accumulator with the true total"
            )
        i = bisect.bisect_right(self._starts, start)
        if (i > 0 and self._ends[i - 1] > start) or (i < len(self._starts) and self._starts[i] < end):
            raise ValueError(f"paths [{start}, {end}) overlap paths already added")
        if i > 0 and self._ends[i - 1] == start:
            i -= 1
            self._ends[i] = end
        else:
            self._starts.insert(i, start)
            self._ends.insert(i, end)
        if i + 1 < len(self._starts) and self._starts[i + 1] == self._ends[i]:
            self._ends[i] = self._ends.pop(i + 1)
            self._starts.pop(i + 1)

    def add(
        self,
        path_start: int,
        default_step: np.ndarray,
        loss: np.ndarray,
        exposure_at_default: np.ndarray,
        risky_annuity: np.ndarray,
        default_reason: np.ndarray | None = None,
    ) -> None:
        """Fold in a chunk of n paths with global indices path_start .. path_start + n - 1; with
        `default_reason` (n, B) DefaultReason codes, also the PD split by type (DEFAULT_TYPES)."""
        ds = np.asarray(default_step)
        loss = np.ascontiguousarray(loss, dtype=np.float64)
        ead = np.asarray(exposure_at_default, dtype=np.float64)
        annuity = np.asarray(risky_annuity, dtype=np.float64)
        n = ds.shape[0]
        B, n_inst, K = self.n_borrowers, self.n_instruments, self.n_steps
        if ds.shape != (n, B) or not np.issubdtype(ds.dtype, np.integer):
            raise ValueError(f"default_step must be an integer array of shape (n, {B}), got {ds.dtype} {ds.shape}")
        for name, x in (("loss", loss), ("exposure_at_default", ead), ("risky_annuity", annuity)):
            if x.shape != (n, n_inst):
                raise ValueError(f"{name} must have shape ({n}, {n_inst}), got {x.shape}")
            if not np.isfinite(x).all():
                raise ValueError(f"{name} holds NaN or infinite values")
        if n == 0:
            return
        if ds.min() < -1 or ds.max() >= K:
            raise ValueError(f"default_step must lie in [-1, {K - 1}]")
        if default_reason is not None:
            self._check_reasons(np.asarray(default_reason), ds >= 0)
        elif self._by_type is not None:
            raise ValueError("default_reason must come with every chunk or with none")
        self._claim(int(path_start), int(path_start) + n)

        ds = ds.astype(np.int64)
        defaulted = ds >= 0
        if default_reason is not None:
            counts = np.stack([np.isin(default_reason, [r.value for r in kinds]).sum(axis=0) for kinds in DEFAULT_TYPES.values()])
            self._by_type = counts if self._by_type is None else self._by_type + counts
        cells = (ds + np.arange(B) * K)[defaulted]
        self._default_counts += np.bincount(cells, minlength=B * K).reshape(B, K)
        indicator = defaulted.astype(np.float64)
        self._joint_defaults += np.rint(indicator.T @ indicator).astype(np.int64)

        if self.instrument_borrower is not None:
            owner = np.zeros((n_inst, B), dtype=np.int64)
            owner[np.arange(n_inst), self.instrument_borrower] = 1
            self._loss_bearing += (defaulted & ((loss > 0.0).astype(np.int64) @ owner > 0)).sum(axis=0)
        mask = defaulted[:, self.instrument_borrower] if self.instrument_borrower is not None else ead > 0
        self._n_defaults += mask.sum(axis=0)
        variables = [loss, np.where(mask, loss, 0.0), np.where(mask, ead, 0.0), annuity]  # order of _LOSS.._ANNUITY
        self._instrument = merge_moments(self._instrument, chunk_moments(variables))
        total = portfolio_loss(loss)
        self._portfolio = merge_moments(self._portfolio, chunk_moments([total[:, None]]))

        path = np.arange(int(path_start), int(path_start) + n, dtype=np.int64)
        self._tail = merge_tail(self._tail, self.tail_capacity, total, path, None)
        self._contribution_tail = merge_tail(self._contribution_tail, self.contribution_capacity, total, path, loss)

    def _check_reasons(self, reason: np.ndarray, defaulted: np.ndarray) -> None:
        """Reasons come with every chunk or none, one per default (NONE exactly where a borrower survived)."""
        if reason.shape != defaulted.shape or not np.issubdtype(reason.dtype, np.integer):
            raise ValueError(f"default_reason must be an integer array of shape {defaulted.shape}, got {reason.dtype} {reason.shape}")
        if self.n_paths > 0 and self._by_type is None:
            raise ValueError("default_reason must come with every chunk or with none")
        if ((reason != DefaultReason.NONE.value) != defaulted).any() or not np.isin(reason, [r.value for r in DefaultReason]).all():
            raise ValueError("default_reason must name a DefaultReason for each default and NONE (0) for each survivor")

    def merge(self, other: RiskAccumulator) -> None:
        """Fold in an accumulator of the same shape fed with other paths (e.g. another worker)."""
        same = (self.n_borrowers, self.n_instruments, self.n_steps, self.levels, self.expected_paths, self.contribution_level)
        theirs = (other.n_borrowers, other.n_instruments, other.n_steps, other.levels, other.expected_paths, other.contribution_level)
        if same != theirs or not np.array_equal(
            self.instrument_borrower if self.instrument_borrower is not None else [],
            other.instrument_borrower if other.instrument_borrower is not None else [],
        ):
            raise ValueError("cannot merge accumulators of different shapes or settings")
        for start, end in zip(other._starts, other._ends, strict=True):
            self._claim(start, end)
        self._default_counts += other._default_counts
        self._joint_defaults += other._joint_defaults
        self._n_defaults += other._n_defaults
        self._loss_bearing += other._loss_bearing
        if (self._by_type is None) != (other._by_type is None) and self.n_paths > 0 and other.n_paths > 0:
            raise ValueError("cannot merge an accumulator with default reasons and one without")
        if other._by_type is not None:
            self._by_type = other._by_type.copy() if self._by_type is None else self._by_type + other._by_type
        self._instrument = merge_moments(self._instrument, other._instrument)
        self._portfolio = merge_moments(self._portfolio, other._portfolio)
        t, c = other._tail, other._contribution_tail
        self._tail = merge_tail(self._tail, self.tail_capacity, t.loss, t.path, None)
        self._contribution_tail = merge_tail(self._contribution_tail, self.contribution_capacity, c.loss, c.path, c.payload)

    def finalize(self) -> dict[str, np.ndarray]:
        """The summary: every estimate with its Monte Carlo standard error as `<name>_se`."""
        n = self.n_paths
        if n == 0:
            raise ValueError("no paths were added")
        out: dict[str, np.ndarray] = {"n_paths": np.asarray(n, dtype=np.int64), "levels": np.asarray(self.levels)}

        cumulative = np.concatenate([np.zeros((self.n_borrowers, 1), dtype=np.int64), np.cumsum(self._default_counts, axis=1)], axis=1)
        out["pd"], out["pd_se"] = proportion_with_se(cumulative, n)
        if self.instrument_borrower is not None:  # which losses are a borrower's needs the instruments' owners
            out["pd_loss_bearing"], out["pd_loss_bearing_se"] = proportion_with_se(self._loss_bearing, n)
        if self._by_type is not None:
            for kind, count in zip(DEFAULT_TYPES, self._by_type, strict=True):
                out[f"pd_{kind}"], out[f"pd_{kind}_se"] = proportion_with_se(count, n)

        mean, cov = self._instrument.mean, covariance(self._instrument)
        out["el"] = mean[:, _LOSS].copy()
        out["el_se"] = np.sqrt(cov[:, _LOSS, _LOSS] / n)
        lgd, lgd_se, lgd_defined = ratio_with_se(
            mean[:, _LOSS_D], mean[:, _EAD_D], cov[:, _LOSS_D, _LOSS_D], cov[:, _LOSS_D, _EAD_D], cov[:, _EAD_D, _EAD_D], n
        )
        out["lgd"], out["lgd_se"] = lgd, lgd_se
        out["lgd_defined"] = lgd_defined & (self._n_defaults > 0)
        out["lgd_n_defaults"] = self._n_defaults.copy()
        out["portfolio_el"] = np.asarray(self._portfolio.mean[0, 0])
        out["portfolio_el_se"] = np.asarray(math.sqrt(covariance(self._portfolio)[0, 0, 0] / n))

        estimates = [tail_estimate(self._tail.loss, n, q) for q in self.levels]
        out["var"] = np.array([e.var for e in estimates])
        out["var_se"] = np.array([e.var_se for e in estimates])
        out["es"] = np.array([e.es for e in estimates])
        out["es_se"] = np.array([e.es_se for e in estimates])

        qc = self.contribution_level
        out["risk_contribution"], out["risk_contribution_se"] = contribution_estimate(self._contribution_tail, n, qc, self._tail.loss)
        out["risk_contribution_level"] = np.asarray(qc)

        phi, phi_se, phi_defined = phi_correlation_with_se(self._joint_defaults, np.diag(self._joint_defaults), n)
        out["default_correlation"], out["default_correlation_se"] = phi, phi_se
        out["default_correlation_defined"] = phi_defined

        spread, spread_se, spread_defined = ratio_with_se(
            mean[:, _LOSS], mean[:, _ANNUITY], cov[:, _LOSS, _LOSS], cov[:, _LOSS, _ANNUITY], cov[:, _ANNUITY, _ANNUITY], n
        )
        out["breakeven_spread_bps"], out["breakeven_spread_bps_se"] = spread * BPS, spread_se * BPS
        out["breakeven_spread_defined"] = spread_defined
        out["risky_annuity"] = mean[:, _ANNUITY].copy()  # the desk's tranche spreads divide by it (gpusim.desk)
        out["risky_annuity_se"] = np.sqrt(cov[:, _ANNUITY, _ANNUITY] / n)
        return out


def tail_capacity(q: float, expected_paths: int) -> int:
    """Order statistics needed for exact VaR and ES at level q: ceil((1 - q) N) + 1."""
    return min(expected_paths, math.ceil((1 - Fraction(repr(float(q)))) * expected_paths) + 1)
