"""gpusim: Monte Carlo stress simulator for AI-infrastructure credit (see MODEL.md)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("gpusim")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

if TYPE_CHECKING:
    from gpusim.output.read import Results, open_results, simulate

__all__ = ["Results", "__version__", "open_results", "simulate"]

_RESULTS_API = {"Results", "open_results", "simulate"}


def __getattr__(name: str) -> Any:
    """The results API on first use: importing it (the engine, every backend) costs `gpusim --help` time."""
    if name in _RESULTS_API:
        from gpusim.output import read as results

        return getattr(results, name)
    raise AttributeError(f"module 'gpusim' has no attribute {name!r}")
