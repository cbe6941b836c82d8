"""The figures of a report: how they are drawn, embedded in the page, and where the page is written.

Charts are drawn on matplotlib `Figure` objects rendered with the Agg canvas (no pyplot, no
GUI backend, no global state), all FIGSIZE inches, and embedded in the HTML page as SVG
(vector, so sharp at any zoom and when printed, and nothing loaded from outside the file).
The same Figures go into the optional PDF. Legends sit outside the axes, never over data.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from gpusim.output.write import OutputError, check_output_path, partial_path, remove_stale_partials

FIGSIZE = (11.0, 6.0)
"""Inches; the page shows charts at most 1100 px wide, so text reads at its print size."""

# quantile bands of the fan charts, outermost first: (low, high, opacity, legend label)
FAN_BANDS = ((0.01, 0.99, 0.15, "1-99 % of paths"), (0.05, 0.95, 0.25, "5-95 % of paths"), (0.25, 0.75, 0.40, "25-75 % of paths"))

SHARE_LIMITS = (-0.03, 1.05)
"""y range of a 0-100 % axis: a line at 0 % or 100 % stays clear of the frame."""


class ReportError(OutputError):
    """The report cannot be written (the CLI's user-error handler turns it into exit code 2)."""


@dataclass(frozen=True)
class Chart:
    """One figure of the report: its anchor, title, caption and page section, the Figure and its SVG."""

    name: str
    title: str
    caption: str
    section: str
    figure: Figure
    svg: bytes

    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg).decode("ascii")


@dataclass
class ChartBook:
    """The charts drawn so far, each under an anchor name not taken yet."""

    charts: list[Chart] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def figure(self) -> Figure:
        """A blank figure of the report's size on the Agg canvas (no pyplot, no global state)."""
        fig = Figure(figsize=FIGSIZE, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    def save_chart(self, fig: Figure, stem: str, title: str, caption: str, section: str) -> Chart:
        """Render `fig` to SVG now (so a drawing error names its chart) and keep it for the page and the PDF."""
        name = base = file_stem(stem)
        n = 2
        while name in self.used:
            name, n = f"{base}-{n}", n + 1
        self.used.add(name)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        chart = Chart(name, title, caption, section, fig, buffer.getvalue())
        self.charts.append(chart)
        return chart


def file_stem(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "chart"


def pdf_path(html_path: Path) -> Path:
    """The PDF beside the page: report.html -> report.pdf."""
    return html_path.with_suffix(".pdf")


def check_report_path(out: str | os.PathLike[str], overwrite: bool, pdf: bool = False) -> Path:
    """The page's path, refused (ReportError) before anything is read or written: an empty name, a
    folder, a link, FIFO or device (never replaced), or an existing file unless `overwrite`; the
    same for the PDF beside it when one is asked for."""
    path = Path(out)
    for target in (path, pdf_path(path)) if pdf else (path,):
        try:
            check_output_path(target, overwrite, example="report.html")
        except OutputError as exc:
            raise ReportError(str(exc)) from None
    return path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` fills a hidden file beside `path`, then it is renamed over `path`: a failed
    or interrupted report leaves no half-written page and never touches an earlier one; partials
    of killed reports are removed, as `gpusim run` does."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(path)
    except OSError as exc:
        raise ReportError(cannot_write_message(path, exc)) from exc
    partial = partial_path(path)
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as exc:
        raise ReportError(cannot_write_message(path, exc)) from exc
    finally:
        partial.unlink(missing_ok=True)


def cannot_write_message(path: Path, exc: OSError) -> str:
    return f"{path}: cannot write report: {exc.strerror or exc}"


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """`advance(label)` after each figure: a rich progress bar on stderr, or nothing when not `enabled`."""
    if not enabled:
        yield lambda label: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("report"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("", total=total)
        yield lambda label: bar.update(task, advance=1, description=label)


def legend_outside(fig: Figure, handles: Sequence[Any] | None = None, labels: Sequence[str] | None = None, ncol: int = 3) -> None:
    """One legend below the axes for the whole figure (constrained layout makes room), so no data is hidden."""
    if handles is None:
        seen: dict[str, Any] = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(label, handle)
        handles, labels = list(seen.values()), list(seen)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def share_axis(ax: Axes, axis: str = "y") -> None:
    """A 0-100 % axis with a margin, so lines at 0 % and 100 % do not merge into the frame."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_ylim if axis == "y" else ax.set_xlim)(*SHARE_LIMITS)
    target.set_ticks(np.linspace(0, 1, 6))
    target.set_major_formatter(PercentFormatter(1.0, decimals=0))


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
