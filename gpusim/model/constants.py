"""Numbers the model fixes by definition, named once for every backend.

The CUDA kernels receive the same values as compile-time constants from the generated header
(`gpusim.backends.kernel_config.config_header`), so Python and CUDA cannot drift apart.
"""

from __future__ import annotations

from enum import IntEnum


class DefaultReason(IntEnum):
    """Why a borrower defaulted (docs/model.md 7, step 9); the code stored per path and borrower.

    When several tests fail in the same step the first in this order is reported.
    """

    NONE = 0
    PAYMENT = 1
    COVENANT_DSCR = 2
    COVENANT_LTV = 3
    MATURITY = 4

    @property
    def label(self) -> str:
        """The reason as written in outputs and reports ("covenant_dscr")."""
        return self.name.lower()


REASONS: tuple[str, ...] = tuple(reason.label for reason in DefaultReason)
"""Labels of the default reasons, indexed by code."""

NO_DEFAULT = -1
"""Default step of a borrower that survives the horizon."""

UNBOUNDED_RATIO = 1e9
"""LTV reported for debt with nothing of value behind it (a test it always fails)."""

DSCR_WITHOUT_DEBT_SERVICE = 1e9
"""DSCR reported when no debt service fell due in the trailing window (a test it always passes)."""

HOURS_PER_YEAR = 8760.0
"""Hours in a model year: rents, power bills and GPU values are per hour."""

DAYS_PER_YEAR = 365.0
"""Days in a model year: mining revenue (hashprice) is quoted per day."""

POISSON_CAP = 16
"""Poisson jump counts are drawn by inverse CDF and capped at this value (docs/model.md 3)."""
