"""What the engine sizes chunks by: the host's free memory and cores, and the working memory
one path of the array model holds during a step.

A module of its own so that backends import it without importing the registry in
`gpusim/backends/__init__`, which imports the backends. The per-path figures are estimates
for choosing a chunk size, not exact allocations.
"""

from __future__ import annotations

import os

from gpusim.model.params import Layout

PHILOX_WORDS_PER_BLOCK = 4
"""Philox4x32 returns four 32-bit words per counter block."""

PHILOX_WORD_BYTES = 8
"""A word in flight is held as uint64 (the 32x32->64 multiply of each round)."""

PHILOX_ARRAYS_IN_FLIGHT = 4
"""Arrays of a step's Philox words alive at once while the rounds run."""

FAN_INDEX_BYTES = 8 * 16
"""Per path: 16 int64 values of fan-chart bin indices and counters."""


def host_available_bytes() -> int:
    """MemAvailable from /proc/meminfo, or physical memory where that file does not exist."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_count() -> int:
    """Cores the operating system reports, at least 1."""
    return os.cpu_count() or 1


def item_bytes(dtype: str) -> int:
    """Bytes of one float of the run's dtype."""
    return 4 if dtype == "float32" else 8


def market_width(layout: Layout) -> int:
    """Floats per path of the market state and the observed factors, estimated as one per
    asset, four per generation and six scalars."""
    return layout.n_assets + 4 * layout.n_generations + 6


def array_model_bytes_per_path(layout: Layout, dtype: str, market_arrays: int, credit_bytes: int = 0) -> int:
    """Working memory of one path of the array model: the step's random words, `market_arrays`
    float arrays of the market's width, the backend's credit state and the fan indices."""
    philox = PHILOX_WORD_BYTES * PHILOX_WORDS_PER_BLOCK * layout.slots.n_blocks * PHILOX_ARRAYS_IN_FLIGHT
    return philox + item_bytes(dtype) * market_arrays * market_width(layout) + credit_bytes + FAN_INDEX_BYTES
