"""Reports of a study: the self-contained HTML report, its tables, and console rendering.

Reads data frames only (through :mod:`batchlab.analysis`); never trains or imports JAX.

Example::

    from batchlab.report import write_report
    files = write_report("runs/quick")      # runs/quick/report/report.html (+ PNG, CSV)
"""

from batchlab.report.html import ReportFiles, render_html, write_report

__all__ = ["ReportFiles", "render_html", "write_report"]
