"""benchmarks/instruction_budget.py: the instruction count per path-step of the host build of
kernels/ under callgrind, and its split by stage, on the small scenario."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import small_spec_for

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "instruction_budget.py"


def budget_script() -> ModuleType:
    """The script as a module (registered under its name: its dataclasses look it up in sys.modules)."""
    if "instruction_budget" not in sys.modules:
        spec = importlib.util.spec_from_file_location("instruction_budget", SCRIPT)
        assert spec is not None and spec.loader is not None
        sys.modules["instruction_budget"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["instruction_budget"])
    return sys.modules["instruction_budget"]


@pytest.fixture(scope="module")
def small_budget():
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        pytest.skip("valgrind (callgrind) is not installed: the instruction budget is not measured")
    if not any(shutil.which(c) for c in ("g++", "clang++", "c++")):
        pytest.skip("no C++ compiler: the instruction budget is not measured")
    script = budget_script()
    return script, script.measure_spec(small_spec_for("float32", stressed=True), "small", paths=6)


def test_split_adds_up_to_the_total(small_budget) -> None:
    """Every stage is counted, the stages never exceed the split build's total, and their shares
    put on the inlined build's total add up to it."""
    script, budget = small_budget
    assert budget.launches == 2 and budget.steps == 24 and budget.paths == 6
    assert budget.per_path_step == pytest.approx(budget.total_instructions / (6 * 24))
    stages = [row for row in budget.rows if not row.stage.startswith("other")]
    assert [row.stage for row in stages] == [stage for stage, _ in script.STAGES]
    assert all(row.split_per_step > 0 for row in stages), [row.stage for row in stages if row.split_per_step <= 0]
    assert sum(row.split_per_step for row in stages) <= budget.split_total_per_step
    assert sum(row.per_step for row in budget.rows) == pytest.approx(budget.per_path_step, rel=1e-9)
    assert sum(row.share for row in budget.rows) == pytest.approx(1.0, rel=1e-9)
    # the profiling build only moves calls out of line: it may not count fewer instructions
    assert budget.split_total_per_step >= budget.per_path_step
    table = script.markdown(budget)
    assert f"{budget.per_path_step:,.0f} instructions per path-step" in table
    assert table.count("\n| ") == len(budget.rows) + 2  # header, rows, total


def test_missing_valgrind_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    script = budget_script()
    real_which = shutil.which
    monkeypatch.setattr(script.shutil, "which", lambda name: None if name == "valgrind" else real_which(name))
    assert script.main(["--config", "bench", "--paths", "1"]) == 2
    assert "valgrind not found on PATH" in capsys.readouterr().err
