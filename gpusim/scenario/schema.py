"""The scenario schema: pydantic models of docs/model.md sections 2-6 and the checks across fields.

Each field states its meaning and units once, in its description; `gpusim schema` prints
them as JSON Schema. `check_references` finds what pydantic cannot see field by field
(names that must match, matrices that must be correlation matrices, dates in order). Reading
YAML files and turning errors into messages is `gpusim.scenario.loading`.
"""

from __future__ import annotations

import math
from datetime import date as Date
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

T = TypeVar("T")

# Every number is finite (Strict sets allow_inf_nan=False) and lies in one of these documented
# ranges (docs/configuration.md): wide enough for any stress a user means, narrow enough that an
# absurd value (1e308, a volatility of 1e6) is refused with its field named instead of
# overflowing inside the model.
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Correlation = Annotated[float, Field(ge=-1.0, le=1.0)]
AnnualRate = Annotated[float, Field(ge=-5.0, le=5.0)]
"""A drift, growth, deflation, interest rate or coupon, per year (-500 % to +500 %)."""
NonNegativeRate = Annotated[float, Field(ge=0.0, le=5.0)]
Yield = Annotated[float, Field(gt=0.0, le=5.0)]
Volatility = Annotated[float, Field(ge=0.0, le=10.0)]
"""A volatility per sqrt(year) (0 to 1000 %)."""
Speed = Annotated[float, Field(gt=0.0, le=1000.0)]
"""A mean-reversion speed, per year."""
Intensity = Annotated[float, Field(ge=0.0, le=1000.0)]
"""Events per year (jumps, unscheduled launches)."""
LogSize = Annotated[float, Field(ge=-10.0, le=10.0)]
"""A log-size (jump mean): exp(10) is a factor of 22,000."""
NonNegativeLogSize = Annotated[float, Field(ge=0.0, le=10.0)]
Exponent = Annotated[float, Field(gt=0.0, le=10.0)]
Years = Annotated[float, Field(gt=0.0, le=100.0)]
TimePoint = Annotated[float, Field(ge=0.0, le=100.0)]
Ratio = Annotated[float, Field(gt=0.0, le=100.0)]
"""A positive ratio (DSCR, LTV, power ratio, kW per GPU)."""
NonNegativeRatio = Annotated[float, Field(ge=0.0, le=100.0)]
Efficiency = Annotated[float, Field(ge=1.0, le=10.0)]
"""Power usage effectiveness (PUE)."""
UnitPrice = Annotated[float, Field(gt=0.0, le=1e9)]
"""A price per unit (a coin, a GPU, a GPU-hour, a kWh, a share, a PH/s-day), USD."""
NonNegativeUnitPrice = Annotated[float, Field(ge=0.0, le=1e9)]
Amount = Annotated[float, Field(ge=0.0, le=1e13)]
"""A balance-sheet amount (cash, principal, opex), USD: up to 10 trillion."""
Quantity = Annotated[float, Field(ge=0.0, le=1e12)]
"""A count of physical units (GPUs, coins, PH/s)."""
PositiveQuantity = Annotated[float, Field(gt=0.0, le=1e12)]
LogitLevel = Annotated[float, Field(ge=-50.0, le=50.0)]
Bps = Annotated[float, Field(ge=-10_000.0, le=100_000.0)]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ByRegime(Strict, Generic[T]):
    """A parameter that takes one value in the easy regime and another in the tight one.

    A plain number in YAML sets both.
    """

    easy: T = Field(description="value in the easy (loose credit, risk-on) regime")
    tight: T = Field(description="value in the tight (credit crunch, risk-off) regime")

    @model_validator(mode="before")
    @classmethod
    def _scalar_for_both(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"easy": value, "tight": value}
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The schema says what the validator accepts: one number for both regimes, or easy and tight."""
        schema = handler(core_schema)
        one = dict(handler.resolve_ref_schema(schema)["properties"]["easy"])
        if one.get("type") not in ("number", "integer"):
            return schema  # a matrix or other structure has no single-number shorthand
        one.pop("title", None)
        one["description"] = "one value for both regimes"
        return {"anyOf": [one, schema]}

    def pair(self) -> tuple[T, T]:
        return (self.easy, self.tight)


# ---------------------------------------------------------------------------------------
# Section 2: time grid


class TimeGrid(Strict):
    start: Date = Field(Date(2026, 1, 1), description="calendar date of t_0; scheduled events are placed on steps from it")
    steps_per_year: Annotated[int, Field(ge=1, le=366)] = Field(12, description="steps per year: 12 monthly (default), 52 weekly")
    n_steps: Annotated[int, Field(ge=1, le=32000)] = Field(120, description="number of steps K; the horizon is K / steps_per_year years")

    @property
    def dt(self) -> float:
        return 1.0 / self.steps_per_year

    @property
    def horizon_years(self) -> float:
        return self.n_steps / self.steps_per_year


# ---------------------------------------------------------------------------------------
# Section 4: market factors


class Regime(Strict):
    initial: Literal["easy", "tight"] = Field("easy", description="regime R_0 at the start")
    p_easy_to_tight: Probability = Field(description="monthly probability of moving easy -> tight (scaled to dt as 1-(1-p)^(12 dt))")
    p_tight_to_easy: Probability = Field(description="monthly probability of moving tight -> easy (scaled to dt as 1-(1-p)^(12 dt))")


class CryptoAsset(Strict):
    name: str = Field(description="ticker, e.g. BTC; BTC is required (hashprice follows it)")
    spot: UnitPrice = Field(description="price at t_0, USD per unit")
    drift: ByRegime[AnnualRate] = Field(description="expected total return mu_R, per year")
    vol: ByRegime[Volatility] = Field(description="diffusion volatility sigma_R, per sqrt(year)")
    jump_rate: ByRegime[Intensity] = Field(description="jump intensity lambda_R, jumps per year")
    jump_mean: ByRegime[LogSize] = Field(description="mean log jump size mu_J")
    jump_std: ByRegime[Volatility] = Field(description="standard deviation of the log jump size sigma_J")
    sale_slippage: ByRegime[Probability] = Field(description="fraction of price lost when a borrower or lender sells the asset in a month")


class Crypto(Strict):
    assets: list[CryptoAsset] = Field(min_length=1, description="crypto assets simulated on every path")
    correlation: ByRegime[list[list[Correlation]]] | None = Field(
        None, description="correlation matrix of the assets' diffusion shocks (assets in listed order); identity if omitted"
    )


class Launch(Strict):
    name: str = Field(description="generation launched, e.g. Rubin")
    date: Date = Field(description="date the launch reaches the rental market")


class Generation(Strict):
    name: str = Field(description="GPU generation, e.g. H100")
    release: Date = Field(description="date the generation reached the market; orders generations oldest to newest")
    rental_rate: UnitPrice = Field(description="spot rental rate r^g_0 at t_0, USD per GPU-hour")
    kw_per_gpu: Ratio = Field(description="power draw per GPU including its share of the server, kW")
    economic_life_years: Years = Field(description="economic life from release; the income approach values rent up to its end, years")
    scrap_value: UnitPrice = Field(description="floor value of one GPU (parts, scrap), USD")
    new_price: UnitPrice = Field(description="purchase price of a new GPU incl. its server share, USD (book value basis)")
    market_depth: ByRegime[PositiveQuantity] = Field(description="D^g_R: GPUs the secondary market absorbs in a month at the mark")
    exogenous_distressed_supply: ByRegime[Quantity] = Field(
        description="q_exo,R: distressed GPUs a month sold by owners outside the portfolio"
    )


class Obsolescence(Strict):
    drop: NonNegativeLogSize = Field(description="theta: log-drop of an older generation's rent at a launch, for one generation behind")
    curvature: Exponent = Field(description="eta: the drop is theta * (generations behind the newest)^eta; eta > 1 is non-linear")
    random_launch_rate: Intensity = Field(0.0, description="lambda_gen: unscheduled launches per year (at most one per step)")
    launches: list[Launch] = Field(default_factory=list, description="scheduled launches of generations newer than every simulated one")


class CompoundShock(Strict):
    mean_reversion: Speed = Field(description="kappa of the common OU shock X of rental rates, per year")
    vol: Volatility = Field(description="sigma_X, per sqrt(year)")
    corr_btc: ByRegime[Correlation] = Field(description="rho_R = corr(Z_X, Z_S of BTC); higher in tight: the correlated failure")


class Utilization(Strict):
    max: Probability = Field(description="u_max: ceiling of market utilization")
    level: ByRegime[LogitLevel] = Field(description="a_R: logit level; u = u_max / (1 + exp(-(a_R + b X)))")
    sensitivity: Annotated[float, Field(ge=-100.0, le=100.0)] = Field(description="b: response of utilization to the compute shock X")


class Valuation(Strict):
    expected_deflation: NonNegativeRate = Field(description="dbar: the valuer's expected rent deflation, per year")
    discount_yield: ByRegime[Yield] = Field(description="y_R: yield a buyer of used GPUs discounts at, per year")
    pue: Efficiency = Field(description="power usage effectiveness the valuer assumes")


class Compute(Strict):
    generations: list[Generation] = Field(min_length=1, description="GPU generations with a rental market")
    deflation: ByRegime[AnnualRate] = Field(description="delta_R: drift of log rental rates downward, per year")
    shock: CompoundShock
    utilization: Utilization
    obsolescence: Obsolescence
    valuation: Valuation


class Power(Strict):
    price: UnitPrice = Field(description="industrial electricity price at t_0, USD per kWh")
    long_run: UnitPrice = Field(description="long-run level of the log-OU power price, USD per kWh")
    mean_reversion: Speed = Field(description="speed of reversion of the log price, per year")
    vol: Volatility = Field(description="volatility of the log price, per sqrt(year)")


class SecondaryMarket(Strict):
    integration_discount: Probability = Field(description="h_int: share of value lost when GPUs leave their data center")
    price_impact: ByRegime[NonNegativeRatio] = Field(description="alpha_R: fire-sale impact per unit of Q/D in the liquidation month")
    mark_impact: NonNegativeRatio = Field(description="alpha_mark: how much remembered distressed supply L depresses marks")
    memory_years: Years = Field(description="tau: e-folding time of the distressed-supply memory L, years")


class HashrateProcess(Strict):
    """The network hashrate as a random factor: ln H_{k+1} = ln H_k + m_R dt + sigma_H sqrt(dt) Z_H + e (ln S_{k+1} - ln S_k)."""

    drift: ByRegime[AnnualRate] = Field(description="m_R: drift of the log network hashrate, per year (replaces difficulty_growth)")
    vol: Volatility = Field(description="sigma_H: volatility of the log network hashrate, per sqrt(year)")
    btc_elasticity: Annotated[float, Field(ge=-10.0, le=10.0)] = Field(
        0.0, description="e: log hashrate change per unit log BTC return in the same step (miners add machines when BTC rises)"
    )


class Mining(Strict):
    hashprice: UnitPrice = Field(description="hp_0: USD per PH/s per day at t_0 (scales with BTC price)")
    difficulty_growth: AnnualRate = Field(
        description="g_d: growth of the network hashrate, which lowers hashprice per unit BTC, per year (unused with hashrate_process)"
    )
    halvings: list[Date] = Field(default_factory=list, description="dates the block subsidy halves (hashprice halves)")
    network_hashrate: PositiveQuantity = Field(
        1000.0, description="H_0: network hashrate at t_0, EH/s; hashprice = hp_0 (S/S_0) (H_0/H) 0.5^halvings"
    )
    hashrate_process: HashrateProcess | None = Field(
        None, description="stochastic network hashrate; without it H_k = H_0 exp(g_d t_k) (a deterministic path)"
    )


class RatePoint(Strict):
    years: TimePoint = Field(description="time from t_0, years")
    rate: AnnualRate = Field(description="base rate (e.g. SOFR), per year, continuous interpolation between points")


class Rates(Strict):
    base_curve: list[RatePoint] = Field(min_length=1, description="deterministic base-rate curve, linear between points, flat beyond")


# ---------------------------------------------------------------------------------------
# Sections 5-6: borrowers and debt


class Fleet(Strict):
    generation: str = Field(description="name of a generation in compute.generations")
    count: Annotated[int, Field(ge=0, le=10**12)] = Field(description="GPUs owned")
    purchase_date: Date = Field(description="when the fleet was bought (book depreciation starts)")
    purchase_price: UnitPrice = Field(description="price paid per GPU incl. server share, USD")
    contracted_share: Probability = Field(0.0, description="s_g: share of the fleet on take-or-pay contracts")
    contract_rate: NonNegativeUnitPrice = Field(0.0, description="rc_g: contract rate, USD per GPU-hour")
    contract_expiry: Date | None = Field(None, description="after this date the contracted share earns spot")
    book_life_years: Years = Field(
        6.0, description="straight-line depreciation life for book value, years (CoreWeave, Alphabet, Microsoft: 6; Nebius: 4)"
    )


class MiningOperation(Strict):
    hashrate: PositiveQuantity = Field(description="PH/s of installed miners")
    efficiency: Annotated[float, Field(gt=0.0, le=10_000.0)] = Field(description="J/TH of the fleet (= kW per PH/s)")
    curtail: bool = Field(
        False, description="switch the miners off for a step when hashprice per kWh (hp / (24 e)) is below the borrower's power price"
    )
    power_take_or_pay: Probability = Field(
        0.0, description="share of the miners' contracted power paid even when curtailed (take-or-pay minimum of the power contract)"
    )


class Holding(Strict):
    asset: str = Field(description="name of a crypto asset")
    units: Quantity = Field(description="units held in treasury")
    pledged_share: Probability = Field(0.0, description="share of the holding pledged to lenders")


class RevenueShock(Strict):
    vol: Volatility = Field(description="volatility of the borrower's log-OU revenue shock eps, per sqrt(year)")
    mean_reversion: Speed = Field(description="speed of reversion of eps, per year")


class Covenants(Strict):
    dscr_min: Ratio | None = Field(None, description="minimum DSCR on trailing 12 months (CFADS / debt service)")
    ltv_max: Ratio | None = Field(None, description="maximum loan-to-value of the collateral")
    ltv_basis: Literal["book", "mark"] = Field(
        "mark", description="value the LTV test uses: straight-line book value or the secondary-market mark"
    )
    test_every_months: Annotated[int, Field(ge=1, le=120)] = Field(3, description="covenant test frequency, months")
    cure_periods: Annotated[int, Field(ge=0, le=120)] = Field(1, description="consecutive failed tests tolerated before a covenant default")
    # remedies of a breach (docs/model.md 7.4); none by default
    waiver_fee: Probability | None = Field(
        None,
        description="in the easy regime lenders waive a failed test for a fee of this share of the outstanding, paid from cash "
        "when cash covers it (the test then counts as passed); none = no waivers",
    )
    equity_cures: Annotated[int, Field(ge=0, le=1000)] = Field(
        0,
        description="in the easy regime a failed DSCR or minimum-liquidity test is cured by the sponsor injecting the cash "
        "shortfall ((dscr_min - DSCR) x trailing debt service, plus min_liquidity - cash), at most this many times over the life; "
        "the test then counts as passed. 0 = no equity cures",
    )
    breach_step_up: NonNegativeRate = Field(
        0.0, description="margin step-up added to the coupon while the instrument is in breach (a failed test not yet passed), per year"
    )
    cash_sweep_floor: Amount | None = Field(
        None,
        description="while the instrument is in breach, cash above this floor, USD, prepays it every step; none = no cash sweep",
    )


class Refinancing(Strict):
    max_ltv: Ratio = Field(
        description="LTV at or below which lenders refinance (in the easy regime, and in the tight one where tight_spread_step_up is set)"
    )
    min_dscr: Ratio = Field(description="trailing DSCR at or above which lenders refinance")
    tenor_years: Years = Field(description="tenor of the refinanced loan, years")
    spread_step_up: NonNegativeRate = Field(0.0, description="added to the coupon of a loan refinanced in the easy regime, per year")
    # refinancing window and the tight regime
    window_months: Annotated[int, Field(ge=0, le=1200)] = Field(
        0,
        description="refinancing is attempted in every step from this many months before maturity up to the maturity step, months; "
        "0 = only in the maturity step",
    )
    tight_spread_step_up: NonNegativeRate | None = Field(
        None,
        description="added to the coupon of a loan refinanced in the tight regime, per year; "
        "none = lenders refinance only in the easy regime",
    )
    # market access (docs/model.md 7.5, 7.10)
    via_market_access: bool = Field(
        False,
        description="the maturity is refinanced in the capital markets (e.g. converts rolled into new converts): only in a step "
        "where the borrower's market_access window is open, besides the terms above",
    )


class Collateral(Strict):
    fleets: list[str] = Field(default_factory=list, description="generations of the borrower's own fleets pledged")
    crypto: list[str] = Field(default_factory=list, description="assets whose pledged treasury share secures this instrument")
    data_centres: list[str] = Field(
        default_factory=list,
        description="names of the borrower's data centres pledged to this instrument: their value counts in its collateral "
        "(at mark and at book) and their sale proceeds pay it first in a default",
    )


class Instrument(Strict):
    name: str = Field(description="unique instrument name")
    kind: Literal["term_loan", "facility", "bond", "convertible"] = Field(
        description="amortizing term loan, delayed-draw/ABL facility, bullet bond, or convertible note (bullet, unsecured)"
    )
    principal: Amount = Field(description="outstanding (drawn) principal at t_0, USD")
    commitment: Amount | None = Field(
        None,
        description="facility limit, USD; on a term loan or bond named by market_access.debt: the most principal outstanding "
        "that new issuance may bring it to, USD",
    )
    advance_rate: Probability | None = Field(None, description="borrowing base = advance_rate x collateral mark (facilities only)")
    amortization: Literal["level_principal", "annuity", "bullet"] = Field("bullet", description="repayment profile")
    rate_type: Literal["fixed", "floating"] = Field(description="fixed coupon, or base rate plus spread")
    coupon: AnnualRate = Field(description="fixed coupon, or spread over the base curve if floating, per year")
    payments_per_year: Literal[1, 2, 4, 12] = Field(4, description="payment frequency")
    issue_date: Date = Field(description="date the instrument was issued")
    maturity_date: Date = Field(description="final maturity")
    seniority: Annotated[int, Field(ge=1, le=100)] = Field(1, description="rank in the recovery waterfall, 1 = most senior")
    collateral: Collateral = Field(default_factory=Collateral, description="assets pledged; empty = unsecured")
    covenants: Covenants | None = Field(None, description="maintenance covenants")
    refinancing: Refinancing | None = Field(None, description="terms on which maturity is refinanced; none = must repay")
    market_spread_bps: Bps = Field(description="spread actually charged over the base curve, bps (compared with break-even)")
    conversion_price: UnitPrice | None = Field(
        None, description="convertible: conversion price USD per share (conversion not modelled in v1)"
    )

    @model_validator(mode="after")
    def _kind_rules(self) -> Instrument:
        if self.maturity_date <= self.issue_date:
            raise ValueError(f"maturity_date {self.maturity_date} must be after issue_date {self.issue_date}")
        if self.kind in ("bond", "convertible") and self.amortization != "bullet":
            raise ValueError(f"a {self.kind} is bullet; amortization must be 'bullet', got {self.amortization!r}")
        if self.kind == "convertible" and (self.collateral.fleets or self.collateral.crypto or self.collateral.data_centres):
            raise ValueError("a convertible note is unsecured; collateral must be empty")
        if self.kind == "facility":
            if self.commitment is None or self.advance_rate is None:
                raise ValueError("a facility needs commitment and advance_rate")
            if self.principal > self.commitment:
                raise ValueError(f"drawn principal {self.principal} exceeds commitment {self.commitment}")
        elif self.advance_rate is not None or (self.commitment is not None and self.kind not in ("term_loan", "bond")):
            raise ValueError("advance_rate applies to facilities only; commitment to facilities, term loans and bonds")
        return self


class Backstop(Strict):
    name: str = Field(description="guarantor of the tenant's payments, e.g. a hyperscaler parent")
    hazard: ByRegime[Annotated[float, Field(ge=0.0, le=1e12)]] = Field(description="the guarantor's default intensity, per year")


class TenantCredit(Strict):
    hazard: ByRegime[Annotated[float, Field(ge=0.0, le=1e12)]] = Field(
        0.0,
        validate_default=True,
        description="h_R: the tenant's default intensity, per year (a very large value defaults it in the first step)",
    )
    backstop: Backstop | None = Field(
        None, description="a guarantor: the contract then fails only when the guarantor defaults, at the guarantor's hazard"
    )

    @property
    def effective_hazard(self) -> ByRegime[float]:
        """The intensity at which the contract stops paying: the backstop's where there is one."""
        return self.hazard if self.backstop is None else self.backstop.hazard


