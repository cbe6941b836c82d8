"""Flat parameter arrays built once from a validated scenario.

Backends never read YAML or pydantic objects: they get a `Layout` (static sizes, names, the
slot table, the calendar) and a `MarketParams` of float64 numpy arrays, which each backend
casts to its own array type and dtype. Regime-dependent parameters have a leading axis of 2
(0 = easy, 1 = tight). Everything here is exact arithmetic on config numbers; the equations
that use them live in `market.py`, `borrowers.py`, `debt.py` and `credit.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gpusim.model.constants import HOURS_PER_YEAR
from gpusim.model.rng import poisson_cdf_table
from gpusim.model.shocks import shock_tables
from gpusim.model.slots import SlotTable, slot_table
from gpusim.scenario.calendar import add_months, event_step, step_holding, year_fraction
from gpusim.scenario.schema import Scenario


@dataclass(frozen=True)
class Layout:
    """Static shape and calendar of a scenario: what a compiled kernel would fix at build time."""

    scenario_name: str
    n_steps: int
    steps_per_year: int
    assets: tuple[str, ...]
    generations: tuple[str, ...]
    borrowers: tuple[str, ...]
    btc_index: int
    slots: SlotTable
    max_launches_per_step: int
    instruments: tuple[str, ...] = ()
    instrument_owner: tuple[int, ...] = ()  # borrower index of each instrument
    seniority: tuple[int, ...] = ()  # rank of each instrument, 1 = most senior
    borrower_types: tuple[str, ...] = ()
    collateral_fleets: tuple[tuple[int, ...], ...] = ()  # generations pledged to each instrument
    collateral_assets: tuple[tuple[int, ...], ...] = ()  # assets whose pledged share secures each instrument
    window_steps: int = 12  # steps in the trailing 12 months of the DSCR test
    facilities: tuple[int, ...] = ()  # instruments that are delayed-draw / ABL facilities
    ltv_covenanted: tuple[int, ...] = ()  # instruments with an LTV maintenance covenant
    tenant_owner: tuple[int, ...] = ()  # borrower index of each tenant contract (grouped by borrower)
    tenant_generation: tuple[int, ...] = ()  # generation of each gpu_hours tenant's GPUs (0 for colocation, which has none)
    covenant_remedies: tuple[int, ...] = ()  # instruments with a remedy of a covenant breach (waiver, cure, step-up, sweep)
    data_centre_owner: tuple[int, ...] = ()  # borrower index of each data centre (grouped by borrower)
    collateral_data_centres: tuple[tuple[int, ...], ...] = ()  # data centres pledged to each instrument
    distributions: tuple[int, ...] = ()  # borrowers that pay distributions to equity
    # dated capex and market access (docs/model.md 5.9, 7.10); O orders in borrower order
    order_owner: tuple[int, ...] = ()  # borrower index of each capex order
    order_generation: tuple[int, ...] = ()  # generation each order buys
    order_funding: tuple[tuple[int, ...], ...] = ()  # funding sources of each order in order: FUNDING_CASH, _FACILITY, _EQUITY
    order_facility: tuple[int, ...] = ()  # instrument drawn by each order's facility source, -1 for none
    order_miners: tuple[int, ...] = ()  # 1 for an order of miners (hashrate), 0 for GPUs
    issuance_instrument: tuple[int, ...] = ()  # per borrower: instrument new debt is issued into (market_access.debt), -1 for none
    market_access: bool = False  # some borrower has market access (the access draws exist)
    later_tenants: bool = False  # some GPU-hour tenant starts after t_0 (its GPUs leave the spot pool at its start)

    @property
    def miner_orders(self) -> bool:
        """Whether some capex order buys miners (then hashrate and miners' power are path state)."""
        return any(self.order_miners)

    @property
    def fleet_changes(self) -> bool:
        """Whether the GPUs at spot can change along a path (capex deliveries, tenants starting later)."""
        return self.n_orders > 0 or self.later_tenants

    @property
    def dt(self) -> float:
        return 1.0 / self.steps_per_year

    @property
    def time_years(self) -> np.ndarray:
        return np.arange(self.n_steps + 1, dtype=np.float64) * self.dt

    @property
    def n_assets(self) -> int:
        return len(self.assets)

    @property
    def n_generations(self) -> int:
        return len(self.generations)

    @property
    def n_borrowers(self) -> int:
        return len(self.borrowers)

    @property
    def n_instruments(self) -> int:
        return len(self.instruments)

    def instruments_of(self, borrower: int) -> tuple[int, ...]:
        return tuple(i for i, b in enumerate(self.instrument_owner) if b == borrower)

    @property
    def n_tenants(self) -> int:
        return len(self.tenant_owner)

    def tenants_of(self, borrower: int) -> tuple[int, ...]:
        return tuple(t for t, b in enumerate(self.tenant_owner) if b == borrower)

    @property
    def n_data_centres(self) -> int:
        return len(self.data_centre_owner)

    def data_centres_of(self, borrower: int) -> tuple[int, ...]:
        return tuple(d for d, b in enumerate(self.data_centre_owner) if b == borrower)

    @property
    def n_orders(self) -> int:
        return len(self.order_owner)


FUNDING_SOURCES = ("cash", "facility", "equity", "debt")
"""Codes of a capex order's funding sources (Layout.order_funding), in the config's spelling."""


class MarketParams(NamedTuple):
    """Market-factor parameters of docs/model.md section 4, pre-scaled to one step."""

    regime_initial_tight: Any  # () 0/1
    regime_switch_prob: Any  # (2,) per-step probability of leaving easy / leaving tight
    log_spot: Any  # (A,)
    crypto_drift_step: Any  # (2, A) (mu - sigma^2/2 - lambda kbar) dt
    crypto_vol_step: Any  # (2, A) sigma sqrt(dt)
    crypto_cholesky: Any  # (2, A, A)
    jump_cdf: Any  # (2, A, POISSON_CAP) Poisson CDF of the jump count per step
    jump_mean: Any  # (2, A)
    jump_std: Any  # (2, A)
    deflation_step: Any  # (2,) delta_R dt
    shock_decay: Any  # () exp(-kappa dt)
    shock_vol_step: Any  # () sigma_X sqrt((1 - exp(-2 kappa dt)) / (2 kappa))
    shock_corr_btc: Any  # (2,) rho_R
    log_rate0: Any  # (G,)
    util_max: Any  # ()
    util_level: Any  # (2,)
    util_sensitivity: Any  # ()
    generations_behind0: Any  # (G,) generations between g and the newest at t_0
    launch_drop: Any  # (M,) theta m^eta: log-drop for a generation m behind the newest after a launch
    scheduled_launches: Any  # (K,) launches in (t_k, t_k+1]
    random_launch_prob: Any  # () probability of an unscheduled launch in one step
    log_power0: Any  # ()
    log_power_mean: Any  # ()
    power_decay: Any  # ()
    power_vol_step: Any  # ()
    hours_per_step: Any  # ()
    kw_per_gpu: Any  # (G,)
    valuation_pue: Any  # ()
    valuation_deflation: Any  # () dbar
    log_income_discount: Any  # (2,) ln a = -(y_R + dbar) dt
    log_cost_discount: Any  # (2,) ln d = -y_R dt
    life_end_step: Any  # (G,) step index at which each generation's economic life ends
    scrap_value: Any  # (G,)
    market_depth: Any  # (2, G) GPUs a month
    exogenous_supply_step: Any  # (2, G) 12 dt q_exo: distressed GPUs a step from outside the portfolio
    mark_impact: Any  # () alpha_mark
    memory_decay: Any  # () exp(-dt / tau)
    integration_discount: Any  # () h_int
    price_impact: Any  # (2,) alpha_R
    crypto_slippage: Any  # (2, A) share of price lost selling crypto in a month
    # network hashrate H_k = exp(ln H_0 + trend_step k) exp(y_k), y the random deviation (docs/model.md 4.12)
    log_hashrate0: Any  # () ln H_0, H_0 in EH/s
    hashrate_trend_step: Any  # () g_d dt without a hashrate process, else 0
    hashrate_drift_step: Any  # (2,) m_R dt with a hashrate process, else 0
    hashrate_vol_step: Any  # () sigma_H sqrt(dt)
    hashrate_btc_elasticity: Any  # () e: response of ln H to the step's log BTC return
    chain: Any  # () 1: the fire-sale chain on; 0: off (the attribution pass, docs/model.md 8.9)
    # dated shock paths (docs/model.md 4.13): cumulative log change of each level at t_k, 0 without shocks
    shock_crypto: Any  # (K+1, A) ln price multiplier
    shock_rental_rate: Any  # (K+1, G) ln rent multiplier
    shock_utilization: Any  # (K+1,) change of logit(u / u_max)
    shock_power_price: Any  # (K+1,) ln power price multiplier
    shock_market_depth: Any  # (K+1, G) ln market depth multiplier


def _pair(by_regime: Any) -> list[float]:
    return [float(by_regime.easy), float(by_regime.tight)]


def per_step_probability(monthly: float, dt: float) -> float:
    """A monthly transition probability scaled to a step of dt years: 1 - (1 - p)^(12 dt)."""
    return 1.0 - (1.0 - monthly) ** (12.0 * dt)


def build_layout(s: Scenario) -> Layout:
    assets = tuple(a.name for a in s.crypto.assets)
    gens = [g.name for g in s.compute.generations]
    schedule = launch_schedule(s)
    max_launches = int(schedule.max(initial=0)) + (1 if s.compute.obsolescence.random_launch_rate > 0 else 0)
    return Layout(
        scenario_name=s.name,
        n_steps=s.time.n_steps,
        steps_per_year=s.time.steps_per_year,
        assets=assets,
        generations=tuple(g.name for g in s.compute.generations),
        borrowers=tuple(b.name for b in s.borrowers),
        btc_index=assets.index("BTC"),
        slots=slot_table(len(assets), len(s.borrowers), sum(len(b.tenants) for b in s.borrowers), has_market_access(s)),
        max_launches_per_step=max_launches,
        instruments=tuple(i.name for b in s.borrowers for i in b.debt),
        instrument_owner=tuple(bi for bi, b in enumerate(s.borrowers) for _ in b.debt),
        seniority=tuple(i.seniority for b in s.borrowers for i in b.debt),
        borrower_types=tuple(b.type for b in s.borrowers),
        collateral_fleets=tuple(tuple(gens.index(g) for g in i.collateral.fleets) for b in s.borrowers for i in b.debt),
        collateral_assets=tuple(tuple(assets.index(a) for a in i.collateral.crypto) for b in s.borrowers for i in b.debt),
        window_steps=s.time.steps_per_year,
        facilities=tuple(k for k, i in enumerate(i for b in s.borrowers for i in b.debt) if i.kind == "facility"),
        ltv_covenanted=tuple(
            k for k, i in enumerate(i for b in s.borrowers for i in b.debt) if i.covenants is not None and i.covenants.ltv_max is not None
        ),
        tenant_owner=tuple(bi for bi, b in enumerate(s.borrowers) for _ in b.tenants),
        tenant_generation=tuple(gens.index(t.generation) if t.generation else 0 for b in s.borrowers for t in b.tenants),
        covenant_remedies=tuple(k for k, i in enumerate(i for b in s.borrowers for i in b.debt) if has_remedy(i.covenants)),
        **data_centre_layout(s),
        **capex_layout(s),
    )


def data_centre_layout(s: Scenario) -> dict[str, Any]:
    """Layout of the data-centre assets (numbered over all borrowers, in borrower order), their
    pledges, and the borrowers that pay distributions."""
    first, owner = [], []
    for bi, b in enumerate(s.borrowers):
        first.append(len(owner))
        owner += [bi] * len(b.data_centres)
    pledged = []
    for bi, b in enumerate(s.borrowers):
        names = [d.name for d in b.data_centres]
        pledged += [tuple(first[bi] + names.index(d) for d in i.collateral.data_centres) for i in b.debt]
    return {
        "data_centre_owner": tuple(owner),
        "collateral_data_centres": tuple(pledged),
        "distributions": tuple(bi for bi, b in enumerate(s.borrowers) if b.distributions is not None),
    }


def debt_issuance_params(s: Scenario, dt: float) -> dict[str, Any]:
    """Per-borrower terms of new debt issued through the market window (docs/model.md 7.10): the
    step's gross limit, the cost share and the spread step-up by regime; zeros without it."""
    issuance = [b.market_access.debt if b.market_access is not None else None for b in s.borrowers]
    return {
        "debt_limit_step": np.array([0.0 if d is None else d.size_per_month * 12.0 * dt for d in issuance]),
        "debt_cost": np.array([0.0 if d is None else d.cost for d in issuance]),
        "debt_step_up": np.array([[0.0, 0.0] if d is None else list(d.spread_step_up.pair()) for d in issuance]).reshape(-1, 2).T,
    }


def has_market_access(s: Scenario) -> bool:
    """Whether some borrower has market access (then every borrower gets an access draw)."""
    return any(b.market_access is not None for b in s.borrowers)


def issuance_instruments(s: Scenario) -> tuple[int, ...]:
    """Per borrower, the index of the instrument its market_access.debt issues into, -1 for none."""
    names = [i.name for b in s.borrowers for i in b.debt]
    return tuple(
        names.index(b.market_access.debt.instrument) if b.market_access is not None and b.market_access.debt is not None else -1
        for b in s.borrowers
    )


def capex_layout(s: Scenario) -> dict[str, Any]:
    """Layout fields of the capex orders: owner, generation, funding sources and facility drawn."""
    gens = [g.name for g in s.compute.generations]
    names = [i.name for b in s.borrowers for i in b.debt]
    orders = [(bi, o) for bi, b in enumerate(s.borrowers) for o in b.capex]
    return {
        "order_owner": tuple(bi for bi, _ in orders),
        "order_generation": tuple(gens.index(o.generation) if o.kind == "gpus" else 0 for _, o in orders),
        "order_funding": tuple(tuple(FUNDING_SOURCES.index(f) for f in o.funding) for _, o in orders),
        "order_facility": tuple(names.index(o.facility) if o.facility is not None else -1 for _, o in orders),
        "order_miners": tuple(int(o.kind == "miners") for _, o in orders),
        "issuance_instrument": issuance_instruments(s),
        "market_access": has_market_access(s),
        "later_tenants": any(t.kind == "gpu_hours" and starts_later(t, s.time) for b in s.borrowers for t in b.tenants),
    }


def has_remedy(covenants: Any) -> bool:
    """Whether a covenant package has a remedy of a breach besides its cure periods."""
    if covenants is None:
        return False
    return (
        covenants.waiver_fee is not None
        or covenants.equity_cures > 0
        or covenants.breach_step_up > 0
        or covenants.cash_sweep_floor is not None
    )


def launch_schedule(s: Scenario) -> np.ndarray:
    """Number of scheduled launches falling in each step (t_k, t_k+1]."""
    counts = np.zeros(s.time.n_steps, dtype=np.int64)
    for launch in s.compute.obsolescence.launches:
        k = event_step(s.time, launch.date)
        if k is not None:
            counts[k] += 1
    return counts


def correlation_cholesky(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a correlation matrix; PSD-but-singular matrices via eigenvalues."""
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(matrix)
        root = v * np.sqrt(np.clip(w, 0.0, None))
        # QR of root^T gives a lower-triangular factor with the same product
        _, r = np.linalg.qr(root.T)
        lower = r.T
        return lower * np.sign(np.diag(lower))[None, :]


def build_market_params(s: Scenario) -> MarketParams:
    dt = s.time.dt
    assets = s.crypto.assets
    gens = s.compute.generations
    n_assets = len(assets)

    drift = np.array([_pair(a.drift) for a in assets]).T
    vol = np.array([_pair(a.vol) for a in assets]).T
    rate = np.array([_pair(a.jump_rate) for a in assets]).T
    jmean = np.array([_pair(a.jump_mean) for a in assets]).T
    jstd = np.array([_pair(a.jump_std) for a in assets]).T
    kbar = np.exp(jmean + 0.5 * jstd**2) - 1.0
    if s.crypto.correlation is None:
        chol = np.stack([np.eye(n_assets)] * 2)
    else:
        chol = np.stack([correlation_cholesky(np.asarray(m, dtype=float)) for m in s.crypto.correlation.pair()])

    shock = s.compute.shock
    kappa = shock.mean_reversion
    pw = s.power
    life_end = np.array(
        [year_fraction(s.time.start, g.release) * s.time.steps_per_year + g.economic_life_years * s.time.steps_per_year for g in gens]
    )
    n_gens = len(gens)
    obs = s.compute.obsolescence
    return MarketParams(
        regime_initial_tight=np.float64(s.regime.initial == "tight"),
        regime_switch_prob=np.array(
            [per_step_probability(s.regime.p_easy_to_tight, dt), per_step_probability(s.regime.p_tight_to_easy, dt)]
        ),
        log_spot=np.log([a.spot for a in assets]),
        crypto_drift_step=(drift - 0.5 * vol**2 - rate * kbar) * dt,
        crypto_vol_step=vol * math.sqrt(dt),
        crypto_cholesky=chol,
        jump_cdf=poisson_cdf_table(rate * dt),
        jump_mean=jmean,
        jump_std=jstd,
        deflation_step=np.array(_pair(s.compute.deflation)) * dt,
        shock_decay=np.float64(math.exp(-kappa * dt)),
        shock_vol_step=np.float64(shock.vol * math.sqrt((1.0 - math.exp(-2.0 * kappa * dt)) / (2.0 * kappa))),
        shock_corr_btc=np.array(_pair(shock.corr_btc)),
        log_rate0=np.log([g.rental_rate for g in gens]),
        util_max=np.float64(s.compute.utilization.max),
        util_level=np.array(_pair(s.compute.utilization.level)),
        util_sensitivity=np.float64(s.compute.utilization.sensitivity),
        generations_behind0=np.arange(n_gens - 1, -1, -1, dtype=np.float64),
        launch_drop=obs.drop * np.arange(n_gens + len(obs.launches) + s.time.n_steps + 2, dtype=np.float64) ** obs.curvature,
        scheduled_launches=launch_schedule(s).astype(np.float64),
        random_launch_prob=np.float64(1.0 - math.exp(-obs.random_launch_rate * dt)),
        log_power0=np.float64(math.log(pw.price)),
        log_power_mean=np.float64(math.log(pw.long_run)),
        power_decay=np.float64(math.exp(-pw.mean_reversion * dt)),
        power_vol_step=np.float64(pw.vol * math.sqrt((1.0 - math.exp(-2.0 * pw.mean_reversion * dt)) / (2.0 * pw.mean_reversion))),
        hours_per_step=np.float64(HOURS_PER_YEAR * dt),
        kw_per_gpu=np.array([g.kw_per_gpu for g in gens]),
        valuation_pue=np.float64(s.compute.valuation.pue),
        valuation_deflation=np.float64(s.compute.valuation.expected_deflation),
        log_income_discount=-(np.array(_pair(s.compute.valuation.discount_yield)) + s.compute.valuation.expected_deflation) * dt,
        log_cost_discount=-np.array(_pair(s.compute.valuation.discount_yield)) * dt,
        life_end_step=life_end,
        scrap_value=np.array([g.scrap_value for g in gens]),
        market_depth=np.array([_pair(g.market_depth) for g in gens]).T,
        exogenous_supply_step=np.array([_pair(g.exogenous_distressed_supply) for g in gens]).T * 12.0 * dt,
        mark_impact=np.float64(s.secondary_market.mark_impact),
        memory_decay=np.float64(math.exp(-dt / s.secondary_market.memory_years)),
        integration_discount=np.float64(s.secondary_market.integration_discount),
        price_impact=np.array(_pair(s.secondary_market.price_impact)),
        crypto_slippage=np.array([_pair(a.sale_slippage) for a in assets]).T,
        **hashrate_params(s),
        chain=np.float64(1.0),
        **shock_params(s),
    )


def shock_params(s: Scenario) -> dict[str, Any]:
    """MarketParams of the dated shock paths: the overlay tables of gpusim.model.shocks."""
    tables = shock_tables(s)
    return {f"shock_{name}": table for name, table in zip(tables._fields, tables, strict=True)}


def hashrate_params(s: Scenario) -> dict[str, Any]:
    """MarketParams of the network hashrate: a deterministic exp(g_d t) path without a hashrate
    process (the hashprice of configs without one is unchanged), else the process's drift and vol."""
    dt = s.time.dt
    process = s.mining.hashrate_process
    return {
        "log_hashrate0": np.float64(math.log(s.mining.network_hashrate)),
        "hashrate_trend_step": np.float64(s.mining.difficulty_growth * dt if process is None else 0.0),
        "hashrate_drift_step": np.zeros(2) if process is None else np.array(_pair(process.drift)) * dt,
        "hashrate_vol_step": np.float64(0.0 if process is None else process.vol * math.sqrt(dt)),
        "hashrate_btc_elasticity": np.float64(0.0 if process is None else process.btc_elasticity),
    }


def without_contagion(p: MarketParams) -> MarketParams:
    """The same market with the fire-sale chain switched off (docs/model.md 8.9): each defaulter's
    fire-sale price feels only its own dump, and the distressed-supply memory only the outside
    supply q_exo. Price impact and marks stay, so a lone borrower's outcomes do not change."""
    return p._replace(chain=np.float64(0.0))


def cast_params(params: NamedTuple, xp: Any, dtype: Any) -> Any:
    """The same parameters as arrays of namespace xp in the working dtype."""
    return type(params)(*(xp.asarray(np.asarray(v, dtype=np.float64), dtype=dtype) for v in params))


class CreditParams(NamedTuple):
    """Borrower and debt parameters of docs/model.md sections 5-6 as flat arrays.

    B borrowers, G generations, A assets, I instruments, K steps. Tables with a leading K
    (or K+1) axis are calendars evaluated once on the host; step k reads row k.
    """

    fleet_count: Any  # (B, G) GPUs
    contracted_share: Any  # (B, G)
    contract_rate: Any  # (B, G) USD per GPU-hour
    contract_active: Any  # (K, B, G) 1 while t_k is before the contract expiry
    book_value: Any  # (K+1, B, G) straight-line book value per GPU at t_k
    pue: Any  # (B,)
    power_price_ratio: Any  # (B,)
    fixed_opex_step: Any  # (B,) USD per step
    shock_decay: Any  # (B,) exp(-kappa_b dt)
    shock_vol_step: Any  # (B,) exact OU step volatility
    hashrate: Any  # (B,) PH/s
    mining_kw: Any  # (B,) kW drawn by the miners
    hashprice_per_btc: Any  # (K+1,) USD per PH/s per day per USD of BTC price, with halvings and difficulty
    cash0: Any  # (B,)
    treasury0: Any  # (B, A) units
    pledged_share: Any  # (B, A)
    min_liquidity: Any  # (B,) USD, 0 = none
    principal0: Any  # (I,)
    commitment: Any  # (I,) facility limit, 0 for other kinds
    advance_rate: Any  # (I,)
    is_facility: Any  # (I,) 0/1
    amortizes_level: Any  # (I,) 0/1
    amortizes_annuity: Any  # (I,) 0/1
    floating: Any  # (I,) 0/1
    coupon: Any  # (I,) fixed coupon or spread over base, per year
    payments_per_year: Any  # (I,)
    payment_due: Any  # (K, I) 1 if a scheduled payment date falls in (t_k, t_k+1]
    covenant_test: Any  # (K, I) 1 if a covenant test date falls in (t_k, t_k+1]
    maturity_step0: Any  # (I,) index k of the step (t_k, t_k+1] holding the maturity date (-1 if already past)
    base_rate: Any  # (K,) base rate at t_k
    discount: Any  # (K+1,) risk-free discount factor to t_0
    collateral_fleet: Any  # (I, G) 0/1: owner's fleet of generation g pledged
    collateral_crypto: Any  # (I, A) 0/1: owner's pledged treasury share of asset a pledged
    secured: Any  # (I,) 1 if anything is pledged to the instrument
    dscr_min: Any  # (I,) 0 = no DSCR covenant
    ltv_max: Any  # (I,) NO_COVENANT_LTV = no LTV covenant
    ltv_on_mark: Any  # (I,) 1 = mark basis, 0 = book basis
    cure_periods: Any  # (I,)
    refinanceable: Any  # (I,) 0/1
    refi_max_ltv: Any  # (I,)
    refi_min_dscr: Any  # (I,)
    refi_tenor_steps: Any  # (I,) tenor of a refinanced loan in steps
    refi_step_up: Any  # (I,) added to the coupon at refinancing
    workout_cost: Any  # () fraction of exposure
    # miners' curtailment (docs/model.md 5.4)
    curtails: Any  # (B,) 1 if the miners switch off when hashprice per kWh is below the power price
    breakeven_kwh_per_day: Any  # (B,) 24 e_b: kWh a day per PH/s; hashprice below this times the power price is a loss
    power_take_or_pay: Any  # (B,) share of the miners' power paid when curtailed
    # tenant contracts (docs/model.md 5.7); T tenants in borrower order
    free_fleet_count: Any  # (B, G) GPUs not leased to tenants: the fleet formulas of 5.2-5.5 apply to these
    tenant_active: Any  # (K, T) 1 while t_k is before the contract expiry
    tenant_contract_revenue: Any  # (K, T) USD per step while the tenant performs: rate escalated x GPU-hours or kW-months, 0 after expiry
    tenant_gpus: Any  # (T,) GPUs leased (0 for colocation)
    tenant_kw_per_gpu: Any  # (T,) kW per leased GPU (0 for colocation: the tenant pays its own power)
    tenant_spot_revenue: Any  # (T,) colocation: USD per step at the spot colocation rate (0 for gpu_hours)
    tenant_default_prob: Any  # (2, T) per-step default probability 1 - exp(-h_R dt), the backstop's hazard where there is one
    tenant_lag_steps: Any  # (T,) re-leasing lag in steps
    # refinancing window and the tight regime (docs/model.md 7.5)
    refi_window_steps: Any  # (I,) steps before maturity from which refinancing is attempted
    refi_in_tight: Any  # (I,) 0/1: lenders also refinance in the tight regime
    refi_step_up_tight: Any  # (I,) added to the coupon at a refinancing in the tight regime
    # covenant remedies (docs/model.md 7.4)
    waiver_fee: Any  # (I,) share of outstanding paid for a waiver in the easy regime
    has_waiver: Any  # (I,) 0/1
    equity_cures: Any  # (I,) sponsor equity cures available over the life
    breach_step_up: Any  # (I,) added to the coupon while in breach, per year
    sweep_floor: Any  # (I,) USD of cash kept before a sweep while in breach
    has_sweep: Any  # (I,) 0/1
    # data-centre assets (docs/model.md 5.8, 6.5, 7.7); D data centres in borrower order
    data_centre_value: Any  # (K+1, D) USD at t_k: max(V_0 (1 - d)^t_k, floor)
    data_centre_haircut: Any  # (2, D) share of the value lost in a workout sale, by regime
    pledged_data_centre_value: Any  # (K+1, I) USD at t_k of the data centres pledged to each instrument
    data_centre_value_by_borrower: Any  # (K+1, B) USD at t_k of each borrower's data centres
    # distributions to equity and their lock-up (docs/model.md 7.5a)
    distribution_share: Any  # (B,) share of cash above the floor paid out per step, 1 - (1 - s)^(12 dt); 0 = none
    distribution_floor: Any  # (B,) USD of cash kept before a distribution
    lockup_dscr: Any  # (B,) distributions locked while trailing DSCR is below this; 0 = no DSCR test
    lockup_on_breach: Any  # (B,) 0/1: distributions locked while an instrument of the borrower is in breach
    # dated capex and market access (docs/model.md 5.9, 7.10); O orders in borrower order
    tenant_started: Any  # (K, T) 1 once t_k is at or after the tenant's start (all 1 without one)
    order_step: Any  # (O,) step (t_k, t_k+1] holding the delivery date, -1 outside the horizon (never delivered)
    order_count: Any  # (O,) GPUs delivered (miners: PH/s delivered)
    order_price: Any  # (O,) USD per GPU (0 where priced at the mark; miners: USD per PH/s)
    order_at_mark: Any  # (O,) 1: priced at the generation's mark at t_k+1
    order_committed: Any  # (O,) 0/1
    order_book_factor: Any  # (K+1, O) straight-line book value at t_k per USD paid (1 at delivery, 0 after the book life)
    order_pledged: Any  # (I, O) 1 where the order's GPUs secure the instrument (its owner's, pledging the generation)
    access_prob: Any  # (2, B) per-step probability that the borrower's market window is open, 0 without market access
    access_max_ltv: Any  # (B,) LTV at marks above which the borrower cannot issue
    equity_limit_step: Any  # (B,) gross at-the-market issuance per step, USD
    equity_cost: Any  # (B,) share of gross proceeds lost to discount and fees
    debt_limit_step: Any  # (B,) gross new debt issuable per step, USD (0 without market_access.debt)
    debt_cost: Any  # (B,) share of gross new debt lost to issue discount and fees
    debt_step_up: Any  # (2, B) spread added to the coupon of new debt by the regime of its issuance, per year
    refi_via_access: Any  # (I,) 1: refinanced only while the borrower's market window is open
    order_hashrate_delta: Any  # (O,) miners: PH/s added less PH/s retired (0 for GPUs)
    order_kw_delta: Any  # (O,) miners: kW of the new miners less kW of the retired ones at the efficiency of t_0 (0 for GPUs)
    tenant_leased_later: Any  # (K, B, G) GPUs leased to tenants starting after t_0, from their start (out of the spot pool)
    pledged_fleet_book: Any  # (K+1, I) book value at t_k of the fleets at t_0 pledged to each instrument (pledged_fleet_book)


NO_COVENANT_LTV = 1e12
"""ltv_max of an instrument without an LTV covenant: above any LTV the model reports."""


def _step_table(grid: Any, times: list[float]) -> np.ndarray:
    """1 in row k if one of the times (years from t_0) falls in (t_k, t_k+1]."""
    row = np.zeros(grid.n_steps)
    for t in times:
        k = step_holding(t, grid.steps_per_year)
        if 0 <= k < grid.n_steps:
            row[k] = 1.0
    return row


def base_rate_curve(s: Scenario, t: np.ndarray) -> np.ndarray:
    """Deterministic base rate at times t: linear between the config points, flat beyond."""
    points = s.rates.base_curve
    return np.interp(t, [p.years for p in points], [p.rate for p in points])


def build_credit_params(s: Scenario) -> CreditParams:
    grid = s.time
    dt = grid.dt
    K = grid.n_steps
    times = np.arange(K + 1) * dt
    gens = [g.name for g in s.compute.generations]
    assets = [a.name for a in s.crypto.assets]
    B, G, A = len(s.borrowers), len(gens), len(assets)
    instruments = [(bi, inst) for bi, b in enumerate(s.borrowers) for inst in b.debt]
    I = len(instruments)  # noqa: E741

    fleet = np.zeros((B, G))
    share = np.zeros((B, G))
    rate = np.zeros((B, G))
    active = np.zeros((K, B, G))
    book = np.zeros((K + 1, B, G))
    for bi, b in enumerate(s.borrowers):
        for f in b.fleets:
            g = gens.index(f.generation)
            fleet[bi, g], share[bi, g], rate[bi, g] = f.count, f.contracted_share, f.contract_rate
            if f.contract_expiry is not None:
                # earning in step k while t_k is before the expiry, compared on the step grid
                first_idle = step_holding(year_fraction(grid.start, f.contract_expiry), grid.steps_per_year) + 1
                active[:, bi, g] = np.arange(K) < first_idle
            age = times - year_fraction(grid.start, f.purchase_date)
            book[:, bi, g] = f.purchase_price * np.clip(1.0 - age / f.book_life_years, 0.0, 1.0)

    mining = s.mining
    btc = s.crypto.assets[assets.index("BTC")]
    halvings = np.array([year_fraction(grid.start, d) for d in mining.halvings])
    halved = (halvings[None, :] <= times[:, None] + 1e-12).sum(axis=1) if len(halvings) else np.zeros(K + 1)
    # with a hashrate process the network hashrate carries the growth (MarketParams.hashrate_*)
    growth = mining.difficulty_growth if mining.hashrate_process is None else 0.0
    hashprice = mining.hashprice * np.exp(-growth * times) * 0.5**halved / btc.spot

    treasury = np.zeros((B, A))
    pledged = np.zeros((B, A))
    for bi, b in enumerate(s.borrowers):
        for h in b.treasury:
            a = assets.index(h.asset)
            treasury[bi, a], pledged[bi, a] = h.units, h.pledged_share

    def per_instrument(fn: Any) -> np.ndarray:
        return np.array([float(fn(bi, inst)) for bi, inst in instruments])

    payment_due = np.zeros((K, I))
    covenant_test = np.zeros((K, I))
    coll_fleet = np.zeros((I, G))
    coll_crypto = np.zeros((I, A))
    for i, (_bi, inst) in enumerate(instruments):
        months = 12 // inst.payments_per_year
        dates, n = [], 1
        while True:
            d = add_months(inst.issue_date, months * n)
            t = year_fraction(grid.start, d)
            if t > grid.horizon_years + 1e-9:
                break
            dates.append(t)
            n += 1
        payment_due[:, i] = _step_table(grid, dates)
        if inst.covenants is not None:
            every = inst.covenants.test_every_months / 12.0
            covenant_test[:, i] = _step_table(grid, list(np.arange(1, int(grid.horizon_years / every) + 2) * every))
        for g in inst.collateral.fleets:
            coll_fleet[i, gens.index(g)] = 1.0
        for a in inst.collateral.crypto:
            coll_crypto[i, assets.index(a)] = 1.0

    base = base_rate_curve(s, times)
    discount = np.exp(-np.concatenate([[0.0], np.cumsum(0.5 * (base[1:] + base[:-1]) * dt)]))

    def covenant(inst: Any, name: str, none: float) -> float:
        value = getattr(inst.covenants, name) if inst.covenants is not None else None
        return none if value is None else value

    def refi(inst: Any, name: str) -> float:
        return getattr(inst.refinancing, name) if inst.refinancing is not None else 0.0

    return CreditParams(
        fleet_count=fleet,
        contracted_share=share,
        contract_rate=rate,
        contract_active=active,
        book_value=book,
        pue=np.array([b.pue for b in s.borrowers]),
        power_price_ratio=np.array([b.power_price_ratio for b in s.borrowers]),
        fixed_opex_step=np.array([b.fixed_opex_per_month * 12.0 * dt for b in s.borrowers]),
        shock_decay=np.array([math.exp(-b.revenue_shock.mean_reversion * dt) for b in s.borrowers]),
        shock_vol_step=np.array(
            [
                b.revenue_shock.vol
                * math.sqrt((1.0 - math.exp(-2.0 * b.revenue_shock.mean_reversion * dt)) / (2.0 * b.revenue_shock.mean_reversion))
                for b in s.borrowers
            ]
        ),
        hashrate=np.array([b.mining.hashrate if b.mining else 0.0 for b in s.borrowers]),
        mining_kw=np.array([b.mining.hashrate * b.mining.efficiency if b.mining else 0.0 for b in s.borrowers]),
        hashprice_per_btc=hashprice,
        cash0=np.array([b.cash for b in s.borrowers]),
        treasury0=treasury,
        pledged_share=pledged,
        min_liquidity=np.array([b.min_liquidity or 0.0 for b in s.borrowers]),
        principal0=per_instrument(lambda bi, i: i.principal),
        commitment=per_instrument(lambda bi, i: i.commitment or 0.0),
        advance_rate=per_instrument(lambda bi, i: i.advance_rate or 0.0),
        is_facility=per_instrument(lambda bi, i: i.kind == "facility"),
        amortizes_level=per_instrument(lambda bi, i: i.amortization == "level_principal"),
        amortizes_annuity=per_instrument(lambda bi, i: i.amortization == "annuity"),
        floating=per_instrument(lambda bi, i: i.rate_type == "floating"),
        coupon=per_instrument(lambda bi, i: i.coupon),
        payments_per_year=per_instrument(lambda bi, i: i.payments_per_year),
        payment_due=payment_due,
        covenant_test=covenant_test,
        maturity_step0=per_instrument(lambda bi, i: max(step_holding(year_fraction(grid.start, i.maturity_date), grid.steps_per_year), -1)),
        base_rate=base[:-1],
        discount=discount,
        collateral_fleet=coll_fleet,
        collateral_crypto=coll_crypto,
        secured=np.maximum(np.maximum(coll_fleet.max(axis=1, initial=0.0), coll_crypto.max(axis=1, initial=0.0)), pledges_data_centre(s)),
        dscr_min=per_instrument(lambda bi, i: covenant(i, "dscr_min", 0.0)),
        ltv_max=per_instrument(lambda bi, i: covenant(i, "ltv_max", NO_COVENANT_LTV)),
        ltv_on_mark=per_instrument(lambda bi, i: i.covenants is None or i.covenants.ltv_basis == "mark"),
        cure_periods=per_instrument(lambda bi, i: i.covenants.cure_periods if i.covenants else 0),
        refinanceable=per_instrument(lambda bi, i: i.refinancing is not None),
        refi_max_ltv=per_instrument(lambda bi, i: refi(i, "max_ltv")),
        refi_min_dscr=per_instrument(lambda bi, i: refi(i, "min_dscr")),
        refi_tenor_steps=per_instrument(lambda bi, i: round(refi(i, "tenor_years") * grid.steps_per_year)),
        refi_step_up=per_instrument(lambda bi, i: refi(i, "spread_step_up")),
        workout_cost=np.float64(s.recovery.workout_cost),
        curtails=np.array([float(b.mining is not None and b.mining.curtail) for b in s.borrowers]),
        breakeven_kwh_per_day=np.array([24.0 * b.mining.efficiency if b.mining else 0.0 for b in s.borrowers]),
        power_take_or_pay=np.array([b.mining.power_take_or_pay if b.mining else 0.0 for b in s.borrowers]),
        **tenant_params(s, fleet),
        refi_window_steps=per_instrument(lambda bi, i: round(refi(i, "window_months") * grid.steps_per_year / 12.0)),
        refi_in_tight=per_instrument(lambda bi, i: i.refinancing is not None and i.refinancing.tight_spread_step_up is not None),
        refi_step_up_tight=per_instrument(lambda bi, i: refi(i, "tight_spread_step_up") or 0.0),
        waiver_fee=per_instrument(lambda bi, i: covenant(i, "waiver_fee", 0.0)),
        has_waiver=per_instrument(lambda bi, i: i.covenants is not None and i.covenants.waiver_fee is not None),
        equity_cures=per_instrument(lambda bi, i: covenant(i, "equity_cures", 0)),
        breach_step_up=per_instrument(lambda bi, i: covenant(i, "breach_step_up", 0.0)),
        sweep_floor=per_instrument(lambda bi, i: covenant(i, "cash_sweep_floor", 0.0)),
        has_sweep=per_instrument(lambda bi, i: i.covenants is not None and i.covenants.cash_sweep_floor is not None),
        **data_centre_params(s),
        **distribution_params(s),
        tenant_started=tenant_started(s),
        **capex_params(s, coll_fleet, instruments),
        refi_via_access=per_instrument(lambda bi, i: i.refinancing is not None and i.refinancing.via_market_access),
        tenant_leased_later=tenant_leased_later(s),
        pledged_fleet_book=pledged_fleet_book(coll_fleet, fleet, book, [bi for bi, _ in instruments]),
    )


def pledged_fleet_book(coll_fleet: np.ndarray, fleet: np.ndarray, book: np.ndarray, owner: list[int]) -> np.ndarray:
    """(K+1, I): the at-book part of debt.collateral_value for the fleets at t_0, sum_g of the GPUs
    pledged to the instrument times the straight-line book value per GPU at t_k, summed over
    generations in order. It depends on the step only, so it is a table evaluated once on the host
    rather than per path and step."""
    per_generation = (coll_fleet * fleet[owner])[None, :, :] * book[:, owner, :]  # (K+1, I, G)
    total = per_generation[:, :, 0]
    for g in range(1, per_generation.shape[2]):
        total = total + per_generation[:, :, g]
    return total


def pledges_data_centre(s: Scenario) -> np.ndarray:
    """(I,) 1 where an instrument has a data centre pledged to it, else 0."""
    return np.array([float(bool(i.collateral.data_centres)) for b in s.borrowers for i in b.debt])


def data_centre_params(s: Scenario) -> dict[str, np.ndarray]:
    """CreditParams of the data-centre assets: declining-balance values on the grid, with their
    floor, summed per pledged instrument and per borrower (docs/model.md 5.8)."""
    grid = s.time
    times = np.arange(grid.n_steps + 1) * grid.dt
    layout = data_centre_layout(s)
    sites = [d for b in s.borrowers for d in b.data_centres]
    value = np.zeros((grid.n_steps + 1, len(sites)))
    for j, d in enumerate(sites):
        value[:, j] = np.maximum(d.value * (1.0 - d.depreciation) ** times, d.floor)
    pledged = np.zeros((grid.n_steps + 1, len(layout["collateral_data_centres"])))
    for i, sites_of_i in enumerate(layout["collateral_data_centres"]):
        for j in sites_of_i:
            pledged[:, i] += value[:, j]
    by_borrower = np.zeros((grid.n_steps + 1, len(s.borrowers)))
    for j, bi in enumerate(layout["data_centre_owner"]):
        by_borrower[:, bi] += value[:, j]
    return {
        "data_centre_value": value,
        "data_centre_haircut": np.array([_pair(d.fire_sale_haircut) for d in sites]).reshape(-1, 2).T,
        "pledged_data_centre_value": pledged,
        "data_centre_value_by_borrower": by_borrower,
    }


def distribution_params(s: Scenario) -> dict[str, np.ndarray]:
    """CreditParams of the distributions to equity: the monthly share scaled to a step, floor and lock-up tests."""
    plans = [b.distributions for b in s.borrowers]
    return {
        "distribution_share": np.array([per_step_probability(p.share, s.time.dt) if p else 0.0 for p in plans]),
        "distribution_floor": np.array([p.cash_floor if p else 0.0 for p in plans]),
        "lockup_dscr": np.array([p.lockup_dscr or 0.0 if p else 0.0 for p in plans]),
        "lockup_on_breach": np.array([float(p.lockup_on_breach) if p else 0.0 for p in plans]),
    }


def starts_later(tenant: Any, grid: Any) -> bool:
    """Whether a tenant contract starts after t_0 (one dated at or before t_0 is running at t_0)."""
    return tenant.start is not None and tenant.start > grid.start


def tenant_leased_later(s: Scenario) -> np.ndarray:
    """(K, B, G): GPUs of each fleet leased to tenants that start after t_0, from their start on
    (before it they are in the spot pool, or not yet delivered)."""
    grid = s.time
    gens = [g.name for g in s.compute.generations]
    leased = np.zeros((grid.n_steps, len(s.borrowers), len(gens)))
    started = tenant_started(s)
    j = 0
    for bi, b in enumerate(s.borrowers):
        for t in b.tenants:
            if t.kind == "gpu_hours" and starts_later(t, grid):
                leased[:, bi, gens.index(t.generation)] += t.gpus * started[:, j]
            j += 1
    return leased


def tenant_started(s: Scenario) -> np.ndarray:
    """(K, T): 1 from the step after the one holding each tenant's start, the first step a capex order
    delivered on that date earns in (all 1 for a tenant running at t_0)."""
    grid = s.time
    tenants = [t for b in s.borrowers for t in b.tenants]
    started = np.ones((grid.n_steps, len(tenants)))
    for j, t in enumerate(tenants):
        if starts_later(t, grid):
            first = step_holding(year_fraction(grid.start, t.start), grid.steps_per_year) + 1  # as a delivery on that date
            started[:, j] = np.arange(grid.n_steps) >= first
    return started


def capex_params(s: Scenario, coll_fleet: np.ndarray, instruments: list[tuple[int, Any]]) -> dict[str, np.ndarray]:
    """CreditParams of the capex orders and of market access (docs/model.md 5.9, 7.10)."""
    grid = s.time
    dt = grid.dt
    times = np.arange(grid.n_steps + 1) * dt
    gens = [g.name for g in s.compute.generations]
    orders = [(bi, o) for bi, b in enumerate(s.borrowers) for o in b.capex]
    book = np.zeros((grid.n_steps + 1, len(orders)))
    pledged = np.zeros((len(instruments), len(orders)))
    steps = []
    for j, (bi, o) in enumerate(orders):
        k = event_step(grid, o.date)
        steps.append(-1.0 if k is None else float(k))
        age = times - year_fraction(grid.start, o.date)
        book[:, j] = np.clip(1.0 - age / o.book_life_years, 0.0, 1.0)
        for i, (owner, _) in enumerate(instruments):
            pledged[i, j] = coll_fleet[i, gens.index(o.generation)] if owner == bi and o.kind == "gpus" else 0.0
    access = [b.market_access for b in s.borrowers]
    equity = [a.equity if a is not None else None for a in access]
    return {
        "order_step": np.array(steps),
        "order_count": np.array([float(o.count) if o.kind == "gpus" else o.hashrate for _, o in orders]),
        "order_price": np.array([(o.price_per_gpu or 0.0) if o.kind == "gpus" else o.price_per_ph for _, o in orders]),
        "order_at_mark": np.array([float(o.kind == "gpus" and o.price_per_gpu is None) for _, o in orders]),
        "order_committed": np.array([float(o.committed) for _, o in orders]),
        "order_book_factor": book,
        "order_pledged": pledged,
        "access_prob": np.array([[0.0, 0.0] if a is None else [per_step_probability(p, dt) for p in a.probability.pair()] for a in access])
        .reshape(-1, 2)
        .T,
        "access_max_ltv": np.array([NO_COVENANT_LTV if a is None or a.max_ltv is None else a.max_ltv for a in access]),
        "equity_limit_step": np.array([0.0 if e is None else e.size_per_month * 12.0 * dt for e in equity]),
        "equity_cost": np.array([0.0 if e is None else e.cost for e in equity]),
        **debt_issuance_params(s, dt),
        "order_hashrate_delta": np.array([o.hashrate - o.replaces if o.kind == "miners" else 0.0 for _, o in orders]),
        "order_kw_delta": np.array(
            [o.hashrate * o.efficiency - o.replaces * s.borrowers[bi].mining.efficiency if o.kind == "miners" else 0.0 for bi, o in orders]
        ),
    }


def tenant_params(s: Scenario, fleet: np.ndarray) -> dict[str, np.ndarray]:
    """CreditParams of the tenant contracts, and the fleets less the GPUs leased to tenants."""
    grid = s.time
    dt, K = grid.dt, grid.n_steps
    times = np.arange(K) * dt
    gens = [g.name for g in s.compute.generations]
    tenants = [(bi, t) for bi, b in enumerate(s.borrowers) for t in b.tenants]
    free = fleet.copy()
    started = tenant_started(s)
    active = np.zeros((K, len(tenants)))
    revenue = np.zeros((K, len(tenants)))
    for j, (bi, t) in enumerate(tenants):
        first_idle = step_holding(year_fraction(grid.start, t.expiry), grid.steps_per_year) + 1
        active[:, j] = (np.arange(K) < first_idle) * started[:, j]
        escalated = t.rate * (1.0 + t.escalator) ** np.floor(times + 1e-9)
        amount = t.gpus * HOURS_PER_YEAR * dt if t.kind == "gpu_hours" else t.capacity_kw * 12.0 * dt
        revenue[:, j] = escalated * amount * active[:, j]
        if t.kind == "gpu_hours" and not starts_later(t, grid):  # a later tenant's GPUs leave the spot pool at its start
            free[bi, gens.index(t.generation)] -= t.gpus
    kw = {g.name: g.kw_per_gpu for g in s.compute.generations}
    return {
        "free_fleet_count": free,
        "tenant_active": active,
        "tenant_contract_revenue": revenue,
        "tenant_gpus": np.array([float(t.gpus) for _, t in tenants]),
        "tenant_kw_per_gpu": np.array([kw[t.generation] if t.generation else 0.0 for _, t in tenants]),
        "tenant_spot_revenue": np.array([t.capacity_kw * t.spot_rate_per_kw_month * 12.0 * dt for _, t in tenants]),
        "tenant_default_prob": np.array([[1.0 - math.exp(-h * dt) for h in t.credit.effective_hazard.pair()] for _, t in tenants])
        .reshape(-1, 2)
        .T,
        "tenant_lag_steps": np.array([float(round(t.releasing_lag_months * grid.steps_per_year / 12)) for _, t in tenants]),
    }
