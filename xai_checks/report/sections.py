"""Report sections: what one part of the page shows (interface 5 of the team brief).

A claim's ``report_section(study, verdict)`` returns one of these; the report renders every
section of the claims a run evaluated (the registry and the Jinja2 templates live with the
report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReportSection:
    """One section of the report page: a template under ``report/templates/`` and its data."""

    id: str
    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    #: name -> PNG bytes or a matplotlib Figure
    figures: dict[str, Any] = field(default_factory=dict)
