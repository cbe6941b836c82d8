"""Scenario files: schema, extends, overrides, and errors a user can read."""

from __future__ import annotations

import json
from datetime import date

import pytest
import yaml
from helpers import small_mapping

from gpusim.scenario import (
    ConfigError,
    Scenario,
    TimeGrid,
    add_months,
    deep_merge,
    event_step,
    load_scenario,
    shipped_scenarios,
    step_holding,
    to_yaml,
    validate_mapping,
)

SHIPPED = {"baseline", "crypto_winter", "deflation_shock", "rubin_early", "market_freeze", "perfect_storm", "bench"}


def _write_yaml(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_shipped_scenario_validates():
    assert set(shipped_scenarios()) >= SHIPPED
    for name in shipped_scenarios():
        scenario = load_scenario(name)
        assert scenario.name == name


def test_baseline_has_the_portfolio_the_issue_asks_for():
    s = load_scenario("baseline")
    types = [b.type for b in s.borrowers]
    assert types.count("neocloud") >= 3 and types.count("miner") >= 3 and types.count("project_spv") >= 1
    assert [g.name for g in s.compute.generations] == ["A100", "H100", "H200", "B200"]
    assert {a.name for a in s.crypto.assets} >= {"BTC", "ETH"}
    assert any(launch.name.startswith("Rubin") for launch in s.compute.obsolescence.launches)
    kinds = {i.kind for b in s.borrowers for i in b.debt}
    assert kinds == {"term_loan", "facility", "bond", "convertible"}


def test_bench_is_the_fixed_benchmark_shape():
    s = load_scenario("bench")
    assert (len(s.borrowers), len(s.compute.generations), len(s.crypto.assets)) == (16, 4, 2)
    assert (s.time.n_steps, s.time.steps_per_year) == (120, 12)


def test_stress_scenarios_change_what_they_stress():
    base = load_scenario("baseline")
    assert load_scenario("crypto_winter").crypto != base.crypto
    assert load_scenario("deflation_shock").compute.deflation != base.compute.deflation
    assert load_scenario("rubin_early").compute.obsolescence != base.compute.obsolescence
    assert load_scenario("market_freeze").secondary_market != base.secondary_market
    storm = load_scenario("perfect_storm")
    assert storm.crypto != base.crypto and storm.compute.deflation != base.compute.deflation
    assert storm.secondary_market != base.secondary_market
    assert storm.borrowers == base.borrowers


def test_extends_merges_mappings_and_named_lists(tmp_path):
    _write_yaml(tmp_path, "base.yaml", small_mapping())
    child = {
        "extends": "base.yaml",
        "name": "child",
        "crypto": {"assets": [{"name": "BTC", "vol": {"easy": 0.9, "tight": 1.2}}]},
        "power": {"vol": 0.5},
    }
    s = load_scenario(_write_yaml(tmp_path, "child.yaml", child))
    btc = s.crypto.assets[0]
    assert (btc.vol.easy, btc.vol.tight, btc.spot) == (0.9, 1.2, 90000.0)
    assert s.crypto.assets[1].name == "ETH"
    assert s.power.vol == 0.5 and s.power.price == 0.07
    assert s.name == "child"


def test_extends_cycle_is_reported(tmp_path):
    _write_yaml(tmp_path, "a.yaml", {"extends": "b.yaml"})
    _write_yaml(tmp_path, "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_scenario(tmp_path / "a.yaml")


def test_named_list_merge_appends_new_items():
    merged = deep_merge({"xs": [{"name": "a", "v": 1}]}, {"xs": [{"name": "b", "v": 2}, {"name": "a", "v": 3}]})
    assert merged == {"xs": [{"name": "a", "v": 3}, {"name": "b", "v": 2}]}


def test_overrides_by_path_index_and_name(tmp_path):
    path = _write_yaml(tmp_path, "s.yaml", small_mapping())
    s = load_scenario(path, ["crypto.assets.BTC.vol.tight=1.5", "borrowers.0.cash=1e6", "time.n_steps=36"])
    assert s.crypto.assets[0].vol.tight == 1.5
    assert s.borrowers[0].cash == 1e6
    assert s.time.n_steps == 36
    with pytest.raises(ConfigError, match="no item named 'DOGE'"):
        load_scenario(path, ["crypto.assets.DOGE.vol=1"])


def test_regime_pairs_accept_a_single_number():
    s = validate_mapping(small_mapping())
    eth = s.crypto.assets[1]
    assert (eth.drift.easy, eth.drift.tight) == (0.10, 0.10)


def test_errors_name_each_field_value_and_rule():
    data = small_mapping()
    data["crypto"]["assets"][0]["vol"]["tight"] = -0.3
    data["compute"]["generations"][1]["rental_rate"] = "cheap"
    data["power"]["volatility"] = 0.2
    del data["regime"]["p_tight_to_easy"]
    with pytest.raises(ConfigError) as info:
        validate_mapping(data, "bad.yaml")
    lines = info.value.problems
    assert len(lines) == 4
    text = "\n".join(lines)
    assert "bad.yaml: crypto.assets[0].vol.tight: Input should be greater than or equal to 0 (got -0.3)" in text
    assert "compute.generations[1].rental_rate" in text and "'cheap'" in text
    assert "power.volatility: unknown field" in text
    assert "regime.p_tight_to_easy: required field is missing" in text


def test_cross_reference_errors_name_the_field():
    data = small_mapping()
    data["borrowers"][0]["fleets"][0]["generation"] = "V100"
    data["borrowers"][0]["debt"][0]["collateral"] = {"crypto": ["BTC"]}
    with pytest.raises(ConfigError) as info:
        validate_mapping(data, "x")
    text = "\n".join(info.value.problems)
    assert "borrowers[0].fleets[0].generation: 'V100' is not one of ['H100', 'B200']" in text
    assert "borrowers[0].debt[0].collateral.crypto" in text


def test_correlation_must_be_positive_semidefinite():
    data = small_mapping()
    data["crypto"]["assets"].append(dict(data["crypto"]["assets"][1], name="SOL"))
    bad = [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]
    data["crypto"]["correlation"] = {"easy": bad, "tight": bad}
    with pytest.raises(ConfigError, match="positive semi-definite"):
        validate_mapping(data)


def test_instrument_rules():
    data = small_mapping()
    debt = data["borrowers"][0]["debt"][0]
    debt.update(kind="bond", amortization="annuity")
    with pytest.raises(ConfigError, match="bullet"):
        validate_mapping(data)
    debt.update(kind="facility", amortization="bullet")
    with pytest.raises(ConfigError, match="commitment and advance_rate"):
        validate_mapping(data)


def test_yaml_syntax_error_gives_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ncrypto: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+:\d+: YAML syntax error"):
        load_scenario(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_scenario(tmp_path / "nope.yaml")


def test_resolved_yaml_round_trips():
    s = load_scenario("baseline")
    again = validate_mapping(yaml.safe_load(to_yaml(s)))
    assert again == s


def test_schema_is_json_with_descriptions():
    schema = Scenario.model_json_schema()
    json.dumps(schema)
    power = schema["$defs"]["Power"]["properties"]
    assert all("description" in field for field in power.values())


def test_event_steps_fall_on_the_monthly_grid():
    grid = TimeGrid(start="2026-01-01", steps_per_year=12, n_steps=120)
    assert event_step(grid, date(2026, 2, 1)) == 0  # in (t_0, t_1]
    assert event_step(grid, date(2026, 2, 2)) == 1
    assert event_step(grid, date(2026, 7, 1)) == 5
    assert event_step(grid, date(2025, 7, 1)) is None
    assert event_step(grid, date(2036, 1, 1)) == 119
    assert event_step(grid, date(2036, 1, 2)) is None


def test_a_time_on_a_step_belongs_to_the_step_that_ends_there():
    assert step_holding(0.0, 12) == -1  # t_0 itself: before the first step
    assert step_holding(1 / 12, 12) == 0  # t_1 closes step 0
    assert step_holding(1 / 12 + 1e-12, 12) == 0  # rounding of a month fraction stays on the step
    assert step_holding(1 / 12 + 1e-6, 12) == 1
    assert step_holding(2.0, 52) == 103


def test_adding_months_clips_to_the_end_of_a_shorter_month():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)
    assert add_months(date(2026, 12, 31), 12) == date(2027, 12, 31)
