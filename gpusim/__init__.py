"""gpusim: Monte Carlo stress simulator for AI-infrastructure credit (see docs/model.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpusim.version import __version__

if TYPE_CHECKING:
    from gpusim.api import Results, open_results, report_figures, simulate

__all__ = ["Results", "__version__", "open_results", "report_figures", "simulate"]

_LAZY_API = {"Results", "open_results", "report_figures", "simulate"}


def __getattr__(name: str) -> Any:
    """The Python API on first use: importing it (the engine, every backend) costs `gpusim --help` time."""
    if name in _LAZY_API:
        from gpusim import api

        return getattr(api, name)
    raise AttributeError(f"module 'gpusim' has no attribute {name!r}")
