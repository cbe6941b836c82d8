// constants.cuh: the constants the kernels share with the Python model, in one block.
//
// Each one is a copy of a Python constant (named beside it) until the generated header of
// constants (gpusim/backends/kernel_config.py) provides them under GPUSIM_SHARED_CONSTANTS; then
// this block is skipped and the names below come from the generator. The layout-dependent ones
// (saved-path columns) need the config header (config.cuh) to be included before this file.
#pragma once

#ifndef GPUSIM_SHARED_CONSTANTS
namespace gpusim {
namespace cfg {

// Default reasons, indices into credit.REASONS ("none" is 0).
constexpr int REASON_PAYMENT = 1;
constexpr int REASON_COVENANT_DSCR = 2;
constexpr int REASON_COVENANT_LTV = 3;
constexpr int REASON_MATURITY = 4;
constexpr int NO_DEFAULT = -1;                     // credit.NO_DEFAULT: default step of a living borrower
constexpr double UNBOUNDED_RATIO = 1e9;            // credit.UNBOUNDED_RATIO: LTV with nothing of value behind the debt
constexpr double DSCR_WITHOUT_DEBT_SERVICE = 1e9;  // credit.DSCR_WITHOUT_DEBT_SERVICE: DSCR with no debt service due
constexpr double HOURS_PER_YEAR = 8760.0;          // params.HOURS_PER_YEAR
constexpr double DAYS_PER_YEAR = 365.0;            // borrowers.DAYS_PER_YEAR
constexpr int POISSON_CAP = 16;                    // rng.POISSON_CAP: entries of a jump-count CDF table

#ifdef GPUSIM_REAL
// Columns of the saved factor paths (kernel_config.saved_columns): the MarketView fields in
// order, one column per component, one for a per-path scalar.
constexpr int SAVE_COL_CRYPTO = 0;
constexpr int SAVE_COL_RENTAL_RATE = SAVE_COL_CRYPTO + N_ASSETS;
constexpr int SAVE_COL_UTILIZATION = SAVE_COL_RENTAL_RATE + N_GENERATIONS;
constexpr int SAVE_COL_POWER_PRICE = SAVE_COL_UTILIZATION + 1;
constexpr int SAVE_COL_GPU_VALUE = SAVE_COL_POWER_PRICE + 1;
constexpr int SAVE_COL_GPU_MARK = SAVE_COL_GPU_VALUE + N_GENERATIONS;
constexpr int SAVE_WIDTH = SAVE_COL_GPU_MARK + N_GENERATIONS;
static_assert(SAVE_WIDTH == SAVED_WIDTH, "saved columns differ from kernel_config.saved_width");
#endif

}  // namespace cfg
}  // namespace gpusim
#endif  // GPUSIM_SHARED_CONSTANTS