class Tenant(Strict):
    name: str = Field(description="tenant (counterparty) name")
    kind: Literal["gpu_hours", "colocation"] = Field(
        description="take-or-pay GPU-hours on the borrower's own GPUs, or a colocation / data-centre lease priced per kW-month"
    )
    generation: str | None = Field(None, description="gpu_hours: generation of the leased GPUs (one of the borrower's fleets)")
    gpus: Annotated[int, Field(ge=0)] = Field(0, description="gpu_hours: GPUs of that fleet leased to the tenant")
    capacity_kw: Quantity = Field(0.0, description="colocation: critical IT capacity leased, kW")
    rate: NonNegativeUnitPrice = Field(description="contract rate at t_0: USD per GPU-hour (gpu_hours) or USD per kW-month (colocation)")
    escalator: AnnualRate = Field(0.0, description="annual escalator of the rate, applied on each anniversary of t_0, per year")
    expiry: Date = Field(description="end of the contract term; the capacity then earns spot (colocation: spot_rate_per_kw_month)")
    start: Date | None = Field(
        None,
        description="date the contract starts paying (e.g. on capacity a capex order delivers); before it the capacity earns and "
        "draws nothing and the tenant cannot default; none = running at t_0",
    )
    releasing_lag_months: Annotated[int, Field(ge=0)] = Field(
        6, description="months after a tenant default in which the capacity earns nothing (and draws no power) before it re-lets at spot"
    )
    spot_rate_per_kw_month: NonNegativeUnitPrice = Field(
        0.0, description="colocation: rate the capacity re-lets at after expiry or after the re-leasing lag, USD per kW-month"
    )
    credit: TenantCredit = Field(default_factory=TenantCredit, description="the tenant's credit: its hazard or a backstop's")

    @model_validator(mode="after")
    def _kind_rules(self) -> Tenant:
        if self.kind == "gpu_hours" and (self.generation is None or self.gpus == 0 or self.capacity_kw):
            raise ValueError("a gpu_hours tenant needs generation and gpus > 0, and no capacity_kw")
        if self.kind == "colocation" and (self.capacity_kw == 0 or self.generation is not None or self.gpus):
            raise ValueError("a colocation tenant needs capacity_kw > 0, and no generation or gpus")
        return self


