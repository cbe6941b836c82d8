"""The slot table: which random slot of a step feeds which model variable (docs/model.md 3).

Defined once here: the named draws of a step (`market.Draws`, `market.draw_step`, the Pallas
kernel) are read off `SLOT_ENTRIES` and the offsets of `SlotTable`, and the CUDA kernels receive
the same offsets as compile-time constants of the generated header. Entries are laid out in the
order of `SLOT_ENTRIES`; adding a variable appends an entry, so existing offsets never move
for a given config shape. Normal entries start on an even slot, because normals come from
Box-Muller pairs (2i, 2i+1): the normal at slot s is the cosine draw of pair s//2 when s is
even and the sine draw when odd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["uniform", "normal"]


@dataclass(frozen=True)
class SlotEntry:
    name: str
    kind: Kind
    count_of: str  # which shape dimension sets the count: "one", "two", "assets", "borrowers", "tenants", "access"
    meaning: str

    @property
    def per_path(self) -> bool:
        """One draw per path (shape (n,)) rather than a row per component (shape (count, n))."""
        return self.count_of == "one"


SLOT_ENTRIES: tuple[SlotEntry, ...] = (
    SlotEntry("regime", "uniform", "one", "Markov draw of R_{k+1} at the end of the step"),
    SlotEntry("random_launch", "uniform", "one", "Bernoulli draw of an unscheduled GPU generation launch"),
    SlotEntry("jump_count", "uniform", "assets", "Poisson jump count of each crypto asset (inverse CDF)"),
    SlotEntry("crypto_diffusion", "normal", "assets", "independent normals, correlated by the regime's Cholesky factor"),
    SlotEntry("jump_size", "normal", "assets", "Z_J of each asset: jump sum = N mu_J + sqrt(N) sigma_J Z_J"),
    SlotEntry("market_shocks", "normal", "two", "row 0: own part of Z_X (OU shock of rental rates); row 1: Z_P (power price)"),
    SlotEntry("revenue_shock", "normal", "borrowers", "eps^b: each borrower's log-OU revenue shock"),
    SlotEntry("hashrate_shock", "normal", "one", "Z_H: shock of the log network hashrate"),
    SlotEntry("tenant_default", "uniform", "tenants", "Bernoulli draw of each tenant's default in the step"),
    SlotEntry("market_access", "uniform", "access", "whether each borrower's capital-market window is open (none without market access)"),
)


@dataclass(frozen=True)
class SlotTable:
    """Offsets of each entry for one config shape."""

    offsets: dict[str, int]
    counts: dict[str, int]
    kinds: dict[str, Kind]
    n_slots: int

    @property
    def n_blocks(self) -> int:
        """Philox blocks per step (4 slots each)."""
        return -(-self.n_slots // 4)

    def rows(self, name: str) -> range:
        start = self.offsets[name]
        return range(start, start + self.counts[name])


def slot_table(n_assets: int, n_borrowers: int, n_tenants: int = 0, market_access: bool = False) -> SlotTable:
    """Lay out `SLOT_ENTRIES` for a config with this many assets, borrowers and tenants; the market
    access draws (one per borrower) exist only where some borrower has market access."""
    sizes = {"one": 1, "two": 2, "assets": n_assets, "borrowers": n_borrowers, "tenants": n_tenants, "access": n_borrowers * market_access}
    offsets: dict[str, int] = {}
    counts: dict[str, int] = {}
    kinds: dict[str, Kind] = {}
    cursor = 0
    for entry in SLOT_ENTRIES:
        count = sizes[entry.count_of]
        if entry.kind == "normal" and cursor % 2:
            cursor += 1
        offsets[entry.name], counts[entry.name], kinds[entry.name] = cursor, count, entry.kind
        cursor += count
    return SlotTable(offsets=offsets, counts=counts, kinds=kinds, n_slots=cursor)
