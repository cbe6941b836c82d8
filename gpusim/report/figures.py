"""The figures of a report: the folder they are saved to, their size, and the drawing helpers charts share.

Charts are drawn on matplotlib `Figure` objects rendered with the Agg canvas (no pyplot, no
GUI backend, no global state), all FIGSIZE inches at DPI, so every PNG is
FIGSIZE[0] * DPI x FIGSIZE[1] * DPI pixels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from gpusim.output.write import OutputError

FIGSIZE = (11.0, 6.0)
DPI = 100
PNG_SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))  # (width, height) in pixels

# quantile bands of the fan charts, outermost first: (low, high, opacity, legend label)
FAN_BANDS = ((0.01, 0.99, 0.15, "1-99 % of paths"), (0.05, 0.95, 0.25, "5-95 % of paths"), (0.25, 0.75, 0.40, "25-75 % of paths"))


class ReportError(OutputError):
    """The report folder cannot be created or written."""


@dataclass(frozen=True)
class Chart:
    """One PNG of the report: its file name, and the title, caption and page section it is shown under."""

    file: str
    title: str
    caption: str
    section: str


@dataclass
class ReportFolder:
    """The folder a report is written to: the charts saved so far and the file names they took."""

    out_dir: Path
    charts: list[Chart] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, out_dir: str | Path, overwrite: bool = False) -> ReportFolder:
        """Make the folder (and its parents); ReportError when it cannot be a folder we write to,
        or when it already holds files and `overwrite` is off (an earlier report is never replaced silently)."""
        out = check_report_folder(out_dir, overwrite)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(cannot_write_message(out, exc)) from exc
        if not out.is_dir():
            raise ReportError(f"{out}: cannot write report: not a directory")
        return cls(out)

    def _replaceable(self, path: Path) -> Path:
        """`path` if it is absent or a regular file: a link, FIFO or device there is never written through."""
        if (path.exists() or path.is_symlink()) and (path.is_symlink() or not path.is_file()):
            raise ReportError(f"{path}: cannot write report: exists and is not a regular file, which gpusim never replaces")
        return path

    def figure(self) -> Figure:
        """A blank figure of the report's size on the Agg canvas (no pyplot, no global state)."""
        fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    def save_chart(self, fig: Figure, stem: str, title: str, caption: str, section: str) -> Chart:
        """Write `fig` as a PNG under a file name not taken yet and remember it for the page."""
        name = base = file_stem(stem)
        n = 2
        while name in self.used:
            name, n = f"{base}-{n}", n + 1
        self.used.add(name)
        path = self._replaceable(self.out_dir / f"{name}.png")
        try:
            fig.savefig(path, dpi=DPI, format="png")
        except OSError as exc:
            raise ReportError(cannot_write_message(path, exc)) from exc
        chart = Chart(path.name, title, caption, section)
        self.charts.append(chart)
        return chart

    def write_page(self, html: str) -> Path:
        """Write index.html; return its path."""
        index = self._replaceable(self.out_dir / "index.html")
        try:
            index.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise ReportError(cannot_write_message(index, exc)) from exc
        return index


def check_report_folder(out_dir: str | Path, overwrite: bool) -> Path:
    """The report folder, refused (ReportError) before anything is read or written when it is a
    link, a file, or a folder that holds files while `overwrite` is off."""
    out = Path(out_dir)
    if not str(out_dir):
        raise ReportError("'': cannot write report: not a folder name; give one such as report/")
    if out.is_symlink():
        raise ReportError(f"{out}: cannot write report: a symbolic link, which gpusim never writes through; give a real folder")
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: cannot write report: not a directory")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise ReportError(f"{out}: cannot write report: the folder is not empty; pass --overwrite to replace the report in it")
    return out


def file_stem(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "chart"


def cannot_write_message(path: Path, exc: OSError) -> str:
    return f"{path}: cannot write report: {exc.strerror or exc}"


def draw_fan(ax: Axes, time: np.ndarray, values: Any, color: str) -> None:
    """Quantile bands 1-99, 5-95, 25-75 and the median of a (quantile, step) DataArray."""
    for low, high, alpha, label in FAN_BANDS:
        lo, hi = quantile_row(values, low), quantile_row(values, high)
        if lo is not None and hi is not None:
            ax.fill_between(time, lo, hi, color=color, alpha=alpha, lw=0, label=label)
    median = quantile_row(values, 0.5)
    if median is not None:
        ax.plot(time, median, color=color, lw=2.0, label="median")


def draw_regimes(ax: Axes, time: np.ndarray, regime: np.ndarray, colors: Sequence[Any]) -> None:
    dt = float(time[1] - time[0]) if len(time) > 1 else 1.0
    for i, row in enumerate(regime):
        tight = np.flatnonzero(np.asarray(row) == 1)
        ax.broken_barh([(float(time[k]), dt) for k in tight], (i - 0.35, 0.7), facecolors=colors[i])
    ax.set_yticks(range(len(regime)), [f"path {i + 1}" for i in range(len(regime))], fontsize=7)
    ax.set_ylim(len(regime) - 0.5, -0.5)
    ax.set_xlim(float(time[0]), float(time[-1]) + dt)
    ax.set_title("Tight-regime months (bars)")


def log_usd_axis(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def quantile_row(values: Any, q: float) -> np.ndarray | None:
    quantiles = np.asarray(values["quantile"].values, dtype=float)
    hit = np.flatnonzero(np.isclose(quantiles, q))
    return None if hit.size == 0 else np.asarray(values.isel(quantile=int(hit[0])).values, dtype=float)


def distinct_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