# ---------------------------------------------------------------------------------------
# Data-centre assets and distributions to equity (docs/model.md 5.8, 6.5, 7.4)


class DataCentre(Strict):
    name: str = Field(description="data-centre (site) name, unique within the borrower; instruments pledge it by this name")
    value: Amount = Field(description="value at t_0 of the site (land, shell, power interconnect, cooling, fit-out), USD")
    depreciation: Probability = Field(
        0.0,
        description="declining-balance depreciation rate, per year: the value at t years is max(value (1 - depreciation)^t, floor)",
    )
    floor: Amount = Field(0.0, description="value floor, USD (land and power interconnect outlive the building); at most value")
    fire_sale_haircut: ByRegime[Probability] = Field(
        description="share of the depreciated value lost when the site is sold in a default workout, by regime (not a GPU: "
        "no GPU market price impact)"
    )

    @model_validator(mode="after")
    def _floor_below_value(self) -> DataCentre:
        if self.floor > self.value:
            raise ValueError(f"floor {self.floor} exceeds value {self.value}")
        return self


class Distributions(Strict):
    share: Probability = Field(
        description="share of the cash above cash_floor paid out to equity / the sponsor each month (an SPV's distributions, a dividend); "
        "it leaves the borrower"
    )
    cash_floor: Amount = Field(0.0, description="cash kept in the borrower before any distribution, USD")
    lockup_dscr: Ratio | None = Field(
        None, description="distributions are locked up while the trailing 12-month DSCR is below this; none = no DSCR lock-up test"
    )
    lockup_on_breach: bool = Field(
        True,
        description="distributions are also locked up while any instrument of the borrower is in breach "
        "(a failed covenant test not yet passed, waived or cured)",
    )


