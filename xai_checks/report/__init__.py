"""The study's report: one self-contained HTML page, its figures as PNG, and ``results.json``.

>>> from xai_checks.report import write_report
>>> write_report(study, verdicts, "report/")            # doctest: +SKIP
PosixPath('.../report')

* :func:`write_report` writes ``report.html`` (figures embedded as base64 PNG, so it can be
  mailed), ``<figure>.png`` for every figure, and ``results.json`` (schema
  ``xai-checks/results`` v1, see :mod:`xai_checks.report.schema`), atomically.
* :func:`build_results` / :func:`validate_results` give and check the JSON document alone.

Figures use matplotlib's object API on an Agg canvas; importing this package neither imports
pyplot nor changes matplotlib's backend.
"""

from __future__ import annotations

from xai_checks.report.schema import (
    RESULTS_SCHEMA,
    SCHEMA_ID,
    SCHEMA_VERSION,
    SchemaError,
    build_results,
    validate_results,
)
from xai_checks.report.writer import (
    REPORT_FILES,
    REPORT_MARKER,
    ReportExistsError,
    is_report_folder,
    write_report,
)

__all__ = [
    "REPORT_FILES",
    "REPORT_MARKER",
    "RESULTS_SCHEMA",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "ReportExistsError",
    "SchemaError",
    "build_results",
    "is_report_folder",
    "validate_results",
    "write_report",
]
