"""The study's report: one HTML page, its figures as PNG files beside it, and ``results.json``.

>>> from xai_checks.report import write_report
>>> write_report(study, verdicts, "report/")            # doctest: +SKIP
PosixPath('.../report')

* :func:`write_report` writes ``report.html`` (rendered from Jinja2 templates; it links its
  figures, so keep the folder together), ``<figure>.png`` for every figure, and ``results.json``
  (validated against the packaged JSON Schema ``results.schema.json``), atomically.
* :func:`build_results` / :func:`validate_results` give and check the JSON document alone.
* :mod:`xai_checks.report.sections` holds :class:`ReportSection` and the registry that claims
  and figures fill.

Figures use matplotlib's object API on an Agg canvas; importing this package neither imports
pyplot nor changes matplotlib's backend.
"""

from __future__ import annotations

from xai_checks.report.schema import (
    SCHEMA_FILE,
    SCHEMA_ID,
    SCHEMA_VERSION,
    SchemaError,
    build_results,
    results_schema,
    validate_results,
)
from xai_checks.report.sections import ReportSection, register_claim_section, register_section
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
    "SCHEMA_FILE",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "ReportExistsError",
    "ReportSection",
    "SchemaError",
    "build_results",
    "is_report_folder",
    "register_claim_section",
    "register_section",
    "results_schema",
    "validate_results",
    "write_report",
]
