"""Philox4x32-10 known-answer vectors, read from tests/data (a copy of Random123's kat_vectors).

One source for every implementation's test (numpy reference, host-compiled CUDA kernels).
"""

from __future__ import annotations

from pathlib import Path

KAT_FILE = Path(__file__).parent / "data" / "philox4x32_10_kat.txt"


def load_philox_kat() -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(counter[4], key[2], expected[4]) for each philox4x32 10 line."""
    vectors = []
    for line in KAT_FILE.read_text().splitlines():
        if not line.startswith("philox4x32 10 "):
            continue
        words = tuple(int(x, 16) for x in line.split()[2:])
        assert len(words) == 10, line
        vectors.append((words[:4], words[4:6], words[6:]))
    assert len(vectors) == 3, f"expected 3 philox4x32-10 vectors in {KAT_FILE}"
    return vectors


PHILOX_KAT = load_philox_kat()
