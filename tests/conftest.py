"""Shared fixtures: the small scenario of tests/helpers.py, validated and compiled."""

from __future__ import annotations

import os

import pytest
from helpers import small_mapping

from gpusim.backends import NATIVE_SWITCH
from gpusim.scenario import Scenario, validate_mapping
from gpusim.spec import RunSpec, build_spec

# `--backend auto` takes numpy in the suite's runs, whose results the tests compare with numpy's:
# the native backend (a C++ build per config shape) is tested on its own (tests/test_native_backend.py).
os.environ.setdefault(NATIVE_SWITCH, "0")


@pytest.fixture
def small_scenario() -> Scenario:
    return validate_mapping(small_mapping(), "small")


@pytest.fixture
def small_spec(small_scenario: Scenario) -> RunSpec:
    return build_spec(small_scenario, "float64")