# Dated capex and market access (docs/model.md 5.9, 7.10)


class CapexOrder(Strict):
    """A dated purchase of GPUs or miners: paid and delivered on `date`, funded from the sources in `funding` in order."""

    date: Date = Field(description="delivery and payment date; the GPUs or miners earn, draw power and secure loans from the next step")
    kind: Literal["gpus", "miners"] = Field(
        "gpus", description="what is bought: GPUs of a generation, or miners (hashrate at an efficiency: an efficiency upgrade)"
    )
    generation: str | None = Field(None, description="gpus: generation bought (one of compute.generations)")
    count: Annotated[int, Field(ge=1, le=10**12)] | None = Field(None, description="gpus: GPUs delivered")
    price_per_gpu: UnitPrice | None = Field(
        None,
        description="price paid per GPU incl. its server share, USD; none = the generation's mark on the path at the delivery "
        "step (the per-GPU value fleets are marked at)",
    )
    book_life_years: Years = Field(6.0, description="straight-line depreciation life of the delivered GPUs from the delivery date, years")
    hashrate: Quantity = Field(0.0, description="miners: PH/s of new miners delivered")
    efficiency: Annotated[float, Field(gt=0.0, le=10_000.0)] | None = Field(
        None, description="miners: J/TH (= kW per PH/s) of the new miners"
    )
    price_per_ph: UnitPrice | None = Field(None, description="miners: price paid per PH/s of new miners, USD")
    replaces: Quantity = Field(
        0.0, description="miners: PH/s of the borrower's miners at t_0 retired on delivery (at its mining.efficiency), PH/s"
    )
    funding: list[Literal["cash", "facility", "equity", "debt"]] = Field(
        default_factory=lambda: ["cash"],
        min_length=1,
        description="sources tried in this order: cash on hand; a draw on `facility` (its borrowing base counts the delivered "
        "GPUs it is secured on); at-the-market equity when the market_access window is open; new debt issued into the "
        "instrument of market_access.debt when the window is open",
    )
    facility: str | None = Field(None, description="name of the borrower's facility drawn when `funding` lists facility")
    committed: bool = Field(
        True,
        description="a committed order that the sources cannot fund in full is a payment default; an uncommitted one is cancelled "
        "on that path (nothing is paid, its capacity never arrives)",
    )

    @model_validator(mode="after")
    def _kind_rules(self) -> CapexOrder:
        if ("facility" in self.funding) != (self.facility is not None):
            raise ValueError("name a facility exactly when funding lists 'facility'")
        gpu_fields = self.generation is not None or self.count is not None or self.price_per_gpu is not None
        miner_fields = self.hashrate > 0 or self.efficiency is not None or self.price_per_ph is not None or self.replaces > 0
        if self.kind == "gpus" and (self.generation is None or self.count is None or miner_fields):
            raise ValueError("a gpus order needs generation and count, and no hashrate, efficiency, price_per_ph or replaces")
        if self.kind == "miners" and (self.hashrate == 0 or self.efficiency is None or self.price_per_ph is None or gpu_fields):
            raise ValueError("a miners order needs hashrate > 0, efficiency and price_per_ph, and no generation, count or price_per_gpu")
        return self


