"""`gpusim report`: charts and a self-contained HTML page for a run or a batch."""

from gpusim.report.pages import PNG_SIZE, ReportError, write_report

__all__ = ["PNG_SIZE", "ReportError", "write_report"]
