"""Scenario files: the schema of MODEL.md sections 2-6, YAML loading with `extends:` and
`--set` overrides, and the calendar that puts dated events on the time grid."""

from gpusim.scenario.schema import (
    ConfigError,
    Scenario,
    apply_overrides,
    load_scenario,
    shipped_scenarios,
    to_yaml,
    validate_mapping,
)

__all__ = ["ConfigError", "Scenario", "apply_overrides", "load_scenario", "shipped_scenarios", "to_yaml", "validate_mapping"]
