"""The installed version, in a module of its own: output files and batch journals record it
without importing the package root, whose lazy API imports the engine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpusim")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
