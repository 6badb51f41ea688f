"""The report's sections: one dataclass, one registry, one place to add a section.

A page is a list of :class:`ReportSection` records, each rendered by its own Jinja2 template
(autoescape on) from ``xai_checks/report/templates/``. They come from three places, in order:

1. page sections registered with ``order < 500`` (the verdict table);
2. one section per evaluated claim, in the order the claims were evaluated: the claim's own
   ``Claim.report_section(study, verdict)`` when its class defines one, else the built-in
   section registered for its id with :func:`register_claim_section`, else
   :func:`default_claim_section` (verdict row and reasons), so every claim a run evaluated is on the
   page (a claim evaluated twice gets a second, numbered section);
3. one section per registered phase that ran and draws a figure (``Phase.report_section``);
4. page sections registered with ``order >= 500`` (what was skipped, provenance).

A third-party claim adds its section by returning a :class:`ReportSection` from
``report_section``; its ``template`` is either the name of a template here (``"claim.html.j2"``
is a generic one that shows ``context["lead"]``, the figures and ``context["html"]``) or
Jinja2 source text of its own. ``figures`` maps a file stem to PNG bytes or a matplotlib
``Figure``; each is written once, as ``<stem>.png`` beside the report, and the page links it,
with ``context["figure_text"][stem] = {"title": ..., "caption": ...}`` when given.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from xai_checks.phases import registered_phases

if TYPE_CHECKING:
    from xai_checks.claims.base import Claim, Verdict
    from xai_checks.study import StudyResult

__all__ = [
    "FigureFile",
    "ReportSection",
    "SectionBuilder",
    "collect_sections",
    "default_claim_section",
    "figure_png",
    "register_claim_section",
    "register_section",
]


@dataclass
class ReportSection:
    """One section of the page.

    ``id`` is the HTML anchor (and must be unique on a page); ``template`` a template name under
    ``xai_checks/report/templates/`` or inline Jinja2 source; ``context`` what the template reads
    (as ``section.context``); ``figures`` file stem -> PNG bytes or matplotlib ``Figure``.
    """

    id: str
    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


#: ``builder(study, verdicts, doc) -> ReportSection | None`` for a page section
SectionBuilder: TypeAlias = (
    "Callable[[StudyResult, Sequence[Verdict], Mapping[str, Any]], ReportSection | None]"
)
#: ``builder(study, verdict, verdicts, doc) -> ReportSection | None`` for a claim's section
ClaimSectionBuilder: TypeAlias = (
    "Callable[[StudyResult, Verdict, Sequence[Verdict], Mapping[str, Any]], ReportSection | None]"
)

_PAGE: dict[str, tuple[float, SectionBuilder]] = {}
_CLAIM: dict[str, ClaimSectionBuilder] = {}
_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: page sections with an order below this come before the claims' sections
CLAIMS_AT = 500.0


def register_section(
    section_id: str, *, order: float
) -> Callable[[SectionBuilder], SectionBuilder]:
    """Register a page section (not tied to a claim); ``order`` places it on the page."""

    def wrap(builder: SectionBuilder) -> SectionBuilder:
        _PAGE[section_id] = (order, builder)
        return builder

    return wrap


def register_claim_section(
    claim_id: str,
) -> Callable[[ClaimSectionBuilder], ClaimSectionBuilder]:
    """Register the built-in section of the claim ``claim_id`` (``"*"``: the fallback).

    Used only when the claim's class does not provide its own ``report_section``.
    """

    def wrap(builder: ClaimSectionBuilder) -> ClaimSectionBuilder:
        _CLAIM[claim_id] = builder
        return builder

    return wrap


def default_claim_section(claim: Claim, study: StudyResult, verdict: Verdict) -> ReportSection:
    """The section of a claim that neither defines its own nor has one registered for its id:
    its hypothesis, verdict row and reasons (template ``claim.html.j2``)."""
    return ReportSection(
        id=claim.id,
        title=claim.title or claim.id,
        template="claim.html.j2",
        context={
            "claim": claim.to_dict(),
            "hypothesis": verdict.hypothesis or claim.hypothesis_for(study),
            "verdict": verdict.to_dict(),
            "row": verdict.row(),
        },
    )


def _claim_section(
    study: StudyResult, verdict: Verdict, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> ReportSection | None:
    """The claim's own section; else the built-in one for its id; else the claim's default."""
    from xai_checks.claims.base import Claim

    claim = verdict.claim
    own = getattr(type(claim), "report_section", None)
    if own is not None and own is not Claim.report_section:
        return claim.report_section(study, verdict)
    builder = _CLAIM.get(str(getattr(claim, "id", "")))
    if builder is not None:
        return builder(study, verdict, verdicts, doc)
    if own is not None:
        return default_claim_section(claim, study, verdict)
    return _CLAIM["*"](study, verdict, verdicts, doc)


def collect_sections(
    study: StudyResult, verdicts: Sequence[Verdict], doc: Mapping[str, Any]
) -> list[ReportSection]:
    """Every section of the page, in page order."""
    page = sorted(_PAGE.items(), key=lambda item: item[1][0])
    out: list[ReportSection] = []
    for _, (order, builder) in page:
        if order < CLAIMS_AT:
            section = builder(study, verdicts, doc)
            if section is not None:
                out.append(section)
    for verdict in verdicts:
        section = _claim_section(study, verdict, verdicts, doc)
        if section is not None:
            out.append(section)
    for phase in registered_phases():  # each phase that ran draws its own figure
        if phase.output(study) is not None:
            section = phase.report_section(study)
            if section is not None:
                out.append(section)
    for _, (order, builder) in page:
        if order >= CLAIMS_AT:
            section = builder(study, verdicts, doc)
            if section is not None:
                out.append(section)
    seen: set[str] = set()
    stems: set[str] = set()
    for section in out:
        # the same claim evaluated twice (e.g. with other params) gets a second, numbered section
        section.id = _unique(section.id, seen)
        for stem in list(section.figures):
            if not _STEM.fullmatch(stem):
                raise ValueError(
                    f"section {section.id!r}: figure name {stem!r} is not a file stem of "
                    "letters, digits, '_', '-' and '.'"
                )
            new = _unique(stem, stems)
            if new != stem:
                _rename_figure(section, stem, new)
    return out


def _unique(name: str, used: set[str]) -> str:
    out, i = name, 2
    while out in used:
        out, i = f"{name}-{i}", i + 1
    used.add(out)
    return out


def _rename_figure(section: ReportSection, old: str, new: str) -> None:
    """Rename one figure (its PNG file stem) everywhere the section refers to it."""
    section.figures = {new if k == old else k: v for k, v in section.figures.items()}
    for key in ("figure_text", "tables_after"):
        table = section.context.get(key)
        if isinstance(table, dict) and old in table:
            section.context[key] = {new if k == old else k: v for k, v in table.items()}


class FigureFile(str):
    """A figure already written beside the report: its file name, which the page links."""


def figure_png(figure: Any, *, dpi: float | None = None) -> bytes:
    """PNG bytes of a section's figure: bytes pass through, a matplotlib ``Figure`` is saved."""
    if isinstance(figure, bytes | bytearray):
        return bytes(figure)
    if hasattr(figure, "savefig"):
        buffer = io.BytesIO()
        kwargs = {} if dpi is None else {"dpi": dpi}
        figure.savefig(buffer, format="png", **kwargs)
        return buffer.getvalue()
    raise TypeError(f"a report figure must be PNG bytes or a matplotlib Figure, not {figure!r}")
