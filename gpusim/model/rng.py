"""Philox4x32-10 random streams, the contract of docs/model.md section 3.

Counter-based: the words for (path, step, block) are a pure function of the seed, so any
chunking, ordering or backend gives the same paths. Written against the array API; the
32x32->64 multiply uses uint64 where the namespace has it and 16-bit limbs otherwise (JAX
without x64), and both give identical words.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from gpusim.model.constants import POISSON_CAP

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF


def seed_key(seed: int) -> tuple[int, int]:
    """Split a 64-bit seed into the Philox key (low word first)."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed & MASK32, seed >> 32


def _has_uint64(xp: Any) -> bool:
    """Whether the namespace holds uint64 values (JAX only with x64 enabled).

    Decided from the dtype, which is static, so it also works while JAX traces a jit
    function (where comparing values would give a tracer, not a bool).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # JAX without x64 warns that it narrows the dtype
            probe = xp.asarray(2**40, dtype=xp.uint64)
    except Exception:  # JAX without x64 refuses or truncates
        return False
    if probe.dtype != xp.uint64:  # JAX without x64 silently narrows to uint32
        return False
    try:
        return bool(probe == 2**40)
    except Exception:  # a traced value under jit: the dtype above is genuinely uint64
        return True


def _mulhilo_u64(a: Any, m: int, xp: Any) -> tuple[Any, Any]:
    """hi and lo words of a*m with a held in uint64 (values < 2**32)."""
    p = a * m
    return p >> 32, p & MASK32


def _mulhilo_u16(a: Any, m: int, xp: Any) -> tuple[Any, Any]:
    """hi and lo words of a*m using only uint32 arithmetic (16-bit limbs)."""
    u32 = xp.uint32
    m_lo, m_hi = m & 0xFFFF, m >> 16
    a_lo = a & xp.asarray(0xFFFF, dtype=u32)
    a_hi = a >> xp.asarray(16, dtype=u32)
    ll = a_lo * xp.asarray(m_lo, dtype=u32)
    lh = a_lo * xp.asarray(m_hi, dtype=u32)
    hl = a_hi * xp.asarray(m_lo, dtype=u32)
    hh = a_hi * xp.asarray(m_hi, dtype=u32)
    s16 = xp.asarray(16, dtype=u32)
    mask = xp.asarray(0xFFFF, dtype=u32)
    mid = (ll >> s16) + (lh & mask) + (hl & mask)
    hi = hh + (lh >> s16) + (hl >> s16) + (mid >> s16)
    lo = a * xp.asarray(m, dtype=u32)
    return hi, lo


def philox4x32_10(counter: tuple[Any, Any, Any, Any], key: tuple[int, int], xp: Any, use_uint64: bool | None = None) -> tuple[Any, ...]:
    """Philox4x32-10 on broadcastable counter words; returns four uint32 arrays.

    The counter words may be arrays or Python ints (they broadcast); the key is two ints.
    `use_uint64` forces the multiply variant (both give identical words); None picks the
    faster one the namespace supports.
    """
    wide = _has_uint64(xp) if use_uint64 is None else use_uint64
    word = xp.uint64 if wide else xp.uint32
    mulhilo = _mulhilo_u64 if wide else _mulhilo_u16
    c0, c1, c2, c3 = (xp.asarray(c, dtype=word) for c in counter)
    k0, k1 = key
    for r in range(PHILOX_ROUNDS):
        if r:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = mulhilo(c0, PHILOX_M0, xp)
        hi1, lo1 = mulhilo(c2, PHILOX_M1, xp)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return tuple(xp.astype(c, xp.uint32) for c in (c0, c1, c2, c3))


def step_words(seed: int, path_start: int, n_paths: int, step: int, n_blocks: int, xp: Any) -> Any:
    """All random words of one step for a contiguous range of paths.

    Returns uint32 of shape (4 * n_blocks, n_paths): row s is slot s (word s mod 4 of block
    s div 4), counter (p mod 2**32, step, block, p div 2**32).
    """
    key = seed_key(seed)
    # path_start may be a traced scalar (JAX): only n_paths has to be a static size
    p = path_start + xp.arange(n_paths, dtype=xp.int64)
    c0 = xp.astype(p & MASK32, xp.uint32)
    c3 = xp.astype(p >> 32, xp.uint32)
    block = xp.reshape(xp.arange(n_blocks, dtype=xp.uint32), (n_blocks, 1))
    words = philox4x32_10((c0[None, :], step, block, c3[None, :]), key, xp)
    # (4, n_blocks, n) -> (n_blocks, 4, n) -> slots
    stacked = xp.stack(words, axis=1)
    return xp.reshape(stacked, (4 * n_blocks, n_paths))


def uniform(words: Any, dtype: Any, xp: Any) -> Any:
    """Uniforms in (0, 1), never 0 or 1: (x + 0.5) 2**-32 in float64, ((x >> 9) + 0.5) 2**-23 in float32."""
    if dtype == xp.float64:
        return (xp.astype(words, xp.float64) + 0.5) * 2.0**-32
    if dtype == xp.float32:
        shifted = xp.astype(words >> xp.asarray(9, dtype=xp.uint32), xp.float32)
        return (shifted + xp.asarray(0.5, dtype=xp.float32)) * xp.asarray(2.0**-23, dtype=xp.float32)
    raise ValueError(f"unsupported dtype {dtype}")


def box_muller(u0: Any, u1: Any, xp: Any) -> tuple[Any, Any]:
    """Two independent standard normals from two uniforms (slots 2i and 2i+1)."""
    radius = xp.sqrt(-2.0 * xp.log(u0))
    angle = (2.0 * math.pi) * u1
    return radius * xp.cos(angle), radius * xp.sin(angle)


def poisson_cdf_table(means: np.ndarray) -> np.ndarray:
    """CDF values F(0..POISSON_CAP-1) for each mean, in float64 (shape means.shape + (CAP,)).

    Computed once on the host so every backend compares against the same numbers.
    """
    means = np.asarray(means, dtype=np.float64)
    n = np.arange(POISSON_CAP)
    log_pmf = -means[..., None] + n * np.log(np.maximum(means[..., None], 1e-300)) - np.array([math.lgamma(k + 1.0) for k in n])
    pmf = np.where(means[..., None] > 0, np.exp(log_pmf), (n == 0).astype(np.float64))
    return np.minimum(np.cumsum(pmf, axis=-1), 1.0)


def poisson_inverse_cdf(u: Any, cdf: Any, xp: Any) -> Any:
    """Poisson count min{n : F(n) >= u}, capped at POISSON_CAP, as a float array.

    Counting the table entries below u is the inverse CDF without any branch on values. A 1-D
    table (one mean for every path) uses a binary search; a table of shape u.shape + (CAP,)
    gives each path its own mean.
    """
    if cdf.ndim == 1:
        return xp.astype(xp.searchsorted(cdf, u, side="left"), u.dtype)
    return xp.sum(xp.astype(cdf < u[..., None], u.dtype), axis=-1)
