"""The scenario schema: pydantic models of MODEL.md sections 2-6 and the checks across fields.

Each field states its meaning and units once, in its description; `gpusim schema` prints
them as JSON Schema. `check_references` finds what pydantic cannot see field by field
(names that must match, matrices that must be correlation matrices, dates in order). Reading
YAML files and turning errors into messages is `gpusim.scenario.loading`.
"""

from __future__ import annotations

from datetime import date as Date
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Correlation = Annotated[float, Field(ge=-1.0, le=1.0)]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    spot: Positive = Field(description="price at t_0, USD per unit")
    drift: ByRegime[float] = Field(description="expected total return mu_R, per year")
    vol: ByRegime[NonNegative] = Field(description="diffusion volatility sigma_R, per sqrt(year)")
    jump_rate: ByRegime[NonNegative] = Field(description="jump intensity lambda_R, jumps per year")
    jump_mean: ByRegime[float] = Field(description="mean log jump size mu_J")
    jump_std: ByRegime[NonNegative] = Field(description="standard deviation of the log jump size sigma_J")
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
    rental_rate: Positive = Field(description="spot rental rate r^g_0 at t_0, USD per GPU-hour")
    kw_per_gpu: Positive = Field(description="power draw per GPU including its share of the server, kW")
    economic_life_years: Positive = Field(description="economic life from release; the income approach values rent up to its end, years")
    scrap_value: Positive = Field(description="floor value of one GPU (parts, scrap), USD")
    new_price: Positive = Field(description="purchase price of a new GPU incl. its server share, USD (book value basis)")
    market_depth: ByRegime[Positive] = Field(description="D^g_R: GPUs the secondary market absorbs in a month at the mark")
    exogenous_distressed_supply: ByRegime[NonNegative] = Field(
        description="q_exo,R: distressed GPUs a month sold by owners outside the portfolio"
    )


class Obsolescence(Strict):
    drop: NonNegative = Field(description="theta: log-drop of an older generation's rent at a launch, for one generation behind")
    curvature: Positive = Field(description="eta: the drop is theta * (generations behind the newest)^eta; eta > 1 is non-linear")
    random_launch_rate: NonNegative = Field(0.0, description="lambda_gen: unscheduled launches per year (at most one per step)")
    launches: list[Launch] = Field(default_factory=list, description="scheduled launches of generations newer than every simulated one")


class CompoundShock(Strict):
    mean_reversion: Positive = Field(description="kappa of the common OU shock X of rental rates, per year")
    vol: NonNegative = Field(description="sigma_X, per sqrt(year)")
    corr_btc: ByRegime[Correlation] = Field(description="rho_R = corr(Z_X, Z_S of BTC); higher in tight: the correlated failure")


class Utilization(Strict):
    max: Probability = Field(description="u_max: ceiling of market utilization")
    level: ByRegime[float] = Field(description="a_R: logit level; u = u_max / (1 + exp(-(a_R + b X)))")
    sensitivity: float = Field(description="b: response of utilization to the compute shock X")


class Valuation(Strict):
    expected_deflation: NonNegative = Field(description="dbar: the valuer's expected rent deflation, per year")
    discount_yield: ByRegime[Positive] = Field(description="y_R: yield a buyer of used GPUs discounts at, per year")
    pue: Annotated[float, Field(ge=1.0)] = Field(description="power usage effectiveness the valuer assumes")


class Compute(Strict):
    generations: list[Generation] = Field(min_length=1, description="GPU generations with a rental market")
    deflation: ByRegime[float] = Field(description="delta_R: drift of log rental rates downward, per year")
    shock: CompoundShock
    utilization: Utilization
    obsolescence: Obsolescence
    valuation: Valuation


class Power(Strict):
    price: Positive = Field(description="industrial electricity price at t_0, USD per kWh")
    long_run: Positive = Field(description="long-run level of the log-OU power price, USD per kWh")
    mean_reversion: Positive = Field(description="speed of reversion of the log price, per year")
    vol: NonNegative = Field(description="volatility of the log price, per sqrt(year)")


class SecondaryMarket(Strict):
    integration_discount: Probability = Field(description="h_int: share of value lost when GPUs leave their data center")
    price_impact: ByRegime[NonNegative] = Field(description="alpha_R: fire-sale impact per unit of Q/D in the liquidation month")
    mark_impact: NonNegative = Field(description="alpha_mark: how much remembered distressed supply L depresses marks")
    memory_years: Positive = Field(description="tau: e-folding time of the distressed-supply memory L, years")


class Mining(Strict):
    hashprice: Positive = Field(description="hp_0: USD per PH/s per day at t_0 (scales with BTC price)")
    difficulty_growth: float = Field(description="g_d: continuous decline of hashprice per unit BTC from network growth, per year")
    halvings: list[Date] = Field(default_factory=list, description="dates the block subsidy halves (hashprice halves)")


