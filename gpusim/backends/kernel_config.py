"""What the fused CUDA kernels of kernels/ need from a `RunSpec`, without cupy.

The kernels are compiled once per config shape and dtype: the sizes (assets, generations,
borrowers, instruments, steps, DSCR window), the slot table, the portfolio structure (owners,
ranks, collateral) and the fan-chart layout become compile-time constants of a generated header,
`config_header`. The numbers (MarketParams, CreditParams, fan offsets) travel as one flat array of
the working dtype, `pack_params`, at offsets the header names. The cupy backend and the host-C++
tests (tests/test_kernels_model_host.py) build both from here, so they compile the same kernel.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpusim.model import constants
from gpusim.model.constants import DefaultReason
from gpusim.model.factor_table import OBSERVED_FACTORS, saved_columns, saved_width
from gpusim.model.params import FUNDING_SOURCES, CreditParams, Layout, MarketParams
from gpusim.spec import ChunkResult, CreditOutcomes, RunSpec
from gpusim.statistics import N_BINS, bin_offset

KERNEL_SOURCES = (
    "constants.cuh",
    "philox.cuh",
    "math.cuh",
    "draws.cuh",
    "market.cuh",
    "borrowers.cuh",
    "debt.cuh",
    "credit.cuh",
    "simulate.cu",
    "draws_only.cu",
)

SHARED_COUNTER_BYTES = 16384
"""Shared memory a block may use for its (steps+1) x borrowers counters of defaulted borrowers'
fan counts; beyond it (long weekly horizons, many borrowers) they go straight to global memory."""


def kernels_dir() -> Path:
    """The directory of the CUDA sources (shipped as the package data gpusim.kernels)."""
    return Path(str(importlib.resources.files("gpusim.kernels")))


@dataclass(frozen=True)
class FanLayout:
    """Where each fan factor's bins sit in the kernel's per-step histogram (as FanCounter)."""

    fans: tuple[str, ...]
    first_bin: dict[str, int]
    first_component: dict[str, int]  # index of the factor's first component in the flat bin offsets
    components: dict[str, int]
    total_bins: int

    def split(self, counts: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
        """(steps+1, total_bins) counts -> one (steps+1, C, n_bins+1) view per factor, in the
        kernel's integer type (ChunkResult allows any; the engine adds them into its totals)."""
        counts = np.asarray(counts)
        out = {}
        for name in self.fans:
            start, width = self.first_bin[name], self.components[name] * (n_bins + 1)
            out[name] = counts[:, start : start + width].reshape(counts.shape[0], self.components[name], n_bins + 1)
        return out


def fan_layout(spec: RunSpec) -> FanLayout:
    first, first_component, components, total, n_components = {}, {}, {}, 0, 0
    for name in spec.fans:
        binning = spec.binnings[name]
        assert binning.n_bins == N_BINS, "the kernel bins on the N_BINS grid"
        first[name], first_component[name], components[name] = total, n_components, binning.n_components
        total += binning.n_components * binning.bins_per_component
        n_components += binning.n_components
    return FanLayout(spec.fans, first, first_component, components, total)


