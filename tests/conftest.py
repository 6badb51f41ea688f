"""Hooks for the whole suite. pytest-xdist's controller loads this file too (it collects
nothing, so it never loads the conftest files below this folder): the run's summary is printed
from here."""

from __future__ import annotations

import pytest

#: (test, measurement) for every measurement a test took from an earlier run
_KEPT: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Gather the measurements kept from an earlier run (``tests/unit/conftest.py`` records
    each as a user property, which xdist sends with the report)."""
    if report.when == "teardown":  # the item's properties from every phase
        _KEPT.extend((report.nodeid, str(value)) for key, value in report.user_properties
                     if key == "kept_measurement")  # fmt: skip


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which tests asserted on kept measurements, so a green run says what it measured."""
    if not _KEPT:
        return
    tests = {test for test, _ in _KEPT}
    terminalreporter.write_sep("-", "measurements kept from an earlier run")
    terminalreporter.write_line(
        f"{len(tests)} test(s) asserted on {len(_KEPT)} measurement(s) an earlier run made from "
        "the same code, tests, libraries and inputs (pytest --cache-clear measures them again):"
    )
    for test, name in _KEPT:
        terminalreporter.write_line(f"  {test} ({name})")
