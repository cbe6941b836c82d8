"""Scenario files: the schema of docs/model.md sections 2-6 (`schema`), YAML loading with `extends:`
and `--set` overrides (`loading`), and the calendar that puts dated events on the time grid
(`calendar`)."""

from gpusim.scenario.calendar import add_months, event_step, step_holding, year_fraction
from gpusim.scenario.loading import (
    ConfigError,
    apply_overrides,
    deep_merge,
    load_scenario,
    scenario_from,
    shipped_scenarios,
    to_yaml,
    validate_mapping,
)
from gpusim.scenario.schema import Borrower, Scenario, TimeGrid, check_references

__all__ = [
    "Borrower",
    "ConfigError",
    "Scenario",
    "TimeGrid",
    "add_months",
    "apply_overrides",
    "check_references",
    "deep_merge",
    "event_step",
    "load_scenario",
    "scenario_from",
    "shipped_scenarios",
    "step_holding",
    "to_yaml",
    "validate_mapping",
    "year_fraction",
]
