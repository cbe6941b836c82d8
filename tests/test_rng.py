"""The random-number contract of docs/model.md section 3 on the numpy reference."""

from __future__ import annotations

import array_api_compat.numpy as xnp
import numpy as np
import pytest
from kat_vectors import PHILOX_KAT

from gpusim.model import rng
from gpusim.model.slots import SLOT_ENTRIES, slot_table


@pytest.mark.parametrize("use_uint64", [True, False], ids=["uint64-multiply", "16-bit-limbs"])
@pytest.mark.parametrize(("counter", "key", "expected"), PHILOX_KAT)
def test_philox_known_answers(counter, key, expected, use_uint64):
    words = rng.philox4x32_10(counter, key, xnp, use_uint64=use_uint64)
    assert tuple(int(w) for w in words) == expected


def test_limb_multiply_matches_wide_multiply_on_random_counters():
    gen = np.random.default_rng(7)
    counter = tuple(gen.integers(0, 2**32, size=4096, dtype=np.uint64).astype(np.uint32) for _ in range(4))
    key = (0xDEADBEEF, 0x01234567)
    wide = rng.philox4x32_10(counter, key, xnp, use_uint64=True)
    narrow = rng.philox4x32_10(counter, key, xnp, use_uint64=False)
    for a, b in zip(wide, narrow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_step_words_follow_the_counter_layout():
    seed = (5 << 32) | 17
    words = rng.step_words(seed, path_start=2**32 - 2, n_paths=4, step=9, n_blocks=3, xp=xnp)
    assert words.shape == (12, 4) and words.dtype == np.uint32
    for i, p in enumerate(range(2**32 - 2, 2**32 + 2)):
        for block in range(3):
            expected = rng.philox4x32_10((p % 2**32, 9, block, p // 2**32), (17, 5), xnp)
            assert [int(words[4 * block + w, i]) for w in range(4)] == [int(x) for x in expected]


def test_step_words_do_not_depend_on_the_range_asked_for():
    whole = rng.step_words(3, 0, 100, 4, 2, xnp)
    part = rng.step_words(3, 37, 20, 4, 2, xnp)
    np.testing.assert_array_equal(whole[:, 37:57], part)


def test_uniform_formulas_are_exact_and_open():
    x = np.array([0, 1, 511, 512, 2**31, 2**32 - 1], dtype=np.uint32)
    u64 = rng.uniform(x, np.float64, xnp)
    np.testing.assert_array_equal(u64, (x.astype(np.float64) + 0.5) * 2.0**-32)
    u32 = rng.uniform(x, np.float32, xnp)
    assert u32.dtype == np.float32
    np.testing.assert_array_equal(u32, ((x >> 9).astype(np.float64) + 0.5) * 2.0**-23)
    assert (u32 > 0).all() and (u32 < 1).all() and (u64 > 0).all() and (u64 < 1).all()


def test_box_muller_gives_standard_normals():
    words = rng.step_words(11, 0, 200_000, 0, 1, xnp)
    u = rng.uniform(words, np.float64, xnp)
    z0, z1 = rng.box_muller(u[0], u[1], xnp)
    z = np.concatenate([z0, z1])
    n = z.size
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 4 * np.sqrt(2.0 / n)
    assert abs(np.corrcoef(z0, z1)[0, 1]) < 4 / np.sqrt(z0.size)
    assert abs((z**4).mean() - 3.0) < 4 * np.sqrt(96.0 / n)


@pytest.mark.parametrize("mean", [0.0, 0.05, 1.25, 4.0])
def test_poisson_inverse_cdf_matches_the_distribution(mean):
    u = rng.uniform(rng.step_words(2, 0, 100_000, 0, 1, xnp)[0], np.float64, xnp)
    counts = rng.poisson_inverse_cdf(u, rng.poisson_cdf_table(np.array(mean)), xnp)
    n = counts.size
    assert counts.max() <= rng.POISSON_CAP
    assert abs(counts.mean() - mean) < 4 * np.sqrt(max(mean, 1e-12) / n) + 1e-12
    assert abs(counts.var() - mean) < 5 * np.sqrt((mean + 2 * mean**2) / n) + 1e-12


def test_poisson_is_capped():
    cdf = rng.poisson_cdf_table(np.array(40.0))
    counts = rng.poisson_inverse_cdf(np.array([0.5, 0.999]), cdf, xnp)
    assert (counts == rng.POISSON_CAP).all()


def test_poisson_inverse_cdf_is_the_smallest_n_with_cdf_at_least_u():
    cdf = rng.poisson_cdf_table(np.array(1.3))
    u = np.concatenate([cdf[:5], np.nextafter(cdf[:5], 1.0), [1e-9]])
    counts = rng.poisson_inverse_cdf(u, cdf, xnp)
    expected = [min(n for n in range(16) if cdf[n] >= x) for x in u]
    np.testing.assert_array_equal(counts, expected)


def test_slot_table_layout_is_stable_and_pairs_normals():
    table = slot_table(n_assets=2, n_borrowers=3)
    assert [e.name for e in SLOT_ENTRIES][:2] == ["regime", "random_launch"]
    assert table.offsets["regime"] == 0 and table.offsets["random_launch"] == 1
    used: set[int] = set()
    for entry in SLOT_ENTRIES:
        rows = set(table.rows(entry.name))
        assert not rows & used, f"{entry.name} overlaps another entry"
        used |= rows
        if entry.kind == "normal":
            assert table.offsets[entry.name] % 2 == 0, "normals start a Box-Muller pair"
    # adding borrowers only appends: every slot laid out before the first per-borrower entry keeps
    # its offset (entries appended after it, such as the hashrate shock, move with the borrowers)
    bigger = slot_table(n_assets=2, n_borrowers=16)
    first_borrower_entry = next(i for i, e in enumerate(SLOT_ENTRIES) if e.count_of == "borrowers")
    market = [e.name for e in SLOT_ENTRIES[:first_borrower_entry]]
    assert all(bigger.offsets[m] == table.offsets[m] for m in market)
    assert table.n_blocks == -(-table.n_slots // 4)
