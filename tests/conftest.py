"""Shared fixtures: a small self-contained scenario that tests modify field by field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gpusim.scenario import Scenario, validate_mapping
from gpusim.spec import RunSpec, build_spec

SMALL: dict[str, Any] = {
    "name": "small",
    "time": {"start": "2026-01-01", "steps_per_year": 12, "n_steps": 24},
    "regime": {"initial": "easy", "p_easy_to_tight": 0.03, "p_tight_to_easy": 0.10},
    "crypto": {
        "assets": [
            {
                "name": "BTC",
                "spot": 90000.0,
                "drift": {"easy": 0.15, "tight": -0.20},
                "vol": {"easy": 0.50, "tight": 0.85},
                "jump_rate": {"easy": 15.0, "tight": 25.0},
                "jump_mean": {"easy": -0.01, "tight": -0.07},
                "jump_std": {"easy": 0.135, "tight": 0.15},
                "sale_slippage": {"easy": 0.01, "tight": 0.05},
            },
            {
                "name": "ETH",
                "spot": 3000.0,
                "drift": 0.10,
                "vol": {"easy": 0.70, "tight": 1.0},
                "jump_rate": 10.0,
                "jump_mean": -0.02,
                "jump_std": 0.15,
                "sale_slippage": 0.02,
            },
        ],
        "correlation": {"easy": [[1.0, 0.7], [0.7, 1.0]], "tight": [[1.0, 0.85], [0.85, 1.0]]},
    },
    "compute": {
        "generations": [
            {
                "name": "H100",
                "release": "2023-03-01",
                "rental_rate": 2.2,
                "kw_per_gpu": 1.3,
                "economic_life_years": 6.0,
                "scrap_value": 500.0,
                "new_price": 30000.0,
                "market_depth": {"easy": 20000, "tight": 5000},
                "exogenous_distressed_supply": {"easy": 500, "tight": 3000},
            },
            {
                "name": "B200",
                "release": "2025-01-01",
                "rental_rate": 3.2,
                "kw_per_gpu": 1.7,
                "economic_life_years": 6.0,
                "scrap_value": 800.0,
                "new_price": 47000.0,
                "market_depth": {"easy": 10000, "tight": 2500},
                "exogenous_distressed_supply": {"easy": 200, "tight": 1500},
            },
        ],
        "deflation": {"easy": 0.25, "tight": 0.40},
        "shock": {"mean_reversion": 1.5, "vol": 0.30, "corr_btc": {"easy": 0.2, "tight": 0.6}},
        "utilization": {"max": 0.95, "level": {"easy": 2.0, "tight": 1.0}, "sensitivity": 2.0},
        "obsolescence": {
            "drop": 0.10,
            "curvature": 1.5,
            "random_launch_rate": 0.2,
            "launches": [{"name": "Rubin", "date": "2026-09-01"}, {"name": "Feynman", "date": "2028-06-01"}],
        },
        "valuation": {"expected_deflation": 0.25, "discount_yield": {"easy": 0.12, "tight": 0.18}, "pue": 1.3},
    },
    "power": {"price": 0.07, "long_run": 0.07, "mean_reversion": 1.0, "vol": 0.2},
    "secondary_market": {
        "integration_discount": 0.3,
        "price_impact": {"easy": 0.5, "tight": 1.5},
        "mark_impact": 0.5,
        "memory_years": 0.25,
    },
    "mining": {"hashprice": 45.0, "difficulty_growth": 0.3, "halvings": ["2028-04-15"]},
    "rates": {"base_curve": [{"years": 0, "rate": 0.043}, {"years": 5, "rate": 0.04}]},
    "recovery": {"workout_cost": 0.05},
    "borrowers": [
        {
            "name": "Neo",
            "type": "neocloud",
            "cash": 2.0e8,
            "fixed_opex_per_month": 5.0e6,
            "pue": 1.3,
            "revenue_shock": {"vol": 0.2, "mean_reversion": 2.0},
            "fleets": [
                {
                    "generation": "H100",
                    "count": 20000,
                    "purchase_date": "2024-06-01",
                    "purchase_price": 30000.0,
                    "contracted_share": 0.7,
                    "contract_rate": 2.4,
                    "contract_expiry": "2028-06-01",
                }
            ],
            "debt": [
                {
                    "name": "Neo-DDTL",
                    "kind": "term_loan",
                    "principal": 4.0e8,
                    "amortization": "level_principal",
                    "rate_type": "floating",
                    "coupon": 0.065,
                    "issue_date": "2024-06-01",
                    "maturity_date": "2029-06-01",
                    "collateral": {"fleets": ["H100"]},
                    "covenants": {"dscr_min": 1.2, "ltv_max": 0.8},
                    "market_spread_bps": 650,
                }
            ],
        }
    ],
}


def small_mapping(**changes: Any) -> dict[str, Any]:
    """A deep copy of SMALL with top-level sections replaced or merged."""
    data = copy.deepcopy(SMALL)
    for key, value in changes.items():
        data[key] = value
    return data


@pytest.fixture
def small_scenario() -> Scenario:
    return validate_mapping(small_mapping(), "small")


@pytest.fixture
def small_spec(small_scenario: Scenario) -> RunSpec:
    return build_spec(small_scenario, "float64")