class EquityAccess(Strict):
    size_per_month: Amount = Field(description="at-the-market issuance limit, gross USD per month (scaled to the step)")
    cost: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        description="discount and fees, fraction of gross proceeds: cash raised = gross x (1 - cost)"
    )


class DebtIssuance(Strict):
    """New debt issued through the market window into one of the borrower's term loans or bonds (docs/model.md 7.10)."""

    instrument: str = Field(
        description="name of the borrower's term loan or bond the new debt is issued into (a tap of the same notes); its "
        "commitment caps its outstanding principal, its coupon, schedule, rank and collateral apply to the new principal"
    )
    size_per_month: Amount = Field(description="issuance limit, gross principal USD per month (scaled to the step)")
    cost: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        description="original issue discount and fees, fraction of gross principal: cash raised = gross x (1 - cost)"
    )
    spread_step_up: ByRegime[NonNegativeRate] = Field(
        0.0,
        validate_default=True,
        description="added to the instrument's coupon for the new principal, by the regime of the issuance step, per year "
        "(blended with the spread on the principal already outstanding, weighted by principal)",
    )


class MarketAccess(Strict):
    """Whether the borrower can issue in a step: one uniform draw per borrower per step against the regime's probability."""

    probability: ByRegime[Probability] = Field(
        description="monthly probability that the capital markets are open to the borrower (scaled to dt as 1-(1-p)^(12 dt)); "
        "a freeze sets the tight value to 0"
    )
    max_ltv: Ratio | None = Field(
        None,
        description="no issuance while the borrower's LTV at marks (debt / (fleets at mark + treasury)) is above this; none = no limit",
    )
    equity: EquityAccess | None = Field(None, description="at-the-market equity issuance; none = the borrower cannot issue shares")
    debt: DebtIssuance | None = Field(None, description="new debt issued through the window; none = the borrower cannot issue debt")


class Borrower(Strict):
    name: str = Field(description="unique borrower name")
    type: Literal["neocloud", "miner", "project_spv"] = Field(description="label used in reports; the model is common")
    cash: Amount = Field(description="cash balance at t_0, USD")
    min_liquidity: Amount | None = Field(
        None, description="minimum-liquidity covenant, USD: tested with the DSCR covenant dates; a breach counts on the DSCR cure clock"
    )
    fixed_opex_per_month: Amount = Field(description="fixed operating cost, USD per month")
    pue: Efficiency = Field(description="power usage effectiveness of the borrower's sites")
    power_price_ratio: Ratio = Field(1.0, description="borrower's power price / market power price")
    revenue_shock: RevenueShock
    fleets: list[Fleet] = Field(default_factory=list, description="GPU fleets by generation")
    mining: MiningOperation | None = Field(None, description="bitcoin mining operation")
    treasury: list[Holding] = Field(default_factory=list, description="crypto held on balance sheet")
    debt: list[Instrument] = Field(min_length=1, description="debt instruments owed")
    tenants: list[Tenant] = Field(
        default_factory=list, description="contracts with named tenants, each with its own credit; beside the fleets' contracted_share"
    )
    data_centres: list[DataCentre] = Field(
        default_factory=list, description="data-centre assets owned (not GPU fleets): collateral where pledged, sold in a default workout"
    )
    distributions: Distributions | None = Field(
        None, description="cash paid out to equity each month; none = all cash stays in the borrower"
    )
    capex: list[CapexOrder] = Field(
        default_factory=list, description="dated GPU purchases (growth capex); empty = a static fleet (docs/model.md 5.9)"
    )
    market_access: MarketAccess | None = Field(
        None, description="access to new equity as a state by regime and leverage; none = the borrower never issues (docs/model.md 7.10)"
    )