class RatePoint(Strict):
    years: NonNegative = Field(description="time from t_0, years")
    rate: float = Field(description="base rate (e.g. SOFR), per year, continuous interpolation between points")


class Rates(Strict):
    base_curve: list[RatePoint] = Field(min_length=1, description="deterministic base-rate curve, linear between points, flat beyond")


# ---------------------------------------------------------------------------------------
# Sections 5-6: borrowers and debt


class Fleet(Strict):
    generation: str = Field(description="name of a generation in compute.generations")
    count: Annotated[int, Field(ge=0)] = Field(description="GPUs owned")
    purchase_date: Date = Field(description="when the fleet was bought (book depreciation starts)")
    purchase_price: Positive = Field(description="price paid per GPU incl. server share, USD")
    contracted_share: Probability = Field(0.0, description="s_g: share of the fleet on take-or-pay contracts")
    contract_rate: NonNegative = Field(0.0, description="rc_g: contract rate, USD per GPU-hour")
    contract_expiry: Date | None = Field(None, description="after this date the contracted share earns spot")
    book_life_years: Positive = Field(
        6.0, description="straight-line depreciation life for book value, years (CoreWeave, Alphabet, Microsoft: 6; Nebius: 4)"
    )


class MiningOperation(Strict):
    hashrate: Positive = Field(description="PH/s of installed miners")
    efficiency: Positive = Field(description="J/TH of the fleet (= kW per PH/s)")


class Holding(Strict):
    asset: str = Field(description="name of a crypto asset")
    units: NonNegative = Field(description="units held in treasury")
    pledged_share: Probability = Field(0.0, description="share of the holding pledged to lenders")


class RevenueShock(Strict):
    vol: NonNegative = Field(description="volatility of the borrower's log-OU revenue shock eps, per sqrt(year)")
    mean_reversion: Positive = Field(description="speed of reversion of eps, per year")


class Covenants(Strict):
    dscr_min: Positive | None = Field(None, description="minimum DSCR on trailing 12 months (CFADS / debt service)")
    ltv_max: Positive | None = Field(None, description="maximum loan-to-value of the collateral")
    ltv_basis: Literal["book", "mark"] = Field(
        "mark", description="value the LTV test uses: straight-line book value or the secondary-market mark"
    )
    test_every_months: Annotated[int, Field(ge=1)] = Field(3, description="covenant test frequency, months")
    cure_periods: Annotated[int, Field(ge=0)] = Field(1, description="consecutive failed tests tolerated before a covenant default")
    # remedies of a breach (MODEL.md 7.4); none by default
    waiver_fee: Probability | None = Field(
        None,
        description="in the easy regime lenders waive a failed test for a fee of this share of the outstanding, paid from cash "
        "when cash covers it (the test then counts as passed); none = no waivers",
    )
    equity_cures: Annotated[int, Field(ge=0)] = Field(
        0,
        description="in the easy regime a failed DSCR or minimum-liquidity test is cured by the sponsor injecting the cash "
        "shortfall ((dscr_min - DSCR) x trailing debt service, plus min_liquidity - cash), at most this many times over the life; "
        "the test then counts as passed. 0 = no equity cures",
    )
    breach_step_up: NonNegative = Field(
        0.0, description="margin step-up added to the coupon while the instrument is in breach (a failed test not yet passed), per year"
    )
    cash_sweep_floor: NonNegative | None = Field(
        None,
        description="while the instrument is in breach, cash above this floor, USD, prepays it every step; none = no cash sweep",
    )


class Refinancing(Strict):
    max_ltv: Positive = Field(
        description="LTV at or below which lenders refinance (in the easy regime, and in the tight one where tight_spread_step_up is set)"
    )
    min_dscr: Positive = Field(description="trailing DSCR at or above which lenders refinance")
    tenor_years: Positive = Field(description="tenor of the refinanced loan, years")
    spread_step_up: NonNegative = Field(0.0, description="added to the coupon of a loan refinanced in the easy regime, per year")
    # refinancing window and the tight regime
    window_months: Annotated[int, Field(ge=0)] = Field(
        0,
        description="refinancing is attempted in every step from this many months before maturity up to the maturity step, months; "
        "0 = only in the maturity step",
    )
    tight_spread_step_up: NonNegative | None = Field(
        None,
        description="added to the coupon of a loan refinanced in the tight regime, per year; "
        "none = lenders refinance only in the easy regime",
    )


class Collateral(Strict):
    fleets: list[str] = Field(default_factory=list, description="generations of the borrower's own fleets pledged")
    crypto: list[str] = Field(default_factory=list, description="assets whose pledged treasury share secures this instrument")


