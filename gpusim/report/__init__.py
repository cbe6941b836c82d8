"""`gpusim report`: charts and a self-contained HTML page for a run or a batch.

- `pages`: the run page (`write_report`); `batch_page`: the comparison page of a batch file.
- `credit_charts`, `market_charts`: one function per chart; `figures`: the folder, figure size
  and drawing helpers they share.
- `tables`: HTML tables and money/percent formatting; `datasets`: what they read from Results.
"""

from gpusim.report.figures import PNG_SIZE, ReportError
from gpusim.report.pages import write_report

__all__ = ["PNG_SIZE", "ReportError", "write_report"]