class Recovery(Strict):
    workout_cost: Probability = Field(description="workout and legal cost, fraction of exposure")


def _name_may_be_omitted(schema: dict[str, Any]) -> None:
    """A scenario file may leave out `name`: loading gives it the file's name."""
    schema["required"] = [key for key in schema.get("required", []) if key != "name"]


# ---------------------------------------------------------------------------------------
# Desk reporting (output side only: nothing here changes a simulated number, docs/desk.md)


class TranchePiece(Strict):
    name: str = Field(description="tranche name, e.g. senior or junior")
    attachment: Probability = Field(
        description="loss at which the tranche starts to lose, as a share of the facility's principal at t_0 (0 = first loss)"
    )
    detachment: Probability = Field(description="loss at which the tranche is wiped out, as a share of the facility's principal at t_0")

    @model_validator(mode="after")
    def _ordered(self) -> TranchePiece:
        if self.detachment <= self.attachment:
            raise ValueError(f"detachment {self.detachment} must be above attachment {self.attachment}")
        return self


class TrancheSplit(Strict):
    name: str = Field(description="name of the split facility in the reports")
    instruments: list[str] = Field(
        min_length=1, description="instruments whose summed discounted loss is tranched (names in borrowers[*].debt)"
    )
    tranches: list[TranchePiece] = Field(
        min_length=1, description="the pieces, each cut from the summed loss by its attachment and detachment"
    )


class DeskSettings(Strict):
    recovery: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.40, description="recovery rate (share of exposure, below 1) stated for the market-implied PD of the credit triangle"
    )
    max_spread_ratio: Ratio = Field(
        3.0, description="market / break-even spread ratio above which the gap is flagged as too large to be a risk and liquidity premium"
    )
    max_premium_bps: Annotated[float, Field(ge=0.0, le=100_000.0)] = Field(
        300.0, description="market minus break-even spread, bps a year, above which (with the ratio) the gap is flagged as too large"
    )
    tranches: list[TrancheSplit] = Field(default_factory=list, description="facilities whose loss is reported by tranche; none by default")


# Dated shock paths: deterministic overlays on the stochastic factor levels (docs/model.md 4.13)

SHOCK_FACTORS = ("rental_rate", "utilization", "power_price", "market_depth")
"""Factors a shock can name besides the crypto assets (which it names by ticker)."""

LevelChange = Annotated[float, Field(gt=-1.0, le=100.0)]
"""A relative change of a level: -0.55 is a fall of 55 %, 1.0 a doubling."""


class ShockPoint(Strict):
    date: Date = Field(description="date the overlay reaches this change (on or after the reference date: time.start, or anchor if given)")
    level_change: LevelChange | None = Field(
        None,
        description="cumulative change of the level since the reference date, as a fraction (-0.55 = level x 0.45); "
        "for utilization, of the odds u / (u_max - u)",
    )
    log_change: LogSize | None = Field(
        None, description="the same change as a log (-0.8 = level x exp(-0.8)); for utilization, the change of logit(u / u_max)"
    )

    @model_validator(mode="after")
    def _one_change(self) -> ShockPoint:
        if (self.level_change is None) == (self.log_change is None):
            raise ValueError("give exactly one of level_change and log_change")
        return self

    @property
    def log_level(self) -> float:
        """The change in log units (log odds for utilization)."""
        change = np.log1p(self.level_change) if self.level_change is not None else self.log_change
        return float(change)  # type: ignore[arg-type]