def _fan_arrays(spec: RunSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-component bin offsets and per-factor 1/width, in FanLayout order (bin_index's numbers)."""
    offsets = np.concatenate([bin_offset(spec.binnings[name]) for name in spec.fans])
    inverse_widths = np.array([1.0 / spec.binnings[name].width for name in spec.fans])
    return offsets, inverse_widths


def derived_tables(spec: RunSpec, market: MarketParams) -> list[tuple[str, np.ndarray]]:
    """Numbers that depend only on the regime or the step, which the kernels read instead of
    evaluating an exp per path and step: the income and cost discount factors a_R, d_R and their
    powers a_R^n, d_R^n over the life n left at t_k, (steps+1, 2, G) (market.income_value, where
    rent pays to the end of life), the network hashrate trend H_0 exp(g_d t_k) (market.network_hashrate_trend)
    and the shocked market depth D^g_R exp(s^D,g_k) (market.shocked_depth), (steps+1, 2, G). The
    same float64 operations as the array-API model's, so the float64 kernel reads its numbers bit for bit.
    With borrowers: which of them have an instrument with a covenant test at some step (B,), the
    others' covenant phase having nothing to do; the contracted share s_g e_g of each step (K, B, G)
    (borrowers.contracted_share; e_g is 0 or 1, so the product is exact in any dtype); the GPUs of
    t_0 pledged to each instrument (I, G) (debt.pledged_fleet_weights, what collateral_value marks
    without capex orders)."""
    steps = np.arange(spec.layout.n_steps + 1, dtype=np.float64)
    depth, depth_shock = np.asarray(market.market_depth, dtype=np.float64), np.asarray(market.shock_market_depth, dtype=np.float64)
    log_a, log_d = np.asarray(market.log_income_discount, dtype=np.float64), np.asarray(market.log_cost_discount, dtype=np.float64)
    life_left = np.maximum(np.floor(np.asarray(market.life_end_step, dtype=np.float64)[None, :] - steps[:, None]), 0.0)  # (steps+1, G)
    credit_tables = []
    if spec.has_credit:
        assert spec.credit is not None
        c, layout = spec.credit, spec.layout
        tested = np.asarray(c.covenant_test, dtype=np.float64).max(axis=0, initial=0.0)  # (I,)
        owner = list(layout.instrument_owner)
        credit_tables = [
            ("D_covenanted", np.array([tested[list(layout.instruments_of(b))].max(initial=0.0) for b in range(layout.n_borrowers)])),
            ("D_contracted_share", np.asarray(c.contracted_share, dtype=np.float64) * np.asarray(c.contract_active, dtype=np.float64)),
            ("D_pledged_gpus", np.asarray(c.collateral_fleet, dtype=np.float64) * np.asarray(c.fleet_count, dtype=np.float64)[owner]),
        ]
    return [
        *credit_tables,
        ("D_income_discount", np.exp(log_a)),
        ("D_cost_discount", np.exp(log_d)),
        ("D_income_discount_life", np.exp(life_left[:, None, :] * log_a[None, :, None])),
        ("D_cost_discount_life", np.exp(life_left[:, None, :] * log_d[None, :, None])),
        ("D_hashrate_trend", np.exp(np.float64(market.log_hashrate0) + np.float64(market.hashrate_trend_step) * steps)),
        ("D_market_depth", depth[None, :, :] * np.exp(depth_shock)[:, None, :]),
    ]


def _param_fields(spec: RunSpec, market: MarketParams) -> list[tuple[str, np.ndarray]]:
    fields = [(f"M_{name}", np.asarray(value, dtype=np.float64)) for name, value in zip(MarketParams._fields, market, strict=True)]
    if spec.has_credit:
        assert spec.credit is not None
        credit: CreditParams = spec.credit
        fields += [(f"C_{name}", np.asarray(value, dtype=np.float64)) for name, value in zip(CreditParams._fields, credit, strict=True)]
    offsets, inverse_widths = _fan_arrays(spec)
    return [*fields, *derived_tables(spec, market), ("F_offset", offsets), ("F_inverse_width", inverse_widths)]


def param_offsets(spec: RunSpec) -> dict[str, int]:
    """Offset of each parameter array in the flat array of `pack_params` (same for any market)."""
    offsets, cursor = {}, 0
    for name, value in _param_fields(spec, spec.market):
        offsets[name] = cursor
        cursor += value.size
    return offsets


def pack_params(spec: RunSpec, market: MarketParams, dtype: np.dtype) -> np.ndarray:
    """All parameters, flattened in row-major order and cast to the working dtype as `cast_params` does."""
    return np.concatenate([value.reshape(-1) for _, value in _param_fields(spec, market)]).astype(dtype)


SHARED_CONSTANTS = ("NO_DEFAULT", "UNBOUNDED_RATIO", "DSCR_WITHOUT_DEBT_SERVICE", "HOURS_PER_YEAR", "DAYS_PER_YEAR", "POISSON_CAP")
"""The numbers of gpusim.model.constants that the kernels use, by name."""


def _constant(name: str, value: int | float) -> str:
    """A C++ constant of the Python number's type; repr keeps every bit of a float."""
    return f"constexpr {'int' if isinstance(value, int) else 'double'} {name} = {value!r};"


def constants_header() -> str:
    """kernels/constants.cuh: default-reason codes and the model's fixed numbers, the same for
    every config shape, generated from gpusim.model.constants (a test keeps the shipped file equal)."""
    lines = [
        "// generated by gpusim.backends.kernel_config.constants_header from gpusim/model/constants.py:",
        "// do not edit; regenerate with python -m gpusim.backends.kernel_config",
        "#pragma once",
        "namespace gpusim {",
        "namespace cfg {",
        *(_constant(f"REASON_{reason.name}", reason.value) for reason in DefaultReason),
        *(_constant(name, getattr(constants, name)) for name in SHARED_CONSTANTS),
        "}  // namespace cfg",
        "}  // namespace gpusim",
    ]
    return "\n".join(lines) + "\n"


def saved_column_constants(layout: Layout) -> list[str]:
    """First column of each observed factor in a saved row, and the row's width (factor_table.saved_columns)."""
    columns = saved_columns(layout)
    first = {name: column if isinstance(column, int) else column.start for name, column in columns.items()}
    return [
        *(f"constexpr int SAVE_COL_{factor.name.upper()} = {first[factor.name]};" for factor in OBSERVED_FACTORS),
        f"constexpr int SAVE_WIDTH = {saved_width(layout)};",
    ]


def _int_array(name: str, values: list[int]) -> str:
    body = ", ".join(str(v) for v in values) if values else "0"
    return f"GPUSIM_TABLE int {name}[{max(len(values), 1)}] = {{{body}}};"


def config_header(spec: RunSpec) -> str:
    """The generated header of compile-time constants for the kernels (the model headers of kernels/ read it)."""
    layout = spec.layout
    slots = layout.slots
    fans = fan_layout(spec)
    B, I, G, A = layout.n_borrowers, layout.n_instruments, layout.n_generations, layout.n_assets  # noqa: E741
    has_credit = spec.has_credit
    real = "double" if spec.dtype == "float64" else "float"
    defaulted_in_shared = has_credit and 4 * (layout.n_steps + 1) * B <= SHARED_COUNTER_BYTES
    lines = [
        # no scenario name: scenarios of one shape (a batch of stress variants) share one compile
        f"// generated by gpusim.backends.kernel_config: one config shape, {spec.dtype}",
        "#pragma once",
        "#ifdef __CUDACC__",
        "#define GPUSIM_TABLE __constant__",
        "#else",
        "#define GPUSIM_TABLE static const",
        "#endif",
        f"#define GPUSIM_REAL {real}",
        f"#define GPUSIM_HAS_CREDIT {int(has_credit)}",
        "namespace gpusim { namespace cfg {",
        f"constexpr int N_STEPS = {layout.n_steps};",
        f"constexpr int N_ASSETS = {A};",
        f"constexpr int N_GENERATIONS = {G};",
        f"constexpr int N_BORROWERS = {B if has_credit else 0};",
        f"constexpr int N_INSTRUMENTS = {I if has_credit else 0};",
        f"constexpr int WINDOW = {layout.window_steps};",
        f"constexpr int BTC = {layout.btc_index};",
        f"constexpr int MAX_LAUNCHES = {layout.max_launches_per_step};",
        f"constexpr int LAUNCH_DROP_LAST = {np.asarray(spec.market.launch_drop).shape[0] - 1};",
        f"constexpr double DT = {layout.dt!r};",
        f"constexpr int N_SLOTS = {slots.n_slots};",
        f"constexpr int N_BLOCKS = {slots.n_blocks};",
        *(f"constexpr int SLOT_{name.upper()} = {slots.offsets[name]};" for name in slots.offsets),
        f"constexpr int N_BINS = {N_BINS};",
        f"constexpr int FAN_TOTAL_BINS = {fans.total_bins};",
        *saved_column_constants(layout),
        f"constexpr bool DEFAULTED_IN_SHARED = {str(defaulted_in_shared).lower()};",
        *(f"constexpr int FAN_{name.upper()} = {fans.first_bin[name]};" for name in fans.fans),
        *(f"constexpr int FAN_INDEX_{name.upper()} = {i};" for i, name in enumerate(fans.fans)),
        *(f"constexpr int FAN_COMPONENT_{name.upper()} = {fans.first_component[name]};" for name in fans.fans),
        *(f"constexpr int P_{name} = {offset};" for name, offset in param_offsets(spec).items()),
    ]
    if has_credit:
        members = [layout.instruments_of(b) for b in range(B)]
        assert all(m and list(m) == list(range(m[0], m[-1] + 1)) for m in members), "instruments are grouped by borrower"
        ranks = sorted(set(layout.seniority))
        lines += [
            _int_array("FIRST_INSTRUMENT", [m[0] for m in members] + [I]),
            _int_array("SENIORITY", list(layout.seniority)),
            f"constexpr int N_RANKS = {len(ranks)};",
            _int_array("RANKS", ranks),
            _int_array("COLLATERAL_FLEET", [int(g in layout.collateral_fleets[i]) for i in range(I) for g in range(G)]),
            _int_array("COLLATERAL_ASSET", [int(a in layout.collateral_assets[i]) for i in range(I) for a in range(A)]),
            f"constexpr int N_TENANTS = {layout.n_tenants};",
            _int_array("FIRST_TENANT", [len([t for t in layout.tenant_owner if t < b]) for b in range(B + 1)]),
            _int_array("TENANT_GENERATION", list(layout.tenant_generation)),
            *data_centre_constants(layout),
            *capex_constants(layout),
        ]
    lines.append("}}  // namespace gpusim::cfg")
    return "\n".join(lines) + "\n"


def data_centre_constants(layout: Layout) -> list[str]:
    """The data centres of each borrower (FIRST_DATA_CENTRE) and their pledges (COLLATERAL_DATA_CENTRE, I x D)."""
    D = layout.n_data_centres
    return [
        f"constexpr int N_DATA_CENTRES = {D};",
        _int_array("FIRST_DATA_CENTRE", [len([o for o in layout.data_centre_owner if o < b]) for b in range(layout.n_borrowers + 1)]),
        _int_array(
            "COLLATERAL_DATA_CENTRE", [int(d in layout.collateral_data_centres[i]) for i in range(layout.n_instruments) for d in range(D)]
        ),
    ]


def capex_constants(layout: Layout) -> list[str]:
    """Compile-time tables of the capex orders and market access (docs/model.md 5.9, 7.10): each
    order's owner, generation, facility, and funding sources in order (padded with -1)."""
    width = len(FUNDING_SOURCES)
    funding = [code for sources in layout.order_funding for code in (*sources, *[-1] * (width - len(sources)))]
    return [
        f"constexpr int N_ORDERS = {layout.n_orders};",
        f"constexpr bool HAS_MARKET_ACCESS = {str(layout.market_access).lower()};",
        f"constexpr bool LATER_TENANTS = {str(layout.later_tenants).lower()};",
        f"constexpr bool MINER_ORDERS = {str(layout.miner_orders).lower()};",
        f"constexpr int MAX_FUNDING = {width};",
        *(f"constexpr int FUNDING_{name.upper()} = {code};" for code, name in enumerate(FUNDING_SOURCES)),
        _int_array("ORDER_OWNER", list(layout.order_owner)),
        _int_array("ORDER_GENERATION", list(layout.order_generation)),
        _int_array("ORDER_FACILITY", list(layout.order_facility)),
        _int_array("ORDER_MINERS", list(layout.order_miners)),
        _int_array("ORDER_FUNDING", funding),
        _int_array("ISSUANCE_INSTRUMENT", list(layout.issuance_instrument) or [-1] * layout.n_borrowers),
    ]


def source_digest(header: str) -> str:
    """Key of one compiled kernel: the generated header and every kernel source it includes."""
    digest = hashlib.sha256(header.encode())
    for name in KERNEL_SOURCES:
        digest.update((kernels_dir() / name).read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class KernelBuffers:
    """The output arrays of one simulate_paths launch (numpy or cupy), in the kernel's layout."""

    default_step: Any  # (B, n) int16
    reason: Any  # (B, n) int8
    loss: Any  # (I, n) discounted loss
    exposure: Any  # (I, n)
    annuity: Any  # (I, n)
    loss_nominal: Any  # (n,) portfolio nominal loss
    fan_counts: Any  # (steps+1, total_bins) uint32
    tight_count: Any  # (steps+1,) uint32
    saved: Any  # (n_saved, steps+1, SAVE_WIDTH)
    saved_regime: Any  # (n_saved, steps+1) int8

    def kernel_args(self) -> tuple[Any, ...]:
        """The buffers in simulate_paths' argument order (after prm)."""
        return (
            self.default_step,
            self.reason,
            self.loss,
            self.exposure,
            self.annuity,
            self.loss_nominal,
            self.fan_counts,
            self.tight_count,
            self.saved,
            self.saved_regime,
        )


def allocate_buffers(spec: RunSpec, n_paths: int, n_saved: int, record: bool, xp: Any) -> KernelBuffers:
    """Zeroed outputs for one launch; without `record` the fan, regime and saved buffers are empty."""
    layout = spec.layout
    dtype = np.dtype(spec.dtype)
    B = layout.n_borrowers if spec.has_credit else 0
    I = layout.n_instruments if spec.has_credit else 0  # noqa: E741
    steps = layout.n_steps + 1
    fans = fan_layout(spec).total_bins if record else 0
    return KernelBuffers(
        default_step=xp.zeros((B, n_paths), dtype=np.int16),
        reason=xp.zeros((B, n_paths), dtype=np.int8),
        loss=xp.zeros((I, n_paths), dtype=dtype),
        exposure=xp.zeros((I, n_paths), dtype=dtype),
        annuity=xp.zeros((I, n_paths), dtype=dtype),
        loss_nominal=xp.zeros((n_paths,), dtype=dtype),
        fan_counts=xp.zeros((steps if record else 0, fans), dtype=np.uint32),
        tight_count=xp.zeros((steps if record else 0,), dtype=np.uint32),
        saved=xp.zeros((n_saved if record else 0, steps, saved_width(layout)), dtype=dtype),
        saved_regime=xp.zeros((n_saved if record else 0, steps), dtype=np.int8),
    )


def outcomes_from_buffers(buffers: KernelBuffers) -> CreditOutcomes:
    """Per-path outcomes as transposed views of host buffers: path first, paths contiguous, as
    the numpy backend lays them out (so sums over paths add in numpy's order); money in float64
    (a copy only where the kernel computed in float32)."""
    return CreditOutcomes(
        default_step=buffers.default_step.T,
        default_reason=buffers.reason.T,
        loss=buffers.loss.T.astype(np.float64, copy=False),
        exposure=buffers.exposure.T.astype(np.float64, copy=False),
        risky_annuity=buffers.annuity.T.astype(np.float64, copy=False),
        portfolio_loss_nominal=buffers.loss_nominal.astype(np.float64, copy=False),
    )


def chunk_from_buffers(
    spec: RunSpec, path_start: int, n_paths: int, recorded: KernelBuffers, without_chain: KernelBuffers | None
) -> ChunkResult:
    """The ChunkResult of array_model.simulate_chunk from the host buffers of a launch's outputs
    (and of the attribution launch with the fire-sale chain off). The result keeps views of the
    buffers' outcomes and fan counts, so they must belong to this chunk alone; only the saved
    paths (at most the run's first save_paths) are copied out."""
    saved = {name: np.ascontiguousarray(recorded.saved[:, :, column]) for name, column in saved_columns(spec.layout).items()}
    saved["regime"] = np.ascontiguousarray(recorded.saved_regime)
    return ChunkResult(
        path_start=path_start,
        n_paths=n_paths,
        saved=saved,
        fan_counts=fan_layout(spec).split(recorded.fan_counts),
        tight_count=np.asarray(recorded.tight_count, dtype=np.int64),
        outcomes=outcomes_from_buffers(recorded) if spec.has_credit else None,
        outcomes_without_chain=outcomes_from_buffers(without_chain) if without_chain is not None and spec.has_credit else None,
    )


def saved_count(path_start: int, n_paths: int, save_paths: int) -> int:
    """Saved paths in this chunk: the run's first `save_paths` paths (as array_model)."""
    return max(0, min(n_paths, save_paths - path_start))


BENCH_CONFIG_PREAMBLE = """// bench_config.cuh: the generated constants (gpusim/backends/kernel_config.config_header) of
// configs/bench.yaml in float32, for compiling the kernels on their own (nvcc -ptx kernels/simulate.cu).
// Runs never use it: they compile with their own generated gpusim_config.cuh (config.cuh).
// tests/test_kernels_host.py checks that it is up to date.
"""


def write_shipped_headers(folder: Path) -> None:
    """Regenerate the two generated headers that ship with the kernel sources."""
    from gpusim.scenario import load_scenario
    from gpusim.spec import build_spec

    (folder / "constants.cuh").write_text(constants_header())
    (folder / "bench_config.cuh").write_text(BENCH_CONFIG_PREAMBLE + config_header(build_spec(load_scenario("bench"), "float32")))


if __name__ == "__main__":
    write_shipped_headers(kernels_dir())
