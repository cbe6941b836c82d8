"""Every equation of the array-API model has a CUDA twin of the same name.

The model is written twice: once in gpusim/model/{market,borrowers,debt,credit}.py and once in
kernels/*.cuh, one __host__ __device__ function per Python function, so a reader (or a bisecting
agreement test) can put one next to the other. A Python function without a CUDA function of the
same name is either listed in ARRAY_ONLY, with the reason it has no per-path counterpart, or a
twin that is missing or was renamed on one side only.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_MODULES = ("market", "borrowers", "debt", "credit")

ARRAY_ONLY: dict[str, str] = {
    "sum_over": "a fixed-order sum over an array axis; a CUDA function adds its terms in the same order in a loop",
    "by_owner": "repeats per-borrower rows per instrument; a CUDA function indexes the owner b directly",
    "recoveries_where": "gathers the defaulting paths of an array; a CUDA thread is one path and skips the waterfall itself",
}
"""Python model functions that only exist because the Python model works on arrays of paths."""

CUDA_FUNCTION = re.compile(r"__host__\s+__device__\b[^;{(]*?\b(\w+)\s*\(")


def python_functions() -> dict[str, str]:
    """Module-level function names of the Python model modules, each with its module."""
    found: dict[str, str] = {}
    for module in MODEL_MODULES:
        tree = ast.parse((ROOT / "gpusim" / "model" / f"{module}.py").read_text())
        found.update({node.name: module for node in tree.body if isinstance(node, ast.FunctionDef)})
    return found


def cuda_functions() -> set[str]:
    """Names of the __host__ __device__ functions of kernels/*.cuh."""
    return {name for header in sorted((ROOT / "kernels").glob("*.cuh")) for name in CUDA_FUNCTION.findall(header.read_text())}


def test_cuda_functions_are_found() -> None:
    cuda = cuda_functions()
    assert {"credit_step", "settle_defaults", "share_pool", "advance_market"} <= cuda


def test_every_python_model_function_has_a_cuda_twin() -> None:
    cuda = cuda_functions()
    missing = sorted(f"{module}.{name}" for name, module in python_functions().items() if name not in cuda and name not in ARRAY_ONLY)
    assert not missing, f"Python model functions without a CUDA function of the same name: {missing}"


def test_array_only_functions_are_current() -> None:
    """Each ARRAY_ONLY entry still exists in Python and has gained no CUDA twin (then it would belong to the twins)."""
    python, cuda = python_functions(), cuda_functions()
    assert not sorted(set(ARRAY_ONLY) - set(python)), "ARRAY_ONLY lists functions the Python model no longer has"
    assert not sorted(set(ARRAY_ONLY) & cuda), "ARRAY_ONLY lists functions that have a CUDA twin"


DOC_REFERENCE = re.compile(r"`((?:kernels|gpusim)/[\w/]+\.(?:py|cuh|cu)): ([\w, ]+)`((?:, `\w+`)*)")
"""`path: name` in docs/model.md, optionally followed by more names: `path: a, b` or `path: a`, `b`."""


def test_docs_model_names_functions_that_exist() -> None:
    """Every `file: name` that docs/model.md gives beside an equation names a file of the
    repository that defines (or declares) that name, so one grep finds the equation in code."""
    text = (ROOT / "docs" / "model.md").read_text()
    references = list(DOC_REFERENCE.finditer(text))
    assert len(references) > 40, "docs/model.md gives the Python and CUDA function of every equation"
    missing = []
    for match in references:
        path = ROOT / match.group(1)
        names = [n.strip() for n in match.group(2).split(",") if n.strip()] + re.findall(r"`(\w+)`", match.group(3))
        source = path.read_text() if path.is_file() else ""
        missing += [f"{match.group(1)}: {name}" for name in names if not re.search(rf"\b{re.escape(name)}\b", source)]
    assert not missing, f"docs/model.md names what its file does not define: {missing}"