class ShockRate(Strict):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    start: Date = Field(alias="from", description="first date of the period the rate applies over")
    end: Date = Field(alias="to", description="last date of the period (after `from`)")
    annual_rate: Annotated[float, Field(gt=-1.0, le=5.0)] = Field(
        description="compound change of the level per year over the period: the level is multiplied by (1 + annual_rate)^years "
        "(-0.30 = 30 % a year lower); for utilization, of the odds u / (u_max - u)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ShockRate:
        if self.end <= self.start:
            raise ValueError(f"to ({self.end}) must be after from ({self.start})")
        return self


class Shock(Strict):
    """A deterministic overlay on one factor's level path, multiplicative in price space."""

    factor: str = Field(
        description="a crypto asset's ticker (e.g. BTC), or rental_rate (per generation), "
        "utilization (on the logit of u / u_max), power_price or market_depth (per generation: GPUs a month the secondary market absorbs)"
    )
    generation: str | None = Field(
        None, description="rental_rate and market_depth only: the generation shocked; none = every generation"
    )
    anchor: Date | None = Field(
        None,
        description="date that time.start stands for: dates below are placed on the grid counted from it (a historical "
        "replay keeps its own dates); none = time.start",
    )
    points: list[ShockPoint] = Field(
        default_factory=list,
        description="dated cumulative changes, in increasing date order: log-linear between points (from no change at the "
        "reference date), held after the last point",
    )
    rates: list[ShockRate] = Field(
        default_factory=list, description="periods of compound change, added to the points' path in log space; held after each period"
    )

    @model_validator(mode="after")
    def _has_path(self) -> Shock:
        if not self.points and not self.rates:
            raise ValueError("give points or rates (or both)")
        dates = [p.date for p in self.points]
        if len(set(dates)) != len(dates) or dates != sorted(dates):
            raise ValueError("points must be in strictly increasing date order")
        return self


class Scenario(Strict):
    """A scenario as `gpusim validate` resolves it (after `extends:`)."""

    model_config = ConfigDict(json_schema_extra=_name_may_be_omitted)

    name: str = Field(description="scenario name (defaults to the file name)")
    description: str = Field("", description="what the scenario represents")
    time: TimeGrid = Field(default_factory=TimeGrid)
    regime: Regime
    crypto: Crypto
    compute: Compute
    power: Power
    secondary_market: SecondaryMarket
    mining: Mining
    rates: Rates
    recovery: Recovery
    borrowers: list[Borrower] = Field(default_factory=list, description="the portfolio's obligors")
    desk: DeskSettings = Field(
        default_factory=DeskSettings,
        description="how the desk measures are reported (recovery, spread flags, tranches); no effect on the model",
    )
    shocks: list[Shock] = Field(
        default_factory=list,
        description="dated shock paths: deterministic overlays on the simulated factor levels (docs/model.md 4.13); none = no overlay",
    )


# ---------------------------------------------------------------------------------------
# Cross-references pydantic cannot see field by field


def _duplicates(names: list[str]) -> set[str]:
    seen: set[str] = set()
    return {n for n in names if n in seen or seen.add(n)}


def _tenant_problems(bi: int, b: Borrower) -> list[str]:
    """Each gpu_hours tenant leases GPUs of one of the borrower's fleets, never more than the fleet
    has beside its contracted share."""
    problems: list[str] = []
    fleets = {f.generation: f for f in b.fleets}
    leased: dict[str, int] = {}
    for ti, t in enumerate(b.tenants):
        if t.kind != "gpu_hours":
            continue
        if t.generation not in fleets:
            problems.append(f"borrowers[{bi}].tenants[{ti}].generation: {t.generation!r} is not a fleet of {b.name} ({sorted(fleets)})")
        else:
            leased[t.generation] = leased.get(t.generation, 0) + t.gpus
    for g, n in leased.items():
        free = fleets[g].count * (1.0 - fleets[g].contracted_share)
        if n > free + 1e-9:
            problems.append(f"borrowers[{bi}].tenants: {n} {g} GPUs leased to tenants, more than the {free:g} outside the contracted share")
    return problems


def _capex_problems(bi: int, b: Borrower, gens: list[str]) -> list[str]:
    """Capex orders buy a simulated generation and draw one of the borrower's own facilities; a
    tenant starting later may lease GPUs that committed orders deliver by its start."""
    problems: list[str] = []
    facilities = [i.name for i in b.debt if i.kind == "facility"]
    retired = sum(o.replaces for o in b.capex)
    if any(o.kind == "miners" for o in b.capex) and b.mining is None:
        problems.append(f"borrowers[{bi}].capex: miners orders need a mining operation on {b.name}")
    elif b.mining is not None and retired > b.mining.hashrate:
        problems.append(f"borrowers[{bi}].capex: replaces {retired:g} PH/s in all, more than the {b.mining.hashrate:g} PH/s at t_0")
    for oi, o in enumerate(b.capex):
        if o.kind == "gpus" and o.generation not in gens:
            problems.append(f"borrowers[{bi}].capex[{oi}].generation: {o.generation!r} is not one of {gens}")
        if o.facility is not None and o.facility not in facilities:
            problems.append(f"borrowers[{bi}].capex[{oi}].facility: {o.facility!r} is not a facility of {b.name} ({facilities})")
        if "equity" in o.funding and (b.market_access is None or b.market_access.equity is None):
            problems.append(f"borrowers[{bi}].capex[{oi}].funding: equity needs market_access.equity on {b.name}")
        if "debt" in o.funding and (b.market_access is None or b.market_access.debt is None):
            problems.append(f"borrowers[{bi}].capex[{oi}].funding: debt needs market_access.debt on {b.name}")
    problems.extend(_debt_issuance_problems(bi, b))
    for ii, inst in enumerate(b.debt):
        if inst.refinancing is not None and inst.refinancing.via_market_access and b.market_access is None:
            problems.append(f"borrowers[{bi}].debt[{ii}].refinancing.via_market_access: {b.name} has no market_access")
    for ti, t in enumerate(b.tenants):
        if t.start is not None and t.start >= t.expiry:
            problems.append(f"borrowers[{bi}].tenants[{ti}].start: {t.start} is not before expiry {t.expiry}")
    return problems


def _debt_issuance_problems(bi: int, b: Borrower) -> list[str]:
    """New debt goes into one of the borrower's own term loans or bonds, whose commitment caps it;
    a commitment on a term loan or bond means nothing elsewhere."""
    problems: list[str] = []
    issuance = b.market_access.debt if b.market_access is not None else None
    target = issuance.instrument if issuance is not None else None
    if issuance is not None:
        names = [i.name for i in b.debt if i.kind in ("term_loan", "bond")]
        if target not in names:
            problems.append(f"borrowers[{bi}].market_access.debt.instrument: {target!r} is not a term loan or bond of {b.name} ({names})")
    for ii, inst in enumerate(b.debt):
        if inst.kind in ("term_loan", "bond") and inst.name == target and inst.commitment is None:
            problems.append(f"borrowers[{bi}].debt[{ii}].commitment: required on {inst.name!r}, the instrument of market_access.debt")
        elif inst.kind in ("term_loan", "bond") and inst.commitment is not None and inst.name != target:
            problems.append(f"borrowers[{bi}].debt[{ii}].commitment: only the instrument of market_access.debt has one on a {inst.kind}")
        elif inst.name == target and inst.commitment is not None and inst.principal > inst.commitment:
            problems.append(f"borrowers[{bi}].debt[{ii}].principal: {inst.principal:g} exceeds its commitment {inst.commitment:g}")
    return problems


def _tenants_with_capex(b: Borrower) -> Borrower:
    """The borrower as the tenant check sees it: a tenant starting later may also lease the GPUs
    that committed capex orders deliver by its start, so each such generation counts as one fleet
    without contracted share of its GPUs outside the contracted share plus those deliveries."""
    ordered: dict[str, int] = {}
    for t in b.tenants:
        if t.kind == "gpu_hours" and t.start is not None:
            for o in b.capex:
                if o.kind == "gpus" and o.committed and o.generation == t.generation and o.date <= t.start:
                    ordered[o.generation] = ordered.get(o.generation, 0) + o.count
    if not ordered:
        return b
    fleets = {f.generation: f for f in b.fleets}
    merged = [f for f in b.fleets if f.generation not in ordered]
    for g, n in ordered.items():
        own = fleets.get(g)
        free = math.floor(own.count * (1.0 - own.contracted_share) + 1e-9) if own is not None else 0
        merged.append(Fleet(generation=g, count=free + n, purchase_date=b.capex[0].date, purchase_price=1.0))
    return b.model_copy(update={"fleets": merged})


def check_references(s: Scenario) -> list[str]:
    """Problems that involve more than one field, each with its field path."""
    problems: list[str] = []
    assets = [a.name for a in s.crypto.assets]
    gens = [g.name for g in s.compute.generations]
    for path, names in (("crypto.assets", assets), ("compute.generations", gens), ("borrowers", [b.name for b in s.borrowers])):
        for d in sorted(_duplicates(names)):
            problems.append(f"{path}: name {d!r} appears more than once")
    instruments = [i.name for b in s.borrowers for i in b.debt]
    for d in sorted(_duplicates(instruments)):
        problems.append(f"borrowers[*].debt: instrument name {d!r} appears more than once")
    if "BTC" not in assets:
        problems.append(f"crypto.assets: BTC is required (hashprice and the compute correlation follow it); got {assets}")
    if s.crypto.correlation is not None:
        for regime, matrix in zip(("easy", "tight"), s.crypto.correlation.pair(), strict=True):
            m = np.asarray(matrix, dtype=float)
            where = f"crypto.correlation.{regime}"
            if m.shape != (len(assets), len(assets)):
                problems.append(f"{where}: must be {len(assets)}x{len(assets)} (one row per asset), got shape {m.shape}")
            elif not np.allclose(m, m.T) or not np.allclose(np.diag(m), 1.0):
                problems.append(f"{where}: must be symmetric with ones on the diagonal")
            elif np.linalg.eigvalsh(m).min() < -1e-12:
                problems.append(f"{where}: must be positive semi-definite (smallest eigenvalue {np.linalg.eigvalsh(m).min():.3g})")
    releases = [g.release for g in s.compute.generations]
    if releases != sorted(releases):
        problems.append("compute.generations: list generations oldest first (by release date)")
    for i, launch in enumerate(s.compute.obsolescence.launches):
        if launch.name in gens:
            problems.append(f"compute.obsolescence.launches[{i}].name: {launch.name!r} is already a simulated generation")
    points = [p.years for p in s.rates.base_curve]
    if points != sorted(points):
        problems.append("rates.base_curve: points must be in increasing order of years")
    for bi, b in enumerate(s.borrowers):
        own_gens = [f.generation for f in b.fleets]
        own_assets = [h.asset for h in b.treasury]
        for fi, f in enumerate(b.fleets):
            if f.generation not in gens:
                problems.append(f"borrowers[{bi}].fleets[{fi}].generation: {f.generation!r} is not one of {gens}")
            if f.contracted_share > 0 and f.contract_expiry is None:
                problems.append(f"borrowers[{bi}].fleets[{fi}].contract_expiry: required when contracted_share > 0")
        for d in sorted(_duplicates(own_gens)):
            problems.append(f"borrowers[{bi}].fleets: generation {d!r} appears more than once (merge the fleets)")
        problems += _tenant_problems(bi, _tenants_with_capex(b)) + _capex_problems(bi, b, gens)
        for hi, h in enumerate(b.treasury):
            if h.asset not in assets:
                problems.append(f"borrowers[{bi}].treasury[{hi}].asset: {h.asset!r} is not one of {assets}")
        for ii, inst in enumerate(b.debt):
            for g in inst.collateral.fleets:
                if g not in own_gens + [o.generation for o in b.capex if o.kind == "gpus"]:
                    problems.append(f"borrowers[{bi}].debt[{ii}].collateral.fleets: {g!r} is not a fleet of {b.name} ({own_gens})")
            secured = inst.collateral.fleets or inst.collateral.crypto or inst.collateral.data_centres
            if inst.covenants is not None and inst.covenants.ltv_max is not None and not secured:
                problems.append(f"borrowers[{bi}].debt[{ii}].covenants.ltv_max: an LTV covenant needs collateral; collateral is empty")
            if inst.maturity_date <= s.time.start:
                problems.append(f"borrowers[{bi}].debt[{ii}].maturity_date: {inst.maturity_date} is not after time.start {s.time.start}")
            for a in inst.collateral.crypto:
                if a not in own_assets:
                    problems.append(f"borrowers[{bi}].debt[{ii}].collateral.crypto: {b.name} holds no {a!r} ({own_assets})")
        problems += _data_centre_problems(bi, b)
    problems += _desk_problems(s)
    problems += _shock_problems(s, assets, gens)
    return problems


def _data_centre_problems(bi: int, b: Borrower) -> list[str]:
    """Data-centre names are unique within a borrower, and an instrument pledges only its own borrower's sites."""
    names = [d.name for d in b.data_centres]
    problems = [f"borrowers[{bi}].data_centres: name {d!r} appears more than once" for d in sorted(_duplicates(names))]
    for ii, inst in enumerate(b.debt):
        for d in inst.collateral.data_centres:
            if d not in names:
                problems.append(f"borrowers[{bi}].debt[{ii}].collateral.data_centres: {d!r} is not a data centre of {b.name} ({names})")
    return problems


def _desk_problems(s: Scenario) -> list[str]:
    """Each tranched facility names instruments of the portfolio, once each."""
    problems: list[str] = []
    known = {i.name for b in s.borrowers for i in b.debt}
    for k, split in enumerate(s.desk.tranches):
        for name in split.instruments:
            if name not in known:
                problems.append(f"desk.tranches[{k}].instruments: {name!r} is not an instrument of the portfolio")
        for d in sorted(_duplicates(list(split.instruments))):
            problems.append(f"desk.tranches[{k}].instruments: {d!r} appears more than once")
    return problems


def _shock_problems(s: Scenario, assets: list[str], gens: list[str]) -> list[str]:
    """Each shock names a factor of this scenario, and its dates lie on or after its reference date."""
    problems: list[str] = []
    for si, shock in enumerate(s.shocks):
        where = f"shocks[{si}]"
        if shock.factor not in assets and shock.factor not in SHOCK_FACTORS:
            problems.append(f"{where}.factor: {shock.factor!r} is none of the crypto assets {assets} or {list(SHOCK_FACTORS)}")
        if shock.generation is not None and shock.factor not in ("rental_rate", "market_depth"):
            problems.append(f"{where}.generation: only a rental_rate or market_depth shock names a generation")
        elif shock.generation is not None and shock.generation not in gens:
            problems.append(f"{where}.generation: {shock.generation!r} is not one of {gens}")
        reference = shock.anchor or s.time.start
        for pi, point in enumerate(shock.points):
            if point.date < reference:
                problems.append(f"{where}.points[{pi}].date: {point.date} is before the reference date {reference}")
        for ri, rate in enumerate(shock.rates):
            if rate.start < reference:
                problems.append(f"{where}.rates[{ri}].from: {rate.start} is before the reference date {reference}")
    return problems
