"""Shared fixtures: a small self-contained scenario that tests modify field by field."""

from __future__ import annotations

import pytest
from helpers import SMALL, small_mapping  # noqa: F401  (test modules import the small scenario from here too)

from gpusim.scenario import Scenario, validate_mapping
from gpusim.spec import RunSpec, build_spec


@pytest.fixture
def small_scenario() -> Scenario:
    return validate_mapping(small_mapping(), "small")


@pytest.fixture
def small_spec(small_scenario: Scenario) -> RunSpec:
    return build_spec(small_scenario, "float64")