class Instrument(Strict):
    name: str = Field(description="unique instrument name")
    kind: Literal["term_loan", "facility", "bond", "convertible"] = Field(
        description="amortizing term loan, delayed-draw/ABL facility, bullet bond, or convertible note (bullet, unsecured)"
    )
    principal: NonNegative = Field(description="outstanding (drawn) principal at t_0, USD")
    commitment: NonNegative | None = Field(None, description="facility limit, USD (facilities only)")
    advance_rate: Probability | None = Field(None, description="borrowing base = advance_rate x collateral mark (facilities only)")
    amortization: Literal["level_principal", "annuity", "bullet"] = Field("bullet", description="repayment profile")
    rate_type: Literal["fixed", "floating"] = Field(description="fixed coupon, or base rate plus spread")
    coupon: float = Field(description="fixed coupon, or spread over the base curve if floating, per year")
    payments_per_year: Literal[1, 2, 4, 12] = Field(4, description="payment frequency")
    issue_date: Date = Field(description="date the instrument was issued")
    maturity_date: Date = Field(description="final maturity")
    seniority: Annotated[int, Field(ge=1)] = Field(1, description="rank in the recovery waterfall, 1 = most senior")
    collateral: Collateral = Field(default_factory=Collateral, description="assets pledged; empty = unsecured")
    covenants: Covenants | None = Field(None, description="maintenance covenants")
    refinancing: Refinancing | None = Field(None, description="terms on which maturity is refinanced; none = must repay")
    market_spread_bps: float = Field(description="spread actually charged over the base curve, bps (compared with break-even)")
    conversion_price: Positive | None = Field(
        None, description="convertible: conversion price USD per share (conversion not modelled in v1)"
    )

    @model_validator(mode="after")
    def _kind_rules(self) -> Instrument:
        if self.maturity_date <= self.issue_date:
            raise ValueError(f"maturity_date {self.maturity_date} must be after issue_date {self.issue_date}")
        if self.kind in ("bond", "convertible") and self.amortization != "bullet":
            raise ValueError(f"a {self.kind} is bullet; amortization must be 'bullet', got {self.amortization!r}")
        if self.kind == "convertible" and (self.collateral.fleets or self.collateral.crypto):
            raise ValueError("a convertible note is unsecured; collateral must be empty")
        if self.kind == "facility":
            if self.commitment is None or self.advance_rate is None:
                raise ValueError("a facility needs commitment and advance_rate")
            if self.principal > self.commitment:
                raise ValueError(f"drawn principal {self.principal} exceeds commitment {self.commitment}")
        elif self.commitment is not None or self.advance_rate is not None:
            raise ValueError("commitment and advance_rate apply to facilities only")
        return self


class Borrower(Strict):
    name: str = Field(description="unique borrower name")
    type: Literal["neocloud", "miner", "project_spv"] = Field(description="label used in reports; the model is common")
    cash: NonNegative = Field(description="cash balance at t_0, USD")
    min_liquidity: NonNegative | None = Field(
        None, description="minimum-liquidity covenant, USD: tested with the DSCR covenant dates; a breach counts on the DSCR cure clock"
    )
    fixed_opex_per_month: NonNegative = Field(description="fixed operating cost, USD per month")
    pue: Annotated[float, Field(ge=1.0)] = Field(description="power usage effectiveness of the borrower's sites")
    power_price_ratio: Positive = Field(1.0, description="borrower's power price / market power price")
    revenue_shock: RevenueShock
    fleets: list[Fleet] = Field(default_factory=list, description="GPU fleets by generation")
    mining: MiningOperation | None = Field(None, description="bitcoin mining operation")
    treasury: list[Holding] = Field(default_factory=list, description="crypto held on balance sheet")
    debt: list[Instrument] = Field(min_length=1, description="debt instruments owed")


class Recovery(Strict):
    workout_cost: Probability = Field(description="workout and legal cost, fraction of exposure")


class Scenario(Strict):
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


# ---------------------------------------------------------------------------------------
# Cross-references pydantic cannot see field by field


def _duplicates(names: list[str]) -> set[str]:
    seen: set[str] = set()
    return {n for n in names if n in seen or seen.add(n)}


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
        for hi, h in enumerate(b.treasury):
            if h.asset not in assets:
                problems.append(f"borrowers[{bi}].treasury[{hi}].asset: {h.asset!r} is not one of {assets}")
        for ii, inst in enumerate(b.debt):
            for g in inst.collateral.fleets:
                if g not in own_gens:
                    problems.append(f"borrowers[{bi}].debt[{ii}].collateral.fleets: {g!r} is not a fleet of {b.name} ({own_gens})")
            if inst.covenants is not None and inst.covenants.ltv_max is not None and not (inst.collateral.fleets or inst.collateral.crypto):
                problems.append(f"borrowers[{bi}].debt[{ii}].covenants.ltv_max: an LTV covenant needs collateral; collateral is empty")
            if inst.maturity_date <= s.time.start:
                problems.append(f"borrowers[{bi}].debt[{ii}].maturity_date: {inst.maturity_date} is not after time.start {s.time.start}")
            for a in inst.collateral.crypto:
                if a not in own_assets:
                    problems.append(f"borrowers[{bi}].debt[{ii}].collateral.crypto: {b.name} holds no {a!r} ({own_assets})")
    return problems
