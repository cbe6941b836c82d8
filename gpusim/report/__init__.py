"""`gpusim report`: one self-contained HTML page (and optionally a PDF) for a run or a batch.

- `pages`: the run page (`write_report`); `batch_page`: the comparison page of a batch file;
  `pdf`: the same tables and figures as a PDF.
- `credit_charts`, `market_charts`: one function per chart; `figures`: figure size, SVG
  embedding, drawing helpers, and where the file is written (safely).
- `tables`: tables, the page's money unit and formatting; `datasets`: everything they read from Results.
"""

from gpusim.report.figures import FIGSIZE, ReportError
from gpusim.report.pages import report_figures, write_report

__all__ = ["FIGSIZE", "ReportError", "report_figures", "write_report"]
