"""gpusim: Monte Carlo stress simulator for AI-infrastructure credit (see MODEL.md)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpusim")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
