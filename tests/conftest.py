"""Shared fixtures: the small scenario of tests/helpers.py, validated and compiled."""

from __future__ import annotations

import pytest
from helpers import small_mapping

from gpusim.scenario import Scenario, validate_mapping
from gpusim.spec import RunSpec, build_spec


@pytest.fixture
def small_scenario() -> Scenario:
    return validate_mapping(small_mapping(), "small")


@pytest.fixture
def small_spec(small_scenario: Scenario) -> RunSpec:
    return build_spec(small_scenario, "float64")
